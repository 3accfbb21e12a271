//! Foundation (issue 2) against real PostgreSQL: the shared examples round-trip through the REST API
//! in JSON and YAML, structural validation answers Kuma's error body with every violation, 201/200/404/
//! 409 and pagination, racing writers, cascade delete, durability across a restart, the schema gate
//! and `migrate up`, hostile bodies, secret redaction, health/readiness/shutdown, and the memory store.

use std::time::Duration;

use base64::Engine;
use meshplane_test_support::{
    postgres::TestDatabase,
    process::{Proc, bin, free_port, wait_http_ok},
};
use meshplane_tests::{
    Api, Global, Store, encryption_key_file, eventually, migrated_db, repo_root,
};
use reqwest::Method;
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection};

const WAIT: Duration = Duration::from_secs(30);
const SKIP_WARNING: &str = "skipValidation is set: the CA backends were not validated";

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

async fn pg_global(extra: &[&str]) -> (TestDatabase, Global) {
    let db = migrated_db().await.expect("migrated database");
    let g = Global::start(Store::Postgres(db.url.clone()), extra)
        .await
        .expect("global on PostgreSQL");
    (db, g)
}

fn example(name: &str) -> String {
    let p = repo_root().join("deploy/examples").join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn yaml(text: &str) -> Value {
    serde_saphyr::from_str(text).unwrap_or_else(|e| panic!("test YAML does not parse: {e}\n{text}"))
}

fn b64(s: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn without_times(mut v: Value) -> Value {
    if let Some(o) = v.as_object_mut() {
        o.remove("creationTime");
        o.remove("modificationTime");
    }
    v
}

/// The API path of a universal document.
fn path_of(doc: &Value) -> String {
    let name = doc["name"].as_str().expect("name");
    match doc["type"].as_str().expect("type") {
        "Mesh" => format!("/meshes/{name}"),
        "Secret" => format!(
            "/meshes/{}/secrets/{name}",
            doc["mesh"].as_str().expect("mesh")
        ),
        "Dataplane" => format!(
            "/meshes/{}/dataplanes/{name}",
            doc["mesh"].as_str().expect("mesh")
        ),
        "GlobalSecret" => format!("/global-secrets/{name}"),
        "Zone" => format!("/zones/{name}"),
        t => panic!("no path for {t}"),
    }
}

async fn get_ok(api: &Api, path: &str) -> Value {
    let (s, b) = api.get(path).await.expect("GET");
    assert_eq!(s, 200, "GET {path}: {b}");
    b
}

async fn get_status(api: &Api, path: &str) -> u16 {
    api.get(path).await.expect("GET").0
}

async fn put_expect(api: &Api, path: &str, body: &Value, want: u16) -> Value {
    let (s, b) = api.put(path, body).await.expect("PUT");
    assert_eq!(s, want, "PUT {path} {body}: {b}");
    b
}

/// `GET path` and its ETag version.
async fn get_with_version(api: &Api, path: &str) -> (Value, i64) {
    let r = api.request(Method::GET, path).send().await.expect("GET");
    assert_eq!(r.status().as_u16(), 200, "GET {path}");
    let etag = r
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .expect("ETag header")
        .trim_matches('"')
        .parse::<i64>()
        .expect("numeric ETag");
    (r.json().await.expect("json"), etag)
}

async fn put_if_match(api: &Api, path: &str, version: &str, body: &Value) -> (u16, Value) {
    let r = api
        .request(Method::PUT, path)
        .header("if-match", version)
        .json(body)
        .send()
        .await
        .expect("PUT");
    let s = r.status().as_u16();
    let text = r.text().await.expect("body");
    (
        s,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Asserts Kuma's error envelope (AIP-193) with the deprecated mirrors.
fn assert_error_body(body: &Value, status: u16, title: &str) {
    assert_eq!(body["type"], "/std-errors", "{body}");
    assert_eq!(body["status"], status, "{body}");
    assert_eq!(body["title"], title, "{body}");
    let detail = body["detail"].as_str().expect("detail");
    assert!(!detail.is_empty(), "{body}");
    assert_eq!(body["details"], body["detail"], "{body}");
}

fn violations(body: &Value) -> Vec<(String, String)> {
    body["invalid_parameters"]
        .as_array()
        .unwrap_or_else(|| panic!("no invalid_parameters in {body}"))
        .iter()
        .map(|v| {
            (
                v["field"].as_str().expect("field").to_string(),
                v["reason"].as_str().expect("reason").to_string(),
            )
        })
        .collect()
}

/// A 400 listing exactly `expected` (field equal, reason starting with the given text), in any order.
fn assert_invalid(status: u16, body: &Value, expected: &[(&str, &str)]) {
    assert_eq!(status, 400, "{body}");
    assert_error_body(body, 400, "Could not process a resource");
    assert_eq!(body["detail"], "Resource is not valid", "{body}");
    let got = violations(body);
    assert_eq!(
        got.len(),
        expected.len(),
        "expected {expected:?}, got {got:?}"
    );
    for (field, reason) in expected {
        assert!(
            got.iter().any(|(f, r)| f == field && r.starts_with(reason)),
            "missing violation {field}: {reason}; got {got:?}"
        );
    }
    // The deprecated `causes` mirror carries the same list.
    let causes: Vec<(String, String)> = body["causes"]
        .as_array()
        .expect("causes")
        .iter()
        .map(|c| {
            (
                c["field"].as_str().unwrap_or("").to_string(),
                c["message"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(causes, got, "causes mirror invalid_parameters");
}

/// Inserts `skipValidation: true` right under `mtls:` of an example's YAML text.
fn yaml_with_skip_validation(text: &str) -> String {
    assert!(text.contains("\nmtls:\n"), "{text}");
    text.replacen("\nmtls:\n", "\nmtls:\n  skipValidation: true\n", 1)
}

/// A self-signed root CA and an intermediate CA under it (P-256), as PEM: (bundle, intermediate key).
fn ca_chain() -> (String, String) {
    use rcgen::{
        BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
        KeyUsagePurpose,
    };
    let ca_params = |cn: &str| {
        let mut p = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, cn);
        p.distinguished_name = dn;
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        p
    };
    let root_key = KeyPair::generate().expect("key");
    let root = ca_params("provided root")
        .self_signed(&root_key)
        .expect("root");
    let root_issuer = Issuer::new(ca_params("provided root"), root_key);
    let int_key = KeyPair::generate().expect("key");
    let int = ca_params("provided intermediate")
        .signed_by(&int_key, &root_issuer)
        .expect("intermediate");
    (
        format!("{}{}", int.pem(), root.pem()),
        int_key.serialize_pem(),
    )
}

/// Starts a standalone `meshplane-zone` (no global: it owns its Meshes and Dataplanes) on `db`.
async fn standalone_zone(db: &TestDatabase, dir: &std::path::Path) -> (Proc, Api) {
    let api_port = free_port();
    let args: Vec<String> = vec![
        "run".into(),
        "--database-url".into(),
        db.url.clone(),
        "--api-addr".into(),
        format!("127.0.0.1:{api_port}"),
        "--dp-server-addr".into(),
        format!("127.0.0.1:{}", free_port()),
        "--work-dir".into(),
        dir.join("zone-work").display().to_string(),
        "--encryption-key-file".into(),
        encryption_key_file(&db.url).display().to_string(),
    ];
    let mut p = Proc::spawn("zone-standalone", &bin("meshplane-zone"), &args, &[])
        .await
        .expect("zone");
    let api = Api::new(format!("http://127.0.0.1:{api_port}"));
    wait_http_ok(
        &mut p,
        &format!("{}/readyz", api.base),
        Duration::from_secs(60),
    )
    .await
    .expect("zone ready");
    (p, api)
}

/// Runs `meshplane-global ARGS`, expecting it to exit within 60 s; (code, stdout, stderr).
async fn global_cli(args: &[&str]) -> (i32, String, String) {
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(bin("meshplane-global"))
            .args(args)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap_or_else(|_| panic!("meshplane-global {args:?} did not exit within 60 s"))
    .expect("meshplane-global");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

// ---------------------------------------------------------------------------------------------
// Round trip of the shared examples
// ---------------------------------------------------------------------------------------------

/// PUTs `doc` as JSON, then as YAML text, and after each checks that GET returns exactly `doc`.
async fn round_trip(api: &Api, doc: &Value, yaml_text: &str, first_status: u16, warnings: Value) {
    let path = path_of(doc);
    let resp = put_expect(api, &path, doc, first_status).await;
    assert_eq!(resp["warnings"], warnings, "{path}");
    let got = get_ok(api, &path).await;
    assert!(got["creationTime"].is_string(), "{got}");
    assert!(got["modificationTime"].is_string(), "{got}");
    assert_eq!(without_times(got), *doc, "JSON round trip of {path}");

    let (s, resp) = api
        .put_raw(&path, "application/yaml", yaml_text.as_bytes().to_vec())
        .await
        .expect("PUT yaml");
    assert_eq!(s, 200, "YAML PUT {path}: {resp}");
    assert_eq!(resp["warnings"], warnings, "{path}");
    assert_eq!(
        without_times(get_ok(api, &path).await),
        *doc,
        "YAML round trip of {path}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_shared_example_round_trips_in_json_and_yaml() {
    let (_db, g) = pg_global(&[]).await;
    let api = &g.api;

    // The Secret the vault examples reference, in mesh `default` (global creates that Mesh).
    let text = example("secret-vault-token.yaml");
    round_trip(api, &yaml(&text), &text, 201, json!([])).await;

    // builtin: validated for real (it only needs to decode), CA material created.
    let text = example("mesh-builtin.yaml");
    round_trip(api, &yaml(&text), &text, 200, json!([])).await;

    // The vault examples point at Vaults that do not exist here: validated, they are refused with
    // the cause under the backend's conf and nothing changes; with skipValidation they round-trip.
    let before = get_ok(api, "/meshes/default").await;
    let (s, b) = api
        .put("/meshes/default", &yaml(&example("mesh-vault-token.yaml")))
        .await
        .expect("put");
    assert_invalid(
        s,
        &b,
        &[(
            "mtls.backends[0].conf.fromCp.tls.caCert",
            "secret \"vault-ca\" not found in mesh \"default\"",
        )],
    );
    let (s, b) = api
        .put(
            "/meshes/default",
            &yaml(&example("mesh-vault-tls-auth.yaml")),
        )
        .await
        .expect("put");
    assert_invalid(
        s,
        &b,
        &[
            (
                "mtls.backends[0].conf.fromCp.tls.caCert",
                "could not read file \"/etc/meshplane/vault-ca.pem\"",
            ),
            (
                "mtls.backends[0].conf.fromCp.auth.tls.clientKey",
                "secret \"vault-client-key\" not found in mesh \"default\"",
            ),
            (
                "mtls.backends[0].conf.fromCp.auth.tls.clientCert",
                "could not read file \"/etc/meshplane/vault-client.pem\"",
            ),
        ],
    );
    assert_eq!(
        get_ok(api, "/meshes/default").await,
        before,
        "nothing stored"
    );

    for name in [
        "mesh-vault-token.yaml",
        "mesh-vault-tls-auth.yaml",
        "mesh-vault-aws.yaml",
        "mesh-ca-rotation.yaml",
    ] {
        let text = yaml_with_skip_validation(&example(name));
        let doc = yaml(&text);
        assert_eq!(doc["mtls"]["skipValidation"], true, "{name}");
        round_trip(api, &doc, &text, 200, json!([SKIP_WARNING])).await;
    }

    // provided: the Secrets must exist in the Mesh first; without them the refusal names both.
    let text = example("mesh-provided.yaml");
    let doc = yaml(&text);
    let (s, b) = api.put("/meshes/provided-mesh", &doc).await.expect("put");
    assert_invalid(
        s,
        &b,
        &[
            (
                "mtls.backends[0].conf.cert",
                "secret \"provided-ca-key\" not found in mesh \"provided-mesh\"",
            ),
            (
                "mtls.backends[0].conf.key",
                "secret \"provided-ca-key\" not found in mesh \"provided-mesh\"",
            ),
        ],
    );
    assert_eq!(get_status(api, "/meshes/provided-mesh").await, 404);
    put_expect(
        api,
        "/meshes/provided-mesh",
        &json!({"type": "Mesh", "name": "provided-mesh"}),
        201,
    )
    .await;
    let (bundle, key) = ca_chain();
    for (name, data) in [("provided-ca-cert", &bundle), ("provided-ca-key", &key)] {
        put_expect(
            api,
            &format!("/meshes/provided-mesh/secrets/{name}"),
            &json!({"type": "Secret", "mesh": "provided-mesh", "name": name, "data": b64(data.as_bytes())}),
            201,
        )
        .await;
    }
    round_trip(api, &doc, &text, 200, json!([])).await;

    // Dataplanes belong to zones: global refuses them; a standalone zone round-trips the example.
    let text = example("dataplane.yaml");
    let doc = yaml(&text);
    let (s, b) = api.put(&path_of(&doc), &doc).await.expect("put");
    assert_eq!(s, 405, "{b}");
    assert_error_body(&b, 405, "Method not allowed");
    assert!(
        b["detail"]
            .as_str()
            .unwrap_or("")
            .contains("zone control plane"),
        "{b}"
    );
    let zone_db = migrated_db().await.expect("zone database");
    let dir = tempfile::tempdir().expect("dir");
    let (_zone, zapi) = standalone_zone(&zone_db, dir.path()).await;
    round_trip(&zapi, &doc, &text, 201, json!([])).await;
}

// ---------------------------------------------------------------------------------------------
// Structural validation (§3.2)
// ---------------------------------------------------------------------------------------------

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
                {"name": "ca-2", "type": "acmpca"},
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
        &[("name", "must consist of lower case alphanumeric")],
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_writers_with_the_same_version_one_wins_the_other_gets_409() {
    let (_db, g) = pg_global(&[]).await;
    let api = &g.api;
    put_expect(
        api,
        "/meshes/race",
        &json!({"type": "Mesh", "name": "race"}),
        201,
    )
    .await;

    for round in 0..5 {
        let (_, v) = get_with_version(api, "/meshes/race").await;
        let body = |writer: &str| json!({"type": "Mesh", "name": "race", "labels": {"writer": writer, "round": round.to_string()}});
        let (a, b) = (body("a"), body("b"));
        let etag = format!("\"{v}\"");
        let (ra, rb) = tokio::join!(
            put_if_match(api, "/meshes/race", &etag, &a),
            put_if_match(api, "/meshes/race", &etag, &b)
        );
        let mut statuses = [ra.0, rb.0];
        statuses.sort();
        assert_eq!(
            statuses,
            [200, 409],
            "round {round}: exactly one writer wins: {ra:?} {rb:?}"
        );
        let (winner, loser) = if ra.0 == 200 { (&a, &rb) } else { (&b, &ra) };
        assert_error_body(&loser.1, 409, "Conflict");
        let (stored, v_after) = get_with_version(api, "/meshes/race").await;
        assert_eq!(without_times(stored), *winner, "round {round}");
        assert_eq!(v_after, v + 1, "round {round}: exactly one write happened");
    }

    // A stale If-Match is refused and changes nothing; the current one is accepted.
    let (before, v) = get_with_version(api, "/meshes/race").await;
    let stale = json!({"type": "Mesh", "name": "race", "labels": {"writer": "stale"}});
    let (s, b) = put_if_match(api, "/meshes/race", &format!("\"{}\"", v - 1), &stale).await;
    assert_eq!(s, 409, "{b}");
    assert_error_body(&b, 409, "Conflict");
    assert_eq!(get_with_version(api, "/meshes/race").await, (before, v));
    let (s, b) = put_if_match(api, "/meshes/race", &format!("\"{v}\""), &stale).await;
    assert_eq!(s, 200, "{b}");
    // Stale DELETE too.
    let r = api
        .request(Method::DELETE, "/meshes/race")
        .header("if-match", format!("\"{v}\""))
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status().as_u16(), 409);
    assert_eq!(get_status(api, "/meshes/race").await, 200);
    // If-Match on a resource that does not exist, and a malformed If-Match.
    let (s, _) = put_if_match(
        api,
        "/meshes/ghost",
        "\"1\"",
        &json!({"type": "Mesh", "name": "ghost"}),
    )
    .await;
    assert_eq!(s, 404);
    assert_eq!(get_status(api, "/meshes/ghost").await, 404);
    let (s, b) = put_if_match(api, "/meshes/race", "\"abc\"", &stale).await;
    assert_eq!(s, 400, "{b}");

    // Without If-Match, concurrent writers never lose an update silently: every 200 is one version.
    let (_, v0) = get_with_version(api, "/meshes/race").await;
    let writes = (0..8).map(|i| {
        let api = api.clone();
        async move {
            api.put(
                "/meshes/race",
                &json!({"type": "Mesh", "name": "race", "labels": {"writer": format!("w{i}")}}),
            )
            .await
            .expect("put")
            .0
        }
    });
    let statuses: Vec<u16> = futures_join_all(writes).await;
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 409),
        "{statuses:?}"
    );
    let ok = statuses.iter().filter(|s| **s == 200).count() as i64;
    assert!(ok >= 1, "{statuses:?}");
    let (_, v_end) = get_with_version(api, "/meshes/race").await;
    assert_eq!(v_end, v0 + ok, "{statuses:?}");

    // Concurrent creates of one new name: exactly one 201.
    let creates = (0..4).map(|_| {
        let api = api.clone();
        async move {
            api.put("/meshes/fresh", &json!({"type": "Mesh", "name": "fresh"}))
                .await
                .expect("put")
                .0
        }
    });
    let statuses = futures_join_all(creates).await;
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| [200, 201, 409].contains(s)),
        "{statuses:?}"
    );
}

/// Runs futures concurrently on the test's runtime and collects their outputs in order.
async fn futures_join_all<F, T>(futs: impl IntoIterator<Item = F>) -> Vec<T>
where
    F: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let handles: Vec<_> = futs.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.expect("task"));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Cascade, in-use protection, durability
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_mesh_deletes_its_secrets_and_used_secrets_are_protected() {
    let (db, g) = pg_global(&[]).await;
    let api = &g.api;
    put_expect(
        api,
        "/meshes/cascade",
        &json!({"type": "Mesh", "name": "cascade", "mtls": {"enabledBackend": "ca-1",
            "backends": [{"name": "ca-1", "type": "builtin"}]}}),
        201,
    )
    .await;
    for s in ["s-1", "s-2"] {
        put_expect(
            api,
            &format!("/meshes/cascade/secrets/{s}"),
            &json!({"type": "Secret", "mesh": "cascade", "name": s, "data": "eA=="}),
            201,
        )
        .await;
    }
    put_expect(
        api,
        "/meshes/default/secrets/keep",
        &json!({"type": "Secret", "mesh": "default", "name": "keep", "data": "eA=="}),
        201,
    )
    .await;
    let list = get_ok(api, "/meshes/cascade/secrets").await;
    assert_eq!(
        list["total"], 4,
        "two builtin CA secrets and two user secrets: {list}"
    );

    // The builtin CA's secret is in use: Kuma's message, and it stays.
    let (s, b) = api
        .delete("/meshes/cascade/secrets/cascade.ca-builtin-cert-ca-1")
        .await
        .expect("delete");
    assert_invalid(
        s,
        &b,
        &[(
            "name",
            "The secret \"cascade.ca-builtin-cert-ca-1\" that you are trying to remove is currently in use in Mesh \"cascade\" in mTLS backend \"ca-1\". Please remove the reference from the \"ca-1\" backend before removing the secret.",
        )],
    );
    assert_eq!(
        get_status(api, "/meshes/cascade/secrets/cascade.ca-builtin-cert-ca-1").await,
        200
    );
    // An unused secret can go.
    let (s, _) = api
        .delete("/meshes/cascade/secrets/s-2")
        .await
        .expect("delete");
    assert_eq!(s, 200);
    assert_eq!(get_status(api, "/meshes/cascade/secrets/s-2").await, 404);

    let (s, b) = api.delete("/meshes/cascade").await.expect("delete mesh");
    assert_eq!(s, 200, "{b}");
    assert_eq!(get_status(api, "/meshes/cascade").await, 404);
    for secret in [
        "s-1",
        "cascade.ca-builtin-cert-ca-1",
        "cascade.ca-builtin-key-ca-1",
    ] {
        assert_eq!(
            get_status(api, &format!("/meshes/cascade/secrets/{secret}")).await,
            404,
            "{secret} went with its Mesh"
        );
    }
    assert_eq!(get_ok(api, "/meshes/cascade/secrets").await["total"], 0);
    // Nothing of the Mesh is left in the database; other meshes' secrets are untouched.
    let mut conn = PgConnection::connect(&db.url).await.expect("connect");
    let (left,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM resources WHERE mesh = 'cascade' OR name = 'cascade'")
            .fetch_one(&mut conn)
            .await
            .expect("count");
    assert_eq!(left, 0);
    assert_eq!(get_status(api, "/meshes/default/secrets/keep").await, 200);
    // The Mesh can be created again, and gets a fresh CA.
    put_expect(
        api,
        "/meshes/cascade",
        &json!({"type": "Mesh", "name": "cascade"}),
        201,
    )
    .await;
    assert_eq!(get_ok(api, "/meshes/cascade/secrets").await["total"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resources_survive_a_global_restart() {
    let (_db, mut g) = pg_global(&[]).await;
    let mesh = json!({"type": "Mesh", "name": "durable", "labels": {"team": "core"},
        "mtls": {"enabledBackend": "ca-1", "backends": [{"name": "ca-1", "type": "builtin",
            "dpCert": {"rotation": {"expiration": "2h"}}}]}});
    put_expect(&g.api, "/meshes/durable", &mesh, 201).await;
    let resources = [
        "/meshes/default",
        "/meshes/durable",
        "/meshes/durable/secrets/user",
        "/meshes/durable/secrets/durable.ca-builtin-cert-ca-1",
        "/meshes/durable/secrets/durable.ca-builtin-key-ca-1",
        "/global-secrets/gs",
        "/zones/east",
    ];
    put_expect(
        &g.api,
        resources[2],
        &json!({"type": "Secret", "mesh": "durable", "name": "user", "data": "dXNlcg=="}),
        201,
    )
    .await;
    put_expect(
        &g.api,
        resources[5],
        &json!({"type": "GlobalSecret", "name": "gs", "data": "Z3M="}),
        201,
    )
    .await;
    put_expect(
        &g.api,
        resources[6],
        &json!({"type": "Zone", "name": "east"}),
        201,
    )
    .await;
    let mut before = Vec::new();
    for p in resources {
        before.push(get_with_version(&g.api, p).await);
    }

    let code = g.proc.terminate(WAIT).await.expect("terminate");
    assert_eq!(code, Some(0), "graceful shutdown on SIGTERM");
    assert!(
        reqwest::get(format!("{}/healthz", g.api.base))
            .await
            .is_err(),
        "the API is down"
    );
    g.launch().await.expect("restart");

    for (p, want) in resources.iter().zip(before) {
        assert_eq!(
            get_with_version(&g.api, p).await,
            want,
            "{p} unchanged, times, version and CA material included"
        );
    }
    assert_eq!(get_ok(&g.api, "/meshes").await["total"], 2);
}

// ---------------------------------------------------------------------------------------------
// Schema gate and migrations
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_refuses_unmigrated_and_newer_schemas_and_migrate_up_is_idempotent() {
    let db = TestDatabase::create().await.expect("database");
    let api_addr = format!("127.0.0.1:{}", free_port());
    let work = tempfile::tempdir().expect("dir");
    let work_dir = work.path().display().to_string();
    let kds_addr = format!("127.0.0.1:{}", free_port());
    let key_file = encryption_key_file(&db.url).display().to_string();
    let run_args = [
        "run",
        "--database-url",
        db.url.as_str(),
        "--encryption-key-file",
        key_file.as_str(),
        "--api-addr",
        api_addr.as_str(),
        "--kds-addr",
        kds_addr.as_str(),
        "--work-dir",
        work_dir.as_str(),
    ];

    let (code, _, stderr) = global_cli(&run_args).await;
    assert_ne!(code, 0, "run on an unmigrated database must fail: {stderr}");
    assert!(
        stderr.contains("not migrated") && stderr.contains("meshplane-global migrate up"),
        "says what to run: {stderr}"
    );
    // It created nothing.
    let mut conn = PgConnection::connect(&db.url).await.expect("connect");
    let (tables,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'",
    )
    .fetch_one(&mut conn)
    .await
    .expect("count");
    assert_eq!(tables, 0, "run never migrates by itself");

    let (code, stdout, stderr) = global_cli(&["migrate", "up", "--database-url", &db.url]).await;
    assert_eq!(code, 0, "{stderr}");
    let applied: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("applied migration "))
        .collect();
    let mut embedded: Vec<String> = std::fs::read_dir(repo_root().join("migrations"))
        .expect("migrations dir")
        .filter_map(|e| {
            let name = e.ok()?.file_name().to_string_lossy().into_owned();
            name.ends_with(".sql")
                .then(|| name.split('_').next().unwrap_or("").to_string())
        })
        .collect();
    embedded.sort();
    assert_eq!(applied, embedded, "prints each migration applied: {stdout}");
    let (code, stdout, stderr) = global_cli(&["migrate", "up", "--database-url", &db.url]).await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout.trim(), "database is up to date");
    let (rows,): (i64,) = sqlx::query_as("SELECT count(*) FROM _sqlx_migrations")
        .fetch_one(&mut conn)
        .await
        .expect("count");
    assert_eq!(rows as usize, embedded.len());

    // Migrated: run serves.
    let mut g = Global::start(Store::Postgres(db.url.clone()), &[])
        .await
        .expect("global on the migrated database");
    assert_eq!(get_status(&g.api, "/meshes/default").await, 200);
    assert_eq!(g.proc.terminate(WAIT).await.expect("stop"), Some(0));

    // A schema newer than this binary: refused by run (and by migrate up), saying so.
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (99990101000000, 'from the future', true, '\\x00'::bytea, 0)",
    )
    .execute(&mut conn)
    .await
    .expect("insert a newer migration");
    let (code, _, stderr) = global_cli(&run_args).await;
    assert_ne!(code, 0, "run on a newer schema must fail");
    assert!(
        stderr.contains("newer") && stderr.contains("99990101000000"),
        "{stderr}"
    );
    let (code, _, stderr) = global_cli(&["migrate", "up", "--database-url", &db.url]).await;
    assert_ne!(code, 0, "migrate up must not touch a newer schema");
    assert!(stderr.contains("newer"), "{stderr}");
}

// ---------------------------------------------------------------------------------------------
// Hostile bodies
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_oversized_and_hostile_bodies_are_4xx_and_the_server_keeps_serving() {
    let (_db, g) = pg_global(&[]).await;
    let api = &g.api;

    let mut bomb = String::from("a: &a [\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\"]\n");
    let mut prev = 'a';
    for c in 'b'..='k' {
        let refs = vec![format!("*{prev}"); 9].join(",");
        bomb.push_str(&format!("{c}: &{c} [{refs}]\n"));
        prev = c;
    }
    bomb.push_str("type: Mesh\nname: hostile\n");
    let deep_json = format!(
        "{{\"type\":\"Mesh\",\"name\":\"hostile\",\"x\":{}1{}}}",
        "[".repeat(5000),
        "]".repeat(5000)
    );
    let cases: Vec<(&str, &str, Vec<u8>, u16, &str)> = vec![
        (
            "truncated JSON",
            "application/json",
            b"{\"type\":\"Mesh\",\"name\":".to_vec(),
            400,
            "invalid JSON",
        ),
        (
            "not JSON",
            "application/json",
            b"type: Mesh".to_vec(),
            400,
            "invalid JSON",
        ),
        ("empty body", "application/json", Vec::new(), 400, "empty"),
        (
            "malformed YAML",
            "application/yaml",
            b"type: Mesh\nname: [hostile\n".to_vec(),
            400,
            "invalid YAML",
        ),
        (
            "two YAML documents",
            "application/yaml",
            b"type: Mesh\nname: hostile\n---\ntype: Mesh\nname: hostile\n".to_vec(),
            400,
            "invalid YAML",
        ),
        (
            "YAML that is not UTF-8",
            "application/yaml",
            b"type: Mesh\nname: \xff\xfe\n".to_vec(),
            400,
            "UTF-8",
        ),
        (
            "YAML alias bomb",
            "application/yaml",
            bomb.into_bytes(),
            400,
            "invalid YAML",
        ),
        (
            "deeply nested JSON",
            "application/json",
            deep_json.into_bytes(),
            400,
            "invalid JSON",
        ),
    ];
    for (what, ctype, body, want, detail) in cases {
        let (s, b) = api
            .put_raw("/meshes/hostile", ctype, body)
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(s, want, "{what}: {b}");
        assert_error_body(&b, want, "Could not process a resource");
        assert!(
            b["detail"].as_str().unwrap_or("").contains(detail),
            "{what}: {b}"
        );
        let (s, r) = api.get("/readyz").await.expect("readyz");
        assert_eq!((s, &r), (200, &json!({"ready": true})), "after {what}");
        assert_eq!(get_status(api, "/meshes/hostile").await, 404, "{what}");
    }
    // A JSON value that is not an object.
    let (s, b) = api
        .put_raw("/meshes/hostile", "application/json", b"[1,2]".to_vec())
        .await
        .expect("put");
    assert_eq!(s, 400, "{b}");

    // Bodies over 2 MiB, announced by Content-Length (refused before any of it is read) and
    // streamed in chunks without a length (refused once the limit is crossed). Sent on raw sockets:
    // see oversized_put.
    let addr = api.base.trim_start_matches("http://").to_string();
    let limit = 2 * 1024 * 1024;
    for chunked in [false, true] {
        let (s, b) = oversized_put(&addr, limit, chunked).await;
        assert_eq!(s, 413, "chunked={chunked}: {b}");
        assert_error_body(&b, 413, "Payload too large");
        assert!(
            b["detail"]
                .as_str()
                .unwrap_or("")
                .contains(&format!("larger than {limit} bytes")),
            "{b}"
        );
        let (s, r) = api.get("/readyz").await.expect("readyz");
        assert_eq!(
            (s, &r),
            (200, &json!({"ready": true})),
            "after chunked={chunked}"
        );
        assert_eq!(get_status(api, "/meshes/hostile").await, 404);
    }
    // Still serving writes.
    put_expect(
        api,
        "/meshes/hostile",
        &json!({"type": "Mesh", "name": "hostile"}),
        201,
    )
    .await;
    assert!(g.proc.logs().contains("API server listening"));
    assert!(!g.proc.logs().contains("panicked"), "{}", g.proc.logs());
}

/// PUTs a body one byte over `limit` on a raw connection (`Connection: close`), framed by
/// Content-Length or streamed in chunks without a length, and returns the answer. A pooled HTTP
/// client is not used: after a 413 the server closes the connection without saying
/// `Connection: close`, which a keep-alive client only notices on its next request (see report).
async fn oversized_put(addr: &str, limit: usize, chunked: bool) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut sock = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let body = format!(
        "{{\"type\":\"Mesh\",\"name\":\"hostile\",\"pad\":\"{}\"}}",
        "A".repeat(limit + 1 - 41)
    );
    assert_eq!(body.len(), limit + 1);
    let framing = if chunked {
        "Transfer-Encoding: chunked".to_string()
    } else {
        format!("Content-Length: {}", body.len())
    };
    let head = format!(
        "PUT /meshes/hostile HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n{framing}\r\nConnection: close\r\n\r\n"
    );
    sock.write_all(head.as_bytes()).await.expect("headers");
    let payload = if chunked {
        let mut framed = format!("{:x}\r\n", body.len()).into_bytes();
        framed.extend_from_slice(body.as_bytes());
        framed.extend_from_slice(b"\r\n0\r\n\r\n");
        framed
    } else {
        body.into_bytes()
    };
    // The server may answer and stop reading before everything is written.
    let _ = sock.write_all(&payload).await;
    let mut answer = Vec::new();
    tokio::time::timeout(WAIT, sock.read_to_end(&mut answer))
        .await
        .expect("an answer within the timeout")
        .expect("read the answer");
    let text = String::from_utf8_lossy(&answer);
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP answer");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    (status, serde_json::from_str(body).unwrap_or(json!(body)))
}

// ---------------------------------------------------------------------------------------------
// Secrets
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_values_appear_only_on_their_own_path_and_never_in_logs() {
    let (db, mut g) = pg_global(&["--log-level", "debug"]).await;
    let api = g.api.clone();
    let nonce = format!(
        "{}{}",
        std::process::id(),
        chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
    );
    let value = format!("hvs.meshplane-secret-value-{nonce}");
    let data = b64(value.as_bytes());
    let global_value = format!("global-secret-value-{nonce}");
    let global_data = b64(global_value.as_bytes());

    put_expect(
        &api,
        "/meshes/default/secrets/vault-token",
        &json!({"type": "Secret", "mesh": "default", "name": "vault-token", "data": data}),
        201,
    )
    .await;
    put_expect(
        &api,
        "/global-secrets/admin",
        &json!({"type": "GlobalSecret", "name": "admin", "data": global_data}),
        201,
    )
    .await;

    for list in [
        "/meshes/default/secrets",
        "/secrets",
        "/global-secrets",
        "/meshes/default/secrets?size=1",
    ] {
        let page = get_ok(&api, list).await;
        let items = page["items"].as_array().expect("items");
        assert!(!items.is_empty(), "{list}: {page}");
        for item in items {
            assert!(item.get("data").is_none(), "{list} leaks data: {item}");
            assert!(item["name"].is_string(), "{item}");
        }
        let text = page.to_string();
        assert!(
            !text.contains(&data) && !text.contains(&global_data),
            "{list}"
        );
    }
    assert_eq!(
        get_ok(&api, "/meshes/default/secrets/vault-token").await["data"],
        data
    );
    assert_eq!(
        get_ok(&api, "/global-secrets/admin").await["data"],
        global_data
    );
    // At rest in PostgreSQL the values are encrypted: neither they nor their base64 are in the rows.
    let mut conn = PgConnection::connect(&db.url).await.expect("connect");
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT name, spec FROM resources WHERE name IN ('vault-token', 'admin')")
            .fetch_all(&mut conn)
            .await
            .expect("rows");
    assert_eq!(rows.len(), 2, "{rows:?}");
    for (name, spec) in &rows {
        for needle in [&value, &data, &global_value, &global_data] {
            assert!(!spec.contains(needle.as_str()), "{name} stored in clear");
        }
    }

    // A refused write carrying the value, and a Vault validation that uses it as a token against
    // a closed port: neither the answers nor the log carry it.
    let (s, b) = api
        .put(
            "/meshes/nope/secrets/x",
            &json!({"type": "Secret", "mesh": "nope", "name": "x", "data": data}),
        )
        .await
        .expect("put");
    assert_eq!(s, 400);
    assert!(!b.to_string().contains(&data), "{b}");
    let closed = free_port();
    let (s, b) = api
        .put(
            "/meshes/default",
            &json!({"type": "Mesh", "name": "default", "mtls": {"enabledBackend": "v", "backends": [
                {"name": "v", "type": "vault", "conf": {"fromCp": {"address": format!("http://127.0.0.1:{closed}"),
                 "pki": "kmesh-pki-default", "role": "dataplane-proxies",
                 "auth": {"token": {"secret": "vault-token"}}}}}]}}),
        )
        .await
        .expect("put");
    assert_eq!(s, 400, "{b}");
    let text = b.to_string();
    assert!(!text.contains(&value) && !text.contains(&data), "{b}");

    // Stop (flushing every log line), then search the whole log.
    assert_eq!(g.proc.terminate(WAIT).await.expect("stop"), Some(0));
    let logs = g.proc.logs();
    assert!(
        logs.contains("vault-token"),
        "the log does mention the secret's name (so it was logged at all)"
    );
    for needle in [&value, &data, &global_value, &global_data] {
        assert!(!logs.contains(needle.as_str()), "the log contains {needle}");
    }
    // Not even a long piece of it.
    assert!(
        !logs.contains(&nonce),
        "the log contains the secret's nonce"
    );
}

// ---------------------------------------------------------------------------------------------
// Operations
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_index_and_graceful_shutdown() {
    let (db, mut g) = pg_global(&["--instance-id", "global-test-1"]).await;
    let api = g.api.clone();
    let (s, b) = api.get("/healthz").await.expect("healthz");
    assert_eq!((s, b), (200, json!({"status": "ok"})));
    let (s, b) = api.get("/readyz").await.expect("readyz");
    assert_eq!((s, b), (200, json!({"ready": true})));
    let index = get_ok(&api, "/").await;
    assert_eq!(index["product"], "Meshplane", "{index}");
    assert_eq!(index["version"], env!("CARGO_PKG_VERSION"), "{index}");
    assert_eq!(index["instanceId"], "global-test-1", "{index}");
    assert_eq!(index["mode"], "global", "{index}");
    assert!(
        index["store"].as_str().unwrap_or("").contains("postgres"),
        "{index}"
    );
    let (s, b) = api.get("/no/such/path").await.expect("get");
    assert_eq!(s, 404);
    assert_error_body(&b, 404, "Not found");

    // Readiness follows the store: block the database, then let it back. (A database cannot
    // refuse connections to itself, so this runs from the server's `postgres` database.)
    let admin_url = db.url.replacen(&format!("/{}", db.name), "/postgres", 1);
    let mut admin = PgConnection::connect(&admin_url).await.expect("connect");
    sqlx::query(&format!(
        "ALTER DATABASE \"{}\" WITH ALLOW_CONNECTIONS false",
        db.name
    ))
    .execute(&mut admin)
    .await
    .expect("block");
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = $1 AND pid <> pg_backend_pid()",
    )
    .bind(&db.name)
    .execute(&mut admin)
    .await
    .expect("terminate the global's connections");
    eventually(WAIT, "/readyz to answer 503 without its store", || async {
        let (s, b) = api.get("/readyz").await.ok()?;
        (s == 503).then_some(b)
    })
    .await
    .expect("not ready");
    let (s, _) = api.get("/healthz").await.expect("healthz");
    assert_eq!(s, 200, "alive even though not ready");
    sqlx::query(&format!(
        "ALTER DATABASE \"{}\" WITH ALLOW_CONNECTIONS true",
        db.name
    ))
    .execute(&mut admin)
    .await
    .expect("unblock");
    eventually(WAIT, "/readyz to recover with its store", || async {
        let (s, _) = api.get("/readyz").await.ok()?;
        (s == 200).then_some(())
    })
    .await
    .expect("ready again");
    put_expect(
        &api,
        "/meshes/after",
        &json!({"type": "Mesh", "name": "after"}),
        201,
    )
    .await;

    let code = g.proc.terminate(WAIT).await.expect("terminate");
    assert_eq!(code, Some(0), "SIGTERM is a clean exit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_memory_store_serves_the_same_api() {
    let mut g = Global::start(Store::Memory, &[]).await.expect("global");
    let api = g.api.clone();
    let index = get_ok(&api, "/").await;
    assert_eq!(index["store"], "memory", "{index}");
    assert_eq!(
        get_ok(&api, "/meshes").await["total"],
        1,
        "the default Mesh"
    );

    let text = example("mesh-builtin.yaml");
    let (s, b) = api
        .put_raw(
            "/meshes/default",
            "application/yaml",
            text.clone().into_bytes(),
        )
        .await
        .expect("put yaml");
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        without_times(get_ok(&api, "/meshes/default").await),
        yaml(&text)
    );
    put_expect(
        &api,
        "/meshes/m1",
        &json!({"type": "Mesh", "name": "m1"}),
        201,
    )
    .await;
    put_expect(
        &api,
        "/meshes/m1",
        &json!({"type": "Mesh", "name": "m1"}),
        200,
    )
    .await;
    put_expect(
        &api,
        "/meshes/m1/secrets/s",
        &json!({"type": "Secret", "mesh": "m1", "name": "s", "data": "eA=="}),
        201,
    )
    .await;
    let page = get_ok(&api, "/meshes?size=1").await;
    assert_eq!(page["total"], 2);
    assert!(page["next"].is_string(), "{page}");
    let (s, b) = api
        .put("/meshes/m1", &json!({"type": "Mesh", "name": "m1", "x": 1}))
        .await
        .expect("put");
    assert_invalid(s, &b, &[("x", "unknown field")]);
    let (s, b) = api
        .delete("/meshes/default/secrets/default.ca-builtin-key-ca-1")
        .await
        .expect("delete");
    assert_eq!(s, 400, "{b}");
    assert!(
        violations(&b)[0]
            .1
            .starts_with("The secret \"default.ca-builtin-key-ca-1\" that you are trying to remove is currently in use in Mesh \"default\""),
        "{b}"
    );
    let (s, _) = api.delete("/meshes/m1").await.expect("delete");
    assert_eq!(s, 200);
    assert_eq!(get_status(&api, "/meshes/m1/secrets/s").await, 404);
    assert_eq!(get_status(&api, "/meshes/m1").await, 404);
    // Memory means memory: a restart starts over with only the default Mesh.
    put_expect(
        &api,
        "/meshes/m2",
        &json!({"type": "Mesh", "name": "m2"}),
        201,
    )
    .await;
    assert_eq!(g.proc.terminate(WAIT).await.expect("stop"), Some(0));
    g.launch().await.expect("restart");
    assert_eq!(get_status(&g.api, "/meshes/m2").await, 404);
    let (s, m) = g.api.get("/meshes/default").await.expect("get");
    assert_eq!(s, 200);
    assert!(m.get("mtls").is_none(), "{m}");
}
