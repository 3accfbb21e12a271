//! Retrying transient Vault failures: jittered exponential backoff that honours `Retry-After`,
//! bounded by a deadline and an attempt count. Config failures return at once.
//!
//! Issue and sign are not idempotent (each attempt may mint a certificate), which is harmless: an
//! unused certificate simply expires.

use std::{
    future::Future,
    time::{Duration, Instant},
};

use super::error::VaultError;

/// First backoff step; doubled per attempt, then jittered ±25 %.
const BASE: Duration = Duration::from_millis(200);
/// No single wait is longer, whatever `Retry-After` says.
const MAX_WAIT: Duration = Duration::from_secs(5);

/// How much time and how many attempts one operation may spend.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Budget {
    deadline: Instant,
    attempts: u32,
}

impl Budget {
    pub(crate) fn new(total: Duration, attempts: u32) -> Self {
        Self {
            deadline: Instant::now() + total,
            attempts: attempts.max(1),
        }
    }

    /// Time left, used as the per-request timeout so one slow request cannot overrun the budget.
    pub(crate) fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }
}

/// Runs `op` until it succeeds, fails for a non-transient reason, or the budget is spent.
pub(crate) async fn run<T, F, Fut>(budget: Budget, mut op: F) -> Result<T, VaultError>
where
    F: FnMut(Duration) -> Fut,
    Fut: Future<Output = Result<T, VaultError>>,
{
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let err = match op(budget.remaining()).await {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        if !err.is_transient() || attempt >= budget.attempts {
            return Err(err);
        }
        let wait = wait_for(attempt, err.retry_after());
        if wait >= budget.remaining() {
            return Err(err);
        }
        tracing::debug!(attempt, wait_ms = wait.as_millis() as u64, error = %err, "retrying Vault call");
        tokio::time::sleep(wait).await;
    }
}

/// The wait before attempt `attempt + 1`: the server's `Retry-After` when larger than the backoff.
fn wait_for(attempt: u32, retry_after: Option<Duration>) -> Duration {
    let exp = BASE.saturating_mul(1 << attempt.saturating_sub(1).min(10));
    let jitter = rand::random_range(0.75..1.25);
    let backoff = exp.mul_f64(jitter);
    retry_after
        .map_or(backoff, |r| r.max(backoff))
        .min(MAX_WAIT)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a panic is how a test reports failure")]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn transient() -> VaultError {
        VaultError::Sealed {
            addr: "a".into(),
            retry_after: None,
        }
    }

    #[test]
    fn backoff_grows_and_honours_retry_after() {
        assert!(wait_for(1, None) < Duration::from_millis(300));
        assert!(wait_for(3, None) >= Duration::from_millis(600));
        assert_eq!(
            wait_for(1, Some(Duration::from_secs(2))),
            Duration::from_secs(2)
        );
        assert_eq!(wait_for(1, Some(Duration::from_secs(60))), MAX_WAIT);
    }

    #[tokio::test(start_paused = true)]
    async fn transient_errors_are_retried_until_attempts_run_out() {
        let n = AtomicU32::new(0);
        let r: Result<(), _> = run(Budget::new(Duration::from_secs(30), 3), |_| async {
            n.fetch_add(1, Ordering::SeqCst);
            Err(transient())
        })
        .await;
        assert!(r.is_err());
        assert_eq!(n.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn config_errors_are_not_retried() {
        let n = AtomicU32::new(0);
        let r: Result<(), _> = run(Budget::new(Duration::from_secs(30), 5), |_| async {
            n.fetch_add(1, Ordering::SeqCst);
            Err(VaultError::setup(None, "bad"))
        })
        .await;
        assert!(r.is_err());
        assert_eq!(n.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn success_after_a_transient_error() {
        let n = AtomicU32::new(0);
        let r = run(Budget::new(Duration::from_secs(30), 5), |_| async {
            if n.fetch_add(1, Ordering::SeqCst) == 0 {
                Err(transient())
            } else {
                Ok(7)
            }
        })
        .await;
        assert_eq!(r.unwrap(), 7);
    }
}
