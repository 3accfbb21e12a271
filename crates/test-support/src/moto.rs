//! moto's standalone server (`moto_server`, from the test venv) as a real AWS Private CA API on a
//! free loopback port, with a root CA created the way AWS requires — CreateCertificateAuthority,
//! then the CA's CSR signed by the CA itself with the RootCACertificate template and imported —
//! through the AWS SDK for Rust. IAM users for the credential and permission tests are made with
//! boto3 (moto depends on it) before IAM checking is switched on.
//!
//! moto does not enforce IAM until asked: `enforce_iam` makes every later request need a known
//! access key, a correct signature and a policy granting the action.

use std::{path::PathBuf, time::Duration};

use anyhow::{Context, bail};
use aws_config::{BehaviorVersion, Region};
use aws_credential_types::Credentials;
use aws_sdk_acmpca::{
    Client,
    primitives::Blob,
    types::{
        Asn1Subject, CertificateAuthorityConfiguration, CertificateAuthorityType, KeyAlgorithm,
        SigningAlgorithm, Validity, ValidityPeriodType,
    },
};

use crate::process::{Proc, free_port, wait_http_ok};

/// moto's default account; the CA ARN carries it.
pub const ACCOUNT: &str = "123456789012";
pub const REGION: &str = "us-east-1";
const ROOT_TEMPLATE: &str = "arn:aws:acm-pca:::template/RootCACertificate/V1";

/// The test venv (`MESHPLANE_TEST_VENV`, else `<repo>/.venv`), where scripts/lib.sh installs moto.
pub fn venv() -> PathBuf {
    std::env::var_os("MESHPLANE_TEST_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv"))
}

/// A running moto server, killed when dropped.
pub struct Moto {
    /// `http://127.0.0.1:<port>`: the backend's `conf.endpoint`.
    pub endpoint: String,
    proc: Proc,
}

/// A root CA in moto, ACTIVE, with its certificate imported.
#[derive(Clone, Debug)]
pub struct PrivateCa {
    pub arn: String,
    pub root_pem: String,
}

/// An IAM user's access key. `Debug` leaves the secret out.
#[derive(Clone)]
pub struct AccessKey {
    pub id: String,
    pub secret: String,
}

impl std::fmt::Debug for AccessKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessKey").field("id", &self.id).finish()
    }
}

impl Moto {
    pub async fn start() -> anyhow::Result<Self> {
        let bin = venv().join("bin/moto_server");
        if !bin.exists() {
            bail!(
                "{} is missing: scripts/test.sh installs it (. scripts/lib.sh; ensure_python_clients $PWD/.venv)",
                bin.display()
            );
        }
        let mut last = None;
        for _ in 0..3 {
            let port = free_port();
            let args = vec![
                "-H".into(),
                "127.0.0.1".into(),
                "-p".into(),
                port.to_string(),
            ];
            let mut proc = Proc::spawn("moto", &bin, &args, &[]).await?;
            let endpoint = format!("http://127.0.0.1:{port}");
            match wait_http_ok(
                &mut proc,
                &format!("{endpoint}/moto-api/data.json"),
                Duration::from_secs(30),
            )
            .await
            {
                Ok(()) => return Ok(Self { endpoint, proc }),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("moto did not start")))
    }

    pub fn logs(&self) -> String {
        self.proc.logs()
    }

    /// An SDK client with `key` (moto's placeholder credentials when `None`).
    pub async fn client(&self, key: Option<&AccessKey>) -> Client {
        let creds = match key {
            Some(k) => Credentials::new(&k.id, &k.secret, None, None, "test"),
            None => Credentials::new("testing", "testing", None, None, "test"),
        };
        let config = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(REGION))
            .credentials_provider(creds)
            .endpoint_url(&self.endpoint)
            .load()
            .await;
        Client::new(&config)
    }

    /// Creates a root CA and makes it ACTIVE: its CSR, signed by itself with the root template,
    /// imported as its certificate.
    pub async fn create_root_ca(&self, common_name: &str) -> anyhow::Result<PrivateCa> {
        let pca = self.client(None).await;
        let config = CertificateAuthorityConfiguration::builder()
            .key_algorithm(KeyAlgorithm::Rsa2048)
            .signing_algorithm(SigningAlgorithm::Sha256Withrsa)
            .subject(
                Asn1Subject::builder()
                    .common_name(common_name)
                    .organization("Meshplane tests")
                    .build(),
            )
            .build()?;
        let arn = pca
            .create_certificate_authority()
            .certificate_authority_configuration(config)
            .certificate_authority_type(CertificateAuthorityType::Root)
            .send()
            .await
            .context("CreateCertificateAuthority")?
            .certificate_authority_arn
            .context("no CertificateAuthorityArn")?;
        let csr = pca
            .get_certificate_authority_csr()
            .certificate_authority_arn(&arn)
            .send()
            .await
            .context("GetCertificateAuthorityCsr")?
            .csr
            .context("no Csr")?;
        let cert_arn = pca
            .issue_certificate()
            .certificate_authority_arn(&arn)
            .csr(Blob::new(csr.into_bytes()))
            .signing_algorithm(SigningAlgorithm::Sha256Withrsa)
            .template_arn(ROOT_TEMPLATE)
            .validity(
                Validity::builder()
                    .r#type(ValidityPeriodType::Years)
                    .value(10)
                    .build()?,
            )
            .send()
            .await
            .context("IssueCertificate (root)")?
            .certificate_arn
            .context("no CertificateArn")?;
        let root_pem = pca
            .get_certificate()
            .certificate_authority_arn(&arn)
            .certificate_arn(&cert_arn)
            .send()
            .await
            .context("GetCertificate (root)")?
            .certificate
            .context("no Certificate")?;
        pca.import_certificate_authority_certificate()
            .certificate_authority_arn(&arn)
            .certificate(Blob::new(root_pem.clone().into_bytes()))
            .send()
            .await
            .context("ImportCertificateAuthorityCertificate")?;
        Ok(PrivateCa { arn, root_pem })
    }

    /// Disables (or, with `enable`, re-enables) a CA through UpdateCertificateAuthority.
    pub async fn set_ca_status(&self, arn: &str, status: &str) -> anyhow::Result<()> {
        self.client(None)
            .await
            .update_certificate_authority()
            .certificate_authority_arn(arn)
            .status(status.into())
            .send()
            .await
            .context("UpdateCertificateAuthority")?;
        Ok(())
    }

    /// An IAM user with one inline policy allowing `actions` (on `*`: moto does not match
    /// resources for acm-pca), and its access key. Call before `enforce_iam`.
    pub async fn create_user(&self, name: &str, actions: &[&str]) -> anyhow::Result<AccessKey> {
        let policy = serde_json::json!({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}],
        });
        let script = r#"
import json, sys, boto3
iam = boto3.client("iam", endpoint_url=sys.argv[1], region_name="us-east-1",
                   aws_access_key_id="testing", aws_secret_access_key="testing")
iam.create_user(UserName=sys.argv[2])
iam.put_user_policy(UserName=sys.argv[2], PolicyName="pca", PolicyDocument=sys.argv[3])
k = iam.create_access_key(UserName=sys.argv[2])["AccessKey"]
print(json.dumps({"id": k["AccessKeyId"], "secret": k["SecretAccessKey"]}))
"#;
        let out = tokio::process::Command::new(venv().join("bin/python"))
            .args(["-c", script, &self.endpoint, name, &policy.to_string()])
            .output()
            .await
            .context("running boto3")?;
        if !out.status.success() {
            bail!(
                "creating IAM user {name} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        Ok(AccessKey {
            id: v["id"].as_str().context("no id")?.into(),
            secret: v["secret"].as_str().context("no secret")?.into(),
        })
    }

    /// From now on every request needs a known access key, a valid signature and a policy.
    pub async fn enforce_iam(&self) -> anyhow::Result<()> {
        let r = reqwest::Client::new()
            .post(format!("{}/moto-api/reset-auth", self.endpoint))
            .body("0")
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("reset-auth answered {}", r.status());
        }
        Ok(())
    }
}
