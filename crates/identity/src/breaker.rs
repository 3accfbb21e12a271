//! A circuit breaker per CA backend: once enough distinct dataplanes fail against a backend, calls
//! stop for a cool-down, then one probe decides whether to close or wait longer. It keeps a broken
//! or rate-limited CA from being hammered by a whole fleet (Kuma PR 17448).

use std::{collections::HashSet, time::Duration};

use tokio::time::Instant;

use crate::state::CertKey;

#[derive(Clone, Debug, PartialEq, Eq)]
enum State {
    Closed,
    Open { until: Instant },
    HalfOpen { probe: CertKey },
}

#[derive(Clone, Debug)]
pub struct Breaker {
    min_failures: usize,
    base: Duration,
    max: Duration,
    cooldown: Duration,
    failing: HashSet<CertKey>,
    state: State,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// Try again at this instant.
    Deny(Instant),
}

impl Breaker {
    pub fn new(min_failures: usize, base: Duration, max: Duration) -> Self {
        Self {
            min_failures: min_failures.max(1),
            base,
            max,
            cooldown: base,
            failing: HashSet::new(),
            state: State::Closed,
        }
    }

    pub fn is_open(&self) -> bool {
        !matches!(self.state, State::Closed)
    }

    pub fn allow(&mut self, key: &CertKey, now: Instant) -> Decision {
        match &self.state {
            State::Closed => Decision::Allow,
            State::Open { until } if now < *until => Decision::Deny(*until),
            State::Open { .. } => {
                self.state = State::HalfOpen { probe: key.clone() };
                Decision::Allow
            }
            State::HalfOpen { probe } if probe == key => Decision::Allow,
            State::HalfOpen { .. } => Decision::Deny(now + self.cooldown),
        }
    }

    pub fn on_success(&mut self, key: &CertKey) {
        self.failing.remove(key);
        self.state = State::Closed;
        self.cooldown = self.base;
        self.failing.clear();
    }

    /// Records a failure; returns true when this failure opened the breaker.
    pub fn on_failure(&mut self, key: &CertKey, now: Instant) -> bool {
        self.failing.insert(key.clone());
        match &self.state {
            State::Closed if self.failing.len() >= self.min_failures => {
                self.state = State::Open {
                    until: now + self.cooldown,
                };
                true
            }
            State::HalfOpen { probe } if probe == key => {
                self.cooldown = (self.cooldown * 2).min(self.max);
                self.state = State::Open {
                    until: now + self.cooldown,
                };
                true
            }
            _ => false,
        }
    }

    /// Forgets a dataplane that no longer exists.
    pub fn forget(&mut self, key: &CertKey) {
        self.failing.remove(key);
        if matches!(&self.state, State::HalfOpen { probe } if probe == key) {
            self.state = State::Open {
                until: Instant::now(),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(n: usize) -> CertKey {
        CertKey::mesh_cert("m", format!("dp{n}"))
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_distinct_failures_probes_and_closes() {
        let now = Instant::now();
        let mut b = Breaker::new(3, Duration::from_secs(5), Duration::from_secs(60));
        assert!(!b.on_failure(&k(1), now));
        assert!(
            !b.on_failure(&k(1), now),
            "the same dataplane twice is one failure"
        );
        assert!(!b.on_failure(&k(2), now));
        assert!(b.on_failure(&k(3), now));
        assert_eq!(
            b.allow(&k(4), now),
            Decision::Deny(now + Duration::from_secs(5))
        );
        let later = now + Duration::from_secs(5);
        assert_eq!(
            b.allow(&k(4), later),
            Decision::Allow,
            "one probe after the cool-down"
        );
        assert!(
            matches!(b.allow(&k(5), later), Decision::Deny(_)),
            "only the probe goes through"
        );
        assert!(
            b.on_failure(&k(4), later),
            "a failed probe re-opens, for longer"
        );
        assert_eq!(
            b.allow(&k(4), later + Duration::from_secs(9)),
            Decision::Deny(later + Duration::from_secs(10))
        );
        assert_eq!(
            b.allow(&k(6), later + Duration::from_secs(10)),
            Decision::Allow
        );
        b.on_success(&k(6));
        assert!(!b.is_open());
        assert_eq!(
            b.allow(&k(7), later + Duration::from_secs(10)),
            Decision::Allow
        );
    }
}
