//! The builtin and provided backends end to end: secrets through a real store, leaves judged by the
//! `openssl` CLI, and every provided-CA validation rule with Kuma's exact field and reason.
#![allow(clippy::unwrap_used, reason = "a panic is how a test reports failure")]

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
    process::Command,
    sync::Arc,
    time::Duration,
};

use meshplane_ca::{
    builtin::BuiltinCa,
    leaf::{self, SigningCa},
    provided::{self, ProvidedCa},
    registry,
};
use meshplane_core::{
    ca::{CaBackend, CaError, IssuedCert, LeafRequest, MeshCa},
    datasource::StoreLoader,
    model::{
        Backend, BackendConf, BackendType, DataSource, MeshSpec, Meta, Resource, ResourceKey,
        SecretData, SecretSpec, Spec, TagSet,
        mesh::{BuiltinConf, ProvidedConf},
    },
    store::{ResourceStore, ResourceStoreExt, WriteOp, memory::MemoryStore},
    validation::Violation,
};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

const MESH: &str = "default";

// === fixtures ===

/// A memory store holding the Mesh, and a loader reading from it.
struct Env {
    store: Arc<dyn ResourceStore>,
    loader: StoreLoader,
}

impl Env {
    async fn new() -> Self {
        let store: Arc<dyn ResourceStore> = Arc::new(MemoryStore::new());
        let mesh = Resource::new(
            Meta {
                name: MESH.into(),
                ..Default::default()
            },
            Spec::Mesh(MeshSpec::default()),
        );
        store.write_one(WriteOp::create(&mesh, None)).await.unwrap();
        let loader = StoreLoader::new(store.clone());
        Self { store, loader }
    }

    fn ca(&self) -> MeshCa<'_> {
        MeshCa {
            mesh: MESH,
            loader: &self.loader,
        }
    }

    /// Stores a resource owned by the Mesh, as the manager does with `ensure`'s output.
    async fn create(&self, r: &Resource) {
        self.store
            .write_one(WriteOp::create(r, Some(ResourceKey::mesh(MESH))))
            .await
            .unwrap();
    }

    async fn put_secret(&self, name: &str, data: &[u8]) {
        let r = Resource::new(
            Meta {
                name: name.into(),
                mesh: MESH.into(),
                ..Default::default()
            },
            Spec::Secret(SecretSpec {
                data: SecretData::new(data.to_vec()),
            }),
        );
        self.create(&r).await;
    }
}

fn backend(name: &str, t: BackendType, conf: Option<BackendConf>) -> Backend {
    Backend {
        name: name.into(),
        backend_type: t,
        mode: None,
        dp_cert: None,
        root_chain: None,
        conf,
    }
}

fn provided_inline(cert: &str, key: &str) -> Backend {
    backend(
        "ca-1",
        BackendType::Provided,
        Some(BackendConf::Provided(ProvidedConf {
            cert: DataSource::InlineString(cert.into()),
            key: DataSource::InlineString(key.into()),
        })),
    )
}

fn tags() -> TagSet {
    let mut t: TagSet = BTreeMap::new();
    t.insert(
        "kuma.io/service".into(),
        BTreeSet::from(["web".into(), "api".into()]),
    );
    t.insert("kuma.io/zone".into(), BTreeSet::from(["east".into()]));
    t.insert("version".into(), BTreeSet::from(["v1".into()]));
    t
}

fn request() -> LeafRequest {
    LeafRequest {
        mesh: MESH.into(),
        dataplane: "web-1".into(),
        tags: tags(),
        validity: Duration::from_secs(24 * 3600),
    }
}

const KUMA_SANS: &str = "URI:spiffe://default/api, URI:spiffe://default/web, URI:kuma://kuma.io/service/api, URI:kuma://kuma.io/service/web, URI:kuma://kuma.io/zone/east, URI:kuma://version/v1";

/// A CA certificate made with rcgen; `shape` adjusts the params before signing.
struct TestCa {
    cert_pem: String,
    key: KeyPair,
    params: CertificateParams,
}

fn ca_params(cn: &str, shape: impl FnOnce(&mut CertificateParams)) -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Example");
    dn.push(DnType::CommonName, cn);
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p.not_before = time::OffsetDateTime::now_utc() - time::Duration::days(1);
    p.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(30);
    shape(&mut p);
    p
}

fn self_signed(key: KeyPair, shape: impl FnOnce(&mut CertificateParams)) -> TestCa {
    let params = ca_params("root", shape);
    let cert_pem = params.self_signed(&key).unwrap().pem();
    TestCa {
        cert_pem,
        key,
        params,
    }
}

fn signed_by(parent: &TestCa, key: KeyPair, shape: impl FnOnce(&mut CertificateParams)) -> TestCa {
    let params = ca_params("intermediate", shape);
    let issuer = Issuer::from_params(&parent.params, &parent.key);
    let cert_pem = params.signed_by(&key, &issuer).unwrap().pem();
    TestCa {
        cert_pem,
        key,
        params,
    }
}

fn ec_key() -> KeyPair {
    KeyPair::generate().unwrap()
}

// === openssl ===

fn openssl(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("the openssl CLI runs");
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

fn write(dir: &Path, name: &str, content: &str) {
    std::fs::write(dir.join(name), content).unwrap();
}

/// The line after a header in `openssl x509 -text` output.
fn text_after<'a>(text: &'a str, header: &str) -> &'a str {
    let mut lines = text.lines();
    while let Some(l) = lines.next() {
        if l.trim_start().starts_with(header) {
            return lines.next().unwrap_or_default().trim();
        }
    }
    panic!("{header} not in:\n{text}");
}

/// What every Kuma-profile leaf shows, whichever backend signed it.
fn assert_kuma_leaf(dir: &Path, leaf: &IssuedCert) {
    write(dir, "leaf.pem", &leaf.cert_pem);
    write(dir, "leaf.key", &leaf.key_pem);
    let (ok, text) = openssl(dir, &["x509", "-noout", "-text", "-in", "leaf.pem"]);
    assert!(ok, "{text}");
    assert_eq!(
        text_after(&text, "X509v3 Subject Alternative Name"),
        KUMA_SANS
    );
    let subject = text
        .lines()
        .find(|l| l.trim_start().starts_with("Subject:"))
        .unwrap();
    assert_eq!(subject.trim(), "Subject:", "subject must be empty");
    assert_eq!(text_after(&text, "X509v3 Basic Constraints"), "CA:FALSE");
    assert_eq!(
        text_after(&text, "X509v3 Key Usage"),
        "Digital Signature, Key Encipherment, Key Agreement"
    );
    assert_eq!(
        text_after(&text, "X509v3 Extended Key Usage"),
        "TLS Web Server Authentication, TLS Web Client Authentication"
    );
    assert!(text.contains("X509v3 Authority Key Identifier"), "{text}");
    assert!(text.contains("Public-Key: (2048 bit)"), "{text}");
    // Kuma's leaf keys are PKCS#1, and the key belongs to the certificate.
    assert!(
        leaf.key_pem
            .starts_with("-----BEGIN RSA PRIVATE KEY-----\n")
    );
    let (_, cert_mod) = openssl(dir, &["x509", "-noout", "-modulus", "-in", "leaf.pem"]);
    let (ok, key_mod) = openssl(dir, &["rsa", "-noout", "-modulus", "-in", "leaf.key"]);
    assert!(ok, "{key_mod}");
    assert_eq!(cert_mod, key_mod);
    // The reported times and serial are the certificate's own.
    let lifetime = leaf.not_after - leaf.not_before;
    assert_eq!(lifetime.num_seconds(), 24 * 3600 + 10);
    let (_, serial) = openssl(dir, &["x509", "-noout", "-serial", "-in", "leaf.pem"]);
    assert_eq!(
        serial.trim().trim_start_matches("serial=").to_lowercase(),
        leaf.serial_hex
    );
}

fn violations(e: meshplane_core::ValidationError) -> Vec<(String, String)> {
    e.violations
        .into_iter()
        .map(|Violation { field, reason, .. }| (field, reason))
        .collect()
}

fn v(field: &str, reason: &str) -> (String, String) {
    (field.into(), reason.into())
}

async fn validate_inline(cert: &str, key: &str) -> Result<(), Vec<(String, String)>> {
    let env = Env::new().await;
    let ca = env.ca();
    ProvidedCa::new()
        .validate(&ca, &provided_inline(cert, key))
        .await
        .map(|warnings| assert!(warnings.is_empty(), "{warnings:?}"))
        .map_err(violations)
}

// === builtin ===

#[tokio::test]
async fn builtin_ensure_creates_two_secrets_once() {
    let env = Env::new().await;
    let ca = env.ca();
    let b = backend(
        "ca-1",
        BackendType::Builtin,
        Some(BackendConf::Builtin(BuiltinConf::default())),
    );
    let builtin = BuiltinCa::new();
    assert!(builtin.validate(&ca, &b).await.is_ok());

    let created = builtin.ensure(&ca, &b).await.unwrap();
    let names: Vec<_> = created.iter().map(|r| r.meta.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "default.ca-builtin-cert-ca-1",
            "default.ca-builtin-key-ca-1"
        ]
    );
    for r in &created {
        assert_eq!(r.meta.mesh, MESH);
        assert!(matches!(r.spec, Spec::Secret(_)));
    }
    let Spec::Secret(cert) = &created[0].spec else {
        unreachable!()
    };
    let Spec::Secret(key) = &created[1].spec else {
        unreachable!()
    };
    assert!(
        cert.data
            .bytes()
            .starts_with(b"-----BEGIN CERTIFICATE-----\n")
    );
    assert!(
        key.data
            .bytes()
            .starts_with(b"-----BEGIN RSA PRIVATE KEY-----\n")
    );
    assert_eq!(
        builtin.used_secrets(MESH, &b),
        [
            "default.ca-builtin-cert-ca-1",
            "default.ca-builtin-key-ca-1"
        ]
    );

    for r in &created {
        env.create(r).await;
    }
    assert!(builtin.ensure(&ca, &b).await.unwrap().is_empty());
    let roots = builtin.root_certs(&ca, &b).await.unwrap();
    assert_eq!(roots.len(), 1);
    assert_eq!(roots[0].as_bytes(), cert.data.bytes());

    // Root profile as openssl reads it.
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "root.pem", &roots[0]);
    let (ok, text) = openssl(dir.path(), &["x509", "-noout", "-text", "-in", "root.pem"]);
    assert!(ok, "{text}");
    assert!(
        text.contains("Subject: O = Kuma, OU = Mesh, CN = default"),
        "{text}"
    );
    assert_eq!(
        text_after(&text, "X509v3 Subject Alternative Name"),
        "URI:spiffe://default"
    );
    assert_eq!(
        text_after(&text, "X509v3 Key Usage: critical"),
        "Certificate Sign, CRL Sign"
    );
    assert_eq!(
        text_after(&text, "X509v3 Basic Constraints: critical"),
        "CA:TRUE"
    );
    assert!(!text.contains("Name Constraints"), "{text}");
    let (ok, text) = openssl(dir.path(), &["verify", "-CAfile", "root.pem", "root.pem"]);
    assert!(ok, "{text}");
}

#[tokio::test]
async fn builtin_with_half_its_secrets_is_never_regenerated() {
    let env = Env::new().await;
    env.put_secret("default.ca-builtin-cert-ca-1", b"cert")
        .await;
    let ca = env.ca();
    let b = backend("ca-1", BackendType::Builtin, None);
    let err = BuiltinCa::new().ensure(&ca, &b).await.unwrap_err();
    assert!(!err.is_transient());
    assert!(
        err.message().contains(
            r#""default.ca-builtin-cert-ca-1" exists but "default.ca-builtin-key-ca-1" does not"#
        ),
        "{err}"
    );
}

#[tokio::test]
async fn builtin_without_secrets_says_so() {
    let env = Env::new().await;
    let ca = env.ca();
    let b = backend("ca-1", BackendType::Builtin, None);
    let err = BuiltinCa::new().root_certs(&ca, &b).await.unwrap_err();
    assert!(matches!(err, CaError::Config { .. }));
    assert!(
        err.to_string()
            .starts_with(r#"mesh "default" backend "ca-1": "#),
        "{err}"
    );
    assert!(
        err.message()
            .contains(r#"the builtin CA secret "default.ca-builtin-cert-ca-1" is missing"#),
        "{err}"
    );
    let err = BuiltinCa::new()
        .issue(&ca, &b, &request())
        .await
        .unwrap_err();
    assert!(err.message().contains("is missing"), "{err}");
}

#[tokio::test]
async fn builtin_leaf_passes_openssl() {
    let env = Env::new().await;
    let ca = env.ca();
    let b = backend("ca-1", BackendType::Builtin, None);
    let registry = registry();
    let builtin = registry.get(BackendType::Builtin).unwrap();
    for r in builtin.ensure(&ca, &b).await.unwrap() {
        env.create(&r).await;
    }
    let leaf = builtin.issue(&ca, &b, &request()).await.unwrap();
    assert!(leaf.chain_pem.is_empty());

    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "root.pem",
        &builtin.root_certs(&ca, &b).await.unwrap()[0],
    );
    assert_kuma_leaf(dir.path(), &leaf);
    let (ok, text) = openssl(dir.path(), &["verify", "-CAfile", "root.pem", "leaf.pem"]);
    assert!(ok && text.contains("leaf.pem: OK"), "{text}");

    // A request for another mesh is refused rather than signed with the wrong trust domain.
    let mut other = request();
    other.mesh = "other".into();
    assert!(builtin.issue(&ca, &b, &other).await.is_err());
}

#[tokio::test]
async fn svid_has_exactly_one_uri_san() {
    let env = Env::new().await;
    let ca = env.ca();
    let b = backend("ca-1", BackendType::Builtin, None);
    let builtin = BuiltinCa::new();
    for r in builtin.ensure(&ca, &b).await.unwrap() {
        env.create(&r).await;
    }
    let signing = Arc::new(builtin.signing_ca(&ca, &b).await.unwrap());
    let svid = leaf::sign_svid(signing, MESH, "web", Duration::from_secs(3600))
        .await
        .unwrap();
    assert!(svid.key_pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));

    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "root.pem",
        &builtin.root_certs(&ca, &b).await.unwrap()[0],
    );
    write(dir.path(), "svid.pem", &svid.cert_pem);
    let (ok, text) = openssl(dir.path(), &["x509", "-noout", "-text", "-in", "svid.pem"]);
    assert!(ok, "{text}");
    assert_eq!(
        text_after(&text, "X509v3 Subject Alternative Name"),
        "URI:spiffe://default/web"
    );
    assert_eq!(text_after(&text, "X509v3 Basic Constraints"), "CA:FALSE");
    let (ok, text) = openssl(dir.path(), &["verify", "-CAfile", "root.pem", "svid.pem"]);
    assert!(ok, "{text}");
}

// === provided ===

#[tokio::test]
async fn provided_chain_issues_leaves_openssl_accepts() {
    let root = self_signed(ec_key(), |_| {});
    let inter = signed_by(&root, ec_key(), |_| {});
    let bundle = format!("{}{}", inter.cert_pem, root.cert_pem);

    let env = Env::new().await;
    env.put_secret("ca-cert", bundle.as_bytes()).await;
    env.put_secret("ca-key", inter.key.serialize_pem().as_bytes())
        .await;
    let ca = env.ca();
    let b = backend(
        "ca-1",
        BackendType::Provided,
        Some(BackendConf::Provided(ProvidedConf {
            cert: DataSource::Secret("ca-cert".into()),
            key: DataSource::Secret("ca-key".into()),
        })),
    );
    let registry = registry();
    let provided = registry.get(BackendType::Provided).unwrap();
    provided.validate(&ca, &b).await.unwrap();
    assert!(provided.ensure(&ca, &b).await.unwrap().is_empty());
    assert_eq!(provided.used_secrets(MESH, &b), ["ca-cert", "ca-key"]);

    let roots = provided.root_certs(&ca, &b).await.unwrap();
    assert_eq!(roots.len(), 2);
    assert_eq!(roots[0].trim(), inter.cert_pem.trim());
    assert_eq!(roots[1].trim(), root.cert_pem.trim());

    let leaf = provided.issue(&ca, &b, &request()).await.unwrap();
    assert_eq!(leaf.chain_pem.len(), 1);
    assert_eq!(leaf.chain_pem[0].trim(), root.cert_pem.trim());

    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "root.pem", &root.cert_pem);
    write(dir.path(), "intermediate.pem", &inter.cert_pem);
    assert_kuma_leaf(dir.path(), &leaf);
    let (ok, text) = openssl(
        dir.path(),
        &[
            "verify",
            "-CAfile",
            "root.pem",
            "-untrusted",
            "intermediate.pem",
            "leaf.pem",
        ],
    );
    assert!(ok && text.contains("leaf.pem: OK"), "{text}");
    // Without the intermediate the leaf does not verify: it really was signed by the first cert.
    let (ok, _) = openssl(dir.path(), &["verify", "-CAfile", "root.pem", "leaf.pem"]);
    assert!(!ok);
}

/// PKCS#1 and SEC1 keys as OpenSSL writes them (`-traditional`), PKCS#8 as rcgen does; RSA, P-256, P-384.
#[tokio::test]
async fn provided_accepts_every_key_format() {
    let dir = tempfile::tempdir().unwrap();
    let rsa = KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048).unwrap();
    let p384 = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
    for (label, key) in [("rsa", rsa), ("p256", ec_key()), ("p384", p384)] {
        let ca = self_signed(key, |_| {});
        let pkcs8 = ca.key.serialize_pem();
        write(dir.path(), "k8.pem", &pkcs8);
        let (ok, traditional) = openssl(dir.path(), &["pkey", "-in", "k8.pem", "-traditional"]);
        assert!(ok, "{traditional}");
        let expected = if label == "rsa" {
            "RSA PRIVATE KEY"
        } else {
            "EC PRIVATE KEY"
        };
        assert!(traditional.contains(expected), "{label}: {traditional}");
        for key_pem in [&pkcs8, &traditional] {
            validate_inline(&ca.cert_pem, key_pem)
                .await
                .unwrap_or_else(|e| panic!("{label}: {e:?}"));
            let signing =
                Arc::new(SigningCa::from_pem(ca.cert_pem.as_bytes(), key_pem.as_bytes()).unwrap());
            let leaf = leaf::sign_dataplane_cert(signing, MESH, &tags(), Duration::from_secs(60))
                .await
                .unwrap();
            write(dir.path(), "root.pem", &ca.cert_pem);
            write(dir.path(), "leaf.pem", &leaf.cert_pem);
            let (ok, text) = openssl(dir.path(), &["verify", "-CAfile", "root.pem", "leaf.pem"]);
            assert!(ok, "{label}: {text}");
        }
    }
}

/// One certificate per X509-SVID rule, each breaking only that rule.
#[tokio::test]
async fn provided_rejects_each_x509_svid_rule() {
    type Shape = fn(&mut CertificateParams);
    let cases: [(Shape, &str); 3] = [
        (|p| p.is_ca = IsCa::ExplicitNoCa, provided::REASON_NOT_CA),
        (
            |p| p.key_usages = vec![KeyUsagePurpose::CrlSign],
            "key usage extension 'keyCertSign' must be set (see X509-SVID: 4.3. Key Usage)",
        ),
        (
            |p| p.key_usages.push(KeyUsagePurpose::KeyAgreement),
            "key usage extension 'keyAgreement' must NOT be set (see X509-SVID: Appendix A. X.509 Field Reference)",
        ),
    ];
    for (shape, reason) in cases {
        let ca = self_signed(ec_key(), shape);
        assert_eq!(
            validate_inline(&ca.cert_pem, &ca.key.serialize_pem()).await,
            Err(vec![v("cert[0]", reason)])
        );
    }
}

/// Kuma's own case: no BasicConstraints and no KeyUsage at all gives both reasons.
#[tokio::test]
async fn provided_rejects_a_bare_cert_with_both_reasons() {
    let ca = self_signed(ec_key(), |p| {
        p.is_ca = IsCa::NoCa;
        p.key_usages = vec![];
    });
    assert_eq!(
        validate_inline(&ca.cert_pem, &ca.key.serialize_pem()).await,
        Err(vec![
            v(
                "cert[0]",
                "basic constraint 'CA' must be set to 'true' (see X509-SVID: 4.1. Basic Constraints)"
            ),
            v(
                "cert[0]",
                "key usage extension 'keyCertSign' must be set (see X509-SVID: 4.3. Key Usage)"
            ),
        ])
    );
}

/// Every certificate of the bundle is judged, each at its own index.
#[tokio::test]
async fn provided_judges_parents_too() {
    let root = self_signed(ec_key(), |p| p.key_usages = vec![KeyUsagePurpose::CrlSign]);
    let inter = signed_by(&root, ec_key(), |_| {});
    let bundle = format!("{}{}", inter.cert_pem, root.cert_pem);
    assert_eq!(
        validate_inline(&bundle, &inter.key.serialize_pem()).await,
        Err(vec![v("cert[1]", provided::REASON_NO_CERT_SIGN)])
    );
}

#[tokio::test]
async fn provided_rejects_a_key_of_another_cert() {
    let ca = self_signed(ec_key(), |_| {});
    let other = ec_key();
    assert_eq!(
        validate_inline(&ca.cert_pem, &other.serialize_pem()).await,
        Err(vec![v(
            "cert",
            "not a valid TLS key pair: tls: private key does not match public key"
        )])
    );
    // The key of the parent is not the key of the first certificate either.
    let inter = signed_by(&ca, ec_key(), |_| {});
    let bundle = format!("{}{}", inter.cert_pem, ca.cert_pem);
    assert_eq!(
        validate_inline(&bundle, &ca.key.serialize_pem()).await,
        Err(vec![v(
            "cert",
            "not a valid TLS key pair: tls: private key does not match public key"
        )])
    );
}

#[tokio::test]
async fn provided_rejects_garbage() {
    let ca = self_signed(ec_key(), |_| {});
    assert_eq!(
        validate_inline("CERT", &ca.key.serialize_pem()).await,
        Err(vec![v(
            "cert",
            "not a valid TLS key pair: tls: failed to find any PEM data in certificate input"
        )])
    );
    assert_eq!(
        validate_inline(&ca.cert_pem, "KEY").await,
        Err(vec![v(
            "cert",
            "not a valid TLS key pair: tls: failed to find any PEM data in key input"
        )])
    );
    let broken = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    let err = validate_inline(broken, &ca.key.serialize_pem())
        .await
        .unwrap_err();
    // Go's tls.X509KeyPair parses the first certificate itself: Kuma reports it on `cert`.
    assert_eq!(
        err,
        vec![v(
            "cert",
            "not a valid TLS key pair: x509: malformed certificate"
        )]
    );
    // A later certificate that does not parse is reported at its index.
    let bundle = format!("{}{broken}", ca.cert_pem);
    assert_eq!(
        validate_inline(&bundle, &ca.key.serialize_pem()).await,
        Err(vec![v(
            "cert[1]",
            "not a valid x509 certificate: x509: malformed certificate"
        )])
    );
    let garbage_key = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
    assert_eq!(
        validate_inline(&ca.cert_pem, garbage_key).await,
        Err(vec![v(
            "cert",
            "not a valid TLS key pair: tls: failed to parse private key"
        )])
    );
}

#[tokio::test]
async fn provided_reports_a_missing_secret_on_both_fields() {
    let env = Env::new().await;
    let ca = env.ca();
    let b = backend(
        "ca-1",
        BackendType::Provided,
        Some(BackendConf::Provided(ProvidedConf {
            cert: DataSource::Secret("ca-cert".into()),
            key: DataSource::Secret("ca-key".into()),
        })),
    );
    let reason = r#"secret "ca-key" not found in mesh "default""#;
    assert_eq!(
        ProvidedCa::new()
            .validate(&ca, &b)
            .await
            .map_err(violations),
        Err(vec![v("cert", reason), v("key", reason)])
    );
    // At issue time the same failure is a config error naming mesh and backend.
    let err = ProvidedCa::new()
        .issue(&ca, &b, &request())
        .await
        .unwrap_err();
    assert!(!err.is_transient());
    assert_eq!(
        err.to_string(),
        format!(r#"mesh "default" backend "ca-1": CA key: {reason}"#)
    );
}

#[tokio::test]
async fn provided_rejects_an_expired_ca() {
    let ca = self_signed(ec_key(), |p| {
        p.not_before = time::OffsetDateTime::now_utc() - time::Duration::days(10);
        p.not_after = time::OffsetDateTime::now_utc() - time::Duration::days(1);
    });
    let err = validate_inline(&ca.cert_pem, &ca.key.serialize_pem())
        .await
        .unwrap_err();
    assert_eq!(err.len(), 1);
    assert_eq!(err[0].0, "cert[0]");
    assert!(err[0].1.starts_with("certificate expired at "), "{err:?}");
}

/// A subject with a repeated attribute type cannot be copied into the leaf's issuer by rcgen; validation
/// catches it with a dry run instead of letting every issued leaf fail to chain.
#[tokio::test]
async fn provided_rejects_a_subject_it_cannot_copy() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, text) = openssl(
        dir.path(),
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/O=Kuma/OU=a/OU=b/CN=x",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
    assert!(ok, "{text}");
    let cert = std::fs::read_to_string(dir.path().join("ca.pem")).unwrap();
    let key = std::fs::read_to_string(dir.path().join("ca.key")).unwrap();
    let err = validate_inline(&cert, &key).await.unwrap_err();
    assert_eq!(err.len(), 1, "{err:?}");
    assert_eq!(err[0].0, "cert");
    assert!(
        err[0].1.starts_with(
            "cannot issue certificates with this CA: the CA certificate's subject cannot be copied"
        ),
        "{err:?}"
    );
}
