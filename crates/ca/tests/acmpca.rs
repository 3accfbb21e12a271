//! The acmpca backend against moto's standalone server (a real ACM PCA API, started per test) with
//! a root CA created there through the AWS SDK and IAM enforced: validation accepts a good backend
//! and names what is wrong otherwise (ARN, credentials, permissions, CA state, caCert) with AWS's
//! code; leaves chain to the CA under `openssl verify` and carry the SANs, KeyUsage and EKU.
//! Throttling is tested with a small HTTP server of ours in front of moto, which cannot throttle.
//!
//! What moto does not check, so these tests cannot either:
//! - `Validity` and `ValidityNotBefore` are ignored: every leaf lives 365 days (so validation warns
//!   that the lifetime differs from the request; real AWS honours it).
//! - The template ARN is only told apart between RootCACertificate/V1 and everything else (an
//!   unknown or APIPassthrough template gets EndEntityCertificate/V1's extensions); `SigningAlgorithm`
//!   is ignored (moto signs with SHA-512) and `IdempotencyToken` is not honoured.
//! - IAM policies are matched against resource `*`: a policy scoped to the CA's ARN is not judged.
//! - IAM failures (unknown key, bad signature, denied action) come back as a query-protocol XML
//!   body rather than ACM PCA's JSON; the backend reads the code from either.
//! - No rate limits (hence our throttling server), no quota, no CRL or audit reports, and the CA
//!   key is always RSA-2048 whatever `KeyAlgorithm` says.
#![allow(clippy::unwrap_used, reason = "a panic is how a test reports failure")]

mod vault_util;

use std::sync::{
    Arc,
    atomic::{AtomicU32, Ordering},
};

use axum::{body::Bytes, http::HeaderMap, response::IntoResponse};
use meshplane_ca::acmpca::AcmPcaCa;
use meshplane_core::{
    ca::{CaBackend, CaError},
    model::{
        Backend, BackendConf, BackendType, DataSource,
        mesh::{AcmPcaAuth, AcmPcaConf, AwsCredentials},
    },
    validation::Violation,
};
use meshplane_test_support::moto::{AccessKey, Moto, PrivateCa};
use vault_util::*;

/// Everything the backend needs: the three calls of docs/operations.md's policy.
const POLICY: &[&str] = &[
    "acm-pca:IssueCertificate",
    "acm-pca:GetCertificate",
    "acm-pca:GetCertificateAuthorityCertificate",
];

struct World {
    moto: Moto,
    ca: PrivateCa,
    key: AccessKey,
    secrets: Secrets,
}

/// moto with a root CA and a user holding `POLICY`, IAM enforced from here on.
async fn world() -> World {
    let moto = Moto::start().await.unwrap();
    let ca = moto.create_root_ca("Meshplane Test Root").await.unwrap();
    let key = moto.create_user("meshplane-cp", POLICY).await.unwrap();
    moto.enforce_iam().await.unwrap();
    let secrets = Secrets::default();
    secrets.put("aws-ak", &key.id);
    secrets.put("aws-sk", &key.secret);
    World {
        moto,
        ca,
        key,
        secrets,
    }
}

fn conf(arn: &str, endpoint: &str) -> AcmPcaConf {
    AcmPcaConf {
        arn: arn.into(),
        common_name: None,
        ca_cert: None,
        auth: Some(AcmPcaAuth {
            aws_credentials: AwsCredentials {
                access_key: DataSource::Secret("aws-ak".into()),
                access_key_secret: DataSource::Secret("aws-sk".into()),
            },
        }),
        endpoint: Some(endpoint.into()),
    }
}

fn pca_backend(conf: AcmPcaConf) -> Backend {
    Backend {
        name: "pca-1".into(),
        backend_type: BackendType::AcmPca,
        mode: None,
        dp_cert: None,
        root_chain: None,
        conf: Some(BackendConf::AcmPca(conf)),
    }
}

fn only_violation(r: Result<Vec<String>, meshplane_core::ValidationError>) -> Violation {
    let e = r.unwrap_err();
    assert_eq!(e.violations.len(), 1, "{e}");
    e.violations.into_iter().next().unwrap()
}

#[tokio::test]
async fn validated_backend_issues_leaves_and_svids_that_chain_to_the_ca() {
    let w = world().await;
    let pca = AcmPcaCa::new();
    let mut c = conf(&w.ca.arn, &w.moto.endpoint);
    c.common_name = cn(r#"{{ tag "kuma.io/service" | replace "_" "-" }}.mesh"#);
    let b = pca_backend(c);
    let warnings = pca.validate(&w.secrets.ca(), &b).await.unwrap();
    // moto ignores Validity; real AWS honours it and validation then says nothing.
    assert!(
        warnings
            .iter()
            .all(|w| w.contains("instead of the requested")),
        "{warnings:?}"
    );

    let roots = pca.root_certs(&w.secrets.ca(), &b).await.unwrap();
    assert_eq!(roots.len(), 1);
    assert_eq!(ders(&roots[0]), ders(&w.ca.root_pem));

    let req = request(tags(&[
        ("kuma.io/service", "web_api"),
        ("kuma.io/zone", "east"),
        ("version", "v1"),
    ]));
    let cert = pca.issue(&w.secrets.ca(), &b, &req).await.unwrap();
    assert_eq!(ders(&cert.cert_pem).len(), 1, "cert_pem is the leaf only");
    let text = x509_text(&cert.cert_pem);
    assert!(
        text.contains(
            "URI:spiffe://default/web_api, URI:kuma://kuma.io/service/web_api, URI:kuma://kuma.io/zone/east, URI:kuma://version/v1"
        ),
        "{text}"
    );
    assert!(text.contains("Subject: CN = web-api.mesh"), "{text}");
    assert!(
        text.contains("Digital Signature, Key Encipherment"),
        "{text}"
    );
    assert!(
        text.contains("TLS Web Server Authentication, TLS Web Client Authentication"),
        "{text}"
    );
    assert!(text.contains("CA:FALSE"), "{text}");
    assert!(
        cert.key_pem.contains("BEGIN RSA PRIVATE KEY"),
        "PKCS#1 as Kuma writes it"
    );
    assert_eq!(ders(&cert.chain_pem.concat()), ders(&w.ca.root_pem));
    verify(&cert.cert_pem, &roots);
    // The key is ours: it matches the certificate.
    let (ok, modulus_cert) = openssl(
        &["x509", "-noout", "-modulus", "-in", "c.pem"],
        &[("c.pem", &cert.cert_pem)],
    );
    assert!(ok, "{modulus_cert}");
    let (ok, modulus_key) = openssl(
        &["rsa", "-noout", "-modulus", "-in", "k.pem"],
        &[("k.pem", &cert.key_pem)],
    );
    assert!(ok, "{modulus_key}");
    assert_eq!(modulus_cert, modulus_key);

    let svid = pca
        .issue_svid(&w.secrets.ca(), &b, &req, "web_api")
        .await
        .unwrap();
    let text = x509_text(&svid.cert_pem);
    assert!(text.contains("URI:spiffe://default/web_api\n"), "{text}");
    assert!(!text.contains("kuma://"), "{text}");
    assert!(
        svid.key_pem.contains("BEGIN PRIVATE KEY"),
        "PKCS#8 for the Workload API"
    );
    verify(&svid.cert_pem, &roots);
}

#[tokio::test]
async fn a_given_ca_cert_is_the_trust_root_and_must_match_the_ca() {
    let w = world().await;
    let pca = AcmPcaCa::new();
    let mut c = conf(&w.ca.arn, &w.moto.endpoint);
    c.ca_cert = Some(DataSource::Secret("pca-root".into()));
    let b = pca_backend(c);
    w.secrets.put("pca-root", &w.ca.root_pem);
    pca.validate(&w.secrets.ca(), &b).await.unwrap();
    let roots = pca.root_certs(&w.secrets.ca(), &b).await.unwrap();
    assert_eq!(ders(&roots.concat()), ders(&w.ca.root_pem));

    let other = meshplane_test_support::tls::TestCa::new("Someone Else").unwrap();
    w.secrets.put("pca-root", other.cert_pem());
    let v = only_violation(pca.validate(&w.secrets.ca(), &b).await);
    assert_eq!(v.field, "caCert");
    assert!(v.reason.contains("does not chain"), "{}", v.reason);

    w.secrets.put("pca-root", "not pem");
    let v = only_violation(pca.validate(&w.secrets.ca(), &b).await);
    assert_eq!(v.field, "caCert");
}

#[tokio::test]
async fn validation_names_the_arn_the_credentials_the_permissions_and_the_ca_state() {
    let moto = Moto::start().await.unwrap();
    let ca = moto.create_root_ca("Meshplane Test Root").await.unwrap();
    let disabled = moto.create_root_ca("Disabled Root").await.unwrap();
    moto.set_ca_status(&disabled.arn, "DISABLED").await.unwrap();
    let good = moto.create_user("meshplane-cp", POLICY).await.unwrap();
    let read_only = moto
        .create_user("read-only", &["acm-pca:GetCertificateAuthorityCertificate"])
        .await
        .unwrap();
    moto.enforce_iam().await.unwrap();
    let pca = AcmPcaCa::new();
    let secrets = Secrets::default();
    let use_key = |k: &AccessKey| {
        secrets.put("aws-ak", &k.id);
        secrets.put("aws-sk", &k.secret);
    };

    // A well-formed ARN no CA has.
    use_key(&good);
    let missing =
        ca.arn.rsplit_once('/').unwrap().0.to_string() + "/00000000-0000-0000-0000-000000000000";
    let v = only_violation(
        pca.validate(&secrets.ca(), &pca_backend(conf(&missing, &moto.endpoint)))
            .await,
    );
    assert_eq!(v.field, "arn");
    assert!(
        v.reason.contains("ResourceNotFoundException"),
        "{}",
        v.reason
    );
    assert!(v.reason.contains("check the ARN"), "{}", v.reason);

    // A CA that is not ACTIVE.
    let v = only_violation(
        pca.validate(
            &secrets.ca(),
            &pca_backend(conf(&disabled.arn, &moto.endpoint)),
        )
        .await,
    );
    assert_eq!(v.field, "arn");
    assert!(v.reason.contains("InvalidStateException"), "{}", v.reason);
    assert!(v.reason.contains("must be ACTIVE"), "{}", v.reason);

    let b = pca_backend(conf(&ca.arn, &moto.endpoint));
    // An access key IAM does not know.
    use_key(&AccessKey {
        id: "AKIAUNKNOWNUNKNOWN00".into(),
        secret: good.secret.clone(),
    });
    let v = only_violation(pca.validate(&secrets.ca(), &b).await);
    assert_eq!(v.field, "auth.awsCredentials");
    assert!(v.reason.contains("InvalidClientTokenId"), "{}", v.reason);
    assert!(!v.reason.contains(&good.secret), "the secret never appears");

    // The right key with the wrong secret.
    use_key(&AccessKey {
        id: good.id.clone(),
        secret: "wrong-secret".into(),
    });
    let v = only_violation(pca.validate(&secrets.ca(), &b).await);
    assert_eq!(v.field, "auth.awsCredentials");
    assert!(v.reason.contains("SignatureDoesNotMatch"), "{}", v.reason);

    // Credentials whose policy lacks IssueCertificate.
    use_key(&read_only);
    let v = only_violation(pca.validate(&secrets.ca(), &b).await);
    assert_eq!(v.field, "");
    assert!(v.reason.contains("AccessDenied"), "{}", v.reason);
    assert!(
        v.reason.contains("must allow acm-pca:IssueCertificate"),
        "{}",
        v.reason
    );

    // A missing Secret is reported at its field, before AWS is asked.
    let empty = Secrets::default();
    let e = pca.validate(&empty.ca(), &b).await.unwrap_err();
    let fields: Vec<&str> = e.violations.iter().map(|v| v.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "auth.awsCredentials.accessKey",
            "auth.awsCredentials.accessKeySecret"
        ]
    );

    // And the good user passes.
    use_key(&good);
    pca.validate(&secrets.ca(), &b).await.unwrap();
}

#[tokio::test]
async fn a_rotated_credential_secret_takes_over_and_a_broken_one_is_a_config_error() {
    let w = world().await;
    let pca = AcmPcaCa::new();
    let b = pca_backend(conf(&w.ca.arn, &w.moto.endpoint));
    let req = request(tags(&[("kuma.io/service", "web")]));
    pca.issue(&w.secrets.ca(), &b, &req).await.unwrap();
    w.secrets.put("aws-sk", "revoked");
    let err = pca.issue(&w.secrets.ca(), &b, &req).await.unwrap_err();
    assert!(matches!(err, CaError::Config { .. }), "{err:?}");
    assert!(err.to_string().contains("SignatureDoesNotMatch"), "{err}");
    w.secrets.put("aws-sk", &w.key.secret);
    pca.issue(&w.secrets.ca(), &b, &req).await.unwrap();
}

/// Answers IssueCertificate with ThrottlingException `throttle` times, then passes every request on
/// to moto unchanged (moto does not check signatures unless IAM is enforced).
async fn throttling_proxy(upstream: String, throttle: u32) -> (String, Arc<AtomicU32>) {
    let throttled = Arc::new(AtomicU32::new(0));
    let seen = throttled.clone();
    let http = reqwest::Client::new();
    let app = axum::Router::new().fallback(move |headers: HeaderMap, body: Bytes| {
        let (seen, http, upstream) = (seen.clone(), http.clone(), upstream.clone());
        async move {
            let target = headers
                .get("x-amz-target")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            if target.ends_with(".IssueCertificate")
                && seen.fetch_add(1, Ordering::SeqCst) < throttle
            {
                return (
                    axum::http::StatusCode::BAD_REQUEST,
                    [("content-type", "application/x-amz-json-1.1")],
                    r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#.to_string(),
                )
                    .into_response();
            }
            let mut r = http.post(&upstream).body(body);
            for (k, v) in &headers {
                if k != "host" && k != "content-length" {
                    r = r.header(k, v);
                }
            }
            let a = r.send().await.unwrap();
            let status = a.status().as_u16();
            let text = a.text().await.unwrap();
            (
                axum::http::StatusCode::from_u16(status).unwrap(),
                [("content-type", "application/x-amz-json-1.1")],
                text,
            )
                .into_response()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), throttled)
}

#[tokio::test]
async fn throttling_is_retried_with_backoff_then_reported_as_transient() {
    let moto = Moto::start().await.unwrap();
    let ca = moto.create_root_ca("Meshplane Test Root").await.unwrap();
    let secrets = Secrets::default();
    secrets.put("aws-ak", "AKIATESTTESTTESTTEST");
    secrets.put("aws-sk", "testing");
    let req = request(tags(&[("kuma.io/service", "web")]));
    let pca = AcmPcaCa::new();

    // Throttled twice: the SDK's backoff absorbs it within one issuance (3 attempts).
    let (endpoint, count) = throttling_proxy(moto.endpoint.clone(), 2).await;
    let b = pca_backend(conf(&ca.arn, &endpoint));
    let cert = pca.issue(&secrets.ca(), &b, &req).await.unwrap();
    verify(&cert.cert_pem, std::slice::from_ref(&ca.root_pem));
    assert_eq!(count.load(Ordering::SeqCst), 3);

    // Throttled throughout: transient (the certificate manager backs off and its breaker opens),
    // with AWS's code, after exactly the attempts allowed.
    let (endpoint, count) = throttling_proxy(moto.endpoint.clone(), u32::MAX).await;
    let b = pca_backend(conf(&ca.arn, &endpoint));
    let err = pca.issue(&secrets.ca(), &b, &req).await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert!(err.to_string().contains("ThrottlingException"), "{err}");
    assert_eq!(count.load(Ordering::SeqCst), 3);

    // Validation under throttling fails and says so.
    let v = only_violation(pca.validate(&secrets.ca(), &b).await);
    assert!(
        v.reason.contains("throttling IssueCertificate"),
        "{}",
        v.reason
    );
}
