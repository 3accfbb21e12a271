//! The AWS SDK client for one backend and the three calls the backend makes: IssueCertificate,
//! GetCertificate (through the SDK's `certificate_issued` waiter) and
//! GetCertificateAuthorityCertificate. Retries of throttling and 5xx answers are the SDK's standard
//! strategy (jittered exponential backoff with a retry quota), bounded by our attempt count and an
//! operation timeout; what is still failing after that is for the certificate manager's backoff and
//! circuit breaker.

use std::time::Duration;

use aws_config::{BehaviorVersion, Region, retry::RetryConfig, timeout::TimeoutConfig};
use aws_credential_types::Credentials;
use aws_sdk_acmpca::{
    Client,
    client::Waiters,
    primitives::Blob,
    types::{SigningAlgorithm, Validity, ValidityPeriodType},
    waiters::certificate_issued::WaitUntilCertificateIssuedError,
};

use super::error::{AcmPcaError, Op};

/// Real AWS passes the CSR's subject and SANs through and sets KeyUsage (digitalSignature,
/// keyEncipherment) and ExtendedKeyUsage (serverAuth, clientAuth): the mTLS profile Kuma's leaves
/// have, without the APIPassthrough variant.
pub const END_ENTITY_TEMPLATE: &str = "arn:aws:acm-pca:::template/EndEntityCertificate/V1";
/// The SDK's first retry waits about this long, then doubles (jittered).
const INITIAL_BACKOFF: Duration = Duration::from_millis(200);

/// How to reach one Private CA.
pub(crate) struct Settings<'a> {
    pub arn: &'a str,
    pub region: &'a str,
    pub endpoint: Option<&'a str>,
    /// `None`: the SDK's default credential chain.
    pub credentials: Option<Credentials>,
    /// Bounds one call including the SDK's retries.
    pub timeout: Duration,
    pub attempts: u32,
}

/// A client bound to one CA.
#[derive(Clone, Debug)]
pub(crate) struct Pca {
    client: Client,
    arn: String,
    timeout: Duration,
}

/// What IssueCertificate + GetCertificate returned.
pub(crate) struct Issued {
    pub cert_pem: String,
    pub chain_pem: Option<String>,
}

/// The CA's own certificate and the chain above it (empty for a root).
pub(crate) struct CaCertificate {
    pub cert_pem: String,
    pub chain_pem: Option<String>,
}

impl Pca {
    pub(crate) async fn new(s: Settings<'_>) -> Self {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(s.region.to_string()))
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(s.attempts.max(1))
                    .with_initial_backoff(INITIAL_BACKOFF),
            )
            .timeout_config(
                TimeoutConfig::builder()
                    .operation_timeout(s.timeout)
                    .connect_timeout(s.timeout.min(Duration::from_secs(5)))
                    .build(),
            );
        if let Some(c) = s.credentials {
            loader = loader.credentials_provider(c);
        }
        if let Some(e) = s.endpoint {
            loader = loader.endpoint_url(e);
        }
        let config = loader.load().await;
        Self {
            client: Client::new(&config),
            arn: s.arn.to_string(),
            timeout: s.timeout,
        }
    }

    pub(crate) fn arn(&self) -> &str {
        &self.arn
    }

    /// GetCertificateAuthorityCertificate: the CA's certificate and its parents.
    pub(crate) async fn ca_certificate(&self) -> Result<CaCertificate, AcmPcaError> {
        let op = Op::GetCertificateAuthorityCertificate;
        let out = self
            .client
            .get_certificate_authority_certificate()
            .certificate_authority_arn(&self.arn)
            .send()
            .await
            .map_err(|e| AcmPcaError::from_sdk(op, &self.arn, &e))?;
        let cert_pem = out
            .certificate
            .filter(|c| !c.trim().is_empty())
            .ok_or_else(|| AcmPcaError::Malformed {
                op: op.name(),
                arn: self.arn.clone(),
                reason: "no Certificate (has the CA certificate been imported?)".into(),
            })?;
        Ok(CaCertificate {
            cert_pem,
            chain_pem: out.certificate_chain.filter(|c| !c.trim().is_empty()),
        })
    }

    /// IssueCertificate with the end-entity template, valid from `not_before` to `not_after`
    /// (Unix seconds: the API has no unit below a day), then GetCertificate until it is ready.
    pub(crate) async fn issue(
        &self,
        csr_pem: &str,
        algorithm: SigningAlgorithm,
        not_before: i64,
        not_after: i64,
    ) -> Result<Issued, AcmPcaError> {
        let absolute = |t: i64| {
            Validity::builder()
                .r#type(ValidityPeriodType::Absolute)
                .value(t)
                .build()
        };
        let bad_input = |e: aws_sdk_acmpca::error::BuildError| {
            AcmPcaError::setup(None, format!("BUG: invalid IssueCertificate input: {e}"))
        };
        let idempotency = hex::encode(rand::random::<[u8; 16]>());
        let out = self
            .client
            .issue_certificate()
            .certificate_authority_arn(&self.arn)
            .csr(Blob::new(csr_pem.as_bytes()))
            .signing_algorithm(algorithm)
            .template_arn(END_ENTITY_TEMPLATE)
            .validity(absolute(not_after).map_err(bad_input)?)
            .validity_not_before(absolute(not_before).map_err(bad_input)?)
            .idempotency_token(idempotency)
            .send()
            .await
            .map_err(|e| AcmPcaError::from_sdk(Op::IssueCertificate, &self.arn, &e))?;
        let cert_arn = out.certificate_arn.ok_or_else(|| AcmPcaError::Malformed {
            op: Op::IssueCertificate.name(),
            arn: self.arn.clone(),
            reason: "no CertificateArn".into(),
        })?;
        self.wait_for(&cert_arn).await
    }

    async fn wait_for(&self, cert_arn: &str) -> Result<Issued, AcmPcaError> {
        let op = Op::GetCertificate;
        let polled = self
            .client
            .wait_until_certificate_issued()
            .certificate_authority_arn(&self.arn)
            .certificate_arn(cert_arn)
            .wait(self.timeout)
            .await;
        let out = match polled {
            Ok(done) => done
                .into_result()
                .map_err(|e| AcmPcaError::from_sdk(op, &self.arn, &e)),
            Err(WaitUntilCertificateIssuedError::FailureState(f)) => {
                match f.into_final_poll().into_result() {
                    Err(e) => Err(AcmPcaError::from_modeled(op, &self.arn, &e)),
                    Ok(_) => Err(AcmPcaError::Malformed {
                        op: op.name(),
                        arn: self.arn.clone(),
                        reason: "the waiter failed on a successful answer".into(),
                    }),
                }
            }
            Err(WaitUntilCertificateIssuedError::OperationFailed(f)) => {
                Err(AcmPcaError::from_sdk(op, &self.arn, f.error()))
            }
            Err(WaitUntilCertificateIssuedError::ExceededMaxWait(w)) => {
                Err(AcmPcaError::Unavailable {
                    op: op.name(),
                    arn: self.arn.clone(),
                    reason: format!(
                        "{cert_arn} was not ready after {:?} ({} polls)",
                        w.elapsed(),
                        w.poll_count()
                    ),
                })
            }
            Err(other) => Err(AcmPcaError::Unavailable {
                op: op.name(),
                arn: self.arn.clone(),
                reason: aws_sdk_acmpca::error::DisplayErrorContext(&other).to_string(),
            }),
        }?;
        let cert_pem = out
            .certificate
            .filter(|c| !c.trim().is_empty())
            .ok_or_else(|| AcmPcaError::Malformed {
                op: op.name(),
                arn: self.arn.clone(),
                reason: format!("no Certificate for {cert_arn}"),
            })?;
        Ok(Issued {
            cert_pem,
            chain_pem: out.certificate_chain.filter(|c| !c.trim().is_empty()),
        })
    }
}
