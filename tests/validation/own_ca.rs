//! The builtin CA (created once) and the provided CA (Kuma's chain rules).

use super::common::*;

pub(crate) async fn secret_data(api: &Api, mesh: &str, name: &str) -> (String, i64) {
    let (v, version) = get_with_version(api, &format!("/meshes/{mesh}/secrets/{name}"))
        .await
        .unwrap_or_else(|| panic!("secret {name} exists"));
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(v["data"].as_str().expect("data"))
        .expect("base64");
    (String::from_utf8(bytes).expect("PEM text"), version)
}

pub(crate) async fn openssl(pem: &str, args: &[&str]) -> (i32, String) {
    let dir = tempfile::tempdir().expect("dir");
    let f = dir.path().join("in.pem");
    std::fs::write(&f, pem).expect("write");
    let mut a: Vec<&str> = args.to_vec();
    let path = f.to_str().expect("utf-8");
    a.extend(["-in", path]);
    let (code, out, err) = run("openssl", &a).await.expect("openssl");
    (code, format!("{out}{err}"))
}

pub(crate) async fn secret_names(api: &Api, mesh: &str) -> Vec<String> {
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

pub(crate) struct Chain {
    bundle: String,
    key: String,
}

/// An intermediate under a root; `int` and `root` adjust each certificate's parameters.
pub(crate) fn chain(
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

pub(crate) fn provided(name: &str, cert_secret: &str, key_secret: &str) -> Value {
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
        &["not a valid TLS key pair: tls: failed to find any PEM data in certificate input"],
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
