//! Getting a Vault token for each auth method: the configured token (checked with `lookup-self`),
//! a TLS-certificate login, an AWS login, or none when a Vault agent authenticates for us.
//!
//! TLS-certificate login and the cert role: Kong Mesh's conf has no field naming the role in
//! `auth/cert`, and Meshplane adds none, so the login sends no `name`. Vault then tries every cert
//! role and picks one whose CA and constraints match the client certificate. The answer must say
//! which one (`auth.metadata.cert_name`); a login without it is refused here, and the role used is
//! logged, so a surprising match is visible. Operators who need pinning restrict the roles' CAs or
//! `allowed_common_names` so only one role can match.

use std::time::{Duration, Instant};

use reqwest::Method as Http;
use serde_json::{Value, json};

use super::{
    aws::AwsLogin,
    client::Endpoint,
    error::{Op, VaultError},
    token::Secret,
};

/// How the backend authenticates.
pub(crate) enum Method {
    /// `agentAddress` is set: the agent adds its own token, we send none.
    Agent,
    Token(Secret),
    /// The client certificate is on every connection of the endpoint's client.
    Cert,
    Aws(Box<AwsLogin>),
}

impl Method {
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Self::Agent => "agent",
            Self::Token(_) => "token",
            Self::Cert => "cert",
            Self::Aws(_) => "aws",
        }
    }

    /// True when a new token can be had by logging in again (not for a given token).
    pub(crate) fn can_login(&self) -> bool {
        matches!(self, Self::Cert | Self::Aws(_))
    }
}

/// A token and what Vault said about its lifetime when it was obtained or last renewed.
#[derive(Clone, Debug)]
pub(crate) struct Lease {
    pub token: Secret,
    pub renewable: bool,
    /// Zero for tokens that never expire (root).
    pub ttl: Duration,
    pub obtained: Instant,
    /// What to ask for on renewal: the TTL the token was created with.
    pub increment: Duration,
}

impl Lease {
    pub(crate) fn expires_at(&self) -> Option<Instant> {
        (!self.ttl.is_zero()).then(|| self.obtained + self.ttl)
    }

    /// Expired, or so close to it that a request would race the expiry.
    pub(crate) fn is_stale(&self) -> bool {
        self.expires_at()
            .is_some_and(|at| at.saturating_duration_since(Instant::now()) < Duration::from_secs(1))
    }
}

/// A token for `method`, or `None` when the agent authenticates.
pub(crate) async fn acquire(
    ep: &Endpoint,
    method: &Method,
    timeout: Duration,
) -> Result<Option<Lease>, VaultError> {
    match method {
        Method::Agent => Ok(None),
        Method::Token(token) => {
            let data = ep.lookup_self(token, timeout).await?;
            let ttl = Duration::from_secs(data.ttl);
            // A periodic token's creation TTL is its period: renew by that much.
            let increment = [Duration::from_secs(data.creation_ttl), ttl]
                .into_iter()
                .find(|d| !d.is_zero())
                .unwrap_or_default();
            Ok(Some(Lease {
                token: token.clone(),
                renewable: data.renewable.unwrap_or(false),
                ttl,
                obtained: Instant::now(),
                increment,
            }))
        }
        Method::Cert => {
            let r = ep
                .call(
                    Http::POST,
                    "auth/cert/login",
                    None,
                    Some(&json!({})),
                    Op::Login { method: "cert" },
                    timeout,
                )
                .await?;
            let role = r.body["auth"]["metadata"]["cert_name"]
                .as_str()
                .filter(|n| !n.is_empty())
                .ok_or_else(|| VaultError::Malformed {
                    addr: ep.addr().into(),
                    path: "auth/cert/login".into(),
                    reason: "the login answer does not name the cert role that matched \
                             (auth.metadata.cert_name)"
                        .into(),
                })?;
            tracing::info!(
                cert_role = role,
                "logged in to Vault with the client certificate"
            );
            lease_from_auth(ep, "auth/cert/login", &r.body).map(Some)
        }
        Method::Aws(login) => login.login(ep, timeout).await.map(Some),
    }
}

/// `auth/token/lookup-self`'s `data`. A 403 here means the token itself is dead or unknown.
pub(crate) async fn revoke_self(
    ep: &Endpoint,
    token: &Secret,
    timeout: Duration,
) -> Result<(), VaultError> {
    ep.call(
        Http::POST,
        "auth/token/revoke-self",
        Some(token),
        None,
        Op::RenewSelf,
        timeout,
    )
    .await
    .map(|_| ())
}

/// The outcome of one `renew-self`.
pub(crate) struct Renewed {
    pub lease: Lease,
    /// Vault gave less than asked for: the token is near its max TTL and must be replaced.
    pub capped: bool,
}

pub(crate) async fn renew_self(
    ep: &Endpoint,
    lease: &Lease,
    timeout: Duration,
) -> Result<Renewed, VaultError> {
    let r = ep
        .call(
            Http::POST,
            "auth/token/renew-self",
            Some(&lease.token),
            Some(&json!({ "increment": format!("{}s", lease.increment.as_secs()) })),
            Op::RenewSelf,
            timeout,
        )
        .await?;
    let mut renewed = lease_from_auth(ep, "auth/token/renew-self", &r.body)?;
    // Renewal answers repeat the token; keep ours in case a proxy strips it.
    renewed.token = lease.token.clone();
    renewed.increment = lease.increment;
    let capped = renewed.ttl < lease.increment || r.warnings.iter().any(|w| w.contains("capped"));
    Ok(Renewed {
        lease: renewed,
        capped,
    })
}

/// The `auth` block of a login or renewal answer as a lease.
pub(crate) fn lease_from_auth(
    ep: &Endpoint,
    path: &str,
    body: &Value,
) -> Result<Lease, VaultError> {
    let auth = &body["auth"];
    let token = auth["client_token"]
        .as_str()
        .filter(|t| !t.is_empty())
        .ok_or_else(|| VaultError::Malformed {
            addr: ep.addr().into(),
            path: path.into(),
            reason: "no auth.client_token in the answer".into(),
        })?;
    let ttl = secs(&auth["lease_duration"]);
    Ok(Lease {
        token: Secret::new(token),
        renewable: auth["renewable"].as_bool().unwrap_or(false),
        ttl,
        obtained: Instant::now(),
        increment: ttl,
    })
}

/// A duration Vault gives in whole seconds (as a number, or a numeric string in older versions).
fn secs(v: &Value) -> Duration {
    let n = v
        .as_u64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or(0);
    Duration::from_secs(n)
}
