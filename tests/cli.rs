//! meshctl (issue 2) end to end against a running `meshplane-global`: apply from a file and from stdin
//! (multi-document YAML, `--dry-run`), get in table/YAML/JSON, delete, errors printed as field/reason
//! lines with a non-zero exit, `MESHCTL_API_URL`, and `generate zone-token`.

use std::time::Duration;

use base64::Engine;
use meshplane_test_support::process::{Proc, bin, free_port};
use meshplane_tests::{Global, Store, eventually, meshctl, migrated_db};
use serde_json::{Value, json};

fn yaml(text: &str) -> Value {
    serde_saphyr::from_str(text).unwrap_or_else(|e| panic!("not YAML: {e}\n{text}"))
}

fn without_times(mut v: Value) -> Value {
    if let Some(o) = v.as_object_mut() {
        o.remove("creationTime");
        o.remove("modificationTime");
    }
    v
}

/// Runs meshctl and requires exit 0; returns stdout.
async fn ok(g: &Global, args: &[&str], stdin: Option<&str>) -> String {
    let (code, out, err) = meshctl(&g.api.base, args, stdin).await.expect("meshctl");
    assert_eq!(
        code, 0,
        "meshctl {args:?} failed:\nstdout: {out}\nstderr: {err}"
    );
    out
}

/// Runs meshctl and requires a failure; returns stderr.
async fn fails(g: &Global, args: &[&str], stdin: Option<&str>) -> String {
    let (code, out, err) = meshctl(&g.api.base, args, stdin).await.expect("meshctl");
    assert_ne!(
        code, 0,
        "meshctl {args:?} should fail:\nstdout: {out}\nstderr: {err}"
    );
    assert!(!err.trim().is_empty(), "a failure says why: {args:?}");
    err
}

/// A table's rows (header included), split on runs of spaces.
fn table(out: &str) -> Vec<Vec<String>> {
    out.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

async fn status(g: &Global, path: &str) -> u16 {
    g.api.get(path).await.expect("GET").0
}

const FILE: &str = r#"# A Mesh, a Secret in it, a GlobalSecret and a Zone.
type: Mesh
name: cli-mesh
mtls:
  enabledBackend: ca-1
  backends:
    - name: ca-1
      type: builtin
      dpCert:
        rotation:
          expiration: 1d
---
type: Secret
mesh: cli-mesh
name: s-1
data: c2VjcmV0LW9uZQ==
---
type: GlobalSecret
name: gs-1
data: Z2xvYmFs
---
type: Zone
name: east
enabled: true
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_get_and_delete_through_meshctl_against_postgres() {
    let db = migrated_db().await.expect("database");
    let g = Global::start(Store::Postgres(db.url.clone()), &[])
        .await
        .expect("global");
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("resources.yaml");
    std::fs::write(&file, FILE).expect("write");
    let file = file.to_str().expect("utf-8 path");

    let out = ok(&g, &["apply", "-f", file], None).await;
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "Mesh \"cli-mesh\" created",
            "Secret \"s-1\" in mesh \"cli-mesh\" created",
            "GlobalSecret \"gs-1\" created",
            "Zone \"east\" created",
        ],
        "{out}"
    );
    let docs: Vec<Value> = FILE.split("\n---\n").map(yaml).collect();
    for (doc, path) in docs.iter().zip([
        "/meshes/cli-mesh",
        "/meshes/cli-mesh/secrets/s-1",
        "/global-secrets/gs-1",
        "/zones/east",
    ]) {
        let (s, got) = g.api.get(path).await.expect("get");
        assert_eq!(s, 200, "{path}");
        assert_eq!(without_times(got), *doc, "{path} as applied");
    }
    let out = ok(&g, &["apply", "-f", file], None).await;
    assert!(
        out.lines().all(|l| l.ends_with(" updated")) && out.lines().count() == 4,
        "{out}"
    );

    // get meshes: a table, JSON and YAML.
    let rows = table(&ok(&g, &["get", "meshes"], None).await);
    assert_eq!(rows[0], ["NAME", "mTLS", "BACKENDS", "AGE"]);
    let mut body: Vec<Vec<String>> = rows[1..].iter().map(|r| r[..3].to_vec()).collect();
    body.sort();
    assert_eq!(
        body,
        [
            vec!["cli-mesh", "builtin/ca-1", "1"],
            vec!["default", "off", "0"]
        ]
    );
    let list: Value =
        serde_json::from_str(&ok(&g, &["get", "meshes", "-o", "json"], None).await).expect("json");
    assert_eq!(list["total"], 2, "{list}");
    let (_, api_mesh) = g.api.get("/meshes/cli-mesh").await.expect("get");
    let as_json: Value =
        serde_json::from_str(&ok(&g, &["get", "mesh", "cli-mesh", "-o", "json"], None).await)
            .expect("json");
    assert_eq!(as_json, api_mesh);
    let as_yaml = yaml(&ok(&g, &["get", "mesh", "cli-mesh", "-o", "yaml"], None).await);
    assert_eq!(as_yaml, api_mesh);
    let rows = table(&ok(&g, &["get", "mesh", "cli-mesh", "-o", "table"], None).await);
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[1][..3], ["cli-mesh", "builtin/ca-1", "1"]);

    // Secrets: names in lists, data only for one secret.
    let rows = table(&ok(&g, &["get", "secrets", "-m", "cli-mesh"], None).await);
    assert_eq!(rows[0], ["MESH", "NAME", "AGE"]);
    let mut names: Vec<&str> = rows[1..].iter().map(|r| r[1].as_str()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "cli-mesh.ca-builtin-cert-ca-1",
            "cli-mesh.ca-builtin-key-ca-1",
            "s-1"
        ]
    );
    assert!(rows[1..].iter().all(|r| r[0] == "cli-mesh"), "{rows:?}");
    let list: Value = serde_json::from_str(
        &ok(
            &g,
            &["get", "secrets", "-m", "cli-mesh", "-o", "json"],
            None,
        )
        .await,
    )
    .expect("json");
    assert_eq!(list["total"], 3);
    for item in list["items"].as_array().expect("items") {
        assert!(item.get("data").is_none(), "{item}");
    }
    let one: Value = serde_json::from_str(
        &ok(
            &g,
            &["get", "secret", "s-1", "-m", "cli-mesh", "-o", "json"],
            None,
        )
        .await,
    )
    .expect("json");
    assert_eq!(one["data"], "c2VjcmV0LW9uZQ==");
    let rows = table(&ok(&g, &["get", "global-secrets"], None).await);
    assert_eq!(rows[0], ["NAME", "AGE"]);
    // Besides the user's, global keeps its own (the sync CA).
    assert!(rows[1..].iter().any(|r| r[0] == "gs-1"), "{rows:?}");
    let rows = table(&ok(&g, &["get", "zones"], None).await);
    assert_eq!(rows[0], ["NAME", "ENABLED", "AGE"]);
    assert_eq!(rows[1..].len(), 1, "{rows:?}");
    assert_eq!(rows[1][..2], ["east", "true"]);

    // delete: a secret, then the mesh (its CA secrets go with it), then global kinds.
    let out = ok(&g, &["delete", "secret", "s-1", "-m", "cli-mesh"], None).await;
    assert_eq!(out.trim(), "deleted Secret \"s-1\"");
    assert_eq!(status(&g, "/meshes/cli-mesh/secrets/s-1").await, 404);
    assert_eq!(status(&g, "/meshes/cli-mesh").await, 200);
    let out = ok(&g, &["delete", "mesh", "cli-mesh"], None).await;
    assert_eq!(out.trim(), "deleted Mesh \"cli-mesh\"");
    assert_eq!(status(&g, "/meshes/cli-mesh").await, 404);
    assert_eq!(
        status(&g, "/meshes/cli-mesh/secrets/cli-mesh.ca-builtin-cert-ca-1").await,
        404
    );
    ok(&g, &["delete", "global-secret", "gs-1"], None).await;
    ok(&g, &["delete", "zone", "east"], None).await;
    assert_eq!(status(&g, "/global-secrets/gs-1").await, 404);
    assert_eq!(status(&g, "/zones/east").await, 404);
    let rows = table(&ok(&g, &["get", "zones"], None).await);
    assert_eq!(
        rows,
        [["NAME", "ENABLED", "AGE"]],
        "empty list keeps its header"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_from_stdin_and_dry_run_sends_nothing() {
    let g = Global::start(Store::Memory, &[]).await.expect("global");
    let stream = "---\ntype: Mesh\nname: piped\n---\n# an empty document is skipped\n---\ntype: Secret\nmesh: piped\nname: token\ndata: dG9rZW4=\n";

    let out = ok(&g, &["apply", "-f", "-", "--dry-run"], Some(stream)).await;
    let printed: Vec<Value> = out
        .split("---\n")
        .filter(|d| !d.trim().is_empty())
        .map(yaml)
        .collect();
    assert_eq!(
        printed,
        [
            json!({"type": "Mesh", "name": "piped"}),
            json!({"type": "Secret", "mesh": "piped", "name": "token", "data": "dG9rZW4="}),
        ],
        "dry run prints what it would send: {out}"
    );
    assert_eq!(
        status(&g, "/meshes/piped").await,
        404,
        "dry run sends nothing"
    );
    assert_eq!(status(&g, "/meshes/piped/secrets/token").await, 404);

    // A dry run still validates.
    let err = fails(
        &g,
        &["apply", "-f", "-", "--dry-run"],
        Some("type: Mesh\nname: piped\nfoo: bar\n"),
    )
    .await;
    assert!(err.contains("* foo: unknown field"), "{err}");

    let out = ok(&g, &["apply", "-f", "-"], Some(stream)).await;
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "Mesh \"piped\" created",
            "Secret \"token\" in mesh \"piped\" created"
        ]
    );
    let (s, secret) = g.api.get("/meshes/piped/secrets/token").await.expect("get");
    assert_eq!(s, 200);
    assert_eq!(secret["data"], "dG9rZW4=");

    // JSON is YAML too.
    let out = ok(
        &g,
        &["apply", "-f", "-"],
        Some(r#"{"type": "Zone", "name": "json-zone", "enabled": false}"#),
    )
    .await;
    assert_eq!(out.trim(), "Zone \"json-zone\" created");
    let (_, zone) = g.api.get("/zones/json-zone").await.expect("get");
    assert_eq!(zone["enabled"], false);
    let err = fails(&g, &["apply", "-f", "-"], Some("\n# nothing\n")).await;
    assert!(err.contains("no resources found"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_printed_as_field_reason_lines_with_a_nonzero_exit() {
    let g = Global::start(Store::Memory, &[]).await.expect("global");
    let long = "x".repeat(64);

    // Every document is checked before anything is sent: the valid first one is not applied.
    let stream = format!(
        "type: Mesh\nname: first\n---\ntype: Mesh\nname: {long}\nbogus: 1\nmtls:\n  enabledBackend: nope\n"
    );
    let err = fails(&g, &["apply", "-f", "-"], Some(&stream)).await;
    assert!(
        err.contains(&format!(
            "Error: Resource is not valid (document 2 (Mesh \"{long}\"))"
        )),
        "{err}"
    );
    for line in [
        "* name: cannot be longer than 63 characters",
        "* bogus: unknown field",
        "* mtls.enabledBackend: has to be set to one of the backends in the mesh",
    ] {
        assert!(
            err.lines().any(|l| l == line),
            "missing {line:?} in:\n{err}"
        );
    }
    assert_eq!(status(&g, "/meshes/first").await, 404);

    // Refusals that only the server can make come back with its field/reason list.
    let err = fails(
        &g,
        &["apply", "-f", "-"],
        Some("type: Secret\nmesh: nowhere\nname: s\ndata: eA==\n"),
    )
    .await;
    assert!(err.contains("[HTTP 400]"), "{err}");
    assert!(
        err.lines()
            .any(|l| l == "* mesh: mesh of name nowhere is not found"),
        "{err}"
    );
    let closed = free_port();
    let err = fails(
        &g,
        &["apply", "-f", "-"],
        Some(&format!(
            "type: Mesh\nname: broken\nmtls:\n  backends:\n    - name: p-1\n      type: provided\n      conf:\n        cert:\n          secret: absent-cert\n        key:\n          secret: absent-key\n    - name: v-1\n      type: vault\n      conf:\n        fromCp:\n          address: http://127.0.0.1:{closed}\n          pki: pki\n          role: role\n          auth:\n            token:\n              inlineString: t\n"
        )),
    )
    .await;
    for field in [
        "* mtls.backends[0].conf.cert: ",
        "* mtls.backends[0].conf.key: ",
        "* mtls.backends[1].conf: ",
    ] {
        assert!(
            err.lines().any(|l| l.starts_with(field)),
            "missing {field:?} in:\n{err}"
        );
    }
    assert!(
        err.contains(&format!("127.0.0.1:{closed}")),
        "names the Vault: {err}"
    );
    assert_eq!(status(&g, "/meshes/broken").await, 404);

    // A Secret in use cannot be deleted: Kuma's message.
    ok(
        &g,
        &["apply", "-f", "-"],
        Some("type: Mesh\nname: default\nmtls:\n  enabledBackend: ca-1\n  backends:\n    - name: ca-1\n      type: builtin\n"),
    )
    .await;
    let err = fails(
        &g,
        &["delete", "secret", "default.ca-builtin-cert-ca-1"],
        None,
    )
    .await;
    assert!(
        err.lines().any(|l| l.starts_with("* name: The secret \"default.ca-builtin-cert-ca-1\" that you are trying to remove is currently in use in Mesh \"default\" in mTLS backend \"ca-1\"")),
        "{err}"
    );

    // Missing things, unknown kinds, unknown formats, an unreachable API.
    let err = fails(&g, &["get", "mesh", "missing"], None).await;
    assert!(err.contains("[HTTP 404]"), "{err}");
    let err = fails(&g, &["delete", "mesh", "missing"], None).await;
    assert!(err.contains("[HTTP 404]"), "{err}");
    let err = fails(&g, &["delete", "policy", "x"], None).await;
    assert!(err.contains("unknown resource type"), "{err}");
    fails(&g, &["get", "meshes", "-o", "xml"], None).await;
    let err = fails(&g, &["apply", "-f", "/nonexistent/file.yaml"], None).await;
    assert!(err.contains("/nonexistent/file.yaml"), "{err}");
    let (code, _, err) = meshctl(
        &format!("http://127.0.0.1:{}", free_port()),
        &["get", "meshes"],
        None,
    )
    .await
    .expect("meshctl");
    assert_ne!(code, 0);
    assert!(err.contains("could not reach the control plane"), "{err}");
}

/// Runs meshctl with only the environment naming the API (no `--api-url`), plus `extra` args.
async fn meshctl_env(api_url: &str, args: &[&str]) -> (i32, String, String) {
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(bin("meshctl"))
            .args(args)
            .env("MESHCTL_API_URL", api_url)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("meshctl exits")
    .expect("meshctl");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meshctl_api_url_env_var_replaces_the_flag() {
    let g = Global::start(Store::Memory, &[]).await.expect("global");
    let (code, out, err) =
        meshctl_env(&g.api.base, &["get", "mesh", "default", "-o", "json"]).await;
    assert_eq!(code, 0, "{err}");
    let mesh: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(mesh["name"], "default");
    assert_eq!(mesh["type"], "Mesh");

    // The variable really is what is used: pointing it elsewhere fails…
    let elsewhere = format!("http://127.0.0.1:{}", free_port());
    let (code, _, err) = meshctl_env(&elsewhere, &["get", "meshes"]).await;
    assert_ne!(code, 0);
    assert!(err.contains(&elsewhere), "{err}");
    // …and an explicit flag wins over it.
    let (code, out, err) = meshctl_env(
        &elsewhere,
        &["--api-url", &g.api.base, "get", "meshes", "-o", "json"],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let list: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(list["total"], 1);
}

fn jwt_part(token: &str, i: usize) -> Value {
    let part = token.split('.').nth(i).expect("JWT part");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generate_zone_token_prints_a_jwt_a_zone_connects_with() {
    let g = Global::start(Store::Memory, &[]).await.expect("global");
    let out = ok(
        &g,
        &[
            "generate",
            "zone-token",
            "--zone",
            "east",
            "--valid-for",
            "2h",
        ],
        None,
    )
    .await;
    let token = out.trim();
    assert_eq!(out.lines().count(), 1, "only the token: {out}");
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "header.payload.signature: {token}");
    assert!(parts.iter().all(|p| {
        !p.is_empty()
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    }));
    let header = jwt_part(token, 0);
    assert!(header["alg"].is_string(), "{header}");
    let claims = jwt_part(token, 1);
    assert_eq!(claims["zone"], "east", "{claims}");
    let iat = claims["iat"].as_i64().expect("iat");
    let exp = claims["exp"].as_i64().expect("exp");
    assert_eq!(exp - iat, 2 * 3600, "{claims}");
    let now = chrono::Utc::now().timestamp();
    assert!((iat - now).abs() < 600, "{claims}");
    let jti = claims["jti"].as_str().expect("jti").to_string();
    let second = ok(&g, &["generate", "zone-token", "--zone", "east"], None).await;
    assert_ne!(second.trim(), token, "each token is new");
    assert_ne!(jwt_part(second.trim(), 1)["jti"], jti);
    fails(&g, &["generate", "zone-token"], None).await;

    // The printed token is one global accepts: a zone connects with it.
    let dir = tempfile::tempdir().expect("dir");
    let token_file = dir.path().join("zone.token");
    std::fs::write(&token_file, token).expect("write token");
    let args: Vec<String> = vec![
        "run".into(),
        "--zone".into(),
        "east".into(),
        "--global-address".into(),
        g.kds_url(),
        "--kds-ca-file".into(),
        g.kds_ca().display().to_string(),
        "--zone-token-file".into(),
        token_file.display().to_string(),
        "--api-addr".into(),
        format!("127.0.0.1:{}", free_port()),
        "--dp-server-addr".into(),
        format!("127.0.0.1:{}", free_port()),
        "--work-dir".into(),
        dir.path().join("work").display().to_string(),
        "--store".into(),
        "memory".into(),
    ];
    let _zone = Proc::spawn("zone-east", &bin("meshplane-zone"), &args, &[])
        .await
        .expect("zone");
    eventually(
        Duration::from_secs(30),
        "east connected at global",
        || async {
            let (s, v) = g.api.get("/zones/east/_overview").await.ok()?;
            let subs = v["zoneInsight"]["subscriptions"].as_array()?;
            (s == 200 && !subs.is_empty()).then_some(())
        },
    )
    .await
    .expect("the zone connected with the CLI's token");

    // Revoking by value names the same token id.
    let out = ok(&g, &["revoke", "zone-token", "--token", token], None).await;
    assert_eq!(out.trim(), format!("revoked zone token {jti}"));
}

/// The server's warnings go to stderr, and a violation's detail follows Kuma's reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warnings_and_details_are_printed() {
    let g = Global::start(Store::Memory, &[]).await.expect("global");
    let (code, out, err) = meshctl(
        &g.api.base,
        &["apply", "-f", "-"],
        Some("type: Mesh\nname: m.1\n"),
    )
    .await
    .expect("meshctl");
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("Mesh \"m.1\" created"), "{out}");
    assert!(
        err.lines().any(|l| l.starts_with(
            "warning: Mesh \"m.1\": Invalid Mesh resource name: 'm.1'. It does not conform to the DNS format (RFC 1035)."
        )),
        "{err}"
    );
    let err = fails(
        &g,
        &["apply", "-f", "-"],
        Some("type: Mesh\nname: d\nmtls:\n  backends:\n    - name: ca-1\n      type: builtin\n      dpCert:\n        rotation:\n          expiration: 1h30m\n"),
    )
    .await;
    assert!(
        err.lines().any(|l| l == "* mtls.backends[0].dpCert.rotation.expiration: has to be a valid format (an integer and one unit of y, w, d, h, m, s, ms (for example 24h), or 0)"),
        "{err}"
    );
}
