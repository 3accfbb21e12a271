//! Security end to end: the API refuses writes and Secret reads without a user token (when loopback
//! is not trusted), a PostgreSQL dump reveals no secret, no log line of a whole running system
//! carries a token or key it used, and a Mesh with dataplanes is not deleted by accident; who counts
//! as the loopback admin is in `loopback.rs`, bad server certificates in `server_certs.rs`.

use std::time::Duration;

use base64::Engine;
use meshplane_test_support::openbao::OpenBao;
use meshplane_tests::{Agent, Global, Store, Zone, eventually, meshctl, migrated_db, run};
use serde_json::json;

mod loopback;
mod server_certs;

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_trusted_loopback_writes_and_secret_reads_need_a_user_token() {
    let db = migrated_db().await.expect("db");
    // Replica a trusts its local admin (to bootstrap a token); replica b trusts nobody.
    let a = Global::start(Store::Postgres(db.url.clone()), &[])
        .await
        .expect("a");
    let b = Global::start(
        Store::Postgres(db.url.clone()),
        &["--api-localhost-is-admin=false"],
    )
    .await
    .expect("b");
    let token = a
        .api
        .token("/tokens/user", &json!({"name": "alice", "validFor": "1h"}))
        .await
        .expect("user token");

    let (s, _) = b.api.get("/meshes").await.expect("get");
    assert_eq!(s, 200, "anonymous reads of non-secret resources stay open");
    let (s, body) = b
        .api
        .put("/meshes/m1", &json!({"type": "Mesh", "name": "m1"}))
        .await
        .expect("put");
    assert_eq!(s, 401, "{body}");
    assert_eq!(body["title"], "Unauthenticated", "{body}");
    let (s, _) = b.api.get("/meshes/default/secrets").await.expect("secrets");
    assert_eq!(s, 401, "Secret listings need a token");
    let (s, _) = b
        .api
        .post("/tokens/zone", &json!({"zone": "x", "validFor": "1h"}))
        .await
        .expect("token");
    assert_eq!(s, 401, "issuing tokens needs a token");

    let authed = |m: reqwest::Method, p: &str| b.api.request(m, p).bearer_auth(&token);
    let r = authed(reqwest::Method::PUT, "/meshes/m1")
        .json(&json!({"type": "Mesh", "name": "m1"}))
        .send()
        .await
        .expect("put");
    assert_eq!(r.status().as_u16(), 201);
    let r = authed(reqwest::Method::GET, "/meshes/default/secrets")
        .send()
        .await
        .expect("get");
    assert_eq!(r.status().as_u16(), 200);
    let r = b
        .api
        .request(reqwest::Method::PUT, "/meshes/m2")
        .bearer_auth("not-a-token")
        .json(&json!({"type": "Mesh", "name": "m2"}))
        .send()
        .await
        .expect("put");
    assert_eq!(r.status().as_u16(), 401);

    // meshctl sends MESHCTL_AUTH_TOKEN; a revoked token stops working.
    let out = tokio::process::Command::new(meshplane_test_support::process::bin("meshctl"))
        .args(["--api-url", &b.api.base, "get", "secrets"])
        .env("MESHCTL_AUTH_TOKEN", &token)
        .output()
        .await
        .expect("meshctl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (s, _) = a
        .api
        .post(
            "/tokens/revocations",
            &json!({"type": "user", "token": token}),
        )
        .await
        .expect("revoke");
    assert_eq!(s, 200);
    // Revoked on replica a, refused on replica b once b's store has announced the change (NOTIFY,
    // milliseconds, but later than the revocation's answer on a busy machine): cross-replica
    // revocation is eventually consistent, so wait for it rather than race it.
    eventually(
        Duration::from_secs(30),
        "replica b to refuse the revoked token",
        || async {
            let r = authed(reqwest::Method::GET, "/meshes/default/secrets")
                .send()
                .await
                .ok()?;
            (r.status().as_u16() == 401).then_some(())
        },
    )
    .await
    .expect("revoked");
    assert!(
        !a.proc.logs().contains(&token) && !b.proc.logs().contains(&token),
        "a token reached a log"
    );
}

/// Text a log must never contain for a secret: the value itself and its base64.
fn forms(secret: &str) -> Vec<String> {
    vec![
        secret.to_string(),
        base64::engine::general_purpose::STANDARD.encode(secret),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_dump_reveals_no_secret_and_no_log_carries_a_token_or_key() {
    let bao = OpenBao::start_dev().await.expect("openbao");
    let seed = bao.seed_setup("default").await.expect("seed");
    let gdb = migrated_db().await.expect("global db");
    let zdb = migrated_db().await.expect("zone db");
    let g = Global::start(Store::Postgres(gdb.url.clone()), &[])
        .await
        .expect("global");
    let user = g
        .api
        .token("/tokens/user", &json!({"name": "ops", "validFor": "1h"}))
        .await
        .expect("user token");
    let custom = "a-very-distinctive-secret-value-42";
    for (name, value) in [("vault-token", seed.token.as_str()), ("custom", custom)] {
        let data = base64::engine::general_purpose::STANDARD.encode(value);
        let (s, b) = g
            .api
            .put(
                &format!("/meshes/default/secrets/{name}"),
                &json!({"type": "Secret", "mesh": "default", "name": name, "data": data}),
            )
            .await
            .expect("secret");
        assert!(s == 201 || s == 200, "{b}");
    }
    let mesh = json!({"type": "Mesh", "name": "default", "mtls": {"enabledBackend": "vault-1", "backends": [{"name": "vault-1", "type": "vault",
        "conf": {"fromCp": {"address": bao.addr, "pki": seed.mount, "role": seed.role, "auth": {"token": {"secret": "vault-token"}}}}}]}});
    let (s, b) = g.api.put("/meshes/default", &mesh).await.expect("mesh");
    assert!(s == 200 || s == 201, "{b}");
    let zone = Zone::start(&g, "zone-1", Store::Postgres(zdb.url.clone()), &[])
        .await
        .expect("zone");
    let zone_token =
        std::fs::read_to_string(zone.dir.path().join("zone.token")).expect("zone token");
    let dp_token = g
        .dataplane_token("default", "web-1", Some("web"))
        .await
        .expect("dp token");
    let dp = "type: Dataplane\nmesh: default\nname: web-1\nnetworking:\n  address: 127.0.0.1\n  inbound:\n    - port: 8080\n      tags:\n        kuma.io/service: web\n";
    let mut agent = Agent::start(&zone, dp, &dp_token).await.expect("agent");
    agent.wait_cert(None, WAIT).await.expect("cert");
    let key_pem = std::fs::read_to_string(agent.cert_dir.join("key.pem")).expect("key");
    // The issued key's body, one base64 line of it, is enough to recognise it anywhere.
    let key_line = key_pem
        .lines()
        .find(|l| l.len() > 40 && !l.starts_with("-----"))
        .expect("key body")
        .to_string();
    // Wait until the zone persisted the certificate and the insight reached global.
    eventually(WAIT, "the insight at global", || async {
        let (_, v) = g
            .api
            .get("/meshes/default/dataplanes/zone-1.web-1/_overview")
            .await
            .ok()?;
        v["dataplaneInsight"]["mTLS"]["issuedBackend"]
            .as_str()
            .map(|_| ())
    })
    .await
    .expect("synced");

    for (what, url) in [("global", &gdb.url), ("zone", &zdb.url)] {
        let (code, dump, err) = run("pg_dump", &["--data-only", url])
            .await
            .expect("pg_dump");
        assert_eq!(code, 0, "{err}");
        // The secret rows are there, sealed: names in the clear, specs as encryption envelopes.
        assert!(
            dump.contains("meshplaneEncrypted"),
            "the {what} dump holds no encrypted record"
        );
        if what == "global" {
            assert!(
                dump.contains("vault-token") && dump.contains("custom"),
                "the global dump has the Secret rows"
            );
        } else {
            assert!(
                dump.contains("DataplaneCertificate"),
                "the zone dump has the issued certificate's row"
            );
        }
        for f in forms(custom).into_iter().chain(forms(&seed.token)) {
            assert!(
                !dump.contains(&f),
                "the {what} database dump reveals a Secret value"
            );
        }
        assert!(
            !dump.contains(&key_line),
            "the {what} database dump reveals an issued private key"
        );
        assert!(
            !dump.contains("PRIVATE KEY"),
            "the {what} database dump holds a PEM private key"
        );
    }

    let enc_key =
        std::fs::read_to_string(meshplane_tests::encryption_key_file(&gdb.url)).expect("key file");
    let mut secrets: Vec<String> = vec![
        user.clone(),
        zone_token.trim().to_string(),
        dp_token.clone(),
        key_line.clone(),
        enc_key.trim().to_string(),
    ];
    secrets.extend(forms(custom));
    secrets.extend(forms(&seed.token));
    let logs = [
        ("global", g.proc.logs()),
        ("zone", zone.proc.logs()),
        ("agent", agent.proc.logs()),
        ("openbao-unrelated", String::new()),
    ];
    for (who, log) in &logs {
        assert!(
            !log.is_empty() || *who == "openbao-unrelated",
            "{who} logged nothing at all?"
        );
        for (i, s) in secrets.iter().enumerate() {
            assert!(
                !log.contains(s.as_str()),
                "the {who} log contains secret #{i}"
            );
        }
    }
    // And the listing never carries Secret data.
    let (_, list) = g.api.get("/meshes/default/secrets").await.expect("list");
    assert!(
        !list
            .to_string()
            .contains(&base64::engine::general_purpose::STANDARD.encode(custom)),
        "{list}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mesh_with_dataplanes_is_only_deleted_when_forced() {
    let g = Global::start(Store::Memory, &[]).await.expect("global");
    let (s, _) = g
        .api
        .put("/meshes/shop", &json!({"type": "Mesh", "name": "shop"}))
        .await
        .expect("mesh");
    assert_eq!(s, 201);
    let zone = Zone::start(&g, "zone-1", Store::Memory, &[])
        .await
        .expect("zone");
    eventually(WAIT, "the mesh at the zone", || async {
        zone.api
            .get("/meshes/shop")
            .await
            .ok()
            .filter(|(s, _)| *s == 200)
            .map(|_| ())
    })
    .await
    .expect("synced");
    let (s, b) = zone
        .api
        .put("/meshes/shop/dataplanes/dp", &json!({"type": "Dataplane", "mesh": "shop", "name": "dp", "networking": {"address": "10.0.0.1", "inbound": [{"port": 80, "tags": {"kuma.io/service": "web"}}]}}))
        .await
        .expect("dp");
    assert_eq!(s, 201, "{b}");
    eventually(WAIT, "the dataplane at global", || async {
        g.api
            .get("/meshes/shop/dataplanes/zone-1.dp")
            .await
            .ok()
            .filter(|(s, _)| *s == 200)
            .map(|_| ())
    })
    .await
    .expect("reported");
    let (s, b) = g.api.delete("/meshes/shop").await.expect("delete");
    assert_eq!(s, 400, "{b}");
    assert!(
        b.to_string()
            .contains("unable to delete mesh, there are still some dataplanes attached"),
        "{b}"
    );
    let (code, _, err) = meshctl(&g.api.base, &["delete", "mesh", "shop"], None)
        .await
        .expect("meshctl");
    assert_ne!(code, 0);
    assert!(err.contains("dataplanes attached"), "{err}");
    let (code, out, err) = meshctl(&g.api.base, &["delete", "mesh", "shop", "--force"], None)
        .await
        .expect("meshctl");
    assert_eq!(code, 0, "{out}{err}");
    let (s, _) = g.api.get("/meshes/shop").await.expect("get");
    assert_eq!(s, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_is_served_over_https_with_the_operators_certificate() {
    use meshplane_test_support::{process::free_port, tls::TestCa};
    let dir = tempfile::tempdir().expect("tmp");
    let ca = TestCa::new("API test CA").expect("ca");
    let server = ca
        .server_cert(&["localhost"], &["127.0.0.1".parse().expect("ip")])
        .expect("server cert");
    let (ca_file, cert_file, key_file) = (
        dir.path().join("ca.pem"),
        dir.path().join("api.pem"),
        dir.path().join("api.key"),
    );
    std::fs::write(&ca_file, ca.cert_pem()).expect("write");
    std::fs::write(&cert_file, &server.cert_pem).expect("write");
    std::fs::write(&key_file, &server.key_pem).expect("write");
    let port = free_port();
    let https_addr = format!("127.0.0.1:{port}");
    let g = Global::start(
        Store::Memory,
        &[
            "--api-tls-cert-file",
            cert_file.to_str().expect("utf8"),
            "--api-tls-key-file",
            key_file.to_str().expect("utf8"),
            "--api-https-addr",
            &https_addr,
        ],
    )
    .await
    .expect("global");
    let url = format!("https://localhost:{port}");
    let ca_arg = ca_file.to_str().expect("utf8");

    // meshctl trusts the operator's CA; loopback admin still applies over TLS.
    let mesh = "type: Mesh\nname: over-tls\n";
    let (code, out, err) = meshctl(&url, &["--ca-cert", ca_arg, "apply", "-f", "-"], Some(mesh))
        .await
        .expect("meshctl");
    assert_eq!(code, 0, "apply over HTTPS: {out}{err}");
    let (s, body) = g.api.get("/meshes/over-tls").await.expect("get");
    assert_eq!(s, 200, "{body}");

    // Without the CA, the certificate is refused.
    let (code, _, err) = meshctl(&url, &["get", "meshes"], None)
        .await
        .expect("meshctl");
    assert_ne!(code, 0, "an untrusted certificate must be refused");
    assert!(err.to_lowercase().contains("certificate"), "{err}");

    // An independent client verifies the chain and negotiates HTTP/2.
    let (_, out, err) = run(
        "sh",
        &[
            "-c",
            &format!(
                "echo | openssl s_client -connect {https_addr} -servername localhost \
                 -CAfile {ca_arg} -verify_return_error -alpn h2"
            ),
        ],
    )
    .await
    .expect("openssl");
    assert!(out.contains("Verify return code: 0 (ok)"), "{out}{err}");
    assert!(out.contains("ALPN protocol: h2"), "{out}{err}");

    // Plain HTTP on the HTTPS port gets no answer.
    let plain = reqwest::Client::new()
        .get(format!("http://{https_addr}/meshes"))
        .timeout(Duration::from_secs(15))
        .send()
        .await;
    assert!(
        plain.is_err(),
        "plain HTTP must not be served on the HTTPS port"
    );

    // A bad key file stops the start with the flag named.
    let (code, _, err) = run(
        meshplane_test_support::process::bin("meshplane-global")
            .to_str()
            .expect("utf8"),
        &[
            "run",
            "--store",
            "memory",
            "--api-addr",
            &format!("127.0.0.1:{}", free_port()),
            "--kds-addr",
            &format!("127.0.0.1:{}", free_port()),
            "--api-https-addr",
            &format!("127.0.0.1:{}", free_port()),
            "--work-dir",
            dir.path().to_str().expect("utf8"),
            "--api-tls-cert-file",
            cert_file.to_str().expect("utf8"),
            "--api-tls-key-file",
            ca_file.to_str().expect("utf8"),
        ],
    )
    .await
    .expect("run");
    assert_ne!(code, 0);
    assert!(err.contains("--api-tls-key-file"), "{err}");
}
