//! The worker's queue: timers for future work and a ready set ordered by priority. Entries are never
//! removed in place; a generation number makes stale ones fall out when popped.

use std::{
    cmp::{Ordering, Reverse},
    collections::BinaryHeap,
};

use chrono::{DateTime, TimeDelta, Utc};
use rand::Rng;
use tokio::time::Instant;

use crate::state::{CertKey, Identity};

/// A random point in the renewal window of the certificate's lifetime.
pub fn renew_at(id: &Identity, window: (f64, f64)) -> DateTime<Utc> {
    let life = (id.not_after - id.not_before).num_milliseconds().max(0) as f64;
    let (lo, hi) = (window.0.min(window.1), window.0.max(window.1));
    let frac = if hi > lo {
        rand::rng().random_range(lo..hi)
    } else {
        lo
    };
    id.not_before + TimeDelta::milliseconds((life * frac) as i64)
}

/// More urgent first: a dataplane with nothing to serve beats one renewing a valid certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Priority {
    Renewal = 0,
    Retry = 1,
    Initial = 2,
}

#[derive(Debug, PartialEq, Eq)]
struct Timer {
    at: Instant,
    seq: u64,
    key: CertKey,
    generation: u64,
    prio: Priority,
}

impl Ord for Timer {
    fn cmp(&self, o: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

impl PartialOrd for Timer {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

#[derive(Debug, PartialEq, Eq)]
struct Ready {
    prio: Priority,
    seq: Reverse<u64>,
    key: CertKey,
    generation: u64,
}

impl Ord for Ready {
    fn cmp(&self, o: &Self) -> Ordering {
        (self.prio, &self.seq).cmp(&(o.prio, &o.seq))
    }
}

impl PartialOrd for Ready {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

#[derive(Default)]
pub struct Schedule {
    timers: BinaryHeap<Reverse<Timer>>,
    ready: BinaryHeap<Ready>,
    seq: u64,
}

impl Schedule {
    /// Schedules `key` (at generation `generation`) for `at`.
    pub fn push(&mut self, key: CertKey, generation: u64, at: Instant, prio: Priority) {
        self.seq += 1;
        self.timers.push(Reverse(Timer {
            at,
            seq: self.seq,
            key,
            generation,
            prio,
        }));
    }

    /// Moves every timer due at `now` to the ready set.
    pub fn promote(&mut self, now: Instant) {
        while self.timers.peek().is_some_and(|t| t.0.at <= now) {
            if let Some(Reverse(t)) = self.timers.pop() {
                self.ready.push(Ready {
                    prio: t.prio,
                    seq: Reverse(t.seq),
                    key: t.key,
                    generation: t.generation,
                });
            }
        }
    }

    /// The most urgent ready entry; `is_current` filters out stale generations.
    pub fn pop_ready(&mut self, is_current: impl Fn(&CertKey, u64) -> bool) -> Option<CertKey> {
        while let Some(r) = self.ready.pop() {
            if is_current(&r.key, r.generation) {
                return Some(r.key);
            }
        }
        None
    }

    pub fn next_timer(&self) -> Option<Instant> {
        self.timers.peek().map(|t| t.0.at)
    }

    pub fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    pub fn len(&self) -> usize {
        self.timers.len() + self.ready.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn k(n: &str) -> CertKey {
        CertKey::mesh_cert("m", n)
    }

    #[tokio::test(start_paused = true)]
    async fn priority_then_age_and_stale_generations_drop() {
        let mut s = Schedule::default();
        let now = Instant::now();
        s.push(k("renew"), 1, now, Priority::Renewal);
        s.push(k("new"), 1, now, Priority::Initial);
        s.push(k("stale"), 1, now, Priority::Initial);
        s.push(
            k("later"),
            1,
            now + Duration::from_secs(5),
            Priority::Initial,
        );
        s.promote(now);
        let current =
            |key: &CertKey, generation: u64| !(key.dataplane == "stale" && generation == 1);
        assert_eq!(
            s.pop_ready(current).map(|k| k.dataplane),
            Some("new".into())
        );
        assert_eq!(
            s.pop_ready(current).map(|k| k.dataplane),
            Some("renew".into())
        );
        assert_eq!(s.pop_ready(current), None);
        assert_eq!(s.next_timer(), Some(now + Duration::from_secs(5)));
    }
}
