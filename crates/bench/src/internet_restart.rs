//! internet-scale, phases 3 and 4. Phase 3: global restarts (SIGTERM, then the same binary,
//! database and ports) with the whole fleet connected; timed until every zone has reconnected and
//! applied global's first reconcile, with the bytes both ways through the counting proxy every zone
//! dials. Phase 4: a second replica on the same database takes half of the zones (they dial it
//! through a load balancer that fails over to the first), is killed with kill -9, and its zones
//! are timed until they are in sync on the first replica, with a change each made right after the
//! kill checked at global.

use std::time::Duration;

use std::time::Instant;

use anyhow::Context;

use crate::{
    env::Env,
    internet::fleet_ops,
    kds_world::{self, Counter, LightZone},
    procs::CpProc,
};

#[derive(Clone, Debug, Default)]
pub struct Restart {
    /// From SIGTERM until the new process answered /readyz.
    pub ready_secs: f64,
    /// From SIGTERM until every zone was in sync on a new connection.
    pub resynced_secs: f64,
    pub zones_resynced: usize,
    /// Each resynced zone's time from SIGTERM until it was in sync again.
    pub zone_secs: Vec<f64>,
    /// Connections that got as far as global's Welcome meanwhile: more than the zones when
    /// sessions broke after the Welcome and were retried (after the backoff).
    pub welcomes: u64,
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
    let waits = zones.iter_mut().zip(&before).map(|(z, n)| async move {
        let left = deadline.saturating_duration_since(Instant::now());
        let synced = tokio::time::timeout(left, z.status.wait_for(|s| s.synced_connection > *n))
            .await
            .is_ok_and(|r| r.is_ok());
        synced.then(|| t0.elapsed().as_secs_f64())
    });
    for secs in futures::future::join_all(waits).await.into_iter().flatten() {
        out.zones_resynced += 1;
        out.zone_secs.push(secs);
    }
    out.resynced_secs = t0.elapsed().as_secs_f64();
    out.welcomes = zones
        .iter()
        .zip(&before)
        .map(|(z, n)| z.status.borrow().connects.saturating_sub(*n))
        .sum();
    tokio::time::sleep(SETTLE).await;
    (out.up_bytes, out.down_bytes) = counter.get();
    out.span_secs = t0.elapsed().as_secs_f64();
    out.idle_bytes = idle_rate * out.span_secs;
    Ok(out)
}

#[derive(Clone, Debug, Default)]
pub struct Failover {
    /// Zones moved to the second replica, and how many of them it served before the kill.
    pub moved: usize,
    pub on_second: usize,
    /// From kill -9 until every moved zone was in sync on the first replica.
    pub resynced_secs: f64,
    pub resynced: usize,
    /// Changes the moved zones made right after the kill that global holds.
    pub changes_held: i64,
}

/// The insight sequence that marks the changes made right after the kill.
const MARK: u32 = 4_242_424;

pub async fn replica_failover(
    env: &Env,
    first: &CpProc,
    zones: &mut [LightZone],
    tokens: &[(String, std::path::PathBuf)],
    ca_pem: &[u8],
    pg: &mut sqlx::PgConnection,
    limit: Duration,
) -> anyhow::Result<Failover> {
    let mut second = first.replica(env, "internet-global-b").await?;
    let (lb, _, lb_task) = kds_world::proxy(vec![second.kds_addr(), first.kds_addr()]).await?;
    let lb_url = format!("grpcs://127.0.0.1:{}", lb.port());
    let first_instance = zones
        .first()
        .and_then(|z| z.status.borrow().global_instance.clone())
        .context("zone 0 has no global instance")?;
    let moved: Vec<usize> = (zones.len() / 2..zones.len()).collect();
    for &z in &moved {
        zones[z].stop().await;
        let store = zones[z].store.clone();
        zones[z] = LightZone::start(&tokens[z].0, &lb_url, tokens[z].1.clone(), ca_pem, store);
    }
    for &z in &moved {
        zones[z].wait_synced(limit).await?;
    }
    let mut out = Failover {
        moved: moved.len(),
        on_second: moved
            .iter()
            .filter(|&&z| {
                zones[z]
                    .status
                    .borrow()
                    .global_instance
                    .as_ref()
                    .is_some_and(|i| *i != first_instance)
            })
            .count(),
        ..Failover::default()
    };
    let before: Vec<u64> = moved
        .iter()
        .map(|&z| zones[z].status.borrow().connects)
        .collect();
    let t0 = Instant::now();
    second.kill().await?;
    for &z in &moved {
        let [_, insight] = fleet_ops(z, 0, MARK)?;
        zones[z].store.write(vec![insight]).await?;
    }
    let deadline = t0 + limit;
    for (&z, n) in moved.iter().zip(before) {
        let left = deadline.saturating_duration_since(Instant::now());
        let on_first = tokio::time::timeout(
            left,
            zones[z].status.wait_for(|s| {
                s.synced_connection > n && s.global_instance.as_deref() == Some(&first_instance)
            }),
        )
        .await
        .is_ok_and(|r| r.is_ok());
        if on_first {
            out.resynced += 1;
        }
    }
    out.resynced_secs = t0.elapsed().as_secs_f64();
    let pattern = format!("%-0-{MARK}\"%");
    while Instant::now() < deadline {
        out.changes_held = sqlx::query_scalar(
            "SELECT count(*) FROM resources WHERE type = 'DataplaneInsight' AND spec LIKE $1",
        )
        .bind(&pattern)
        .fetch_one(&mut *pg)
        .await?;
        if out.changes_held >= moved.len() as i64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    lb_task.abort();
    Ok(out)
}
