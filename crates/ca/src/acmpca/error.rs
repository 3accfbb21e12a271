//! What can go wrong talking to AWS Private CA, sorted by what the user has to fix — credentials,
//! the ARN, IAM permissions, the CA's state — or "AWS is briefly unable" (throttling, 5xx,
//! network). Every message carries AWS's own error code and text.
//!
//! Architecture invariant: no variant holds a secret access key, a private key or a request body.

use aws_sdk_acmpca::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use meshplane_core::ca::CaError;

/// Codes AWS answers when the signature's credentials are unknown, expired or malformed.
const CREDENTIAL_CODES: &[&str] = &[
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "IncompleteSignature",
    "InvalidSignatureException",
    "MissingAuthenticationToken",
    "ExpiredToken",
    "ExpiredTokenException",
    "AuthFailure",
];
const PERMISSION_CODES: &[&str] = &["AccessDeniedException", "AccessDenied"];
const NOT_FOUND_CODES: &[&str] = &["ResourceNotFoundException", "InvalidArnException"];
const CA_STATE_CODES: &[&str] = &["InvalidStateException", "RequestFailedException"];
/// IssueCertificate is limited per second per account; these (and 5xx) pass once the rate drops.
const THROTTLE_CODES: &[&str] = &[
    "ThrottlingException",
    "Throttling",
    "ThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "RequestThrottledException",
    "SlowDown",
];
const UNAVAILABLE_CODES: &[&str] = &[
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "InternalFailure",
    "InternalServerError",
    "RequestTimeout",
    "RequestTimeoutException",
];

/// The API call that failed, for messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    IssueCertificate,
    GetCertificate,
    GetCertificateAuthorityCertificate,
}

impl Op {
    pub fn name(self) -> &'static str {
        match self {
            Self::IssueCertificate => "IssueCertificate",
            Self::GetCertificate => "GetCertificate",
            Self::GetCertificateAuthorityCertificate => "GetCertificateAuthorityCertificate",
        }
    }

    fn action(self) -> String {
        format!("acm-pca:{}", self.name())
    }
}

/// One failed Private CA interaction.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AcmPcaError {
    #[error(
        "AWS refused the credentials on {op} ({code}: {message}); check auth.awsCredentials or the \
         default credential chain's source"
    )]
    Credentials {
        op: &'static str,
        code: String,
        message: String,
    },
    #[error(
        "AWS found no credentials: {reason}; set auth.awsCredentials or provide them to the \
         control plane (environment, profile, web identity / IRSA, instance metadata)"
    )]
    NoCredentials { reason: String },
    #[error(
        "the credentials may not call {op} on {arn} ({code}: {message}); the IAM policy must allow \
         {action}"
    )]
    Permissions {
        op: &'static str,
        action: String,
        arn: String,
        code: String,
        message: String,
    },
    #[error(
        "AWS has no Private CA {arn} ({code}: {message}); check the ARN, its region and account"
    )]
    NotFound {
        arn: String,
        code: String,
        message: String,
    },
    #[error(
        "the Private CA {arn} cannot issue now ({code}: {message}); it must be ACTIVE, with its CA \
         certificate imported and not expired"
    )]
    CaState {
        arn: String,
        code: String,
        message: String,
    },
    #[error("AWS is throttling {op} on {arn} ({code}: {message})")]
    Throttled {
        op: &'static str,
        arn: String,
        code: String,
        message: String,
    },
    #[error("AWS Private CA is unavailable for {op} on {arn}: {reason}")]
    Unavailable {
        op: &'static str,
        arn: String,
        reason: String,
    },
    #[error("AWS refused {op} on {arn} ({code}: {message})")]
    Rejected {
        op: &'static str,
        arn: String,
        code: String,
        message: String,
    },
    #[error("AWS answered {op} on {arn} with something unusable: {reason}")]
    Malformed {
        op: &'static str,
        arn: String,
        reason: String,
    },
    /// Local material that cannot work; `field` is the conf path when one field is to blame.
    #[error("{message}")]
    Setup {
        field: Option<&'static str>,
        message: String,
    },
}

impl AcmPcaError {
    pub(crate) fn setup(field: Option<&'static str>, message: impl Into<String>) -> Self {
        Self::Setup {
            field,
            message: message.into(),
        }
    }

    /// Sorts an SDK failure by its AWS error code (or, without an answer, by what broke).
    pub(crate) fn from_sdk<E>(op: Op, arn: &str, e: &SdkError<E>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let unavailable = |reason: String| Self::Unavailable {
            op: op.name(),
            arn: arn.into(),
            reason,
        };
        match e {
            SdkError::ServiceError(ctx) => {
                let status = ctx.raw().status().as_u16();
                let code = ctx.err().code().unwrap_or("").to_string();
                let message = ctx.err().message().unwrap_or("").to_string();
                Self::from_code(op, arn, status, code, message)
            }
            SdkError::TimeoutError(_) => unavailable("the request timed out".into()),
            SdkError::DispatchFailure(_) | SdkError::ConstructionFailure(_) => {
                let text = DisplayErrorContext(e).to_string();
                if text.contains("credentials") && !text.contains("dispatch failure: io") {
                    Self::NoCredentials { reason: text }
                } else {
                    unavailable(text)
                }
            }
            // An error answer the SDK could not parse as JSON (moto answers IAM failures with a
            // query-protocol XML body): judged by the code it carries, else by its status.
            SdkError::ResponseError(ctx) => {
                let raw = ctx.raw();
                let status = raw.status().as_u16();
                match raw_error_code(raw.headers().get("x-amzn-errortype"), raw.body().bytes()) {
                    Some((code, message)) => Self::from_code(op, arn, status, code, message),
                    None if (400..500).contains(&status) && status != 429 => Self::Rejected {
                        op: op.name(),
                        arn: arn.into(),
                        code: format!("HTTP {status}"),
                        message: DisplayErrorContext(e).to_string(),
                    },
                    None => unavailable(DisplayErrorContext(e).to_string()),
                }
            }
            _ => unavailable(DisplayErrorContext(e).to_string()),
        }
    }

    /// Sorts a modeled error the waiter ended on (its HTTP status is not kept: 400 stands in).
    pub(crate) fn from_modeled<E: ProvideErrorMetadata>(op: Op, arn: &str, e: &E) -> Self {
        let code = e.code().unwrap_or("").to_string();
        let message = e.message().unwrap_or("").to_string();
        Self::from_code(op, arn, 400, code, message)
    }

    /// Sorts an answer with an HTTP status and an AWS error code.
    pub(crate) fn from_code(op: Op, arn: &str, status: u16, code: String, message: String) -> Self {
        let c = code.as_str();
        let arn = arn.to_string();
        let op_name = op.name();
        if CREDENTIAL_CODES.contains(&c) {
            Self::Credentials {
                op: op_name,
                code,
                message,
            }
        } else if PERMISSION_CODES.contains(&c) {
            Self::Permissions {
                op: op_name,
                action: op.action(),
                arn,
                code,
                message,
            }
        } else if NOT_FOUND_CODES.contains(&c) {
            Self::NotFound { arn, code, message }
        } else if CA_STATE_CODES.contains(&c) {
            Self::CaState { arn, code, message }
        } else if THROTTLE_CODES.contains(&c) || status == 429 {
            Self::Throttled {
                op: op_name,
                arn,
                code,
                message,
            }
        } else if UNAVAILABLE_CODES.contains(&c) || status >= 500 {
            Self::Unavailable {
                op: op_name,
                arn,
                reason: format!("HTTP {status} {code}: {message}"),
            }
        } else {
            Self::Rejected {
                op: op_name,
                arn,
                code,
                message,
            }
        }
    }

    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Throttled { .. } | Self::Unavailable { .. })
    }

    /// AWS's error code, when AWS answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Credentials { code, .. }
            | Self::Permissions { code, .. }
            | Self::NotFound { code, .. }
            | Self::CaState { code, .. }
            | Self::Throttled { code, .. }
            | Self::Rejected { code, .. } => Some(code),
            _ => None,
        }
    }

    /// The conf field to report a validation failure at (relative to `conf`); `""` is the conf.
    pub(crate) fn field(&self, static_credentials: bool) -> &'static str {
        match self {
            Self::Credentials { .. } if static_credentials => "auth.awsCredentials",
            Self::NotFound { .. } | Self::CaState { .. } => "arn",
            Self::Setup { field: Some(f), .. } => f,
            _ => "",
        }
    }

    pub(crate) fn into_ca_error(self, mesh: &str, backend: &str) -> CaError {
        if self.is_transient() {
            CaError::transient(mesh, backend, self.to_string())
        } else {
            CaError::config(mesh, backend, self.to_string())
        }
    }
}

/// The error code (and message) of an answer from its `x-amzn-ErrorType` header, or from an XML
/// `<Code>`/`<Message>` body.
fn raw_error_code(header: Option<&str>, body: Option<&[u8]>) -> Option<(String, String)> {
    let text = body.map(String::from_utf8_lossy).unwrap_or_default();
    let between = |open: &str, close: &str| {
        let start = text.find(open)? + open.len();
        let len = text[start..].find(close)?;
        Some(text[start..start + len].trim().to_string())
    };
    let message = between("<Message>", "</Message>").unwrap_or_default();
    if let Some(h) = header {
        // `Code:http://internal.amazon.com/...`: the code is before the colon.
        let code = h.split(':').next().unwrap_or(h).trim();
        if !code.is_empty() {
            return Some((code.to_string(), message));
        }
    }
    between("<Code>", "</Code>")
        .filter(|c| !c.is_empty())
        .map(|c| (c, message))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARN: &str = "arn:aws:acm-pca:us-east-1:123456789012:certificate-authority/x";

    fn sort(status: u16, code: &str) -> AcmPcaError {
        AcmPcaError::from_code(Op::IssueCertificate, ARN, status, code.into(), "m".into())
    }

    #[test]
    fn codes_are_read_from_the_header_or_an_xml_body() {
        let xml = b"<ErrorResponse><Errors><Error><Code>SignatureDoesNotMatch</Code><Message>bad sig</Message></Error></Errors></ErrorResponse>";
        assert_eq!(
            raw_error_code(None, Some(xml)),
            Some(("SignatureDoesNotMatch".into(), "bad sig".into()))
        );
        assert_eq!(
            raw_error_code(
                Some("ThrottlingException:http://internal.amazon.com/"),
                None
            ),
            Some(("ThrottlingException".into(), String::new()))
        );
        assert_eq!(raw_error_code(None, Some(b"<html>oops</html>")), None);
    }

    #[test]
    fn throttling_and_server_errors_are_transient() {
        for (status, code) in [
            (400, "ThrottlingException"),
            (429, ""),
            (503, "ServiceUnavailable"),
            (500, "InternalFailure"),
        ] {
            assert!(sort(status, code).is_transient(), "{status} {code}");
        }
    }

    #[test]
    fn configuration_problems_are_not_transient_and_keep_the_code() {
        for (code, field) in [
            ("UnrecognizedClientException", "auth.awsCredentials"),
            ("AccessDeniedException", ""),
            ("ResourceNotFoundException", "arn"),
            ("InvalidStateException", "arn"),
            ("MalformedCSRException", ""),
        ] {
            let e = sort(400, code);
            assert!(!e.is_transient(), "{code}");
            assert_eq!(e.code(), Some(code));
            assert_eq!(e.field(true), field, "{code}");
            assert!(e.to_string().contains(code), "{e}");
        }
        let denied = sort(400, "AccessDeniedException").to_string();
        assert!(denied.contains("acm-pca:IssueCertificate"), "{denied}");
    }
}
