//! What can go wrong talking to Vault, sorted into "the configuration cannot work" and "Vault is
//! briefly unable", each message naming the Vault address and carrying Vault's own text.
//!
//! Architecture invariant: no variant ever holds a token, a key or a request body; they hold the
//! address, names from the conf, and the `errors` Vault returned.

use std::time::Duration;

use meshplane_core::ca::CaError;

/// One failed Vault interaction.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VaultError {
    #[error("could not reach Vault at {addr}: {reason}")]
    Unreachable { addr: String, reason: String },
    #[error("Vault at {addr} did not answer in time: {reason}")]
    Timeout { addr: String, reason: String },
    #[error("Vault at {addr} presented a certificate that is not trusted: {reason}")]
    Untrusted { addr: String, reason: String },
    #[error("TLS handshake with Vault at {addr} failed: {reason}")]
    Handshake { addr: String, reason: String },
    #[error("Vault at {addr} serves HTTPS but the address says http://: {text}")]
    HttpToHttps { addr: String, text: String },
    #[error("Vault at {addr} is sealed")]
    Sealed {
        addr: String,
        retry_after: Option<Duration>,
    },
    #[error("Vault at {addr} namespace {namespace:?} not found")]
    NamespaceNotFound { addr: String, namespace: String },
    #[error("Vault at {addr} rejected the token: {text}")]
    TokenRejected { addr: String, text: String },
    /// A 403 on a call other than the token's own lookup: either the token is dead or its policy
    /// does not grant the path. The backend tells the two apart with `lookup-self`.
    #[error(
        "Vault at {addr} denied {path} to the token (check the pki and role names, and that the \
         token's policy grants create/update on that path): {text}"
    )]
    Forbidden {
        addr: String,
        path: String,
        text: String,
    },
    #[error("Vault at {addr} has no role {role:?} in mount {mount:?}: {text}")]
    UnknownRole {
        addr: String,
        mount: String,
        role: String,
        text: String,
    },
    #[error("Vault at {addr} has no PKI mount {mount:?} (or the namespace is wrong): {text}")]
    NoMount {
        addr: String,
        mount: String,
        text: String,
    },
    #[error(
        "Vault at {addr} has no {method} auth method at auth/{method} (or the namespace is wrong): {text}"
    )]
    NoAuthMount {
        addr: String,
        method: &'static str,
        text: String,
    },
    #[error("Vault at {addr} refused the common name {common_name:?}: {text}")]
    CommonName {
        addr: String,
        common_name: String,
        text: String,
    },
    #[error("Vault at {addr} refused the URI SANs: {text}")]
    UriSans { addr: String, text: String },
    #[error("Vault at {addr} refused the {method} login: {text}")]
    LoginRefused {
        addr: String,
        method: &'static str,
        text: String,
    },
    #[error("Vault at {addr} is rate limiting requests: {text}")]
    RateLimited {
        addr: String,
        text: String,
        retry_after: Option<Duration>,
    },
    #[error("Vault at {addr} failed on {path} (HTTP {status}): {text}")]
    Server {
        addr: String,
        path: String,
        status: u16,
        text: String,
        retry_after: Option<Duration>,
    },
    #[error("Vault at {addr} refused {path} (HTTP {status}): {text}")]
    Rejected {
        addr: String,
        path: String,
        status: u16,
        text: String,
    },
    #[error("Vault at {addr} answered {path} with something unexpected: {reason}")]
    Malformed {
        addr: String,
        path: String,
        reason: String,
    },
    /// Local material or settings that cannot work (a caCert that is not PEM, a client key that
    /// does not parse, no AWS credentials). `field` is the conf path when one field is to blame.
    #[error("{message}")]
    Setup {
        field: Option<&'static str>,
        message: String,
    },
}

impl VaultError {
    pub(crate) fn setup(field: Option<&'static str>, message: impl Into<String>) -> Self {
        Self::Setup {
            field,
            message: message.into(),
        }
    }

    /// Worth retrying: the same request may succeed in a moment.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Unreachable { .. }
                | Self::Timeout { .. }
                | Self::Sealed { .. }
                | Self::RateLimited { .. }
                | Self::Server { .. }
        )
    }

    /// The server's `Retry-After`, when it sent one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Sealed { retry_after, .. }
            | Self::RateLimited { retry_after, .. }
            | Self::Server { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    pub fn into_ca_error(self, mesh: &str, backend: &str) -> CaError {
        if self.is_transient() {
            CaError::Transient {
                mesh: mesh.into(),
                backend: backend.into(),
                retry_after: self.retry_after(),
                message: self.to_string(),
            }
        } else {
            CaError::config(mesh, backend, self.to_string())
        }
    }
}

/// The call a response answers, so a status code can be read in context (a 404 from `issue`
/// means a missing mount, from a login a missing auth method).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Op<'a> {
    Issue {
        mount: &'a str,
        role: &'a str,
        common_name: Option<&'a str>,
    },
    CaChain {
        mount: &'a str,
    },
    LookupSelf,
    RenewSelf,
    Login {
        method: &'static str,
    },
}

/// Everything known about a non-2xx answer.
pub(crate) struct Failure<'a> {
    pub addr: &'a str,
    pub namespace: Option<&'a str>,
    pub path: &'a str,
    pub status: u16,
    pub errors: Vec<String>,
    /// The body when it was not Vault's JSON error shape (a proxy page, the HTTPS listener's note).
    pub raw: String,
    pub retry_after: Option<Duration>,
}

/// Names a non-2xx answer. The texts matched are OpenBao 2.7's and Vault's (see vault.md §1.4, §6).
pub(crate) fn classify(op: Op<'_>, f: Failure<'_>) -> VaultError {
    let addr = f.addr.to_string();
    let text = if f.errors.is_empty() {
        f.raw.trim().chars().take(300).collect::<String>()
    } else {
        vault_text(&f.errors)
    };
    let has = |needle: &str| text.contains(needle);
    match f.status {
        503 if has("sealed") => {
            return VaultError::Sealed {
                addr,
                retry_after: f.retry_after,
            };
        }
        404 if has("namespace not found") => {
            return VaultError::NamespaceNotFound {
                addr,
                namespace: f.namespace.unwrap_or_default().to_string(),
            };
        }
        400 if has("HTTP request to an HTTPS server") => {
            return VaultError::HttpToHttps { addr, text };
        }
        429 => {
            return VaultError::RateLimited {
                addr,
                text,
                retry_after: f.retry_after,
            };
        }
        s if s >= 500 => {
            return VaultError::Server {
                addr,
                path: f.path.to_string(),
                status: s,
                text,
                retry_after: f.retry_after,
            };
        }
        _ => {}
    }
    match (op, f.status) {
        (Op::LookupSelf | Op::RenewSelf, 403) => VaultError::TokenRejected { addr, text },
        (_, 403) => VaultError::Forbidden {
            addr,
            path: f.path.to_string(),
            text,
        },
        (Op::Issue { mount, role, .. }, 400) if has("unknown role") => VaultError::UnknownRole {
            addr,
            mount: mount.into(),
            role: role.into(),
            text,
        },
        (Op::Issue { mount, .. } | Op::CaChain { mount }, 404) => VaultError::NoMount {
            addr,
            mount: mount.into(),
            text,
        },
        (
            Op::Issue {
                common_name: Some(cn),
                ..
            },
            400,
        ) if has("common name") || has("common_name") => VaultError::CommonName {
            addr,
            common_name: cn.into(),
            text,
        },
        (Op::Issue { .. }, 400) if has("URI Subject Alternative Names") => {
            VaultError::UriSans { addr, text }
        }
        (Op::Login { method }, 404) => VaultError::NoAuthMount { addr, method, text },
        (Op::Login { method }, 400 | 401) => VaultError::LoginRefused { addr, method, text },
        (_, status) => VaultError::Rejected {
            addr,
            path: f.path.to_string(),
            status,
            text,
        },
    }
}

/// Vault's `errors` as one line. Go's multierror form (`1 error occurred:\n\t* permission
/// denied\n\n`) is reduced to its items.
pub(crate) fn vault_text(errors: &[String]) -> String {
    let mut items = Vec::new();
    for e in errors {
        let lines: Vec<&str> = e.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
        let multi = lines
            .first()
            .is_some_and(|l| l.ends_with("occurred:") && l.contains("error"));
        if multi {
            items.extend(
                lines[1..]
                    .iter()
                    .map(|l| l.trim_start_matches("* ").to_string()),
            );
        } else {
            items.push(lines.join(" "));
        }
    }
    items.retain(|s| !s.is_empty());
    items.join("; ")
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a panic is how a test reports failure")]
mod tests {
    use super::*;

    fn fail(status: u16, err: &str) -> Failure<'static> {
        Failure {
            addr: "http://v:8200",
            namespace: Some("team1"),
            path: "pki/issue/r",
            status,
            errors: vec![err.to_string()],
            raw: String::new(),
            retry_after: None,
        }
    }

    const ISSUE: Op<'static> = Op::Issue {
        mount: "pki",
        role: "r",
        common_name: Some("x.example.com"),
    };

    #[test]
    fn multierror_is_flattened() {
        assert_eq!(
            vault_text(&["1 error occurred:\n\t* permission denied\n\n".into()]),
            "permission denied"
        );
        assert_eq!(vault_text(&["a".into(), "b".into()]), "a; b");
    }

    #[test]
    fn statuses_read_in_context() {
        let e = classify(ISSUE, fail(400, "unknown role: r"));
        assert_eq!(
            e.to_string(),
            "Vault at http://v:8200 has no role \"r\" in mount \"pki\": unknown role: r"
        );
        let e = classify(ISSUE, fail(404, "no handler for route \"pki/issue/r\""));
        assert!(matches!(e, VaultError::NoMount { .. }));
        let e = classify(ISSUE, fail(404, "namespace not found"));
        assert_eq!(
            e.to_string(),
            "Vault at http://v:8200 namespace \"team1\" not found"
        );
        let e = classify(
            ISSUE,
            fail(400, "common name x.example.com not allowed by this role"),
        );
        assert!(matches!(e, VaultError::CommonName { .. }));
        let e = classify(ISSUE, fail(503, "Vault is sealed"));
        assert!(e.is_transient());
        assert_eq!(e.to_string(), "Vault at http://v:8200 is sealed");
        let e = classify(Op::LookupSelf, fail(403, "permission denied"));
        assert_eq!(
            e.to_string(),
            "Vault at http://v:8200 rejected the token: permission denied"
        );
        let e = classify(
            ISSUE,
            fail(403, "1 error occurred:\n\t* permission denied\n\n"),
        );
        assert!(matches!(e, VaultError::Forbidden { .. }));
        assert!(!e.is_transient());
        let e = classify(
            Op::Login { method: "cert" },
            fail(400, "invalid certificate"),
        );
        assert!(matches!(e, VaultError::LoginRefused { .. }));
        assert!(classify(ISSUE, fail(429, "quota")).is_transient());
    }
}
