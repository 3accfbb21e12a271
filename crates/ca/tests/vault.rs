//! The vault backend with token auth against real OpenBao 2.7.2 dev servers set up by the Kong Mesh
//! page's steps 1–4: leaves judged by `openssl`, the commonName template, CSR mode, renewal, dead
//! tokens, and every validation message a user can meet. Each test runs its own server.
#![allow(clippy::unwrap_used, reason = "a panic is how a test reports failure")]

mod vault_util;

use std::time::Duration;

use meshplane_ca::vault::VaultCa;
use meshplane_core::{
    ca::{CaBackend, CaError},
    model::{
        DataSource,
        mesh::{CsrConf, KeyType, VaultAuth},
    },
    validation::Violation,
};
use meshplane_test_support::{
    openbao::{OpenBao, SeedPki, TokenSpec},
    process::free_port,
};
use vault_util::*;

async fn setup() -> (OpenBao, SeedPki, Secrets) {
    let bao = OpenBao::start_dev().await.unwrap();
    let seed = bao.seed_setup(MESH).await.unwrap();
    let secrets = Secrets::default();
    secrets.put("vault-token", &seed.token);
    (bao, seed, secrets)
}

/// A 403 on a path with a live token: the policy (or the pki/role names) is to blame.
fn denied(addr: &str, path: &str) -> String {
    format!(
        "Vault at {addr} denied {path} to the token (check the pki and role names, and that the \
         token's policy grants create/update on that path): permission denied"
    )
}

fn only_violation(r: Result<Vec<String>, meshplane_core::ValidationError>) -> Violation {
    let e = r.unwrap_err();
    assert_eq!(e.violations.len(), 1, "{e}");
    e.violations.into_iter().next().unwrap()
}

#[tokio::test]
async fn token_auth_issues_a_kuma_leaf_that_verifies_against_the_mount_root() {
    let (bao, seed, secrets) = setup().await;
    let vault = VaultCa::new();
    let b = backend(from_cp(&bao.addr));
    // The seed's role writes key_usage with a 'KeyUsage' prefix, which OpenBao ignores: validation
    // accepts the backend but warns that its leaves carry no KeyUsage extension.
    let warnings = vault.validate(&secrets.ca(), &b).await.unwrap();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("without a KeyUsage extension")
                && w.contains("DigitalSignature,KeyAgreement,KeyEncipherment")),
        "{warnings:?}"
    );

    let req = request(tags(&[
        ("kuma.io/service", "web"),
        ("kuma.io/zone", "east"),
        ("version", "v1"),
    ]));
    let cert = vault.issue(&secrets.ca(), &b, &req).await.unwrap();
    assert_eq!(ders(&cert.cert_pem).len(), 1, "cert_pem is the leaf only");
    let text = x509_text(&cert.cert_pem);
    assert!(
        text.contains(
            "URI:spiffe://default/web, URI:kuma://kuma.io/service/web, URI:kuma://kuma.io/zone/east, URI:kuma://version/v1"
        ),
        "{text}"
    );
    assert!(
        text.contains("TLS Web Server Authentication, TLS Web Client Authentication"),
        "{text}"
    );
    assert!(!text.contains("DNS:"), "{text}");
    assert!(cert.key_pem.contains("PRIVATE KEY"));
    let lifetime = cert.not_after - cert.not_before;
    assert!(
        lifetime.num_seconds() >= 3600 && lifetime.num_seconds() <= 3600 + 60,
        "{lifetime}"
    );

    let roots = vault.root_certs(&secrets.ca(), &b).await.unwrap();
    assert_eq!(roots.len(), 1);
    assert_eq!(ders(&roots[0]), ders(&seed.root_pem));
    assert_eq!(ders(&cert.chain_pem.concat()), ders(&seed.root_pem));
    verify(&cert.cert_pem, &roots);

    // The seed's token is renewable with a 32-day TTL: known after the first call.
    let left = vault.token_time_to_expiry(MESH, "vault-1").unwrap();
    assert!(left > Duration::from_secs(31 * 24 * 3600), "{left:?}");
}

#[tokio::test]
async fn common_name_template_replaces_underscores() {
    let (bao, _seed, secrets) = setup().await;
    let vault = VaultCa::new();
    let mut conf = from_cp(&bao.addr);
    conf.common_name = cn(r#"{{ tag "kuma.io/service" | replace "_" "-" }}.mesh"#);
    let b = backend(conf);
    vault.validate(&secrets.ca(), &b).await.unwrap();
    let cert = vault
        .issue(
            &secrets.ca(),
            &b,
            &request(tags(&[("kuma.io/service", "my_backend")])),
        )
        .await
        .unwrap();
    let text = x509_text(&cert.cert_pem);
    assert!(text.contains("Subject: CN = my-backend.mesh"), "{text}");
    // exclude_cn_from_sans: the CN is not repeated as a DNS SAN.
    assert!(!text.contains("DNS:"), "{text}");
    assert!(text.contains("URI:spiffe://default/my_backend"), "{text}");
}

#[tokio::test]
async fn a_common_name_the_role_forbids_is_a_config_error_with_vaults_text() {
    let (bao, _seed, secrets) = setup().await;
    let vault = VaultCa::new();
    let mut conf = from_cp(&bao.addr);
    conf.common_name = cn(r#"{{ tag "kuma.io/service" }}.example.com"#);
    let b = backend(conf);
    let err = vault
        .issue(
            &secrets.ca(),
            &b,
            &request(tags(&[("kuma.io/service", "x")])),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, CaError::Config { .. }), "{err:?}");
    assert_eq!(
        err.message(),
        format!(
            "Vault at {} refused the common name \"x.example.com\": common name x.example.com not allowed by this role",
            bao.addr
        )
    );
    let v = only_violation(vault.validate(&secrets.ca(), &b).await);
    assert_eq!(v.field, "");
    assert_eq!(
        v.reason,
        format!(
            "Vault at {} refused the common name \"meshplane-validation.example.com\": common name meshplane-validation.example.com not allowed by this role",
            bao.addr
        )
    );
}

#[tokio::test]
async fn csr_mode_keeps_the_key_local_and_needs_the_sign_policy() {
    let (bao, seed, secrets) = setup().await;
    let vault = VaultCa::new();
    let mut conf = from_cp(&bao.addr);
    conf.csr = Some(CsrConf {
        key_type: Some(KeyType::Rsa),
        key_bits: Some(2048),
    });
    let b = backend(conf.clone());

    // The seed's token may only issue: Vault's policy denial is reported as such.
    let err = vault
        .issue(
            &secrets.ca(),
            &b,
            &request(tags(&[("kuma.io/service", "web")])),
        )
        .await
        .unwrap_err();
    assert_eq!(
        err.message(),
        denied(&bao.addr, "kmesh-pki-default/sign/dataplane-proxies")
    );

    let token = bao
        .create_token(TokenSpec {
            policies: &[&seed.policy, &seed.sign_policy],
            ..Default::default()
        })
        .await
        .unwrap();
    secrets.put("vault-token", &token);
    vault.validate(&secrets.ca(), &b).await.unwrap();
    let cert = vault
        .issue(
            &secrets.ca(),
            &b,
            &request(tags(&[("kuma.io/service", "web")])),
        )
        .await
        .unwrap();
    assert!(cert.key_pem.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
    let (ok, cert_pub) = openssl(
        &["x509", "-pubkey", "-noout", "-in", "c.pem"],
        &[("c.pem", &cert.cert_pem)],
    );
    assert!(ok, "{cert_pub}");
    let (ok, key_pub) = openssl(
        &["pkey", "-pubout", "-in", "k.pem"],
        &[("k.pem", &cert.key_pem)],
    );
    assert!(ok, "{key_pub}");
    assert_eq!(cert_pub, key_pub, "the certificate carries the local key");
    let text = x509_text(&cert.cert_pem);
    assert!(
        text.contains("URI:spiffe://default/web, URI:kuma://kuma.io/service/web"),
        "{text}"
    );
    verify(
        &cert.cert_pem,
        &vault.root_certs(&secrets.ca(), &b).await.unwrap(),
    );

    // The seed role's key type is rsa: an EC CSR is refused with Vault's reason.
    conf.csr = Some(CsrConf {
        key_type: Some(KeyType::Ec),
        key_bits: Some(256),
    });
    let v = only_violation(vault.validate(&secrets.ca(), &backend(conf)).await);
    assert!(
        v.reason.ends_with("role requires keys of type rsa"),
        "{}",
        v.reason
    );
}

#[tokio::test]
async fn validation_messages_name_what_to_fix() {
    let (bao, _seed, secrets) = setup().await;
    let vault = VaultCa::new();
    let addr = &bao.addr;
    let check = async |conf, want: String| {
        let v = only_violation(vault.validate(&secrets.ca(), &backend(conf)).await);
        assert_eq!((v.field.as_str(), v.reason.as_str()), ("", want.as_str()));
    };

    // The seed's policy grants one path only, so a wrong role or mount is first a denial.
    let mut c = from_cp(addr);
    c.role = "x".into();
    check(c, denied(addr, "kmesh-pki-default/issue/x")).await;

    // With a token that may use any path, Vault says what is missing.
    secrets.put("root-token", "root");
    let root = || {
        let mut c = from_cp(addr);
        c.auth = Some(VaultAuth::Token(DataSource::Secret("root-token".into())));
        c
    };
    let mut c = root();
    c.role = "x".into();
    check(
        c,
        format!(
            "Vault at {addr} has no role \"x\" in mount \"kmesh-pki-default\": unknown role: x"
        ),
    )
    .await;

    let mut c = root();
    c.pki = "nope".into();
    check(c, format!("Vault at {addr} has no PKI mount \"nope\" (or the namespace is wrong): no handler for route \"nope/issue/dataplane-proxies\". route entry not found.")).await;

    bao.create_namespace("team1").await.unwrap();
    let mut c = from_cp(addr);
    c.namespace = Some("other".into());
    check(c, format!("Vault at {addr} namespace \"other\" not found")).await;

    secrets.put("garbage", "s.notatoken");
    let mut c = from_cp(addr);
    c.auth = Some(VaultAuth::Token(DataSource::Secret("garbage".into())));
    check(
        c,
        format!("Vault at {addr} rejected the token: permission denied"),
    )
    .await;

    let closed = format!("http://127.0.0.1:{}", free_port());
    check(
        from_cp(&closed),
        format!("could not reach Vault at {closed}: connection refused"),
    )
    .await;

    // A DataSource that cannot be loaded is reported on its own field.
    let mut c = from_cp(addr);
    c.auth = Some(VaultAuth::Token(DataSource::Secret("missing".into())));
    let v = only_violation(vault.validate(&secrets.ca(), &backend(c)).await);
    assert_eq!(v.field, "fromCp.auth.token");
    assert_eq!(v.reason, "secret \"missing\" not found in mesh \"default\"");
}

#[tokio::test]
async fn namespaces_are_sent_on_every_call() {
    let bao = OpenBao::start_dev().await.unwrap();
    bao.create_namespace("team1").await.unwrap();
    let seed = bao.seed_setup_in(Some("team1"), MESH).await.unwrap();
    let secrets = Secrets::default();
    secrets.put("vault-token", &seed.token);
    let vault = VaultCa::new();
    let mut conf = from_cp(&bao.addr);
    conf.namespace = Some("team1".into());
    let b = backend(conf);
    vault.validate(&secrets.ca(), &b).await.unwrap();
    let cert = vault
        .issue(
            &secrets.ca(),
            &b,
            &request(tags(&[("kuma.io/service", "web")])),
        )
        .await
        .unwrap();
    verify(
        &cert.cert_pem,
        &vault.root_certs(&secrets.ca(), &b).await.unwrap(),
    );
    // Without the namespace the mount does not exist at the root.
    let v = only_violation(
        vault
            .validate(&secrets.ca(), &backend(from_cp(&bao.addr)))
            .await,
    );
    assert_eq!(
        v.reason,
        denied(&bao.addr, "kmesh-pki-default/issue/dataplane-proxies")
    );
}

#[tokio::test]
async fn a_sealed_vault_is_transient_and_recovers() {
    let (mut bao, _seed, secrets) = setup().await;
    let vault = VaultCa::new();
    let b = with_request_timeout(backend(from_cp(&bao.addr)), "2s");
    let req = request(tags(&[("kuma.io/service", "web")]));
    vault.issue(&secrets.ca(), &b, &req).await.unwrap();

    bao.seal().await.unwrap();
    let err = vault.issue(&secrets.ca(), &b, &req).await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert_eq!(err.message(), format!("Vault at {} is sealed", bao.addr));
    let v = only_violation(vault.validate(&secrets.ca(), &b).await);
    assert_eq!(v.reason, format!("Vault at {} is sealed", bao.addr));

    bao.unseal().await.unwrap();
    vault.issue(&secrets.ca(), &b, &req).await.unwrap();
}

#[tokio::test]
async fn an_unreachable_vault_is_transient() {
    let secrets = Secrets::default();
    secrets.put("vault-token", "s.whatever");
    let addr = format!("http://127.0.0.1:{}", free_port());
    let b = with_request_timeout(backend(from_cp(&addr)), "1s");
    let err = VaultCa::new()
        .issue(
            &secrets.ca(),
            &b,
            &request(tags(&[("kuma.io/service", "web")])),
        )
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert_eq!(
        err.message(),
        format!("could not reach Vault at {addr}: connection refused")
    );
}

#[tokio::test]
async fn a_short_lived_token_is_kept_renewed() {
    let (bao, seed, secrets) = setup().await;
    let token = bao
        .create_token(TokenSpec {
            policies: &[&seed.policy],
            ttl: "6s",
            explicit_max_ttl: "60s",
            renewable: Some(true),
            ..Default::default()
        })
        .await
        .unwrap();
    secrets.put("vault-token", &token);
    let vault = VaultCa::new();
    let b = backend(from_cp(&bao.addr));
    let req = request(tags(&[("kuma.io/service", "web")]));
    vault.issue(&secrets.ca(), &b, &req).await.unwrap();
    assert!(vault.token_time_to_expiry(MESH, "vault-1").unwrap() <= Duration::from_secs(6));

    tokio::time::sleep(Duration::from_secs(10)).await;
    let info = bao.lookup_token(&token).await.unwrap();
    assert!(
        !info["last_renewal_time"].is_null(),
        "token was not renewed: {info}"
    );
    assert!(info["ttl"].as_u64().unwrap() > 0, "{info}");
    vault.issue(&secrets.ca(), &b, &req).await.unwrap();
    let left = vault.token_time_to_expiry(MESH, "vault-1").unwrap();
    assert!(
        left > Duration::ZERO && left <= Duration::from_secs(6),
        "{left:?}"
    );
}

#[tokio::test]
async fn an_expired_token_is_rejected_and_a_rotated_secret_takes_over() {
    let (bao, seed, secrets) = setup().await;
    let short = bao
        .create_token(TokenSpec {
            policies: &[&seed.policy],
            ttl: "2s",
            renewable: Some(false),
            ..Default::default()
        })
        .await
        .unwrap();
    secrets.put("vault-token", &short);
    let vault = VaultCa::new();
    let b = backend(from_cp(&bao.addr));
    let req = request(tags(&[("kuma.io/service", "web")]));
    vault.issue(&secrets.ca(), &b, &req).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;

    let err = vault.issue(&secrets.ca(), &b, &req).await.unwrap_err();
    assert!(matches!(err, CaError::Config { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "mesh \"default\" backend \"vault-1\": Vault at {} rejected the token: permission denied",
            bao.addr
        )
    );
    assert!(!err.to_string().contains(&short));
    let v = only_violation(vault.validate(&secrets.ca(), &b).await);
    assert_eq!(
        v.reason,
        format!(
            "Vault at {} rejected the token: permission denied",
            bao.addr
        )
    );

    // The user rotates the Secret: the next issue reads it and works.
    secrets.put("vault-token", &seed.token);
    vault.issue(&secrets.ca(), &b, &req).await.unwrap();
}

#[tokio::test]
async fn through_a_vault_agent_no_token_is_sent() {
    let (bao, seed, secrets) = setup().await;
    let agent = start_agent(&bao.addr, &seed.token).await;
    let mut conf = from_cp("https://vault.invalid:8200");
    conf.agent_address = Some(agent.url.clone());
    conf.auth = None;
    let b = backend(conf);
    let vault = VaultCa::new();
    vault.validate(&secrets.ca(), &b).await.unwrap();
    let cert = vault
        .issue(
            &secrets.ca(),
            &b,
            &request(tags(&[("kuma.io/service", "web")])),
        )
        .await
        .unwrap();
    verify(
        &cert.cert_pem,
        &vault.root_certs(&secrets.ca(), &b).await.unwrap(),
    );
    use std::sync::atomic::Ordering;
    assert!(agent.requests.load(Ordering::SeqCst) >= 4);
    assert_eq!(agent.client_tokens.load(Ordering::SeqCst), 0);
    assert_eq!(vault.token_time_to_expiry(MESH, "vault-1"), None);
}

#[tokio::test]
async fn a_ttl_vault_caps_is_accepted_with_a_warning() {
    let (bao, _seed, secrets) = setup().await;
    // The root token never expires: used as is, nothing to renew.
    secrets.put("vault-token", &bao.root_token);
    let logs = LogCapture::start();
    let vault = VaultCa::new();
    let b = backend(from_cp(&bao.addr));
    let mut req = request(tags(&[("kuma.io/service", "web")]));
    req.validity = Duration::from_secs(1000 * 3600);
    let cert = vault.issue(&secrets.ca(), &b, &req).await.unwrap();
    let lifetime = cert.not_after - cert.not_before;
    assert!(
        lifetime.num_hours() <= 721,
        "capped at the role's max_ttl: {lifetime}"
    );
    let text = logs.text();
    let warn = text
        .lines()
        .find(|l| l.contains("WARN") && l.contains("capped the certificate's TTL"))
        .unwrap_or_else(|| panic!("no TTL warning in:\n{text}"));
    assert!(
        warn.contains("mesh=\"default\"") && warn.contains("backend=\"vault-1\""),
        "{warn}"
    );
    assert_eq!(vault.token_time_to_expiry(MESH, "vault-1"), None);
}
