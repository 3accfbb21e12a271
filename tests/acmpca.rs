//! Dataplane identity from AWS Private CA end to end: moto's standalone server with a root CA and
//! IAM enforced, a global validating an `acmpca` Mesh, two zones issuing through it, agents whose
//! certificates `openssl verify` against the CA and complete mTLS handshakes across zones, py-spiffe
//! reading the SVID, and a CA rotation from Vault to acmpca with every dataplane trusted throughout.
//!
//! moto ignores `Validity` (leaves live 365 days), so rotation by expiry is not exercised here; the
//! backend tests in crates/ca/tests/acmpca.rs list what else moto does not check.

use meshplane_test_support::{
    moto::{Moto, PrivateCa},
    openbao::OpenBao,
};
use meshplane_tests::{Agent, Global, Store, Zone, eventually, run};
use serde_json::{Value, json};

mod identity_util;
use identity_util::*;

const POLICY: &[&str] = &[
    "acm-pca:IssueCertificate",
    "acm-pca:GetCertificate",
    "acm-pca:GetCertificateAuthorityCertificate",
];

/// moto with a root CA and a user allowed the backend's three calls; IAM enforced.
async fn moto_world(g: &Global) -> (Moto, PrivateCa) {
    let moto = Moto::start().await.expect("moto");
    let ca = moto
        .create_root_ca("Meshplane Test Root")
        .await
        .expect("root CA");
    let key = moto
        .create_user("meshplane-cp", POLICY)
        .await
        .expect("user");
    moto.enforce_iam().await.expect("iam");
    put_secret(g, "aws-ak", key.id.as_bytes()).await;
    put_secret(g, "aws-sk", key.secret.as_bytes()).await;
    (moto, ca)
}

fn pca_backend(name: &str, moto: &Moto, ca: &PrivateCa) -> Value {
    json!({"name": name, "type": "acmpca", "dpCert": {"rotation": {"expiration": "24h"}, "requestTimeout": "10s"},
        "conf": {"arn": ca.arn, "endpoint": moto.endpoint,
            "commonName": "{{ tag \"kuma.io/service\" }}.mesh",
            "auth": {"awsCredentials": {"accessKey": {"secret": "aws-ak"}, "accessKeySecret": {"secret": "aws-sk"}}}}})
}

/// `openssl verify` of an agent's certificate against `root_pem` alone.
async fn verify_against(a: &Agent, root_pem: &str) {
    let dir = tempfile::tempdir().expect("dir");
    let root = dir.path().join("root.pem");
    std::fs::write(&root, root_pem).expect("write");
    let cert = a.cert_dir.join("cert.pem");
    let (code, out, err) = run(
        "openssl",
        &[
            "verify",
            "-CAfile",
            root.to_str().expect("utf8"),
            cert.to_str().expect("utf8"),
        ],
    )
    .await
    .expect("openssl");
    assert!(code == 0 && out.contains("OK"), "{out}{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_zones_get_certificates_from_the_private_ca_and_talk_mtls() {
    meshplane_test_support::process::init_test_logging();
    let g = Global::start(Store::Memory, &[]).await.expect("global");
    let (moto, ca) = moto_world(&g).await;
    // Global validates by issuing: an ARN no CA has is refused at its path with AWS's code.
    let mut wrong = pca_backend("pca-1", &moto, &ca);
    wrong["conf"]["arn"] = json!(format!(
        "{}/00000000-0000-0000-0000-000000000000",
        ca.arn.rsplit_once('/').expect("arn").0
    ));
    let body = json!({"type": "Mesh", "name": "default", "mtls": {"enabledBackend": "pca-1", "backends": [wrong]}});
    let (status, b) = g.api.put("/meshes/default", &body).await.expect("put");
    assert_eq!(status, 400, "{b}");
    assert_eq!(
        b["invalid_parameters"][0]["field"], "mtls.backends[0].conf.arn",
        "{b}"
    );
    assert!(b.to_string().contains("ResourceNotFoundException"), "{b}");
    put_mesh(&g, "pca-1", vec![pca_backend("pca-1", &moto, &ca)]).await;
    let z1 = Zone::start(&g, "zone-1", Store::Memory, &[])
        .await
        .expect("zone-1");
    let z2 = Zone::start(&g, "zone-2", Store::Memory, &[])
        .await
        .expect("zone-2");
    let mut web = agent(&g, &z1, "web-1", "web").await;
    let mut api = agent(&g, &z2, "api-1", "api").await;
    let web_cert = web.wait_cert(None, WAIT).await.expect("web");
    api.wait_cert(None, WAIT).await.expect("api");
    verify_against(&web, &ca.root_pem).await;
    verify_against(&api, &ca.root_pem).await;
    let sans = x509(&web_cert, &["-ext", "subjectAltName"]).await;
    assert!(
        sans.contains("URI:spiffe://default/web, URI:kuma://kuma.io/service/web"),
        "{sans}"
    );
    assert!(x509(&web_cert, &["-subject"]).await.contains("web.mesh"));
    assert_eq!(bundle_roots(&web), 1);

    let seen = handshake(&web.cert_dir, &api.cert_dir)
        .await
        .expect("web serves api");
    assert!(seen.contains("spiffe://default/api"), "{seen}");
    let seen = handshake(&api.cert_dir, &web.cert_dir)
        .await
        .expect("api serves web");
    assert!(seen.contains("spiffe://default/web"), "{seen}");

    let python = venv_python();
    assert!(
        python.exists(),
        "{} is missing: run scripts/test.sh's venv setup",
        python.display()
    );
    let script = format!(
        r#"
from spiffe import WorkloadApiClient, TrustDomain
with WorkloadApiClient(socket_path="unix://{sock}", default_timeout=20) as c:
    svid = c.fetch_x509_svid()
    print("id", svid.spiffe_id)
    b = c.fetch_x509_bundles().get_bundle_for_trust_domain(TrustDomain("default"))
    print("authorities", len(b.x509_authorities))
"#,
        sock = web.socket.display()
    );
    let (code, out, err) = run(python.to_str().expect("utf8"), &["-c", &script])
        .await
        .expect("python");
    assert_eq!(
        code,
        0,
        "py-spiffe failed: {err}\nagent log:\n{}\nmoto:\n{}",
        web.proc.logs(),
        moto.logs()
    );
    assert!(out.contains("id spiffe://default/web"), "{out}");
    assert!(out.contains("authorities 1"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ca_rotation_from_vault_to_acmpca_keeps_every_dataplane_trusted() {
    meshplane_test_support::process::init_test_logging();
    let bao = OpenBao::start_dev().await.expect("openbao");
    let seed = bao.seed_setup("default").await.expect("seed");
    let g = Global::start(Store::Memory, &[]).await.expect("global");
    put_token_secret(&g, &seed.token).await;
    let (moto, ca) = moto_world(&g).await;
    let b1 = vault_backend("vault-1", &bao, &seed.mount, &seed.role, "24h");
    let b2 = pca_backend("pca-1", &moto, &ca);
    put_mesh(&g, "vault-1", vec![b1.clone()]).await;
    let z1 = Zone::start(&g, "zone-1", Store::Memory, &[])
        .await
        .expect("zone-1");
    let z2 = Zone::start(&g, "zone-2", Store::Memory, &[])
        .await
        .expect("zone-2");
    let mut web = agent(&g, &z1, "web-1", "web").await;
    let mut api = agent(&g, &z2, "api-1", "api").await;
    web.wait_cert(None, WAIT).await.expect("web");
    api.wait_cert(None, WAIT).await.expect("api");
    handshake(&web.cert_dir, &api.cert_dir)
        .await
        .expect("before rotation");

    // 1. Add acmpca: everyone trusts both roots; identities still come from Vault.
    put_mesh(&g, "vault-1", vec![b1.clone(), b2.clone()]).await;
    for a in [&web, &api] {
        eventually(WAIT, "both roots in the bundle", || async {
            (bundle_roots(a) == 2).then_some(())
        })
        .await
        .expect("trust both");
    }
    handshake(&web.cert_dir, &api.cert_dir)
        .await
        .expect("after adding acmpca");

    // 2. Switch: certificates are re-issued by the Private CA; mixed states still shake hands.
    let old_web = std::fs::read_to_string(web.cert_dir.join("cert.pem")).expect("cert");
    let old_api = std::fs::read_to_string(api.cert_dir.join("cert.pem")).expect("cert");
    put_mesh(&g, "pca-1", vec![b1, b2.clone()]).await;
    web.wait_cert(Some(&old_web), WAIT)
        .await
        .expect("web re-issued");
    verify_against(&web, &ca.root_pem).await;
    handshake(&web.cert_dir, &api.cert_dir)
        .await
        .expect("during the switch");
    api.wait_cert(Some(&old_api), WAIT)
        .await
        .expect("api re-issued");
    verify_against(&api, &ca.root_pem).await;
    handshake(&api.cert_dir, &web.cert_dir)
        .await
        .expect("after the switch");

    // 3. Remove Vault: only the Private CA's root is left.
    put_mesh(&g, "pca-1", vec![b2]).await;
    for a in [&web, &api] {
        eventually(WAIT, "only the new root in the bundle", || async {
            (bundle_roots(a) == 1).then_some(())
        })
        .await
        .expect("old root gone");
    }
    handshake(&web.cert_dir, &api.cert_dir)
        .await
        .expect("after removing vault");
}
