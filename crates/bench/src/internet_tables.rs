//! The internet-scale scenario's figures as a table: what was measured, beside its same-run
//! baseline and the targets.

use serde_json::json;

use crate::{
    internet::{LongOffline, Params},
    internet_restart::{Failover, Restart},
    report::{Row, Stat, Table, Verdict, percentile},
};

pub struct Measured {
    pub p: Params,
    pub complete: bool,
    /// Dataplanes and insights global held when registration ended.
    pub reached: (i64, i64),
    /// Until every zone's store held its fleet.
    pub written_secs: f64,
    /// Until global held the whole fleet (or the limit).
    pub register_secs: f64,
    pub raw_insert_secs: f64,
    pub cpu_global: f64,
    pub cpu_postgres: f64,
    pub cpu_harness: f64,
    pub idle_rss: u64,
    pub peak_rss: u64,
    pub rss_full: u64,
    pub db_bytes: i64,
    pub register_tx: i64,
    pub register_rows: i64,
    pub churn_tx: i64,
    pub churn_rows: i64,
    pub churn_secs: f64,
    pub changes: usize,
    pub lags_ms: Vec<f64>,
    /// Changes global's feed never showed.
    pub unseen: usize,
    pub deletes: u64,
    pub resyncs: u64,
    pub mesh_ms: Vec<f64>,
    /// The same, for updates made while no zone was reconnecting.
    pub mesh_quiet_ms: Vec<f64>,
    pub mesh_updates: usize,
    /// How long each Mesh PUT took to answer.
    pub put_ms: Vec<f64>,
    /// (update, online zone) pairs that never arrived.
    pub mesh_missing: usize,
    /// Bytes through the proxy while the fleet registered (zone → global, back).
    pub register_bytes: (u64, u64),
    pub restart: Restart,
    /// Dataplanes and insights global held after its restart.
    pub held_after_restart: (i64, i64),
    pub restart_deletes: u64,
    pub long: LongOffline,
    pub failover: Failover,
    pub held_after_failover: (i64, i64),
    pub failover_deletes: u64,
}

const MB: f64 = 1024.0 * 1024.0;

fn one(v: f64) -> Option<Stat> {
    Some(Stat::single(v))
}

/// What global holds after a disruptive phase, and the deletes its feed saw meanwhile: all of the
/// fleet, none.
fn held_after(t: &mut Table, phase: &str, held: (i64, i64), deletes: u64, total: f64) {
    t.rows.push(
        Row::new(
            format!("{phase}: dataplanes / insights held after it"),
            "rows",
            one(held.0 as f64),
        )
        .beside(one(held.1 as f64), "insights")
        .target(
            format!("{total} of each"),
            Verdict::from_bool(held.0 as f64 >= total && held.1 as f64 >= total),
        ),
    );
    t.rows.push(
        Row::new(
            format!("{phase}: deletes of zone resources seen at global"),
            "deletes",
            one(deletes as f64),
        )
        .target("0", Verdict::from_bool(deletes == 0)),
    );
}

pub fn table(m: &Measured) -> Table {
    let p = &m.p;
    let total = (p.zones * p.per_zone) as f64;
    let mut t = Table::new(
        "internet-scale",
        "Z zones × D dataplanes (with insights) reporting to one global on PostgreSQL",
    );
    let size = format!("Z={} × D={}", p.zones, p.per_zone);
    t.rows.push(
        Row::new(
            format!("{size}: dataplanes / insights held by global"),
            "rows",
            one(m.reached.0 as f64),
        )
        .beside(one(m.reached.1 as f64), "insights")
        .target(format!("{total} of each"), Verdict::from_bool(m.complete)),
    );
    t.rows.push(
        Row::new(
            format!("{size}: fleet registered until global holds all"),
            "s",
            one(m.register_secs),
        )
        .baseline(
            one(m.raw_insert_secs),
            "raw multi-row INSERT of the same number of rows, same PostgreSQL",
        ),
    );
    let rows_per_tx = if m.register_tx > 0 {
        m.register_rows as f64 / m.register_tx as f64
    } else {
        0.0
    };
    t.rows.push(
        Row::new(
            "registration: rows written per committed transaction on global's database (read-only ones included)",
            "rows/tx",
            one(rows_per_tx),
        )
        .target("batched: ≫ 1", Verdict::from_bool(rows_per_tx >= 10.0)),
    );
    t.rows.push(Row::new(
        "registration: rows written per second on global's database",
        "rows/s",
        one(m.register_rows as f64 / m.register_secs.max(0.001)),
    ));
    t.rows.push(
        Row::new("registration: CPU-s global", "s", one(m.cpu_global))
            .beside(one(m.cpu_postgres), "CPU-s PostgreSQL"),
    );
    t.rows.push(Row::new(
        "registration: CPU-s of the Z simulated zones (this process)",
        "s",
        one(m.cpu_harness),
    ));
    let full = m.rss_full as f64 / MB;
    let scaled = if total > 0.0 {
        (m.rss_full.saturating_sub(m.idle_rss)) as f64 / total * 1_000_000.0 / MB
            + m.idle_rss as f64 / MB
    } else {
        0.0
    };
    t.rows.push(
        Row::new(format!("global RSS holding {size}"), "MiB", one(full))
            .beside(one(m.peak_rss as f64 / MB), "peak during registration")
            .target(
                "< 2048 MiB at 1,000,000",
                if total >= 1_000_000.0 {
                    Verdict::from_bool(full < 2048.0)
                } else {
                    Verdict::Info
                },
            ),
    );
    t.rows.push(Row::new(
        "global RSS extrapolated linearly to 1,000,000 dataplanes",
        "MiB",
        one(scaled),
    ));
    t.rows.push(Row::new(
        format!("PostgreSQL database size holding {size}"),
        "MiB",
        one(m.db_bytes as f64 / MB),
    ));
    t.rows.push(Row::new(
        "PostgreSQL bytes per dataplane (with its insight)",
        "B",
        one(m.db_bytes as f64 / total.max(1.0)),
    ));
    let p50 = percentile(&m.lags_ms, 50.0);
    let p99 = percentile(&m.lags_ms, 99.0);
    t.rows.push(
        Row::new(
            "churn: zone write → global's change feed, p50",
            "ms",
            one(p50),
        )
        .beside(one(p99), "p99"),
    );
    t.rows.push(
        Row::new("churn: zone → global lag p99", "ms", one(p99)).target(
            "< 1000 ms",
            Verdict::from_bool(!m.lags_ms.is_empty() && p99 < 1000.0),
        ),
    );
    t.rows.push(
        Row::new(
            "churn: changes never seen at global",
            "changes",
            one(m.unseen as f64),
        )
        .beside(one(m.changes as f64), "changes made")
        .target("0", Verdict::from_bool(m.unseen == 0)),
    );
    t.rows.push(Row::new(
        "churn: rows written per committed transaction on global's database (read-only ones included)",
        "rows/tx",
        one(if m.churn_tx > 0 {
            m.churn_rows as f64 / m.churn_tx as f64
        } else {
            0.0
        }),
    ));
    t.rows.push(Row::new(
        "churn: rows written per second on global's database",
        "rows/s",
        one(m.churn_rows as f64 / m.churn_secs.max(0.001)),
    ));
    let mp99 = percentile(&m.mesh_ms, 99.0);
    t.rows.push(
        Row::new(
            format!("Mesh PUT at global → each of Z={} zones, p99", p.zones),
            "ms",
            one(mp99),
        )
        .baseline(one(1000.0), "Kuma's KDS refreshInterval (a constant)")
        .target(
            "< 500 ms at Z = 100",
            if p.zones >= 100 {
                Verdict::from_bool(mp99 < 500.0)
            } else {
                Verdict::Info
            },
        ),
    );
    t.rows.push(Row::new(
        "… each (zone, update)",
        "ms",
        Stat::of(&m.mesh_ms),
    ));
    t.rows.push(Row::new(
        format!(
            "… p99 of updates made while no zone was reconnecting (not within {} s of a reconnect)",
            crate::internet::RECONNECT_WINDOW.as_secs()
        ),
        "ms",
        one(percentile(&m.mesh_quiet_ms, 99.0)),
    ));
    t.rows.push(
        Row::new(
            "Mesh updates an online zone never received",
            "updates",
            one(m.mesh_missing as f64),
        )
        .target("0", Verdict::from_bool(m.mesh_missing == 0)),
    );
    t.rows.push(Row::new(
        "Mesh PUT answered by global's API",
        "ms",
        Stat::of(&m.put_ms),
    ));
    t.rows.push(
        Row::new(
            "transient deletes of zone resources seen at global (one zone in ten reconnects)",
            "deletes",
            one(m.deletes as f64),
        )
        .target("0", Verdict::from_bool(m.deletes == 0)),
    );
    let l = &m.long;
    let offline_secs = match (l.down_at, l.back_at) {
        (Some(d), Some(b)) => (b - d).as_secs_f64(),
        _ => 0.0,
    };
    let reconcile = match (l.back_at, l.synced_at) {
        (Some(b), Some(s)) => Some(Stat::single((s - b).as_secs_f64())),
        _ => None,
    };
    t.rows.push(
        Row::new(
            format!("zone 1 back after {offline_secs:.0} s offline: in sync again"),
            "s",
            reconcile,
        )
        .beside(one(l.changes_offline as f64), "changes made while offline")
        .target(
            "reconciled (time and bytes printed)",
            Verdict::from_bool(l.synced_at.is_some()),
        ),
    );
    if let Some((u, d)) = l.bytes {
        let share = (m.register_bytes.0 + m.register_bytes.1) as f64 / p.zones as f64;
        t.rows.push(
            Row::new(
                "zone 1 back: bytes zone ↔ global until 5 s after it was in sync",
                "KiB",
                one((u + d) as f64 / 1024.0),
            )
            .baseline(
                one(share / 1024.0),
                "one zone's share of the fleet's registration",
            )
            .target(
                "proportional to what changed: < 10 % of its share",
                Verdict::from_bool(((u + d) as f64) < 0.1 * share),
            ),
        );
    }
    let r = &m.restart;
    t.rows.push(
        Row::new(
            "global restart (SIGTERM, same database): every zone in sync again",
            "s",
            one(r.resynced_secs),
        )
        .beside(one(r.ready_secs), "s until /readyz")
        .target(
            format!("< 30 s, all {} zones", p.zones),
            Verdict::from_bool(r.zones_resynced == p.zones && r.resynced_secs < 30.0),
        ),
    );
    t.rows.push(Row::new(
        "… each zone, from SIGTERM until in sync",
        "s",
        Stat::of(&r.zone_secs),
    ));
    t.rows.push(Row::new(
        "… connections that reached global's Welcome (more than the zones: sessions retried)",
        "streams",
        one(r.welcomes as f64),
    ));
    let (ru, rd) = m.register_bytes;
    let restart_bytes = (r.up_bytes + r.down_bytes) as f64;
    let fleet_bytes = (ru + rd) as f64;
    t.rows.push(
        Row::new(
            "global restart: bytes zones ↔ global until 5 s after the last resync",
            "MiB",
            one(restart_bytes / MB),
        )
        .baseline(
            one(fleet_bytes / MB),
            "the fleet's registration (every record sent once)",
        )
        .target(
            "proportional to what changed (nothing did): < 10 % of the registration's",
            Verdict::from_bool(restart_bytes < 0.1 * fleet_bytes),
        ),
    );
    t.rows.push(Row::new(
        format!(
            "global restart: of which an idle fleet moves in the same {:.1} s",
            r.span_secs
        ),
        "MiB",
        one(r.idle_bytes / MB),
    ));
    held_after(
        &mut t,
        "global restart",
        m.held_after_restart,
        m.restart_deletes,
        total,
    );
    let f = &m.failover;
    t.rows.push(
        Row::new(
            "two replicas: zones moved to replica B / served by B before its kill -9",
            "zones",
            one(f.moved as f64),
        )
        .beside(one(f.on_second as f64), "zones on B")
        .target(
            "all moved zones on B",
            Verdict::from_bool(f.on_second == f.moved && f.moved > 0),
        ),
    );
    t.rows.push(
        Row::new(
            format!(
                "kill -9 of replica B: its zones in sync on replica A ({} of {})",
                f.resynced, f.moved
            ),
            "s",
            one(f.resynced_secs),
        )
        .target(
            format!("all {} zones", f.moved),
            Verdict::from_bool(f.resynced == f.moved && f.moved > 0),
        ),
    );
    t.rows.push(
        Row::new(
            "kill -9 of replica B: a change each of its zones made right after it, held at global",
            "changes",
            one(f.changes_held as f64),
        )
        .target(
            format!("{} (nothing lost)", f.moved),
            Verdict::from_bool(f.changes_held >= f.moved as i64),
        ),
    );
    held_after(
        &mut t,
        "kill -9 of replica B",
        m.held_after_failover,
        m.failover_deletes,
        total,
    );
    t.note(format!(
        "Global: the real meshplane-global binary on PostgreSQL (fsync on). Zones: {} real sync clients in the \
         bench process, each with an in-memory store, over TLS on loopback. Registration: every zone writes its \
         {} Dataplanes and DataplaneInsights in batches of 250 at once ({:.1} s until all zone stores held them); \
         timed until global's table holds all of them.",
        p.zones, p.per_zone, m.written_secs
    ));
    t.note(format!(
        "Churn for {:.0} s: 1 % of dataplanes per minute change their insight; zones 0, 10, 20, … disconnect at ¼ \
         and reconnect at ½ of it (their changes while offline are not timed); a Mesh label change every {} s \
         through global's API ({} updates, {} (update, zone) arrivals). Lag is timed from the zone's write to \
         global's LISTEN/NOTIFY feed; {} feed resyncs.",
        m.churn_secs,
        p.mesh_every.as_secs(),
        m.mesh_updates,
        m.mesh_ms.len(),
        m.resyncs
    ));
    t.note(
        "Two replicas: a second meshplane-global on the same database and encryption key; the upper half of the \
         zones reconnect through a TCP load balancer that tries replica B first and fails over to A.",
    );
    t.extra = json!({
        "zones": p.zones, "per_zone": p.per_zone, "lags_ms": m.lags_ms, "mesh_ms": m.mesh_ms,
        "idle_rss": m.idle_rss, "rss_full": m.rss_full, "db_bytes": m.db_bytes,
    });
    t
}
