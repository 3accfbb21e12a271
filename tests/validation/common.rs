//! Helpers shared by this suite's modules.
#![allow(unused_imports, dead_code)]
//! as the seed's steps 1–4: a Vault backend that can issue is accepted; every broken one (role, mount,
//! namespace, token, CN, sealed, unreachable, untrusted TLS, non-enabled backend) is refused naming the
//! cause with nothing stored; skipValidation; the builtin CA created once; provided-chain rules;
//! Secrets in use protected from deletion; and an in-flight validation answered across SIGTERM.

pub(crate) use std::time::Duration;

pub(crate) use base64::Engine;
pub(crate) use meshplane_test_support::{
    openbao::{OpenBao, SeedPki, TokenSpec},
    process::free_port,
};
pub(crate) use meshplane_tests::{Api, Global, Store, eventually, run};
pub(crate) use reqwest::Method;
pub(crate) use serde_json::{Value, json};

pub(crate) const SKIP_WARNING: &str = "skipValidation is set: the CA backends were not validated";

pub(crate) fn b64(s: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

pub(crate) fn unique() -> String {
    format!(
        "{}{}",
        std::process::id(),
        chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
    )
}

/// A vault backend on the seed's PKI, authenticated with the token in Secret `vault-token`.
pub(crate) fn vault_backend(name: &str, addr: &str, seed: &SeedPki) -> Value {
    json!({"name": name, "type": "vault", "dpCert": {"rotation": {"expiration": "1h"}},
        "conf": {"fromCp": {"address": addr, "pki": seed.mount, "role": seed.role,
            "auth": {"token": {"secret": "vault-token"}}}}})
}

pub(crate) fn mesh(name: &str, enabled: &str, backends: Vec<Value>) -> Value {
    json!({"type": "Mesh", "name": name, "mtls": {"enabledBackend": enabled, "backends": backends}})
}

/// `mesh` with `f` applied to `mtls.backends[i].conf.fromCp`.
pub(crate) fn tweak(
    mut m: Value,
    i: usize,
    f: impl FnOnce(&mut serde_json::Map<String, Value>),
) -> Value {
    let from_cp = m["mtls"]["backends"][i]["conf"]["fromCp"]
        .as_object_mut()
        .expect("fromCp");
    f(from_cp);
    m
}

pub(crate) async fn put_secret(api: &Api, mesh: &str, name: &str, data: &[u8]) {
    let (s, b) = api
        .put(
            &format!("/meshes/{mesh}/secrets/{name}"),
            &json!({"type": "Secret", "mesh": mesh, "name": name, "data": b64(data)}),
        )
        .await
        .expect("put secret");
    assert!(s == 200 || s == 201, "secret {name}: {s} {b}");
}

pub(crate) async fn get_with_version(api: &Api, path: &str) -> Option<(Value, i64)> {
    let r = api.request(Method::GET, path).send().await.expect("GET");
    if r.status().as_u16() == 404 {
        return None;
    }
    assert_eq!(r.status().as_u16(), 200, "GET {path}");
    let etag = r
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim_matches('"').parse::<i64>().ok())
        .expect("ETag");
    Some((r.json().await.expect("json"), etag))
}

/// PUTs a Mesh that must be accepted; returns the warnings.
pub(crate) async fn accepted(api: &Api, body: &Value) -> Vec<String> {
    let name = body["name"].as_str().expect("name");
    let (s, b) = api
        .put(&format!("/meshes/{name}"), body)
        .await
        .expect("put");
    assert!(s == 200 || s == 201, "{name} should be accepted: {s} {b}");
    b["warnings"]
        .as_array()
        .expect("warnings")
        .iter()
        .map(|w| w.as_str().expect("warning").to_string())
        .collect()
}

/// The seed's role writes `key_usage` with the `KeyUsage` prefix, which OpenBao ignores: global
/// accepts the backend and says so, once, for the backend at `index`.
pub(crate) fn assert_seed_role_warning(warnings: &[String], index: usize, addr: &str) {
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    let w = &warnings[0];
    assert!(
        w.starts_with(&format!(
            "mtls.backends[{index}] (vault-{}): Vault at {addr} issued the test certificate without a KeyUsage extension",
            index + 1
        )),
        "{w}"
    );
    assert!(w.contains("role \"dataplane-proxies\""), "{w}");
}

/// PUTs a Mesh that must be refused with exactly one violation at `field` whose reason contains
/// every one of `needles`; checks that the stored Mesh did not change (or still does not exist).
/// Returns the reason.
pub(crate) async fn refused(api: &Api, body: &Value, field: &str, needles: &[&str]) -> String {
    let name = body["name"].as_str().expect("name");
    let path = format!("/meshes/{name}");
    let before = get_with_version(api, &path).await;
    let (s, b) = api.put(&path, body).await.expect("put");
    assert_eq!(s, 400, "{name} should be refused: {b}");
    assert_eq!(b["type"], "/std-errors", "{b}");
    assert_eq!(b["status"], 400, "{b}");
    assert_eq!(b["title"], "Could not process a resource", "{b}");
    let params = b["invalid_parameters"]
        .as_array()
        .expect("invalid_parameters");
    assert_eq!(params.len(), 1, "one violation: {b}");
    assert_eq!(params[0]["field"], field, "{b}");
    let reason = params[0]["reason"].as_str().expect("reason").to_string();
    for n in needles {
        assert!(reason.contains(n), "reason should contain {n:?}: {reason}");
    }
    assert_eq!(
        get_with_version(api, &path).await,
        before,
        "nothing stored for a refused {name}"
    );
    reason
}

/// OpenBao (dev) set up as the seed says for mesh `default`, and a global whose `default` Mesh uses
/// it with the seed's token in Secret `vault-token`.
pub(crate) async fn vault_world() -> (OpenBao, SeedPki, Global, Value) {
    meshplane_test_support::process::init_test_logging();
    let bao = OpenBao::start_dev().await.expect("openbao");
    let seed = bao.seed_setup("default").await.expect("seed steps 1-4");
    let g = Global::start(Store::Memory, &[]).await.expect("global");
    put_secret(&g.api, "default", "vault-token", seed.token.as_bytes()).await;
    let good = mesh(
        "default",
        "vault-1",
        vec![vault_backend("vault-1", &bao.addr, &seed)],
    );
    assert_seed_role_warning(&accepted(&g.api, &good).await, 0, &bao.addr);
    (bao, seed, g, good)
}

// ---------------------------------------------------------------------------------------------
// Vault (dev server): accepted, refused for each cause, skipValidation
// ---------------------------------------------------------------------------------------------

/// The (field, reason) pairs of a 400's `invalid_parameters`, in order.
pub(crate) fn field_reasons(body: &Value) -> Vec<(String, String)> {
    body["invalid_parameters"]
        .as_array()
        .unwrap_or_else(|| panic!("no invalid_parameters in {body}"))
        .iter()
        .map(|p| {
            (
                p["field"].as_str().expect("field").to_string(),
                p["reason"].as_str().expect("reason").to_string(),
            )
        })
        .collect()
}

/// `expected` as owned pairs, to compare with `field_reasons`.
pub(crate) fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected
        .iter()
        .map(|(f, r)| (f.to_string(), r.to_string()))
        .collect()
}
