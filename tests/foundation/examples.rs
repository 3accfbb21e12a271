//! The shared examples round-trip through the API in JSON and YAML.

use super::common::*;

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

    // Each example below enables another CA than the one before it, which Kuma refuses while mTLS
    // is on ("Disable mTLS first and then change the CA"): mTLS goes off between them.
    let mtls_off = json!({"type": "Mesh", "name": "default"});
    put_expect(api, "/meshes/default", &mtls_off, 200).await;

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
                "file \"/etc/meshplane/vault-ca.pem\" is not allowed: file DataSources are disabled",
            ),
            (
                "mtls.backends[0].conf.fromCp.auth.tls.clientKey",
                "secret \"vault-client-key\" not found in mesh \"default\"",
            ),
            (
                "mtls.backends[0].conf.fromCp.auth.tls.clientCert",
                "file \"/etc/meshplane/vault-client.pem\" is not allowed: file DataSources are disabled",
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
        put_expect(api, "/meshes/default", &mtls_off, 200).await;
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
