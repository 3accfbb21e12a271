//! AWS auth for the vault backend. OpenBao has no AWS auth plugin, so two things are tested instead:
//!
//! 1. The signed `sts:GetCallerIdentity` request against vectors computed independently with
//!    botocore 1.43 (fixed credentials, fixed time), reproduced by:
//!    ```python
//!    creds = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "FQoGZXIvYXdzEXAMPLETOKEN")
//!    req = AWSRequest(method="POST", url="https://sts.amazonaws.com/",
//!                     data="Action=GetCallerIdentity&Version=2011-06-15",
//!                     headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
//!                              "Host": "sts.amazonaws.com", "X-Vault-AWS-IAM-Server-ID": "vault.example.com"})
//!    with mock.patch("botocore.auth.get_current_datetime", return_value=datetime(2015, 8, 30, 12, 36)):
//!        SigV4Auth(creds, "sts", "us-east-1").add_auth(req)
//!    ```
//! 2. Whole logins against a fake Vault that checks the payload like Vault's plugin
//!    (`auth/aws/path_login.go`: POST only, the exact STS URL and body, the server ID header
//!    present and signed), replays the decoded signed request to a fake STS, and hands out a real
//!    OpenBao token; every other path is proxied to a real OpenBao, so the certificate is real.
//!    The credential chain's web identity and IMDS sources run against the same fakes.
#![allow(clippy::unwrap_used, reason = "a panic is how a test reports failure")]

mod vault_util;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use aws_credential_types::Credentials;
use axum::{
    Json, Router,
    body::Bytes,
    extract::{Request, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{any, get, post, put},
};
use base64::{Engine, engine::general_purpose::STANDARD as B64};
use meshplane_ca::vault::{
    VaultCa,
    aws::{self, STS_BODY, STS_URL},
};
use meshplane_core::{
    ca::CaBackend,
    model::mesh::{AwsAuthType, VaultAuth, VaultAwsAuth},
};
use meshplane_test_support::openbao::{OpenBao, SeedPki};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use vault_util::*;

const AKID: &str = "AKIDEXAMPLE";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const SESSION: &str = "FQoGZXIvYXdzEXAMPLETOKEN";
const SERVER_ID: &str = "vault.example.com";

fn fixed_time() -> SystemTime {
    // 2015-08-30T12:36:00Z
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_440_938_160)
}

// === 1. the signed request ===

/// botocore's canonical request for the server-ID vector; its SHA-256 is the fourth line of the
/// string to sign below, which ties the two together.
const CANONICAL_REQUEST: &str = "POST\n/\n\ncontent-type:application/x-www-form-urlencoded; charset=utf-8\nhost:sts.amazonaws.com\nx-amz-date:20150830T123600Z\nx-amz-security-token:FQoGZXIvYXdzEXAMPLETOKEN\nx-vault-aws-iam-server-id:vault.example.com\n\ncontent-type;host;x-amz-date;x-amz-security-token;x-vault-aws-iam-server-id\nab821ae955788b0e33ebd34c208442ccfc2d406e2edc5e7a39bd6458fbb4f843";
const STRING_TO_SIGN: &str = "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/sts/aws4_request\n8bf3e5c8828ca006ae89461a80fb6d5c80f7a2c3782ac5d55769393c052fa974";

#[test]
fn signed_request_matches_botocore_with_the_server_id_header_signed() {
    // The vector is self-consistent: body hash and canonical request hash.
    assert!(CANONICAL_REQUEST.ends_with(&hex::encode(Sha256::digest(STS_BODY))));
    assert!(STRING_TO_SIGN.ends_with(&hex::encode(Sha256::digest(CANONICAL_REQUEST))));

    let creds = Credentials::new(AKID, SECRET, Some(SESSION.into()), None, "test");
    let r = aws::sign_get_caller_identity(&creds, Some(SERVER_ID), fixed_time()).unwrap();
    assert_eq!(r.url, "https://sts.amazonaws.com/");
    assert_eq!(r.body, "Action=GetCallerIdentity&Version=2011-06-15");
    assert_eq!(
        r.header("Authorization").unwrap(),
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/sts/aws4_request, \
         SignedHeaders=content-type;host;x-amz-date;x-amz-security-token;x-vault-aws-iam-server-id, \
         Signature=f7d551cf2ac90a89df7568166022276a645bdf9e142e3312943f6c065a4a1e00"
    );
    assert_eq!(r.header("X-Amz-Date"), Some("20150830T123600Z"));
    assert_eq!(r.header("X-Amz-Security-Token"), Some(SESSION));
    assert_eq!(r.header("X-Vault-AWS-IAM-Server-ID"), Some(SERVER_ID));
    assert_eq!(r.header("Host"), Some("sts.amazonaws.com"));
    assert_eq!(
        r.header("Content-Type"),
        Some("application/x-www-form-urlencoded; charset=utf-8")
    );
    assert!(!format!("{r:?}").contains(SESSION), "Debug shows no values");

    // The login body Vault's plugin decodes.
    let body = aws::iam_login_body(&r, Some("dp-role"));
    assert_eq!(body["role"], "dp-role");
    assert_eq!(body["iam_http_request_method"], "POST");
    let dec = |k: &str| String::from_utf8(B64.decode(body[k].as_str().unwrap()).unwrap()).unwrap();
    assert_eq!(dec("iam_request_url"), STS_URL);
    assert_eq!(dec("iam_request_body"), STS_BODY);
    let headers: Value = serde_json::from_str(&dec("iam_request_headers")).unwrap();
    assert_eq!(headers["X-Vault-Aws-Iam-Server-Id"], json!([SERVER_ID]));
    assert_eq!(
        headers["Authorization"],
        json!([r.header("Authorization").unwrap()])
    );
}

#[test]
fn signed_request_without_session_token_or_server_id_matches_botocore() {
    let creds = Credentials::new(AKID, SECRET, None, None, "test");
    let r = aws::sign_get_caller_identity(&creds, None, fixed_time()).unwrap();
    assert_eq!(
        r.header("Authorization").unwrap(),
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/sts/aws4_request, \
         SignedHeaders=content-type;host;x-amz-date, \
         Signature=6fb20d31f734d876c5682fdd2678d194cf68b862755f83b7ba1373c0874be25c"
    );
    assert_eq!(r.header("X-Amz-Security-Token"), None);
    assert_eq!(r.header("X-Vault-AWS-IAM-Server-ID"), None);
    assert!(aws::iam_login_body(&r, None).get("role").is_none());
}

// === 2. logins through fakes ===

const PKCS7: &str =
    "MIAGCSqGSIb3DQEHAqCAMIACAQExCzAJBgUrDgMCGgUAMIAGCSqG\nSIb3DQEHAaCAJIAEggHbewog\n";
const ARN: &str = "arn:aws:iam::123456789012:user/cp";

/// The fake Vault's, STS's and IMDS's shared state and what they saw.
struct Fake {
    bao_addr: String,
    root_token: String,
    policy: String,
    sts_url: String,
    http: reqwest::Client,
    /// Each login body accepted, decoded.
    logins: Mutex<Vec<Value>>,
    /// Headers of each GetCallerIdentity replayed to STS.
    sts_calls: Mutex<Vec<HeaderMap>>,
    /// AssumeRoleWithWebIdentity form bodies.
    web_identity_calls: Mutex<Vec<String>>,
}

struct Fakes {
    vault_url: String,
    sts_url: String,
    imds_url: String,
    state: Arc<Fake>,
    _bao: OpenBao,
    seed: SeedPki,
}

async fn serve(app: Router) -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    format!("http://{addr}")
}

async fn start_fakes() -> Fakes {
    let bao = OpenBao::start_dev().await.unwrap();
    let seed = bao.seed_setup(MESH).await.unwrap();
    // STS needs state only for recording; start it with a placeholder and fill the URL in after.
    let sts_state = Arc::new(Mutex::new(None::<Arc<Fake>>));
    let sts = {
        let s = sts_state.clone();
        // The plugin posts to the configured endpoint plus the signed URL's path (`/`).
        serve(Router::new().route(
            "/",
            post(move |headers: HeaderMap, body: String| {
                let s = s.clone();
                async move { fake_sts(s.lock().unwrap().clone().unwrap(), headers, body) }
            }),
        ))
        .await
    };
    let state = Arc::new(Fake {
        bao_addr: bao.addr.clone(),
        root_token: bao.root_token.clone(),
        policy: seed.policy.clone(),
        sts_url: sts.clone(),
        http: reqwest::Client::new(),
        logins: Mutex::default(),
        sts_calls: Mutex::default(),
        web_identity_calls: Mutex::default(),
    });
    *sts_state.lock().unwrap() = Some(state.clone());
    let vault = serve(
        Router::new()
            .route("/v1/auth/aws/login", post(fake_login))
            .fallback(any(proxy))
            .with_state(state.clone()),
    )
    .await;
    let imds = serve(
        Router::new()
            .route("/latest/api/token", put(|| async { "imds-token" }))
            .route(
                "/latest/dynamic/instance-identity/pkcs7",
                get(|h: HeaderMap| async move { imds_answer(&h, PKCS7) }),
            )
            .route(
                "/latest/meta-data/iam/security-credentials/",
                get(|h: HeaderMap| async move { imds_answer(&h, "cp-instance-role\n") }),
            )
            .route(
                "/latest/meta-data/iam/security-credentials/cp-instance-role",
                get(|h: HeaderMap| async move {
                    imds_answer(
                        &h,
                        r#"{"Code":"Success","AccessKeyId":"ASIAIMDS","SecretAccessKey":"imds-secret","Token":"imds-session","Expiration":"2099-01-01T00:00:00Z"}"#,
                    )
                }),
            ),
    )
    .await;
    Fakes {
        vault_url: vault,
        sts_url: sts,
        imds_url: imds,
        state,
        _bao: bao,
        seed,
    }
}

/// IMDSv2: only requests carrying the session token get answers.
fn imds_answer(h: &HeaderMap, body: &'static str) -> Response {
    if h.get("x-aws-ec2-metadata-token")
        .and_then(|v| v.to_str().ok())
        == Some("imds-token")
    {
        body.into_response()
    } else {
        StatusCode::UNAUTHORIZED.into_response()
    }
}

fn fake_sts(state: Arc<Fake>, headers: HeaderMap, body: String) -> Response {
    if body.contains("Action=AssumeRoleWithWebIdentity") {
        state.web_identity_calls.lock().unwrap().push(body);
        let xml = "<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult><Credentials>\
            <AccessKeyId>ASIAWEBID</AccessKeyId><SecretAccessKey>webid-secret</SecretAccessKey>\
            <SessionToken>webid-session</SessionToken><Expiration>2099-01-01T00:00:00Z</Expiration>\
            </Credentials></AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>";
        return ([("content-type", "text/xml")], xml).into_response();
    }
    state.sts_calls.lock().unwrap().push(headers);
    let xml = format!(
        "<GetCallerIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\
         <GetCallerIdentityResult><Arn>{ARN}</Arn><UserId>AIDAEXAMPLE</UserId>\
         <Account>123456789012</Account></GetCallerIdentityResult>\
         <ResponseMetadata><RequestId>r-1</RequestId></ResponseMetadata></GetCallerIdentityResponse>"
    );
    ([("content-type", "text/xml")], xml).into_response()
}

fn vault_error(msg: String) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "errors": [msg] }))).into_response()
}

/// What Vault's AWS plugin does with a login, reduced to the checks that concern the client.
async fn fake_login(State(st): State<Arc<Fake>>, Json(body): Json<Value>) -> Response {
    let role = body["role"].as_str().unwrap_or_default().to_string();
    if let Some(pkcs7) = body["pkcs7"].as_str() {
        if pkcs7 != PKCS7.replace('\n', "") || body["nonce"].as_str().is_none_or(str::is_empty) {
            return vault_error("client nonce mismatch or bad pkcs7".into());
        }
    } else {
        let dec = |k: &str| {
            body[k]
                .as_str()
                .and_then(|s| B64.decode(s).ok())
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default()
        };
        if body["iam_http_request_method"] != "POST" {
            return vault_error("invalid iam_http_request_method; only POST is supported".into());
        }
        if dec("iam_request_url") != STS_URL || dec("iam_request_body") != STS_BODY {
            return vault_error("invalid request url or body".into());
        }
        let headers: HashMap<String, Vec<String>> =
            serde_json::from_str(&dec("iam_request_headers")).unwrap_or_default();
        let get = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .and_then(|(_, v)| v.first().cloned())
        };
        let auth = get("Authorization").unwrap_or_default();
        if get("X-Vault-AWS-IAM-Server-ID").as_deref() != Some(SERVER_ID) {
            return vault_error("missing header \"X-Vault-AWS-IAM-Server-ID\"".into());
        }
        if !auth.contains("x-vault-aws-iam-server-id") {
            return vault_error("vault header wasn't signed".into());
        }
        // Replay the signed request to STS, with its Host header, as the plugin does.
        let mut req = st.http.post(format!("{}/", st.sts_url)).body(STS_BODY);
        for (k, v) in &headers {
            for val in v {
                req = req.header(k.as_str(), val.as_str());
            }
        }
        let resp = req.send().await.unwrap();
        let ok_type = resp.headers().get("content-type").map(|v| v.as_bytes()) == Some(b"text/xml");
        let xml = resp.text().await.unwrap();
        if !ok_type || !xml.contains(&format!("<Arn>{ARN}</Arn>")) {
            return vault_error(format!("unexpected STS answer: {xml}"));
        }
    }
    st.logins.lock().unwrap().push(body.clone());
    let token: Value = st
        .http
        .post(format!("{}/v1/auth/token/create-orphan", st.bao_addr))
        .header("X-Vault-Token", &st.root_token)
        .json(&json!({ "policies": [st.policy], "ttl": "1h" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    Json(json!({
        "auth": {
            "client_token": token["auth"]["client_token"],
            "lease_duration": 3600,
            "renewable": true,
            "metadata": { "role": role, "canonical_arn": ARN },
        },
        "warnings": null,
    }))
    .into_response()
}

/// Everything but the login goes to the real OpenBao.
async fn proxy(State(st): State<Arc<Fake>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body: Bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut out = st
        .http
        .request(parts.method.clone(), format!("{}{path}", st.bao_addr))
        .body(body);
    for h in ["x-vault-token", "x-vault-namespace", "content-type"] {
        if let Some(v) = parts.headers.get(h) {
            out = out.header(h, v);
        }
    }
    let resp = out.send().await.unwrap();
    let status = StatusCode::from_u16(resp.status().as_u16()).unwrap();
    let bytes = resp.bytes().await.unwrap();
    (status, bytes).into_response()
}

fn aws_backend(vault_url: &str, auth_type: AwsAuthType) -> meshplane_core::model::Backend {
    let mut conf = from_cp(vault_url);
    conf.auth = Some(VaultAuth::Aws(VaultAwsAuth {
        auth_type: Some(auth_type),
        role: Some("dp-role".into()),
        iam_server_id_header: Some(SERVER_ID.into()),
    }));
    backend(conf)
}

fn env(pairs: &[(&str, &str)]) -> Arc<HashMap<String, String>> {
    Arc::new(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

#[tokio::test]
async fn iam_login_with_environment_credentials_issues_a_real_certificate() {
    let f = start_fakes().await;
    let vault = VaultCa::with_env(env(&[
        ("AWS_ACCESS_KEY_ID", AKID),
        ("AWS_SECRET_ACCESS_KEY", SECRET),
        ("AWS_SESSION_TOKEN", SESSION),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ]));
    let secrets = Secrets::default();
    let b = aws_backend(&f.vault_url, AwsAuthType::Iam);
    vault.validate(&secrets.ca(), &b).await.unwrap();
    let cert = vault
        .issue(
            &secrets.ca(),
            &b,
            &request(tags(&[("kuma.io/service", "web")])),
        )
        .await
        .unwrap();
    let roots = vault.root_certs(&secrets.ca(), &b).await.unwrap();
    assert_eq!(ders(&roots.concat()), ders(&f.seed.root_pem));
    verify(&cert.cert_pem, &roots);

    let logins = f.state.logins.lock().unwrap().clone();
    assert_eq!(
        logins.len(),
        2,
        "validation and the backend's session each log in"
    );
    assert!(logins.iter().all(|l| l["role"] == "dp-role"));
    let calls = f.state.sts_calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 2);
    for h in &calls {
        let v = |k: &str| h.get(k).unwrap().to_str().unwrap().to_string();
        assert_eq!(v("host"), "sts.amazonaws.com");
        assert_eq!(v("x-vault-aws-iam-server-id"), SERVER_ID);
        assert_eq!(v("x-amz-security-token"), SESSION);
        assert!(v("authorization").starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/"));
    }
    let left = vault.token_time_to_expiry(MESH, "vault-1").unwrap();
    assert!(left > Duration::from_secs(3500), "{left:?}");
}

#[tokio::test]
async fn web_identity_then_imds_credentials_are_used_in_order() {
    let f = start_fakes().await;
    let dir = tempfile::tempdir().unwrap();
    let jwt = dir.path().join("token");
    std::fs::write(&jwt, "eyJ.irsa.jwt\n").unwrap();
    let jwt = jwt.display().to_string();
    let secrets = Secrets::default();
    let b = aws_backend(&f.vault_url, AwsAuthType::Iam);
    let req = request(tags(&[("kuma.io/service", "web")]));

    // IRSA: the projected token is exchanged at STS, and those credentials sign the login.
    let vault = VaultCa::with_env(env(&[
        ("AWS_WEB_IDENTITY_TOKEN_FILE", &jwt),
        ("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/irsa"),
        ("AWS_ENDPOINT_URL_STS", &f.sts_url),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("HOME", "/nonexistent"),
    ]));
    vault.issue(&secrets.ca(), &b, &req).await.unwrap();
    let form = f.state.web_identity_calls.lock().unwrap()[0].clone();
    assert!(
        form.contains("WebIdentityToken=eyJ.irsa.jwt&")
            || form.ends_with("WebIdentityToken=eyJ.irsa.jwt"),
        "{form}"
    );
    assert!(
        form.contains("RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Firsa"),
        "{form}"
    );
    let auth = |i: usize| {
        f.state.sts_calls.lock().unwrap()[i]
            .get("authorization")
            .unwrap()
            .to_str()
            .unwrap()
            .to_string()
    };
    assert!(auth(0).contains("Credential=ASIAWEBID/"), "{}", auth(0));

    // EC2 instance role through IMDSv2.
    let vault = VaultCa::with_env(env(&[
        ("AWS_EC2_METADATA_SERVICE_ENDPOINT", &f.imds_url),
        ("HOME", "/nonexistent"),
    ]));
    vault.issue(&secrets.ca(), &b, &req).await.unwrap();
    assert!(auth(1).contains("Credential=ASIAIMDS/"), "{}", auth(1));
    let h = f.state.sts_calls.lock().unwrap()[1].clone();
    assert_eq!(h.get("x-amz-security-token").unwrap(), "imds-session");
}

#[tokio::test]
async fn ec2_login_sends_the_identity_document_and_a_stable_nonce() {
    let f = start_fakes().await;
    let vault = VaultCa::with_env(env(&[("AWS_EC2_METADATA_SERVICE_ENDPOINT", &f.imds_url)]));
    let secrets = Secrets::default();
    let b = aws_backend(&f.vault_url, AwsAuthType::Ec2);
    vault.validate(&secrets.ca(), &b).await.unwrap();
    vault
        .issue(
            &secrets.ca(),
            &b,
            &request(tags(&[("kuma.io/service", "web")])),
        )
        .await
        .unwrap();
    let logins = f.state.logins.lock().unwrap().clone();
    assert_eq!(logins.len(), 2);
    assert_eq!(logins[0]["pkcs7"], PKCS7.replace('\n', ""));
    assert_eq!(logins[0]["role"], "dp-role");
    assert_eq!(
        logins[0]["nonce"], logins[1]["nonce"],
        "re-authentication needs the same nonce"
    );
}

#[tokio::test]
async fn missing_credentials_and_refused_logins_are_reported() {
    let f = start_fakes().await;
    let secrets = Secrets::default();
    let vault = VaultCa::with_env(env(&[
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("HOME", "/nonexistent"),
    ]));
    let e = vault
        .validate(&secrets.ca(), &aws_backend(&f.vault_url, AwsAuthType::Iam))
        .await
        .unwrap_err();
    assert_eq!(e.violations.len(), 1);
    assert_eq!(e.violations[0].field, "fromCp.auth.aws");
    assert!(
        e.violations[0]
            .reason
            .starts_with("no AWS credentials found"),
        "{e}"
    );

    // Without the server ID header the fake plugin refuses, and Vault's text comes through.
    let vault = VaultCa::with_env(env(&[
        ("AWS_ACCESS_KEY_ID", AKID),
        ("AWS_SECRET_ACCESS_KEY", SECRET),
    ]));
    let mut b = aws_backend(&f.vault_url, AwsAuthType::Iam);
    if let Some(meshplane_core::model::BackendConf::Vault(v)) = &mut b.conf
        && let Some(VaultAuth::Aws(a)) = &mut v.from_cp.auth
    {
        a.iam_server_id_header = None;
    }
    let e = vault.validate(&secrets.ca(), &b).await.unwrap_err();
    assert_eq!(
        e.violations[0].reason,
        format!(
            "Vault at {} refused the aws login: missing header \"X-Vault-AWS-IAM-Server-ID\"",
            f.vault_url
        )
    );
}
