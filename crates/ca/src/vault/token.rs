//! One authenticated Vault session per backend: the current token, obtained on first use, and the
//! background task that keeps it renewed.
//!
//! Renewal follows vault.md §3.1: a renewable token with a TTL is renewed at about 2/3 of it. When
//! Vault gives less than asked for (the lease is capped by `explicit_max_ttl` or the mount's max),
//! login methods log in again at 2/3 of what is left; a configured token cannot be replaced from
//! here, so the task logs a WARN with the expiry and stops. The backend re-reads the token's
//! DataSource on every request (a changed Secret yields a new session), so a rotated Secret takes
//! over at the next issue, and a dead token is re-read once more before it is reported.
//! Root and non-renewable tokens are used as they are. The task ends when the session is dropped.

use std::{
    fmt,
    sync::{Arc, Mutex, RwLock},
    time::{Duration, Instant},
};

use tokio::task::AbortHandle;
use tracing::Instrument;

use super::{
    auth::{self, Lease, Method},
    client::Endpoint,
    error::VaultError,
};

/// A token or other credential string. `Debug` never shows it, and it has no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Arc<str>);

impl Secret {
    pub fn new(s: &str) -> Self {
        Self(Arc::from(s))
    }

    /// The value itself, for a request header. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Renewal requests get this long before they count as failed.
const RENEW_TIMEOUT: Duration = Duration::from_secs(10);

struct Shared {
    ep: Endpoint,
    method: Method,
    lease: RwLock<Option<Arc<Lease>>>,
    /// Serialises logins so concurrent first requests log in once.
    login: tokio::sync::Mutex<()>,
}

impl Shared {
    fn current(&self) -> Option<Arc<Lease>> {
        self.lease.read().ok().and_then(|l| l.clone())
    }

    fn store(&self, lease: Option<Lease>) {
        if let Ok(mut l) = self.lease.write() {
            *l = lease.map(Arc::new);
        }
    }
}

/// The endpoint plus the token to use on it.
pub(crate) struct Session {
    shared: Arc<Shared>,
    renew: bool,
    renewer: Mutex<Option<AbortHandle>>,
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Ok(mut r) = self.renewer.lock()
            && let Some(h) = r.take()
        {
            h.abort();
        }
    }
}

impl Session {
    /// `renew: false` for one-off sessions (validation) that should leave no task behind.
    pub(crate) fn new(ep: Endpoint, method: Method, renew: bool) -> Self {
        Self {
            shared: Arc::new(Shared {
                ep,
                method,
                lease: RwLock::new(None),
                login: tokio::sync::Mutex::new(()),
            }),
            renew,
            renewer: Mutex::new(None),
        }
    }

    pub(crate) fn endpoint(&self) -> &Endpoint {
        &self.shared.ep
    }

    /// The token to send, authenticating first if needed; `None` through a Vault agent.
    pub(crate) async fn token(&self, timeout: Duration) -> Result<Option<Secret>, VaultError> {
        if matches!(self.shared.method, Method::Agent) {
            return Ok(None);
        }
        if let Some(l) = self.shared.current().filter(|l| !l.is_stale()) {
            return Ok(Some(l.token.clone()));
        }
        let _guard = self.shared.login.lock().await;
        if let Some(l) = self.shared.current().filter(|l| !l.is_stale()) {
            return Ok(Some(l.token.clone()));
        }
        let lease = auth::acquire(&self.shared.ep, &self.shared.method, timeout).await?;
        let token = lease.as_ref().map(|l| l.token.clone());
        if let Some(l) = &lease {
            tracing::debug!(
                method = self.shared.method.name(),
                ttl_s = l.ttl.as_secs(),
                renewable = l.renewable,
                "authenticated to Vault"
            );
        }
        self.shared.store(lease);
        self.start_renewer();
        Ok(token)
    }

    /// Whether the current token is alive: `Ok` when `lookup-self` accepts it,
    /// `TokenRejected` when Vault does not know it any more.
    pub(crate) async fn lookup_self(&self, timeout: Duration) -> Result<(), VaultError> {
        match self.shared.current() {
            Some(l) => self
                .shared
                .ep
                .lookup_self(&l.token, timeout)
                .await
                .map(|_| ()),
            None => Ok(()),
        }
    }

    /// Revokes a token this session logged in for (cert/AWS auth), so one-off sessions such as
    /// validation leave no live token behind. Best effort: failures are only logged. A configured
    /// token is never revoked; it belongs to the user.
    pub(crate) async fn revoke_login_token(&self, timeout: Duration) {
        if !self.shared.method.can_login() {
            return;
        }
        let Some(lease) = self.shared.current() else {
            return;
        };
        self.shared.store(None);
        if let Err(e) = auth::revoke_self(&self.shared.ep, &lease.token, timeout).await {
            tracing::debug!(error = %e, "revoking the validation login's token failed");
        }
    }

    /// Time until the current token expires; `None` before the first login, through an agent, or
    /// for a token that never expires.
    pub(crate) fn time_to_expiry(&self) -> Option<Duration> {
        self.shared
            .current()?
            .expires_at()
            .map(|at| at.saturating_duration_since(Instant::now()))
    }

    fn start_renewer(&self) {
        if !self.renew {
            return;
        }
        let Ok(mut slot) = self.renewer.lock() else {
            return;
        };
        if slot.as_ref().is_some_and(|h| !h.is_finished()) {
            return;
        }
        let shared = self.shared.clone();
        let task = tokio::spawn(renew_loop(shared).instrument(tracing::Span::current()));
        *slot = Some(task.abort_handle());
    }
}

/// Keeps the session's token alive until the session is dropped (which aborts this task).
async fn renew_loop(shared: Arc<Shared>) {
    let mut failures = 0u32;
    // Set after a transient failure: when to try the same lease again.
    let mut retry_at: Option<Instant> = None;
    loop {
        let Some(lease) = shared.current() else {
            return;
        };
        if !lease.renewable || lease.ttl.is_zero() || lease.increment.is_zero() {
            return;
        }
        let at = retry_at
            .take()
            .unwrap_or(lease.obtained + lease.ttl * 2 / 3);
        tokio::time::sleep_until(at.into()).await;
        if shared
            .current()
            .is_none_or(|now| now.token != lease.token || now.obtained != lease.obtained)
        {
            // A login replaced the token meanwhile; schedule from the new one.
            continue;
        }
        match auth::renew_self(&shared.ep, &lease, RENEW_TIMEOUT).await {
            Ok(r) => {
                failures = 0;
                tracing::debug!(ttl_s = r.lease.ttl.as_secs(), "renewed the Vault token");
                let ttl = r.lease.ttl;
                if !r.capped {
                    shared.store(Some(r.lease));
                    continue;
                }
                // Keep the capped token, but stop renewing it: asking again cannot extend it.
                shared.store(Some(Lease {
                    renewable: false,
                    ..r.lease
                }));
                if shared.method.can_login() {
                    // Log in afresh at 2/3 of what is left.
                    tokio::time::sleep(ttl * 2 / 3).await;
                    relogin(&shared).await;
                } else {
                    tracing::warn!(
                        expires_in_s = ttl.as_secs(),
                        "the Vault token reached its maximum TTL and cannot be renewed further; \
                         rotate the token's Secret before it expires"
                    );
                    return;
                }
            }
            Err(e) if e.is_transient() => {
                failures += 1;
                let left = lease.expires_at().map_or(Duration::ZERO, |at| {
                    at.saturating_duration_since(Instant::now())
                });
                let wait = (left / 4).clamp(Duration::from_secs(1), Duration::from_secs(30));
                tracing::warn!(error = %e, failures, "renewing the Vault token failed; retrying");
                retry_at = Some(Instant::now() + wait);
            }
            Err(e) => {
                tracing::warn!(error = %e, "renewing the Vault token failed");
                if shared.method.can_login() {
                    relogin(&shared).await;
                } else {
                    return;
                }
            }
        }
    }
}

/// A fresh login for cert/AWS auth; on failure the token is dropped so the next request retries.
async fn relogin(shared: &Shared) {
    let _guard = shared.login.lock().await;
    match auth::acquire(&shared.ep, &shared.method, RENEW_TIMEOUT).await {
        Ok(lease) => shared.store(lease),
        Err(e) => {
            tracing::warn!(error = %e, "logging in to Vault again failed");
            shared.store(None);
        }
    }
}
