//! The vault backend over TLS against a real OpenBao 2.7.2 config-file server (TLS listener with a
//! generated CA, cert auth enabled): which certificates are trusted, `skipVerify`, `serverName`,
//! and TLS-certificate auth with its token renewed over the same client identity.
#![allow(clippy::unwrap_used, reason = "a panic is how a test reports failure")]

mod vault_util;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use meshplane_ca::vault::VaultCa;
use meshplane_core::{
    ca::{CaBackend, CaError},
    model::{
        DataSource,
        mesh::{VaultAuth, VaultTls, VaultTlsAuth},
    },
    validation::Violation,
};
use meshplane_test_support::{
    openbao::{OpenBao, SeedPki},
    tls::TestCa,
};
use reqwest::Method;
use vault_util::*;

async fn setup() -> (OpenBao, SeedPki, Secrets) {
    let bao = OpenBao::start_tls().await.unwrap();
    let seed = bao.seed_setup(MESH).await.unwrap();
    let secrets = Secrets::default();
    secrets.put("vault-token", &seed.token);
    (bao, seed, secrets)
}

fn only_violation(r: Result<Vec<String>, meshplane_core::ValidationError>) -> Violation {
    let e = r.unwrap_err();
    assert_eq!(e.violations.len(), 1, "{e}");
    e.violations.into_iter().next().unwrap()
}

fn tls(ca: Option<&str>, skip_verify: bool, server_name: Option<&str>) -> Option<VaultTls> {
    Some(VaultTls {
        ca_cert: ca.map(|c| DataSource::InlineString(c.into())),
        skip_verify: Some(skip_verify),
        server_name: server_name.map(str::to_string),
    })
}

#[tokio::test]
async fn trust_comes_from_ca_cert_and_nothing_else() {
    let (bao, seed, secrets) = setup().await;
    let vault = VaultCa::new();
    let ca = bao.ca_pem.clone().unwrap();
    let req = request(tags(&[("kuma.io/service", "web")]));

    let mut conf = from_cp(&bao.addr);
    conf.tls = ca_cert(&ca);
    let b = backend(conf);
    vault.validate(&secrets.ca(), &b).await.unwrap();
    let cert = vault.issue(&secrets.ca(), &b, &req).await.unwrap();
    let roots = vault.root_certs(&secrets.ca(), &b).await.unwrap();
    assert_eq!(ders(&roots.concat()), ders(&seed.root_pem));
    verify(&cert.cert_pem, &roots);

    // No caCert: the platform's roots do not know the test CA.
    let b = backend(from_cp(&bao.addr));
    let v = only_violation(vault.validate(&secrets.ca(), &b).await);
    let prefix = format!(
        "Vault at {} presented a certificate that is not trusted: ",
        bao.addr
    );
    assert!(v.reason.starts_with(&prefix), "{}", v.reason);
    let err = vault.issue(&secrets.ca(), &b, &req).await.unwrap_err();
    assert!(matches!(err, CaError::Config { .. }), "{err:?}");
    assert!(err.message().starts_with(&prefix), "{err}");

    // A caCert that is not PEM is reported on its field.
    let mut conf = from_cp(&bao.addr);
    conf.tls = ca_cert("not a certificate");
    let v = only_violation(vault.validate(&secrets.ca(), &backend(conf)).await);
    assert_eq!(v.field, "fromCp.tls.caCert");

    // http:// against the TLS listener.
    let plain = bao.addr.replace("https://", "http://");
    let v = only_violation(
        vault
            .validate(&secrets.ca(), &backend(from_cp(&plain)))
            .await,
    );
    assert_eq!(
        v.reason,
        format!(
            "Vault at {plain} serves HTTPS but the address says http://: Client sent an HTTP request to an HTTPS server."
        )
    );
}

#[tokio::test]
async fn skip_verify_connects_and_warns() {
    let (bao, seed, secrets) = setup().await;
    let logs = LogCapture::start();
    let mut conf = from_cp(&bao.addr);
    conf.tls = tls(None, true, None);
    let b = backend(conf);
    let vault = VaultCa::new();
    vault.validate(&secrets.ca(), &b).await.unwrap();
    vault
        .issue(
            &secrets.ca(),
            &b,
            &request(tags(&[("kuma.io/service", "web")])),
        )
        .await
        .unwrap();
    let text = logs.text();
    let warn = text
        .lines()
        .find(|l| l.contains("WARN") && l.contains("tls.skipVerify is set"))
        .unwrap_or_else(|| panic!("no skipVerify warning in:\n{text}"));
    assert!(
        warn.contains("mesh=\"default\"") && warn.contains("backend=\"vault-1\""),
        "{warn}"
    );
    assert!(
        !text.contains(&seed.token),
        "the token leaked into the logs"
    );
}

#[tokio::test]
async fn server_name_sets_the_name_checked_against_the_certificate() {
    let (bao, _seed, secrets) = setup().await;
    let vault = VaultCa::new();
    let ca = bao.ca_pem.clone().unwrap();
    // The address is the IP; the certificate also names `localhost`.
    let mut conf = from_cp(&bao.addr);
    conf.tls = tls(Some(&ca), false, Some("localhost"));
    vault.validate(&secrets.ca(), &backend(conf)).await.unwrap();

    // An IP serverName is checked against the certificate's IP SANs.
    let by_name = bao.addr.replace("127.0.0.1", "localhost");
    let mut conf = from_cp(&by_name);
    conf.tls = tls(Some(&ca), false, Some("127.0.0.1"));
    vault.validate(&secrets.ca(), &backend(conf)).await.unwrap();
    let mut conf = from_cp(&by_name);
    conf.tls = tls(Some(&ca), false, Some("10.0.0.1"));
    let v = only_violation(vault.validate(&secrets.ca(), &backend(conf)).await);
    assert!(v.reason.contains("not trusted"), "{}", v.reason);

    let mut conf = from_cp(&bao.addr);
    conf.tls = tls(Some(&ca), false, Some("wrong.example"));
    let v = only_violation(vault.validate(&secrets.ca(), &backend(conf)).await);
    assert!(
        v.reason.starts_with(&format!(
            "Vault at {} presented a certificate that is not trusted: ",
            bao.addr
        )) && v.reason.contains("wrong.example"),
        "{}",
        v.reason
    );
}

#[tokio::test]
async fn cert_auth_logs_in_issues_and_renews_over_the_same_identity() {
    let (bao, _seed, secrets) = setup().await;
    // Short-lived cert-auth tokens, so renewal happens within the test.
    bao.cert_role(MESH, "6s", "1m").await.unwrap();
    let client = bao.client.clone().unwrap();
    secrets.put("client-key", &client.key_pem);
    secrets.put("client-cert", &client.cert_pem);
    let mut conf = from_cp(&bao.addr);
    conf.tls = ca_cert(bao.ca_pem.as_ref().unwrap());
    conf.auth = Some(VaultAuth::Tls(VaultTlsAuth {
        client_key: DataSource::Secret("client-key".into()),
        client_cert: DataSource::Secret("client-cert".into()),
    }));
    let b = backend(conf);
    let vault = VaultCa::new();
    vault.validate(&secrets.ca(), &b).await.unwrap();
    let req = request(tags(&[("kuma.io/service", "web")]));
    let cert = vault.issue(&secrets.ca(), &b, &req).await.unwrap();
    verify(
        &cert.cert_pem,
        &vault.root_certs(&secrets.ca(), &b).await.unwrap(),
    );
    assert!(vault.token_time_to_expiry(MESH, "vault-1").unwrap() <= Duration::from_secs(6));

    tokio::time::sleep(Duration::from_secs(9)).await;
    vault.issue(&secrets.ca(), &b, &req).await.unwrap();

    // Exactly one live cert-auth token: validation revoked its own, and the backend's session
    // renewed its token (renew-self works only with the client cert on the connection).
    let accessors = bao
        .request(
            Method::from_bytes(b"LIST").unwrap(),
            "auth/token/accessors",
            None,
        )
        .await
        .unwrap();
    let (mut renewed, mut live) = (0, 0);
    for a in accessors["data"]["keys"].as_array().unwrap() {
        let info = bao
            .request(
                Method::POST,
                "auth/token/lookup-accessor",
                Some(serde_json::json!({ "accessor": a })),
            )
            .await
            .unwrap();
        let d = &info["data"];
        if d["path"] == "auth/cert/login" {
            live += 1;
        }
        if d["path"] == "auth/cert/login" && !d["last_renewal_time"].is_null() {
            assert_eq!(d["meta"]["cert_name"], "cp", "{d}");
            renewed += 1;
        }
    }
    assert_eq!(
        (live, renewed),
        (1, 1),
        "one renewed cert-auth token expected"
    );
}

/// A TLS listener that records each ClientHello's SNI and answers every request like a sealed
/// Vault, so a request can be seen to complete.
struct SniRecorder {
    cert: Arc<rustls::sign::CertifiedKey>,
    seen: Arc<Mutex<Vec<Option<String>>>>,
}

impl std::fmt::Debug for SniRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SniRecorder")
    }
}

impl rustls::server::ResolvesServerCert for SniRecorder {
    fn resolve(
        &self,
        hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        self.seen
            .lock()
            .unwrap()
            .push(hello.server_name().map(str::to_string));
        Some(self.cert.clone())
    }
}

async fn sni_listener(ca: &TestCa) -> (String, Arc<Mutex<Vec<Option<String>>>>) {
    let server = ca
        .server_cert(&["localhost"], &[std::net::IpAddr::from([127, 0, 0, 1])])
        .unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let cert = rustls::pki_types::CertificateDer::from(ders(&server.cert_pem).remove(0));
    let key = meshplane_ca::pem_util::parse_private_key(server.key_pem.as_bytes()).unwrap();
    let signer = provider.key_provider.load_private_key(key).unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let resolver = SniRecorder {
        cert: Arc::new(rustls::sign::CertifiedKey::new(vec![cert], signer)),
        seen: seen.clone(),
    };
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = vec![0u8; 16 * 1024];
                let _ = tls.read(&mut buf).await;
                let body = r#"{"errors":["Vault is sealed"]}"#;
                let resp = format!(
                    "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(resp.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (format!("https://127.0.0.1:{port}"), seen)
}

#[tokio::test]
async fn server_name_is_sent_as_sni() {
    let ca = TestCa::new("SNI test CA").unwrap();
    let (addr, seen) = sni_listener(&ca).await;
    let secrets = Secrets::default();
    secrets.put("vault-token", "s.token");
    let vault = VaultCa::new();

    let mut conf = from_cp(&addr);
    conf.tls = tls(Some(ca.cert_pem()), false, Some("localhost"));
    let v = only_violation(vault.validate(&secrets.ca(), &backend(conf)).await);
    assert_eq!(v.reason, format!("Vault at {addr} is sealed"));
    assert!(
        seen.lock()
            .unwrap()
            .iter()
            .all(|s| s.as_deref() == Some("localhost")),
        "{:?}",
        seen.lock().unwrap()
    );

    // Without serverName the IP address is dialled and, per RFC 6066, no SNI is sent.
    seen.lock().unwrap().clear();
    let mut conf = from_cp(&addr);
    conf.tls = ca_cert(ca.cert_pem());
    let v = only_violation(vault.validate(&secrets.ca(), &backend(conf)).await);
    assert_eq!(v.reason, format!("Vault at {addr} is sealed"));
    assert!(
        seen.lock().unwrap().iter().all(Option::is_none),
        "{:?}",
        seen.lock().unwrap()
    );
}
