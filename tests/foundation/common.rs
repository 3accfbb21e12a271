//! Helpers shared by this suite's modules.
#![allow(unused_imports, dead_code)]
//! in JSON and YAML, structural validation answers Kuma's error body with every violation, 201/200/404/
//! 409 and pagination, racing writers, cascade delete, durability across a restart, the schema gate
//! and `migrate up`, hostile bodies, secret redaction, health/readiness/shutdown, and the memory store.

pub(crate) use std::time::Duration;

pub(crate) use base64::Engine;
pub(crate) use meshplane_test_support::{
    postgres::TestDatabase,
    process::{Proc, bin, free_port, wait_http_ok},
};
pub(crate) use meshplane_tests::{
    Api, Global, Store, encryption_key_file, eventually, migrated_db, repo_root,
};
pub(crate) use reqwest::Method;
pub(crate) use serde_json::{Value, json};
pub(crate) use sqlx::{Connection, PgConnection};

pub(crate) const WAIT: Duration = Duration::from_secs(30);
pub(crate) const SKIP_WARNING: &str = "skipValidation is set: the CA backends were not validated";

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

pub(crate) async fn pg_global(extra: &[&str]) -> (TestDatabase, Global) {
    let db = migrated_db().await.expect("migrated database");
    let g = Global::start(Store::Postgres(db.url.clone()), extra)
        .await
        .expect("global on PostgreSQL");
    (db, g)
}

pub(crate) fn example(name: &str) -> String {
    let p = repo_root().join("deploy/examples").join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

pub(crate) fn yaml(text: &str) -> Value {
    serde_saphyr::from_str(text).unwrap_or_else(|e| panic!("test YAML does not parse: {e}\n{text}"))
}

pub(crate) fn b64(s: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

pub(crate) fn without_times(mut v: Value) -> Value {
    if let Some(o) = v.as_object_mut() {
        o.remove("creationTime");
        o.remove("modificationTime");
    }
    v
}

/// The API path of a universal document.
pub(crate) fn path_of(doc: &Value) -> String {
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

pub(crate) async fn get_ok(api: &Api, path: &str) -> Value {
    let (s, b) = api.get(path).await.expect("GET");
    assert_eq!(s, 200, "GET {path}: {b}");
    b
}

pub(crate) async fn get_status(api: &Api, path: &str) -> u16 {
    api.get(path).await.expect("GET").0
}

pub(crate) async fn put_expect(api: &Api, path: &str, body: &Value, want: u16) -> Value {
    let (s, b) = api.put(path, body).await.expect("PUT");
    assert_eq!(s, want, "PUT {path} {body}: {b}");
    b
}

/// `GET path` and its ETag version.
pub(crate) async fn get_with_version(api: &Api, path: &str) -> (Value, i64) {
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

pub(crate) async fn put_if_match(
    api: &Api,
    path: &str,
    version: &str,
    body: &Value,
) -> (u16, Value) {
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
pub(crate) fn assert_error_body(body: &Value, status: u16, title: &str) {
    assert_eq!(body["type"], "/std-errors", "{body}");
    assert_eq!(body["status"], status, "{body}");
    assert_eq!(body["title"], title, "{body}");
    let detail = body["detail"].as_str().expect("detail");
    assert!(!detail.is_empty(), "{body}");
    assert_eq!(body["details"], body["detail"], "{body}");
}

pub(crate) fn violations(body: &Value) -> Vec<(String, String)> {
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
pub(crate) fn assert_invalid(status: u16, body: &Value, expected: &[(&str, &str)]) {
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
pub(crate) fn yaml_with_skip_validation(text: &str) -> String {
    assert!(text.contains("\nmtls:\n"), "{text}");
    text.replacen("\nmtls:\n", "\nmtls:\n  skipValidation: true\n", 1)
}

/// A self-signed root CA and an intermediate CA under it (P-256), as PEM: (bundle, intermediate key).
pub(crate) fn ca_chain() -> (String, String) {
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
pub(crate) async fn standalone_zone(db: &TestDatabase, dir: &std::path::Path) -> (Proc, Api) {
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
pub(crate) async fn global_cli(args: &[&str]) -> (i32, String, String) {
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
pub(crate) async fn round_trip(
    api: &Api,
    doc: &Value,
    yaml_text: &str,
    first_status: u16,
    warnings: Value,
) {
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
