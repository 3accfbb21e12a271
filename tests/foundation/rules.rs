//! Validation in Kuma's error body, status codes, and pagination.

use super::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn structural_validation_reports_every_violation_at_once_in_kumas_body() {
    let (_db, g) = pg_global(&[]).await;
    let api = &g.api;
    let long = "m".repeat(64);

    // Name too long, unknown field, bad duration, unknown backend type, provided without conf.
    let (s, b) = api
        .put(
            &format!("/meshes/{long}"),
            &json!({"type": "Mesh", "name": long, "bogus": 1, "mtls": {"backends": [
                {"name": "ca-1", "type": "builtin", "dpCert": {"rotation": {"expiration": "1h30m"}}},
                {"name": "ca-2", "type": "certmanager"},
                {"name": "ca-3", "type": "provided"}]}}),
        )
        .await
        .expect("put");
    assert_invalid(
        s,
        &b,
        &[
            ("name", "cannot be longer than 63 characters"),
            ("bogus", "unknown field"),
            (
                "mtls.backends[0].dpCert.rotation.expiration",
                "has to be a valid format",
            ),
            (
                "mtls.backends[1].type",
                "could not find installed plugin for this type",
            ),
            ("mtls.backends[2].conf", "has to be defined"),
        ],
    );
    assert_eq!(get_status(api, &format!("/meshes/{long}")).await, 404);
    // 63 characters is fine.
    let max = "m".repeat(63);
    put_expect(
        api,
        &format!("/meshes/{max}"),
        &json!({"type": "Mesh", "name": max}),
        201,
    )
    .await;

    // Duplicate backend names, enabledBackend not among them, nested unknown field, bad RSA size,
    // backend name that is not a DNS name.
    let (s, b) = api
        .put(
            "/meshes/dupes",
            &json!({"type": "Mesh", "name": "dupes", "mtls": {"enabledBackend": "ca-9", "backends": [
                {"name": "ca-1", "type": "builtin", "conf": {"caCert": {"RSAbits": 1000, "bits": 1}}},
                {"name": "ca-1", "type": "builtin"},
                {"name": "CA_2", "type": "builtin"}]}}),
        )
        .await
        .expect("put");
    assert_invalid(
        s,
        &b,
        &[
            (
                "mtls.backends[0].conf.caCert.RSAbits",
                "must be one of 2048, 3072 or 4096",
            ),
            ("mtls.backends[0].conf.caCert.bits", "unknown field"),
            (
                "mtls.backends[1].name",
                "\"ca-1\" name is already used for another backend",
            ),
            (
                "mtls.backends[2].name",
                "\"CA_2\" name must be valid dns name",
            ),
            (
                "mtls.enabledBackend",
                "has to be set to one of the backends in the mesh",
            ),
        ],
    );

    // DataSources: none chosen, two chosen, empty, not base64; vault conf with required fields
    // missing; all at once.
    let (s, b) = api
        .put(
            "/meshes/sources",
            &json!({"type": "Mesh", "name": "sources", "mtls": {"backends": [
                {"name": "p-1", "type": "provided", "conf": {"cert": {}, "key": {"secret": "a", "inline": "aGk="}}},
                {"name": "p-2", "type": "provided", "conf": {"cert": {"secret": ""}, "key": {"inline": "!!"}}},
                {"name": "v-1", "type": "vault", "conf": {"fromCp": {"tls": {"skipVerify": "yes"}}}}]}}),
        )
        .await
        .expect("put");
    assert_invalid(
        s,
        &b,
        &[
            (
                "mtls.backends[0].conf.cert",
                "data source has to be chosen. Available sources: secret, file, inline",
            ),
            (
                "mtls.backends[0].conf.key",
                "only one data source can be set",
            ),
            ("mtls.backends[1].conf.cert.secret", "cannot be empty"),
            ("mtls.backends[1].conf.key.inline", "has to be valid base64"),
            ("mtls.backends[2].conf.fromCp.address", "has to be defined"),
            ("mtls.backends[2].conf.fromCp.pki", "has to be defined"),
            ("mtls.backends[2].conf.fromCp.role", "has to be defined"),
            (
                "mtls.backends[2].conf.fromCp.tls.skipVerify",
                "must be a boolean",
            ),
            ("mtls.backends[2].conf.fromCp.auth", "has to be defined"),
        ],
    );
    for m in ["dupes", "sources"] {
        assert_eq!(get_status(api, &format!("/meshes/{m}")).await, 404, "{m}");
    }

    // The path and the body must agree on type, name and mesh.
    let (s, b) = api
        .put("/meshes/one", &json!({"type": "Mesh", "name": "two"}))
        .await
        .expect("put");
    assert_invalid(
        s,
        &b,
        &[("name", "name from the URL has to be the same as in body")],
    );
    let (s, b) = api
        .put(
            "/meshes/default/secrets/s1",
            &json!({"type": "GlobalSecret", "mesh": "other", "name": "s2", "data": "YQ=="}),
        )
        .await
        .expect("put");
    assert_invalid(
        s,
        &b,
        &[
            ("type", "type from the URL has to be the same as in body"),
            ("name", "name from the URL has to be the same as in body"),
            ("mesh", "mesh from the URL has to be the same as in body"),
        ],
    );
    for p in ["/meshes/one", "/meshes/two", "/meshes/default/secrets/s1"] {
        assert_eq!(get_status(api, p).await, 404, "{p}");
    }

    // Secrets: base64 data, an existing Mesh.
    let (s, b) = api
        .put(
            "/meshes/default/secrets/bad",
            &json!({"type": "Secret", "mesh": "default", "name": "bad", "data": "not base64!"}),
        )
        .await
        .expect("put");
    assert_invalid(s, &b, &[("data", "has to be valid base64")]);
    let (s, b) = api
        .put(
            "/meshes/nope/secrets/s",
            &json!({"type": "Secret", "mesh": "nope", "name": "s", "data": "YQ=="}),
        )
        .await
        .expect("put");
    assert_invalid(s, &b, &[("mesh", "mesh of name nope is not found")]);
    let (s, b) = api
        .put(
            "/meshes/Bad_Name",
            &json!({"type": "Mesh", "name": "Bad_Name"}),
        )
        .await
        .expect("put");
    assert_invalid(
        s,
        &b,
        &[("name", "invalid characters. A lowercase RFC 1123 subdomain")],
    );
    // A duration of `0` is Kuma grammar; a unit outside y|w|d|h|m|s|ms is not.
    let (s, b) = api
        .put(
            "/meshes/durations",
            &json!({"type": "Mesh", "name": "durations", "mtls": {"backends": [
                {"name": "ca-1", "type": "builtin", "dpCert": {"rotation": {"expiration": "3x"}},
                 "conf": {"caCert": {"expiration": "1.5h"}}}]}}),
        )
        .await
        .expect("put");
    assert_invalid(
        s,
        &b,
        &[
            (
                "mtls.backends[0].dpCert.rotation.expiration",
                "has to be a valid format",
            ),
            (
                "mtls.backends[0].conf.caCert.expiration",
                "has to be a valid format",
            ),
        ],
    );
}

// ---------------------------------------------------------------------------------------------
// Status codes and pagination
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_is_201_then_200_missing_is_404_and_lists_paginate() {
    let (_db, g) = pg_global(&[]).await;
    let api = &g.api;

    let mesh = json!({"type": "Mesh", "name": "alpha"});
    let b = put_expect(api, "/meshes/alpha", &mesh, 201).await;
    assert_eq!(b, json!({"warnings": []}));
    let (first, v1) = get_with_version(api, "/meshes/alpha").await;
    let with_label = json!({"type": "Mesh", "name": "alpha", "labels": {"team": "payments"}});
    put_expect(api, "/meshes/alpha", &with_label, 200).await;
    let (second, v2) = get_with_version(api, "/meshes/alpha").await;
    assert_eq!(v2, v1 + 1);
    assert_eq!(without_times(second.clone()), with_label);
    assert_eq!(second["creationTime"], first["creationTime"]);

    // Global-scoped kinds: GlobalSecret and Zone; mesh-scoped Secret.
    for (path, body) in [
        (
            "/global-secrets/gs-1",
            json!({"type": "GlobalSecret", "name": "gs-1", "data": "Z3M="}),
        ),
        (
            "/zones/zone-1",
            json!({"type": "Zone", "name": "zone-1", "enabled": false}),
        ),
        (
            "/meshes/alpha/secrets/s-1",
            json!({"type": "Secret", "mesh": "alpha", "name": "s-1", "data": "czE="}),
        ),
    ] {
        put_expect(api, path, &body, 201).await;
        put_expect(api, path, &body, 200).await;
        assert_eq!(without_times(get_ok(api, path).await), body, "{path}");
    }

    // 404 on GET and DELETE of anything missing, in Kuma's body.
    for path in [
        "/meshes/missing",
        "/meshes/alpha/secrets/missing",
        "/meshes/missing/secrets/s-1",
        "/global-secrets/missing",
        "/zones/missing",
    ] {
        for method in [Method::GET, Method::DELETE] {
            let r = api
                .request(method.clone(), path)
                .send()
                .await
                .expect("request");
            assert_eq!(r.status().as_u16(), 404, "{method} {path}");
            let body: Value = r.json().await.expect("json");
            assert_error_body(&body, 404, "Not found");
        }
    }
    // DELETE answers 200 and the resource is gone.
    let (s, _) = api.delete("/zones/zone-1").await.expect("delete");
    assert_eq!(s, 200);
    assert_eq!(get_status(api, "/zones/zone-1").await, 404);

    // Pagination over 5 meshes: default, alpha, beta, gamma, delta.
    for m in ["beta", "gamma", "delta"] {
        put_expect(
            api,
            &format!("/meshes/{m}"),
            &json!({"type": "Mesh", "name": m}),
            201,
        )
        .await;
    }
    let page = get_ok(api, "/meshes?size=2&offset=0").await;
    assert_eq!(page["total"], 5, "{page}");
    assert_eq!(page["items"].as_array().expect("items").len(), 2);
    let next = page["next"].as_str().expect("a next URL on the first page");
    assert!(
        next.starts_with(&format!("{}/meshes?", api.base)),
        "next is an absolute URL of this API: {next}"
    );
    assert!(
        next.contains("offset=2") && next.contains("size=2"),
        "{next}"
    );
    let mut names: Vec<String> = page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["name"].as_str().expect("name").to_string())
        .collect();
    let mut url = next.to_string();
    let mut pages = 1;
    let client = reqwest::Client::new();
    loop {
        let page: Value = client
            .get(&url)
            .send()
            .await
            .expect("next page")
            .json()
            .await
            .expect("json");
        pages += 1;
        assert_eq!(page["total"], 5);
        names.extend(
            page["items"]
                .as_array()
                .expect("items")
                .iter()
                .map(|i| i["name"].as_str().expect("name").to_string()),
        );
        match page["next"].as_str() {
            Some(n) => url = n.to_string(),
            None => {
                assert_eq!(page["next"], Value::Null, "last page: next is null");
                break;
            }
        }
        assert!(pages < 10, "pagination does not end");
    }
    assert_eq!(pages, 3);
    let mut sorted = names.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(names.len(), 5, "each mesh exactly once: {names:?}");
    assert_eq!(sorted, ["alpha", "beta", "default", "delta", "gamma"]);
    let all = get_ok(api, "/meshes?size=5&offset=0").await;
    assert_eq!(all["next"], Value::Null);
    let past = get_ok(api, "/meshes?size=2&offset=10").await;
    assert_eq!(past["items"], json!([]));
    let (s, b) = api.get("/meshes?size=0").await.expect("get");
    assert_invalid(s, &b, &[("size", "must be a number between 1 and 1000")]);
}

// ---------------------------------------------------------------------------------------------
// Optimistic concurrency
// ---------------------------------------------------------------------------------------------
