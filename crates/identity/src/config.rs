//! The certificate manager's settings: concurrency, backoff, circuit breaker, renewal window and
//! how issued certificates are persisted.

use std::time::Duration;

use crate::persist::PersistConfig;

#[derive(Clone, Debug)]
pub struct ManagerConfig {
    /// Most calls to CA backends in flight at once, across all backends. Persisting an issued
    /// certificate does not hold a slot; at most 2 × this many issuances are unfinished at once
    /// (calling the backend or persisting), which bounds the manager's store traffic.
    pub concurrency: usize,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// Distinct failing dataplanes that open a backend's circuit breaker.
    pub breaker_min_failures: usize,
    pub breaker_base: Duration,
    pub breaker_max: Duration,
    /// Renewal happens at a random point between these fractions of a certificate's lifetime, so a
    /// fleet issued together does not renew together.
    pub renew_window: (f64, f64),
    /// How certificates and insights are written (group commit).
    pub persist: PersistConfig,
}

impl Default for ManagerConfig {
    fn default() -> Self {
        Self {
            concurrency: 16,
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(300),
            breaker_min_failures: 10,
            breaker_base: Duration::from_secs(5),
            breaker_max: Duration::from_secs(300),
            renew_window: (0.7, 0.8),
            persist: PersistConfig::default(),
        }
    }
}
