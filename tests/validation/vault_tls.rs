//! Vault's TLS trust, serverName, skipVerify and client-certificate auth, and SIGTERM during a validation.

use super::common::*;

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

/// True when some socket on this host is connected to 127.0.0.1:`port` (from /proc/net/tcp).
pub(crate) fn connected_to(port: u16) -> bool {
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
