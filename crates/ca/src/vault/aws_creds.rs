//! The AWS credential chain for Vault's AWS auth, in the SDKs' order: environment variables, the
//! shared credentials file, web identity (IRSA: `AssumeRoleWithWebIdentity`), then EC2 IMDSv2.
//! Plus the EC2 instance identity document for the EC2 method.
//!
//! Why our own and not `aws-config`: the four sources are a few small HTTP calls over the reqwest
//! client we already have, while `aws-config` brings the smithy runtime with its own HTTP/TLS
//! stack and much more build time for the same result. Endpoints follow the SDKs' override
//! variables (`AWS_ENDPOINT_URL_STS`, `AWS_EC2_METADATA_SERVICE_ENDPOINT`), which also lets tests
//! point them at fakes. The environment is read through `Env`, so tests need not touch the
//! process's variables.

use std::{collections::HashMap, sync::Arc, time::Duration};

use aws_credential_types::Credentials;
use serde_json::Value;

use super::error::VaultError;

/// Where environment variables come from.
pub trait Env: Send + Sync {
    fn var(&self, name: &str) -> Option<String>;
}

/// The process's environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl Env for HashMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

const FIELD: Option<&str> = Some("fromCp.auth.aws");
const IMDS_DEFAULT: &str = "http://169.254.169.254";
/// IMDS answers in milliseconds on EC2; off EC2 nothing answers, so give up quickly.
const IMDS_TIMEOUT: Duration = Duration::from_secs(2);
const STS_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) struct CredentialChain {
    env: Arc<dyn Env>,
    http: reqwest::Client,
}

fn err(message: impl Into<String>) -> VaultError {
    VaultError::setup(FIELD, message)
}

impl CredentialChain {
    pub(crate) fn new(env: Arc<dyn Env>) -> Result<Self, VaultError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .build()
            .map_err(|e| err(format!("cannot build the HTTP client for AWS: {e}")))?;
        Ok(Self { env, http })
    }

    fn var(&self, name: &str) -> Option<String> {
        self.env.var(name).filter(|v| !v.trim().is_empty())
    }

    /// The first source that has credentials.
    pub(crate) async fn credentials(&self) -> Result<Credentials, VaultError> {
        if let Some(c) = self.env_vars()? {
            return Ok(c);
        }
        if let Some(c) = self.shared_file()? {
            return Ok(c);
        }
        if let Some(c) = self.web_identity().await? {
            return Ok(c);
        }
        if let Some(c) = self.instance_role().await? {
            return Ok(c);
        }
        Err(err(
            "no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, a shared \
             credentials file, AWS_WEB_IDENTITY_TOKEN_FILE with AWS_ROLE_ARN (IRSA), or run on EC2 \
             with an instance role",
        ))
    }

    fn env_vars(&self) -> Result<Option<Credentials>, VaultError> {
        let Some(id) = self.var("AWS_ACCESS_KEY_ID") else {
            return Ok(None);
        };
        let secret = self
            .var("AWS_SECRET_ACCESS_KEY")
            .ok_or_else(|| err("AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not"))?;
        Ok(Some(Credentials::new(
            id,
            secret,
            self.var("AWS_SESSION_TOKEN"),
            None,
            "environment",
        )))
    }

    fn shared_file(&self) -> Result<Option<Credentials>, VaultError> {
        let path = match self.var("AWS_SHARED_CREDENTIALS_FILE") {
            Some(p) => p,
            None => match self.var("HOME") {
                Some(home) => format!("{home}/.aws/credentials"),
                None => return Ok(None),
            },
        };
        let Ok(text) = std::fs::read_to_string(&path) else {
            return Ok(None);
        };
        let profile = self.var("AWS_PROFILE").unwrap_or_else(|| "default".into());
        let section = ini_section(&text, &profile);
        match (
            section.get("aws_access_key_id"),
            section.get("aws_secret_access_key"),
        ) {
            (Some(id), Some(secret)) => Ok(Some(Credentials::new(
                id.clone(),
                secret.clone(),
                section.get("aws_session_token").cloned(),
                None,
                "shared-credentials-file",
            ))),
            (Some(_), None) => Err(err(format!(
                "profile {profile:?} in {path} has no aws_secret_access_key"
            ))),
            _ => Ok(None),
        }
    }

    async fn web_identity(&self) -> Result<Option<Credentials>, VaultError> {
        let (Some(file), Some(role_arn)) = (
            self.var("AWS_WEB_IDENTITY_TOKEN_FILE"),
            self.var("AWS_ROLE_ARN"),
        ) else {
            return Ok(None);
        };
        let token = std::fs::read_to_string(&file).map_err(|e| {
            err(format!(
                "cannot read AWS_WEB_IDENTITY_TOKEN_FILE {file}: {e}"
            ))
        })?;
        let session = self
            .var("AWS_ROLE_SESSION_NAME")
            .unwrap_or_else(|| "meshplane".into());
        let endpoint = match (self.var("AWS_ENDPOINT_URL_STS"), self.region()) {
            (Some(e), _) => e,
            (None, Some(r)) => format!("https://sts.{r}.amazonaws.com"),
            (None, None) => "https://sts.amazonaws.com".into(),
        };
        let form: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("Action", "AssumeRoleWithWebIdentity")
            .append_pair("Version", "2011-06-15")
            .append_pair("RoleArn", &role_arn)
            .append_pair("RoleSessionName", &session)
            .append_pair("WebIdentityToken", token.trim())
            .finish();
        let resp = self
            .http
            .post(format!("{}/", endpoint.trim_end_matches('/')))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(form)
            .timeout(STS_TIMEOUT)
            .send()
            .await
            .map_err(|e| {
                err(format!(
                    "AssumeRoleWithWebIdentity at {endpoint} failed: {e}"
                ))
            })?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            let msg = xml_text(&text, "Message").unwrap_or_else(|| status.to_string());
            return Err(err(format!(
                "AssumeRoleWithWebIdentity for {role_arn} refused: {msg}"
            )));
        }
        match (
            xml_text(&text, "AccessKeyId"),
            xml_text(&text, "SecretAccessKey"),
        ) {
            (Some(id), Some(secret)) => Ok(Some(Credentials::new(
                id,
                secret,
                xml_text(&text, "SessionToken"),
                None,
                "web-identity",
            ))),
            _ => Err(err(
                "AssumeRoleWithWebIdentity answered without credentials",
            )),
        }
    }

    fn region(&self) -> Option<String> {
        self.var("AWS_REGION")
            .or_else(|| self.var("AWS_DEFAULT_REGION"))
    }

    fn imds_endpoint(&self) -> Option<String> {
        if self
            .var("AWS_EC2_METADATA_DISABLED")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
        {
            return None;
        }
        Some(
            self.var("AWS_EC2_METADATA_SERVICE_ENDPOINT")
                .unwrap_or_else(|| IMDS_DEFAULT.into())
                .trim_end_matches('/')
                .to_string(),
        )
    }

    /// An IMDSv2 session token, or `None` when no IMDS answers.
    async fn imds_token(&self, base: &str) -> Option<String> {
        let r = self
            .http
            .put(format!("{base}/latest/api/token"))
            .header("X-aws-ec2-metadata-token-ttl-seconds", "300")
            .timeout(IMDS_TIMEOUT)
            .send()
            .await
            .ok()?;
        if !r.status().is_success() {
            return None;
        }
        r.text().await.ok().filter(|t| !t.is_empty())
    }

    async fn imds_get(&self, base: &str, token: &str, path: &str) -> Result<String, VaultError> {
        let r = self
            .http
            .get(format!("{base}{path}"))
            .header("X-aws-ec2-metadata-token", token)
            .timeout(IMDS_TIMEOUT)
            .send()
            .await
            .map_err(|e| err(format!("EC2 instance metadata {path}: {e}")))?;
        let status = r.status();
        if !status.is_success() {
            return Err(err(format!("EC2 instance metadata {path}: {status}")));
        }
        r.text()
            .await
            .map_err(|e| err(format!("EC2 instance metadata {path}: {e}")))
    }

    async fn instance_role(&self) -> Result<Option<Credentials>, VaultError> {
        let Some(base) = self.imds_endpoint() else {
            return Ok(None);
        };
        let Some(token) = self.imds_token(&base).await else {
            return Ok(None);
        };
        let list = "/latest/meta-data/iam/security-credentials/";
        let roles = self.imds_get(&base, &token, list).await?;
        let Some(role) = roles.lines().map(str::trim).find(|l| !l.is_empty()) else {
            return Err(err("this EC2 instance has no IAM role (instance profile)"));
        };
        let doc = self
            .imds_get(&base, &token, &format!("{list}{role}"))
            .await?;
        let v: Value = serde_json::from_str(&doc)
            .map_err(|_| err("EC2 instance metadata credentials are not JSON"))?;
        match (v["AccessKeyId"].as_str(), v["SecretAccessKey"].as_str()) {
            (Some(id), Some(secret)) => Ok(Some(Credentials::new(
                id,
                secret,
                v["Token"].as_str().map(str::to_string),
                None,
                "ec2-instance-metadata",
            ))),
            _ => Err(err(format!(
                "EC2 instance metadata has no credentials for role {role}"
            ))),
        }
    }

    /// The instance identity document signed as PKCS#7, for the EC2 auth method.
    pub(crate) async fn ec2_identity_pkcs7(&self) -> Result<String, VaultError> {
        let base = self.imds_endpoint().ok_or_else(|| {
            err("EC2 auth needs instance metadata, but AWS_EC2_METADATA_DISABLED is set")
        })?;
        let token = self.imds_token(&base).await.ok_or_else(|| {
            err(format!(
                "EC2 auth needs the instance metadata service, and none answered at {base}"
            ))
        })?;
        self.imds_get(&base, &token, "/latest/dynamic/instance-identity/pkcs7")
            .await
    }
}

/// `key = value` pairs of `[name]` in an INI file; `#` and `;` start comments.
fn ini_section(text: &str, name: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut inside = false;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(header) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = header.trim() == name;
            continue;
        }
        if inside && let Some((k, v)) = line.split_once('=') {
            out.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    out
}

/// The text of the first `<tag>…</tag>` in an STS answer. STS answers are flat and unescaped
/// where credentials appear, so a full XML parser buys nothing here.
fn xml_text(xml: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&close)? + start;
    let v = xml[start..end]
        .replace("&amp;", "&")
        .replace("&lt;", "<")
        .replace("&gt;", ">");
    Some(v.trim().to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a panic is how a test reports failure")]
mod tests {
    use super::*;

    fn chain(vars: &[(&str, &str)]) -> CredentialChain {
        let env: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        CredentialChain::new(Arc::new(env)).unwrap()
    }

    #[tokio::test]
    async fn environment_comes_first() {
        let c = chain(&[
            ("AWS_ACCESS_KEY_ID", "AKID"),
            ("AWS_SECRET_ACCESS_KEY", "SECRET"),
            ("AWS_SESSION_TOKEN", "TOK"),
            ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent"),
        ])
        .credentials()
        .await
        .unwrap();
        assert_eq!(c.access_key_id(), "AKID");
        assert_eq!(c.session_token(), Some("TOK"));
        assert!(!format!("{c:?}").contains("SECRET"));
    }

    #[tokio::test]
    async fn shared_file_profile() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("credentials");
        std::fs::write(
            &file,
            "[default]\naws_access_key_id = D\naws_secret_access_key = DS\n\n# c\n[ci]\naws_access_key_id=C\naws_secret_access_key=CS\n",
        )
        .unwrap();
        let f = file.display().to_string();
        let c = chain(&[
            ("AWS_SHARED_CREDENTIALS_FILE", &f),
            ("AWS_PROFILE", "ci"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ])
        .credentials()
        .await
        .unwrap();
        assert_eq!(c.access_key_id(), "C");
        assert_eq!(c.secret_access_key(), "CS");
    }

    #[tokio::test]
    async fn nothing_found_is_a_clear_error() {
        let e = chain(&[("AWS_EC2_METADATA_DISABLED", "true")])
            .credentials()
            .await
            .unwrap_err();
        assert!(e.to_string().starts_with("no AWS credentials found"), "{e}");
    }

    #[test]
    fn sts_xml_fields() {
        let x = "<R><Credentials><AccessKeyId>ASIA</AccessKeyId><SecretAccessKey>s&amp;k</SecretAccessKey></Credentials></R>";
        assert_eq!(xml_text(x, "AccessKeyId").as_deref(), Some("ASIA"));
        assert_eq!(xml_text(x, "SecretAccessKey").as_deref(), Some("s&k"));
        assert_eq!(xml_text(x, "SessionToken"), None);
    }
}
