//! Jittered exponential backoff: each retry waits a random time between half and all of the current
//! step, and the step doubles up to a cap. The jitter keeps a fleet of clients from retrying in step.

use std::time::Duration;

use rand::Rng;

#[derive(Clone, Debug)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    step: Duration,
}

impl Backoff {
    pub fn new(base: Duration, cap: Duration) -> Self {
        Self {
            base,
            cap: cap.max(base),
            step: base,
        }
    }

    /// The next delay, then doubles the step (up to the cap).
    pub fn next_delay(&mut self) -> Duration {
        let step = self.step;
        self.step = (self.step * 2).min(self.cap);
        let half = step / 2;
        let jitter_ms = u64::try_from(half.as_millis()).unwrap_or(u64::MAX);
        half + Duration::from_millis(rand::rng().random_range(0..=jitter_ms))
    }

    /// Back to the first step (after a success).
    pub fn reset(&mut self) {
        self.step = self.base;
    }

    /// The current step before jitter (for logs and tests).
    pub fn step(&self) -> Duration {
        self.step
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_within_jitter_and_caps() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(1000));
        let mut expected_step = 100;
        for _ in 0..8 {
            let d = b.next_delay().as_millis() as u64;
            assert!(
                d >= expected_step / 2 && d <= expected_step,
                "{d} not in [{}, {expected_step}]",
                expected_step / 2
            );
            expected_step = (expected_step * 2).min(1000);
        }
        assert_eq!(b.step(), Duration::from_millis(1000));
        b.reset();
        assert_eq!(b.step(), Duration::from_millis(100));
    }
}
