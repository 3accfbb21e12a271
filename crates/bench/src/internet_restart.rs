//! internet-scale, phase 3: global restarts (SIGTERM, then the same binary, database and ports)
//! with the whole fleet connected; timed until every zone has reconnected and applied global's
//! first reconcile, with the bytes both ways through the counting proxy every zone dials.

use std::time::Duration;

use std::time::Instant;

use crate::{
    kds_world::{Counter, LightZone},
    procs::CpProc,
};

#[derive(Clone, Debug, Default)]
pub struct Restart {
    /// From SIGTERM until the new process answered /readyz.
    pub ready_secs: f64,
    /// From SIGTERM until every zone was in sync on a new connection.
    pub resynced_secs: f64,
    pub zones_resynced: usize,
    /// Bytes through the proxy from SIGTERM until SETTLE after the last zone's resync: zone →
    /// global, and back.
    pub up_bytes: u64,
    pub down_bytes: u64,
    /// The same span's length, and the bytes an idle connected fleet moves in that time
    /// (keepalives, insight refreshes; measured for IDLE before the restart).
    pub span_secs: f64,
    pub idle_bytes: f64,
}

/// The upstream half (each zone's reconcile of what global holds of it) ends after the
/// downstream one; its bytes are counted for this long after the last zone resynced.
pub const SETTLE: Duration = Duration::from_secs(5);
const IDLE: Duration = Duration::from_secs(5);

pub async fn restart_global(
    g: &mut CpProc,
    zones: &mut [LightZone],
    counter: &Counter,
    limit: Duration,
) -> anyhow::Result<Restart> {
    counter.reset();
    tokio::time::sleep(IDLE).await;
    let (iu, id) = counter.get();
    let idle_rate = (iu + id) as f64 / IDLE.as_secs_f64();
    let before: Vec<u64> = zones.iter().map(|z| z.status.borrow().connects).collect();
    counter.reset();
    let t0 = Instant::now();
    g.stop().await?;
    let (_, ready) = g.launch().await?;
    let mut out = Restart {
        ready_secs: (ready - t0).as_secs_f64(),
        ..Restart::default()
    };
    let deadline = t0 + limit;
    for (z, n) in zones.iter_mut().zip(before) {
        let left = deadline.saturating_duration_since(Instant::now());
        let synced = tokio::time::timeout(left, z.status.wait_for(|s| s.synced_connection > n))
            .await
            .is_ok_and(|r| r.is_ok());
        if synced {
            out.zones_resynced += 1;
        }
    }
    out.resynced_secs = t0.elapsed().as_secs_f64();
    tokio::time::sleep(SETTLE).await;
    (out.up_bytes, out.down_bytes) = counter.get();
    out.span_secs = t0.elapsed().as_secs_f64();
    out.idle_bytes = idle_rate * out.span_secs;
    Ok(out)
}
