//! AWS auth to Vault (`auth/aws/login`): the IAM method's SigV4-signed `sts:GetCallerIdentity`
//! request, which Vault replays to STS to learn who we are, and the EC2 method's signed instance
//! identity document from IMDS.
//!
//! What is tested, and why that way: OpenBao ships no AWS auth plugin, so no real server checks
//! these logins here. The signed request is tested against a fixed-credential, fixed-time vector
//! computed independently with botocore (exact `Authorization`, `SignedHeaders` including
//! `x-vault-aws-iam-server-id`), and the whole login is tested against a fake Vault that decodes the
//! payload and forwards the signed request to a fake STS exactly as Vault's plugin does
//! (`crates/ca/tests/vault_aws.rs`).

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use aws_credential_types::Credentials;
use aws_sigv4::{
    http_request::{SignableBody, SignableRequest, SigningSettings, sign},
    sign::v4,
};
use base64::{Engine, engine::general_purpose::STANDARD as B64};
use meshplane_core::model::mesh::{AwsAuthType, VaultAwsAuth};
use reqwest::Method as Http;
use serde_json::{Map, Value, json};

use super::{
    auth::{Lease, lease_from_auth},
    aws_creds::{CredentialChain, Env},
    client::Endpoint,
    error::{Op, VaultError},
};

/// The request Vault's IAM method expects: the global STS endpoint, which signs for us-east-1.
pub const STS_URL: &str = "https://sts.amazonaws.com/";
pub const STS_HOST: &str = "sts.amazonaws.com";
pub const STS_BODY: &str = "Action=GetCallerIdentity&Version=2011-06-15";
pub const STS_REGION: &str = "us-east-1";
pub const CONTENT_TYPE: &str = "application/x-www-form-urlencoded; charset=utf-8";
/// The header Vault compares with the role's `iam_server_id_header_value`.
pub const SERVER_ID_HEADER: &str = "X-Vault-AWS-IAM-Server-ID";

/// A signed `GetCallerIdentity` request, ready to be base64-encoded into a login.
/// `Debug` leaves the header values out (they include the session token).
#[derive(Clone)]
pub struct SignedRequest {
    pub url: String,
    pub body: String,
    /// Header names in Go's canonical form, in order: Content-Type, Host, X-Vault-Aws-Iam-Server-Id
    /// (when set), then the signer's X-Amz-Date, X-Amz-Security-Token (temporary credentials)
    /// and Authorization.
    pub headers: Vec<(String, String)>,
}

impl std::fmt::Debug for SignedRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("SignedRequest")
            .field("url", &self.url)
            .field("headers", &names)
            .finish()
    }
}

impl SignedRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Signs `POST https://sts.amazonaws.com/` (`GetCallerIdentity`) with SigV4 for us-east-1/sts at
/// `time`. The server ID header, when given, is sent and signed.
pub fn sign_get_caller_identity(
    creds: &Credentials,
    server_id: Option<&str>,
    time: SystemTime,
) -> Result<SignedRequest, VaultError> {
    let mut headers: Vec<(String, String)> = vec![
        ("Content-Type".into(), CONTENT_TYPE.into()),
        ("Host".into(), STS_HOST.into()),
    ];
    if let Some(id) = server_id.filter(|s| !s.is_empty()) {
        headers.push((canonical_case(SERVER_ID_HEADER), id.to_string()));
    }
    let identity = creds.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(STS_REGION)
        .name("sts")
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| VaultError::setup(Some("fromCp.auth.aws"), format!("SigV4 setup: {e}")))?
        .into();
    let signable = SignableRequest::new(
        "POST",
        STS_URL,
        headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        SignableBody::Bytes(STS_BODY.as_bytes()),
    )
    .map_err(|e| VaultError::setup(Some("fromCp.auth.aws"), format!("SigV4 request: {e}")))?;
    let (instructions, _signature) = sign(signable, &params)
        .map_err(|e| VaultError::setup(Some("fromCp.auth.aws"), format!("SigV4 signing: {e}")))?
        .into_parts();
    for (name, value) in instructions.headers() {
        headers.push((canonical_case(name), value.to_string()));
    }
    Ok(SignedRequest {
        url: STS_URL.into(),
        body: STS_BODY.into(),
        headers,
    })
}

/// `x-amz-date` → `X-Amz-Date`, as Go's `http.Header` keys names (Vault's own client sends them so).
fn canonical_case(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut c = part.chars();
            match c.next() {
                Some(f) => f.to_ascii_uppercase().to_string() + &c.as_str().to_ascii_lowercase(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// The `auth/aws/login` body for the IAM method. Headers go as JSON `{"Name": ["value"]}`.
pub fn iam_login_body(req: &SignedRequest, role: Option<&str>) -> Value {
    let mut headers = Map::new();
    for (k, v) in &req.headers {
        headers.insert(k.clone(), json!([v]));
    }
    let mut body = json!({
        "iam_http_request_method": "POST",
        "iam_request_url": B64.encode(&req.url),
        "iam_request_body": B64.encode(&req.body),
        "iam_request_headers": B64.encode(Value::Object(headers).to_string()),
    });
    if let Some(r) = role.filter(|r| !r.is_empty()) {
        body["role"] = json!(r);
    }
    body
}

/// The `auth/aws/login` body for the EC2 method: the PKCS#7 identity document (newlines removed,
/// as Vault's own CLI helper does) and the client nonce that lets this process log in again.
pub fn ec2_login_body(pkcs7: &str, role: Option<&str>, nonce: &str) -> Value {
    let pkcs7: String = pkcs7.split_whitespace().collect();
    let mut body = json!({ "pkcs7": pkcs7, "nonce": nonce });
    if let Some(r) = role.filter(|r| !r.is_empty()) {
        body["role"] = json!(r);
    }
    body
}

/// Everything an AWS login needs, kept by the session for re-logins.
pub(crate) struct AwsLogin {
    conf: VaultAwsAuth,
    chain: CredentialChain,
    /// EC2 re-authentication needs the same nonce every time; one per backend per process.
    nonce: String,
}

impl AwsLogin {
    pub(crate) fn new(
        conf: VaultAwsAuth,
        env: Arc<dyn Env>,
        nonce: String,
    ) -> Result<Self, VaultError> {
        Ok(Self {
            conf,
            chain: CredentialChain::new(env)?,
            nonce,
        })
    }

    pub(crate) async fn login(
        &self,
        ep: &Endpoint,
        timeout: Duration,
    ) -> Result<Lease, VaultError> {
        let body = match self.conf.auth_type.unwrap_or(AwsAuthType::Iam) {
            AwsAuthType::Iam => {
                let creds = self.chain.credentials().await?;
                let signed = sign_get_caller_identity(
                    &creds,
                    self.conf.iam_server_id_header.as_deref(),
                    SystemTime::now(),
                )?;
                iam_login_body(&signed, self.conf.role.as_deref())
            }
            AwsAuthType::Ec2 => {
                let pkcs7 = self.chain.ec2_identity_pkcs7().await?;
                ec2_login_body(&pkcs7, self.conf.role.as_deref(), &self.nonce)
            }
        };
        let r = ep
            .call(
                Http::POST,
                "auth/aws/login",
                None,
                Some(&body),
                Op::Login { method: "aws" },
                timeout,
            )
            .await?;
        lease_from_auth(ep, "auth/aws/login", &r.body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_names_are_go_canonical() {
        assert_eq!(canonical_case("x-amz-date"), "X-Amz-Date");
        assert_eq!(canonical_case("authorization"), "Authorization");
        assert_eq!(
            canonical_case("x-amz-security-token"),
            "X-Amz-Security-Token"
        );
        assert_eq!(
            canonical_case(SERVER_ID_HEADER),
            "X-Vault-Aws-Iam-Server-Id"
        );
    }

    #[test]
    fn ec2_body_strips_newlines_and_keeps_the_nonce() {
        let b = ec2_login_body("MIAG\nCSqG\n", Some("r"), "n1");
        assert_eq!(b, json!({"pkcs7": "MIAGCSqG", "nonce": "n1", "role": "r"}));
    }
}
