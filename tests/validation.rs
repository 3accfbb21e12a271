//! CA backend validation at global (issue 3) through the REST API, against a real OpenBao 2.7.2 set up
//! as the seed's steps 1–4: a Vault backend that can issue is accepted; every broken one (role, mount,
//! namespace, token, CN, sealed, unreachable, untrusted TLS, non-enabled backend) is refused naming the
//! cause with nothing stored; skipValidation; the builtin CA created once; provided-chain rules;
//! Secrets in use protected from deletion; and an in-flight validation answered across SIGTERM.

use std::time::Duration;

use base64::Engine;
use meshplane_test_support::{
    openbao::{OpenBao, SeedPki, TokenSpec},
    process::free_port,
};
use meshplane_tests::{Api, Global, Store, eventually, run};
use reqwest::Method;
use serde_json::{Value, json};

const SKIP_WARNING: &str = "skipValidation is set: the CA backends were not validated";

fn b64(s: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn unique() -> String {
    format!(
        "{}{}",
        std::process::id(),
        chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
    )
}

/// A vault backend on the seed's PKI, authenticated with the token in Secret `vault-token`.
fn vault_backend(name: &str, addr: &str, seed: &SeedPki) -> Value {
    json!({"name": name, "type": "vault", "dpCert": {"rotation": {"expiration": "1h"}},
        "conf": {"fromCp": {"address": addr, "pki": seed.mount, "role": seed.role,
            "auth": {"token": {"secret": "vault-token"}}}}})
}

fn mesh(name: &str, enabled: &str, backends: Vec<Value>) -> Value {
    json!({"type": "Mesh", "name": name, "mtls": {"enabledBackend": enabled, "backends": backends}})
}

/// `mesh` with `f` applied to `mtls.backends[i].conf.fromCp`.
fn tweak(mut m: Value, i: usize, f: impl FnOnce(&mut serde_json::Map<String, Value>)) -> Value {
    let from_cp = m["mtls"]["backends"][i]["conf"]["fromCp"]
        .as_object_mut()
        .expect("fromCp");
    f(from_cp);
    m
}

async fn put_secret(api: &Api, mesh: &str, name: &str, data: &[u8]) {
    let (s, b) = api
        .put(
            &format!("/meshes/{mesh}/secrets/{name}"),
            &json!({"type": "Secret", "mesh": mesh, "name": name, "data": b64(data)}),
        )
        .await
        .expect("put secret");
    assert!(s == 200 || s == 201, "secret {name}: {s} {b}");
}

async fn get_with_version(api: &Api, path: &str) -> Option<(Value, i64)> {
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
async fn accepted(api: &Api, body: &Value) -> Vec<String> {
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
fn assert_seed_role_warning(warnings: &[String], index: usize, addr: &str) {
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
async fn refused(api: &Api, body: &Value, field: &str, needles: &[&str]) -> String {
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
async fn vault_world() -> (OpenBao, SeedPki, Global, Value) {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vault_backend_that_can_issue_is_accepted_and_each_broken_one_is_refused() {
    let (bao, seed, mut g, good) = vault_world().await;
    let api = g.api.clone();
    let conf = "mtls.backends[0].conf";
    let (stored, _) = get_with_version(&api, "/meshes/default")
        .await
        .expect("stored");
    assert_eq!(stored["mtls"], good["mtls"]);
    // Validation issued a real certificate through the role: the PKI mount counts it.
    let certs = bao
        .request(
            Method::from_bytes(b"LIST").expect("LIST"),
            &format!("{}/certs", seed.mount),
            None,
        )
        .await
        .expect("list certs");
    assert!(
        certs["data"]["keys"]
            .as_array()
            .is_some_and(|k| !k.is_empty()),
        "a test certificate was issued: {certs}"
    );

    // The seed's token may only issue through its role: a wrong role is a policy denial naming
    // the path.
    refused(
        &api,
        &tweak(good.clone(), 0, |c| {
            c.insert("role".into(), json!("no-such-role"));
        }),
        conf,
        &[
            &bao.addr,
            "kmesh-pki-default/issue/no-such-role",
            "permission denied",
        ],
    )
    .await;

    // With a token whose policy covers any kmesh mount, Vault itself says what is missing.
    bao.request(
        Method::PUT,
        "sys/policies/acl/broad",
        Some(json!({"policy": "path \"kmesh-pki-*\" {\n  capabilities = [\"create\", \"update\", \"read\"]\n}\n"})),
    )
    .await
    .expect("policy");
    let broad = bao
        .create_token(TokenSpec {
            policies: &["broad"],
            ..Default::default()
        })
        .await
        .expect("token");
    put_secret(&api, "default", "broad-token", broad.as_bytes()).await;
    let with_broad = |m: Value| {
        tweak(m, 0, |c| {
            c.insert("auth".into(), json!({"token": {"secret": "broad-token"}}));
        })
    };
    accepted(&api, &with_broad(good.clone())).await;
    let (base, _) = get_with_version(&api, "/meshes/default")
        .await
        .expect("stored");
    refused(
        &api,
        &tweak(base.clone(), 0, |c| {
            c.insert("role".into(), json!("no-such-role"));
        }),
        conf,
        &[&bao.addr, "has no role \"no-such-role\"", "unknown role"],
    )
    .await;
    // The same role with key_usage written without the prefix: accepted without any warning.
    bao.bao(&[
        "write",
        &format!("{}/roles/fixed", seed.mount),
        "allowed_uri_sans=spiffe://default/*,kuma://*",
        "key_usage=KeyEncipherment,KeyAgreement,DigitalSignature",
        "ext_key_usage=ExtKeyUsageServerAuth,ExtKeyUsageClientAuth",
        "client_flag=true",
        "require_cn=false",
        "allowed_domains=mesh",
        "allow_subdomains=true",
        "basic_constraints_valid_for_non_ca=true",
        "max_ttl=720h",
        "ttl=720h",
    ])
    .await
    .expect("role");
    assert_eq!(
        accepted(
            &api,
            &tweak(base.clone(), 0, |c| {
                c.insert("role".into(), json!("fixed"));
            })
        )
        .await,
        Vec::<String>::new()
    );
    refused(
        &api,
        &tweak(base.clone(), 0, |c| {
            c.insert("pki".into(), json!("kmesh-pki-missing"));
        }),
        conf,
        &[&bao.addr, "has no PKI mount \"kmesh-pki-missing\""],
    )
    .await;
    accepted(&api, &good).await;

    // A namespace that does not exist.
    refused(
        &api,
        &tweak(good.clone(), 0, |c| {
            c.insert("namespace".into(), json!("no-such-ns"));
        }),
        conf,
        &[&bao.addr, "namespace \"no-such-ns\" not found"],
    )
    .await;

    // A garbage token: rejected, and never echoed.
    let garbage = format!("s.garbage{}", unique());
    let reason = refused(
        &api,
        &tweak(good.clone(), 0, |c| {
            c.insert("auth".into(), json!({"token": {"inlineString": garbage}}));
        }),
        conf,
        &[&bao.addr, "rejected the token", "permission denied"],
    )
    .await;
    assert!(!reason.contains(&garbage));

    // A common name the role does not allow (allowed_domains=mesh).
    refused(
        &api,
        &tweak(good.clone(), 0, |c| {
            c.insert("commonName".into(), json!("x.example.com"));
        }),
        conf,
        &[&bao.addr, "common name \"x.example.com\"", "not allowed"],
    )
    .await;
    // A template the role allows is fine.
    accepted(
        &api,
        &tweak(good.clone(), 0, |c| {
            c.insert(
                "commonName".into(),
                json!("{{ tag \"kuma.io/service\" | replace \"_\" \"-\" }}.mesh"),
            );
        }),
    )
    .await;
    accepted(&api, &good).await;

    // Nothing listens on the address.
    let closed = format!("http://127.0.0.1:{}", free_port());
    refused(
        &api,
        &tweak(good.clone(), 0, |c| {
            c.insert("address".into(), json!(closed));
        }),
        conf,
        &[&format!("could not reach Vault at {closed}")],
    )
    .await;

    // The token's DataSource names a Secret that does not exist: reported at the DataSource.
    refused(
        &api,
        &tweak(good.clone(), 0, |c| {
            c.insert("auth".into(), json!({"token": {"secret": "absent"}}));
        }),
        "mtls.backends[0].conf.fromCp.auth.token",
        &["secret \"absent\" not found in mesh \"default\""],
    )
    .await;

    // Every backend is validated, not only the enabled one.
    let mut broken = vault_backend("vault-2", &bao.addr, &seed);
    broken["conf"]["fromCp"]["role"] = json!("no-such-role");
    let two = mesh(
        "default",
        "vault-1",
        vec![vault_backend("vault-1", &bao.addr, &seed), broken.clone()],
    );
    refused(
        &api,
        &two,
        "mtls.backends[1].conf",
        &["kmesh-pki-default/issue/no-such-role"],
    )
    .await;

    // A new Mesh that fails validation is not created at all.
    let fresh = tweak(
        mesh(
            "brand-new",
            "vault-1",
            vec![vault_backend("vault-1", &bao.addr, &seed)],
        ),
        0,
        |c| {
            c.insert("auth".into(), json!({"token": {"inlineString": garbage}}));
        },
    );
    refused(&api, &fresh, conf, &["rejected the token"]).await;
    assert_eq!(api.get("/meshes/brand-new").await.expect("get").0, 404);
    assert_eq!(
        api.get("/meshes/brand-new/secrets").await.expect("get").1["total"],
        0
    );

    // skipValidation stores the same broken conf, with a warning.
    let mut skipped = two.clone();
    skipped["mtls"]["skipValidation"] = json!(true);
    let warnings = accepted(&api, &skipped).await;
    assert_eq!(warnings, [SKIP_WARNING]);
    let (stored, _) = get_with_version(&api, "/meshes/default")
        .await
        .expect("stored");
    assert_eq!(stored["mtls"], skipped["mtls"]);
    accepted(&api, &fresh_skip(&fresh)).await;
    assert_eq!(api.get("/meshes/brand-new").await.expect("get").0, 200);
    assert_seed_role_warning(&accepted(&api, &good).await, 0, &bao.addr);

    // A token that expired.
    let short = bao
        .create_token(TokenSpec {
            policies: &[seed.policy.as_str()],
            ttl: "2s",
            renewable: Some(false),
            ..Default::default()
        })
        .await
        .expect("short token");
    eventually(
        Duration::from_secs(30),
        "the short token to expire",
        || async { bao.lookup_token(&short).await.is_err().then_some(()) },
    )
    .await
    .expect("expired");
    refused(
        &api,
        &tweak(good.clone(), 0, |c| {
            c.insert("auth".into(), json!({"token": {"inlineString": short}}));
        }),
        conf,
        &[&bao.addr, "rejected the token"],
    )
    .await;

    // The token Secret is in use: Kuma's refusal; once no backend uses it, it can go.
    let (s, b) = api
        .delete("/meshes/default/secrets/vault-token")
        .await
        .expect("delete");
    assert_eq!(s, 400, "{b}");
    assert_eq!(
        b["invalid_parameters"],
        json!([{"field": "name", "reason": "The secret \"vault-token\" that you are trying to remove is currently in use in Mesh \"default\" in mTLS backend \"vault-1\". Please remove the reference from the \"vault-1\" backend before removing the secret."}])
    );
    assert_eq!(
        api.get("/meshes/default/secrets/vault-token")
            .await
            .expect("get")
            .0,
        200
    );
    accepted(
        &api,
        &tweak(good.clone(), 0, |c| {
            c.insert(
                "auth".into(),
                json!({"token": {"inlineString": seed.token}}),
            );
        }),
    )
    .await;
    let (s, b) = api
        .delete("/meshes/default/secrets/vault-token")
        .await
        .expect("delete");
    assert_eq!(s, 200, "{b}");

    // Neither the garbage token nor the seed's token ever reached the log.
    assert_eq!(
        g.proc
            .terminate(Duration::from_secs(30))
            .await
            .expect("stop"),
        Some(0)
    );
    let logs = g.proc.logs();
    assert!(logs.contains("default"), "the log is not empty");
    for t in [&garbage, &seed.token, &broad, &short] {
        assert!(!logs.contains(t.as_str()), "a token is in the global's log");
    }
}

fn fresh_skip(m: &Value) -> Value {
    let mut m = m.clone();
    m["mtls"]["skipValidation"] = json!(true);
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_vault_is_refused_and_accepted_again_once_unsealed() {
    let (mut bao, seed, g, good) = vault_world().await;
    let api = g.api.clone();
    let mut update = good.clone();
    update["mtls"]["backends"][0]["dpCert"]["rotation"]["expiration"] = json!("2h");

    bao.seal().await.expect("seal");
    refused(
        &api,
        &update,
        "mtls.backends[0].conf",
        &[&format!("Vault at {} is sealed", bao.addr)],
    )
    .await;
    // A new Mesh against the sealed Vault is not created either.
    let mut fresh = tweak(update.clone(), 0, |c| {
        c.insert(
            "auth".into(),
            json!({"token": {"inlineString": seed.token}}),
        );
    });
    fresh["name"] = json!("sealed-new");
    refused(&api, &fresh, "mtls.backends[0].conf", &["is sealed"]).await;
    assert_eq!(api.get("/meshes/sealed-new").await.expect("get").0, 404);

    bao.unseal().await.expect("unseal");
    assert_seed_role_warning(&accepted(&api, &update).await, 0, &bao.addr);
    let (stored, _) = get_with_version(&api, "/meshes/default")
        .await
        .expect("stored");
    assert_eq!(
        stored["mtls"]["backends"][0]["dpCert"]["rotation"]["expiration"],
        "2h"
    );
}

// ---------------------------------------------------------------------------------------------
// Vault over TLS: trust, server name, client-certificate auth
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vault_tls_trust_and_client_certificate_auth() {
    let bao = OpenBao::start_tls().await.expect("openbao with TLS");
    let seed = bao.seed_setup("default").await.expect("seed steps 1-4");
    let ca_pem = bao.ca_pem.clone().expect("server CA");
    let client = bao.client.clone().expect("client certificate");
    let g = Global::start(Store::Memory, &[]).await.expect("global");
    let api = g.api.clone();
    put_secret(&api, "default", "vault-token", seed.token.as_bytes()).await;
    put_secret(&api, "default", "vault-ca", ca_pem.as_bytes()).await;
    let conf = "mtls.backends[0].conf";

    // Token auth over TLS with the CA from a Secret.
    let good = tweak(
        mesh(
            "default",
            "vault-1",
            vec![vault_backend("vault-1", &bao.addr, &seed)],
        ),
        0,
        |c| {
            c.insert("tls".into(), json!({"caCert": {"secret": "vault-ca"}}));
        },
    );
    assert_seed_role_warning(&accepted(&api, &good).await, 0, &bao.addr);

    // Without the CA, Vault's certificate is not trusted.
    refused(
        &api,
        &tweak(good.clone(), 0, |c| {
            c.remove("tls");
        }),
        conf,
        &[&bao.addr, "presented a certificate that is not trusted"],
    )
    .await;
    // A server name the certificate does not carry.
    let reason = refused(
        &api,
        &tweak(good.clone(), 0, |c| {
            c.insert(
                "tls".into(),
                json!({"caCert": {"secret": "vault-ca"}, "serverName": "vault.other.example"}),
            );
        }),
        conf,
        &[&bao.addr, "not trusted", "vault.other.example"],
    )
    .await;
    assert!(
        reason.contains("localhost"),
        "says what the certificate is for: {reason}"
    );
    // The right server name works (the certificate is for localhost).
    accepted(
        &api,
        &tweak(good.clone(), 0, |c| {
            c.insert(
                "tls".into(),
                json!({"caCert": {"inlineString": ca_pem}, "serverName": "localhost"}),
            );
        }),
    )
    .await;
    // http:// to the HTTPS listener.
    refused(
        &api,
        &tweak(good.clone(), 0, |c| {
            c.insert(
                "address".into(),
                json!(bao.addr.replace("https://", "http://")),
            );
        }),
        conf,
        &["serves HTTPS but the address says http://"],
    )
    .await;
    // skipVerify: accepted without any CA.
    accepted(
        &api,
        &tweak(good.clone(), 0, |c| {
            c.insert("tls".into(), json!({"skipVerify": true}));
        }),
    )
    .await;

    // TLS client-certificate auth (auth/cert, role `cp`), credentials as DataSources.
    put_secret(
        &api,
        "default",
        "vault-client-key",
        client.key_pem.as_bytes(),
    )
    .await;
    let cert_auth = tweak(good.clone(), 0, |c| {
        c.insert(
            "auth".into(),
            json!({"tls": {"clientKey": {"secret": "vault-client-key"},
                           "clientCert": {"inlineString": client.cert_pem}}}),
        );
    });
    assert_seed_role_warning(&accepted(&api, &cert_auth).await, 0, &bao.addr);
    let (s, b) = api
        .delete("/meshes/default/secrets/vault-client-key")
        .await
        .expect("delete");
    assert_eq!(s, 400, "{b}");
    assert!(
        b["invalid_parameters"][0]["reason"]
            .as_str()
            .unwrap_or("")
            .starts_with("The secret \"vault-client-key\" that you are trying to remove is currently in use in Mesh \"default\" in mTLS backend \"vault-1\""),
        "{b}"
    );
    // A client certificate from a CA cert auth does not trust.
    let stranger = meshplane_test_support::tls::TestCa::new("stranger CA")
        .expect("ca")
        .client_cert("control-plane")
        .expect("client cert");
    refused(
        &api,
        &tweak(cert_auth.clone(), 0, |c| {
            c.insert(
                "auth".into(),
                json!({"tls": {"clientKey": {"inlineString": stranger.key_pem},
                               "clientCert": {"inlineString": stranger.cert_pem}}}),
            );
        }),
        conf,
        &[&bao.addr, "refused the cert login"],
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// builtin
// ---------------------------------------------------------------------------------------------

async fn secret_data(api: &Api, mesh: &str, name: &str) -> (String, i64) {
    let (v, version) = get_with_version(api, &format!("/meshes/{mesh}/secrets/{name}"))
        .await
        .unwrap_or_else(|| panic!("secret {name} exists"));
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(v["data"].as_str().expect("data"))
        .expect("base64");
    (String::from_utf8(bytes).expect("PEM text"), version)
}

async fn openssl(pem: &str, args: &[&str]) -> (i32, String) {
    let dir = tempfile::tempdir().expect("dir");
    let f = dir.path().join("in.pem");
    std::fs::write(&f, pem).expect("write");
    let mut a: Vec<&str> = args.to_vec();
    let path = f.to_str().expect("utf-8");
    a.extend(["-in", path]);
    let (code, out, err) = run("openssl", &a).await.expect("openssl");
    (code, format!("{out}{err}"))
}

async fn secret_names(api: &Api, mesh: &str) -> Vec<String> {
    let (_, list) = api
        .get(&format!("/meshes/{mesh}/secrets"))
        .await
        .expect("list");
    let mut names: Vec<String> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["name"].as_str().expect("name").to_string())
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builtin_ca_is_created_once_with_its_conf_and_never_regenerated() {
    let g = Global::start(Store::Memory, &[]).await.expect("global");
    let api = g.api.clone();
    let builtin = |name: &str, bits: u32| json!({"name": name, "type": "builtin", "conf": {"caCert": {"RSAbits": bits, "expiration": "2y"}}});
    let m = mesh("bi", "ca-1", vec![builtin("ca-1", 3072)]);
    assert_eq!(accepted(&api, &m).await, Vec::<String>::new());
    assert_eq!(
        secret_names(&api, "bi").await,
        ["bi.ca-builtin-cert-ca-1", "bi.ca-builtin-key-ca-1"]
    );
    let (cert, cert_v) = secret_data(&api, "bi", "bi.ca-builtin-cert-ca-1").await;
    let (key, key_v) = secret_data(&api, "bi", "bi.ca-builtin-key-ca-1").await;
    assert!(
        key.starts_with("-----BEGIN RSA PRIVATE KEY-----"),
        "PKCS#1 as Kuma"
    );

    // The root as §1.2 says: self-signed RSA of the configured size, Kuma/Mesh/<mesh>, one URI
    // SAN, a CA that signs certificates, serial 0, the configured lifetime.
    let (code, text) = openssl(&cert, &["x509", "-noout", "-text"]).await;
    assert_eq!(code, 0, "{text}");
    for needle in [
        "Public-Key: (3072 bit)",
        "Subject: O = Kuma, OU = Mesh, CN = bi",
        "Issuer: O = Kuma, OU = Mesh, CN = bi",
        "URI:spiffe://bi",
        "CA:TRUE",
        "Certificate Sign, CRL Sign",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
    // Kuma writes serial 0, which RFC 5280 forbids; Meshplane deliberately uses a positive one.
    let (_, serial) = openssl(&cert, &["x509", "-noout", "-serial"]).await;
    let serial = serial.trim().strip_prefix("serial=").expect("serial");
    assert!(
        serial.chars().any(|c| c != '0'),
        "positive serial: {serial}"
    );
    let day = 24 * 3600;
    let (code, _) = openssl(
        &cert,
        &["x509", "-noout", "-checkend", &(729 * day).to_string()],
    )
    .await;
    assert_eq!(code, 0, "valid for about two years");
    let (code, _) = openssl(
        &cert,
        &["x509", "-noout", "-checkend", &(731 * day).to_string()],
    )
    .await;
    assert_eq!(code, 1, "not longer than two years");
    let (_, cert_mod) = openssl(&cert, &["x509", "-noout", "-modulus"]).await;
    let (_, key_mod) = openssl(&key, &["rsa", "-noout", "-modulus"]).await;
    assert!(cert_mod.starts_with("Modulus="), "{cert_mod}");
    assert_eq!(cert_mod, key_mod, "the key belongs to the certificate");

    // Updating the Mesh (even the backend's conf) keeps the CA: created once, never regenerated.
    let mut updated = mesh("bi", "ca-1", vec![builtin("ca-1", 4096)]);
    updated["labels"] = json!({"rev": "2"});
    assert_eq!(accepted(&api, &updated).await, Vec::<String>::new());
    assert_eq!(
        secret_data(&api, "bi", "bi.ca-builtin-cert-ca-1").await,
        (cert.clone(), cert_v)
    );
    assert_eq!(
        secret_data(&api, "bi", "bi.ca-builtin-key-ca-1").await,
        (key.clone(), key_v)
    );

    // A second builtin backend gets its own CA; the first is untouched.
    let both = mesh(
        "bi",
        "ca-1",
        vec![builtin("ca-1", 2048), builtin("ca-2", 2048)],
    );
    accepted(&api, &both).await;
    assert_eq!(
        secret_names(&api, "bi").await,
        [
            "bi.ca-builtin-cert-ca-1",
            "bi.ca-builtin-cert-ca-2",
            "bi.ca-builtin-key-ca-1",
            "bi.ca-builtin-key-ca-2"
        ]
    );
    let (cert2, _) = secret_data(&api, "bi", "bi.ca-builtin-cert-ca-2").await;
    assert_ne!(cert2, cert);
    assert_eq!(
        secret_data(&api, "bi", "bi.ca-builtin-cert-ca-1").await,
        (cert.clone(), cert_v)
    );

    // In use: refused with Kuma's message. Removing the backend keeps its Secrets (as Kuma), and
    // then they may be deleted.
    let (s, b) = api
        .delete("/meshes/bi/secrets/bi.ca-builtin-key-ca-2")
        .await
        .expect("delete");
    assert_eq!(s, 400, "{b}");
    assert_eq!(
        b["invalid_parameters"][0]["reason"],
        "The secret \"bi.ca-builtin-key-ca-2\" that you are trying to remove is currently in use in Mesh \"bi\" in mTLS backend \"ca-2\". Please remove the reference from the \"ca-2\" backend before removing the secret."
    );
    accepted(&api, &mesh("bi", "ca-1", vec![builtin("ca-1", 2048)])).await;
    assert_eq!(secret_names(&api, "bi").await.len(), 4);
    for s in ["bi.ca-builtin-cert-ca-2", "bi.ca-builtin-key-ca-2"] {
        let (status, b) = api
            .delete(&format!("/meshes/bi/secrets/{s}"))
            .await
            .expect("delete");
        assert_eq!(status, 200, "{b}");
    }
    // Re-adding the backend creates a new CA (the old one is gone).
    accepted(&api, &both).await;
    let (cert2_again, _) = secret_data(&api, "bi", "bi.ca-builtin-cert-ca-2").await;
    assert_ne!(cert2_again, cert2);
    // skipValidation still creates the material of a new builtin backend.
    let mut skip = mesh("bi-skip", "ca-1", vec![builtin("ca-1", 2048)]);
    skip["mtls"]["skipValidation"] = json!(true);
    assert_eq!(accepted(&api, &skip).await, [SKIP_WARNING]);
    assert_eq!(secret_names(&api, "bi-skip").await.len(), 2);
}

// ---------------------------------------------------------------------------------------------
// provided
// ---------------------------------------------------------------------------------------------

struct Chain {
    bundle: String,
    key: String,
}

/// An intermediate under a root; `int` and `root` adjust each certificate's parameters.
fn chain(
    int: impl FnOnce(&mut rcgen::CertificateParams),
    root: impl FnOnce(&mut rcgen::CertificateParams),
) -> Chain {
    use rcgen::{
        BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
        KeyUsagePurpose,
    };
    let ca = |cn: &str| {
        let mut p = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, cn);
        p.distinguished_name = dn;
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        p
    };
    let mut root_params = ca("provided root");
    root(&mut root_params);
    let root_key = KeyPair::generate().expect("key");
    let root_cert = root_params.self_signed(&root_key).expect("root");
    let issuer = Issuer::new(root_params, root_key);
    let mut int_params = ca("provided intermediate");
    int(&mut int_params);
    let int_key = KeyPair::generate().expect("key");
    let int_cert = int_params
        .signed_by(&int_key, &issuer)
        .expect("intermediate");
    Chain {
        bundle: format!("{}{}", int_cert.pem(), root_cert.pem()),
        key: int_key.serialize_pem(),
    }
}

fn provided(name: &str, cert_secret: &str, key_secret: &str) -> Value {
    json!({"name": name, "type": "provided", "conf": {"cert": {"secret": cert_secret}, "key": {"secret": key_secret}}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provided_chain_rules_are_kumas() {
    use rcgen::{IsCa, KeyUsagePurpose};
    let g = Global::start(Store::Memory, &[]).await.expect("global");
    let api = g.api.clone();
    assert_eq!(
        accepted(&api, &json!({"type": "Mesh", "name": "prov"})).await,
        Vec::<String>::new()
    );
    let store = |name: &'static str, c: Chain| {
        let api = api.clone();
        async move {
            put_secret(&api, "prov", &format!("{name}-cert"), c.bundle.as_bytes()).await;
            put_secret(&api, "prov", &format!("{name}-key"), c.key.as_bytes()).await;
        }
    };
    store("good", chain(|_| {}, |_| {})).await;
    store(
        "not-ca",
        chain(
            |p| {
                p.is_ca = IsCa::ExplicitNoCa;
            },
            |_| {},
        ),
    )
    .await;
    store(
        "no-sign",
        chain(
            |_| {},
            |p| p.key_usages = vec![KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature],
        ),
    )
    .await;
    store(
        "agreement",
        chain(|p| p.key_usages.push(KeyUsagePurpose::KeyAgreement), |_| {}),
    )
    .await;
    // The good bundle with a key that belongs to something else.
    put_secret(
        &api,
        "prov",
        "other-key",
        chain(|_| {}, |_| {}).key.as_bytes(),
    )
    .await;

    let m = |cert: &str, key: &str| mesh("prov", "ca-1", vec![provided("ca-1", cert, key)]);
    refused(
        &api,
        &m("not-ca-cert", "not-ca-key"),
        "mtls.backends[0].conf.cert[0]",
        &["basic constraint 'CA' must be set to 'true' (see X509-SVID: 4.1. Basic Constraints)"],
    )
    .await;
    refused(
        &api,
        &m("no-sign-cert", "no-sign-key"),
        "mtls.backends[0].conf.cert[1]",
        &["key usage extension 'keyCertSign' must be set (see X509-SVID: 4.3. Key Usage)"],
    )
    .await;
    refused(
        &api,
        &m("agreement-cert", "agreement-key"),
        "mtls.backends[0].conf.cert[0]",
        &["key usage extension 'keyAgreement' must NOT be set (see X509-SVID: Appendix A. X.509 Field Reference)"],
    )
    .await;
    refused(
        &api,
        &m("good-cert", "other-key"),
        "mtls.backends[0].conf.cert",
        &["not a valid TLS key pair"],
    )
    .await;
    // Not a certificate at all.
    put_secret(&api, "prov", "junk", b"not a certificate").await;
    refused(
        &api,
        &m("junk", "good-key"),
        "mtls.backends[0].conf.cert",
        &["not a valid PEM certificate"],
    )
    .await;
    let (s, b) = api
        .put("/meshes/prov", &m("good-cert", "missing-key"))
        .await
        .expect("put");
    assert_eq!(s, 400);
    let fields: Vec<&str> = b["invalid_parameters"]
        .as_array()
        .expect("params")
        .iter()
        .map(|p| p["field"].as_str().expect("field"))
        .collect();
    assert_eq!(
        fields,
        ["mtls.backends[0].conf.cert", "mtls.backends[0].conf.key"],
        "a load failure is reported on both, as Kuma: {b}"
    );

    // A valid root + intermediate chain is accepted, and its Secrets are then protected.
    assert_eq!(
        accepted(&api, &m("good-cert", "good-key")).await,
        Vec::<String>::new()
    );
    let (stored, _) = get_with_version(&api, "/meshes/prov")
        .await
        .expect("stored");
    assert_eq!(stored["mtls"], m("good-cert", "good-key")["mtls"]);
    for s in ["good-cert", "good-key"] {
        let (status, b) = api
            .delete(&format!("/meshes/prov/secrets/{s}"))
            .await
            .expect("delete");
        assert_eq!(status, 400, "{b}");
        assert_eq!(
            b["invalid_parameters"][0]["reason"],
            format!(
                "The secret \"{s}\" that you are trying to remove is currently in use in Mesh \"prov\" in mTLS backend \"ca-1\". Please remove the reference from the \"ca-1\" backend before removing the secret."
            )
        );
    }
    // The other, unused Secrets can go.
    let (status, _) = api
        .delete("/meshes/prov/secrets/not-ca-cert")
        .await
        .expect("delete");
    assert_eq!(status, 200);
}

// ---------------------------------------------------------------------------------------------
// Graceful shutdown during a validation
// ---------------------------------------------------------------------------------------------

/// True when some socket on this host is connected to 127.0.0.1:`port` (from /proc/net/tcp).
fn connected_to(port: u16) -> bool {
    let remote = format!("0100007F:{port:04X}");
    std::fs::read_to_string("/proc/net/tcp")
        .unwrap_or_default()
        .lines()
        .skip(1)
        .any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3 && f[2] == remote && f[3] == "01"
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_an_in_flight_validation_answer_and_stores_nothing() {
    let bao = OpenBao::start_dev().await.expect("openbao");
    let seed = bao.seed_setup("default").await.expect("seed steps 1-4");
    let db = meshplane_tests::migrated_db().await.expect("database");
    let mut g = Global::start(Store::Postgres(db.url.clone()), &[])
        .await
        .expect("global");
    let api = g.api.clone();
    put_secret(&api, "default", "vault-token", seed.token.as_bytes()).await;
    let good = mesh(
        "default",
        "vault-1",
        vec![vault_backend("vault-1", &bao.addr, &seed)],
    );
    accepted(&api, &good).await;
    let before = get_with_version(&api, "/meshes/default").await;
    let port: u16 = bao
        .addr
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port");

    // Vault stops answering (its socket still accepts): the validation waits on it.
    bao.signal("STOP").expect("stop openbao");
    let mut update = good.clone();
    update["mtls"]["backends"][0]["dpCert"]["rotation"]["expiration"] = json!("3h");
    let in_flight = {
        let api = api.clone();
        tokio::spawn(async move { api.put("/meshes/default", &update).await })
    };
    eventually(
        Duration::from_secs(30),
        "global to be waiting on Vault",
        || async { connected_to(port).then_some(()) },
    )
    .await
    .expect("validation in flight");
    g.proc.signal("TERM").expect("SIGTERM");

    // The request in flight still gets its answer: Vault did not answer, nothing written.
    let (s, b) = in_flight
        .await
        .expect("task")
        .expect("an answer, not a dropped connection");
    assert_eq!(s, 400, "{b}");
    assert_eq!(b["invalid_parameters"][0]["field"], "mtls.backends[0].conf");
    let reason = b["invalid_parameters"][0]["reason"].as_str().unwrap_or("");
    assert!(
        reason.contains(&format!("Vault at {} did not answer in time", bao.addr)),
        "{reason}"
    );
    assert_eq!(
        g.proc.wait(Duration::from_secs(60)).await.expect("exits"),
        Some(0),
        "clean exit after SIGTERM"
    );
    bao.signal("CONT").expect("resume openbao");
    g.launch().await.expect("restart");
    assert_eq!(get_with_version(&g.api, "/meshes/default").await, before);
}
