//! Injectable time. Certificates live in wall-clock time; the worker schedules on tokio's clock, which
//! tests pause and advance. `TokioClock` derives wall time from tokio's clock so both move together.

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
}

/// The system's clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// Wall time anchored at creation and advanced by tokio's (possibly paused) clock.
pub struct TokioClock {
    wall: DateTime<Utc>,
    instant: tokio::time::Instant,
}

impl TokioClock {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            wall: Utc::now(),
            instant: tokio::time::Instant::now(),
        })
    }
}

impl Clock for TokioClock {
    fn now(&self) -> DateTime<Utc> {
        let elapsed = tokio::time::Instant::now() - self.instant;
        self.wall + TimeDelta::from_std(elapsed).unwrap_or(TimeDelta::MAX)
    }
}

/// The tokio instant at which wall time `at` arrives (now, if it is past).
pub fn instant_at(clock: &dyn Clock, at: DateTime<Utc>) -> tokio::time::Instant {
    let delta = (at - clock.now()).to_std().unwrap_or_default();
    tokio::time::Instant::now() + delta
}
