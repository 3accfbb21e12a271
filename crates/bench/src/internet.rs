//! Scenario 7, internet-scale: one real `meshplane-global` process on PostgreSQL and Z simulated
//! zones in this process, each the real sync client (`meshplane_kds::client::run`) over TLS with an
//! in-memory store holding D Dataplanes and their DataplaneInsights. Phases: the fleet registers
//! (every zone writes its D dataplanes at once; timed until global holds all Z × D of each kind),
//! then churn (1 % of dataplanes change per minute, one zone in ten disconnects and reconnects, a
//! Mesh update every few seconds), timed per change at global's own change feed (LISTEN/NOTIFY),
//! then global restarts under the connected fleet, then a second replica takes half of the zones
//! and is killed with kill -9 (internet_restart.rs).
//!
//! Baselines in the same run: the fleet's rows written with raw multi-row INSERTs into a fresh
//! database (what PostgreSQL alone needs for the same rows), and Kuma's 1 s KDS refresh interval
//! (a constant) beside the Mesh propagation figure.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::{Context, bail};
use meshplane_core::{
    model::{
        DataplaneInsightSpec, Meta, Resource, ResourceKey, ResourceKind, Spec,
        dataplane::DiscoverySubscription,
    },
    store::{ChangeOp, Received, ResourceStore, WriteOp},
};
use meshplane_store_postgres::{PgOptions, PgStore};
use serde_json::json;
use tokio::time::Instant;

use crate::{
    env::{CpuScope, CpuTimes, Env, migrated_db, rss_of},
    internet_restart,
    internet_tables::{Measured, table},
    kds_world::{self, LightZone},
    mesh::{dataplane, resource},
    procs::CpProc,
};

pub const MESH: &str = "default";
/// An idle backend publishes its counters up to 10 s late (PostgreSQL's PGSTAT_IDLE_INTERVAL).
const STATS_SETTLE: Duration = Duration::from_secs(11);
const LABEL: &str = "bench-seq";
/// How long after zones come back a Mesh update counts as made while they reconnect.
pub const RECONNECT_WINDOW: Duration = Duration::from_secs(20);

#[derive(Clone, Debug)]
pub struct Params {
    pub zones: usize,
    pub per_zone: usize,
    pub churn: Duration,
    pub mesh_every: Duration,
    /// How long the fleet may take to reach global before the run reports how far it got.
    pub register_limit: Duration,
    /// How long zone 1 stays offline during churn (its changes meanwhile are reconciled when it
    /// returns); churn lasts at least this plus 15 s.
    pub offline: Duration,
}

impl Params {
    pub fn new(quick: bool) -> Self {
        if quick {
            Self {
                zones: 10,
                per_zone: 500,
                churn: Duration::from_secs(15),
                mesh_every: Duration::from_secs(2),
                register_limit: Duration::from_secs(120),
                offline: Duration::from_secs(10),
            }
        } else {
            Self {
                zones: 100,
                per_zone: 10_000,
                churn: Duration::from_secs(60),
                mesh_every: Duration::from_secs(5),
                register_limit: Duration::from_secs(1800),
                offline: Duration::from_secs(300),
            }
        }
    }
}

/// Dataplane `i` of `zone` and its insight, as the zone's store holds them.
pub(crate) fn fleet_ops(zone: usize, i: usize, seq: u32) -> anyhow::Result<[WriteOp; 2]> {
    let mut dp = dataplane(MESH, i);
    dp["name"] = json!(format!("z{zone}-dp-{i}"));
    let dp = resource(&dp)?;
    let key = dp.key();
    let insight = Resource::new(
        Meta {
            name: key.name.clone(),
            mesh: MESH.into(),
            ..Default::default()
        },
        Spec::DataplaneInsight(DataplaneInsightSpec {
            subscriptions: vec![DiscoverySubscription {
                id: format!("{zone}-{i}-{seq}"),
                control_plane_instance_id: format!("zone-{zone}"),
                connect_time: chrono::Utc::now(),
                disconnect_time: None,
            }],
            mtls: None,
        }),
    );
    Ok([
        WriteOp::upsert(&dp, Some(ResourceKey::mesh(MESH))),
        WriteOp::upsert(&insight, Some(key)),
    ])
}

async fn register(zone: usize, store: Arc<dyn ResourceStore>, n: usize) -> anyhow::Result<()> {
    const BATCH: usize = 250;
    let mut i = 0;
    while i < n {
        let mut ops = Vec::with_capacity(2 * BATCH);
        for j in i..(i + BATCH).min(n) {
            ops.extend(fleet_ops(zone, j, 0)?);
        }
        store.write(ops).await.context("zone store write")?;
        i += BATCH;
    }
    Ok(())
}

/// Rows of each zone-origin kind global holds.
/// Zone 1's long time offline during churn, and its return.
#[derive(Clone, Debug, Default)]
pub struct LongOffline {
    pub down_at: Option<Instant>,
    pub back_at: Option<Instant>,
    /// When it was in sync with global again.
    pub synced_at: Option<Instant>,
    /// Through its own proxy from its return until SETTLE after it was in sync: (up, down).
    pub bytes: Option<(u64, u64)>,
    /// Insight changes made in its store while it was offline.
    pub changes_offline: usize,
}

async fn counts(pg: &mut sqlx::PgConnection) -> anyhow::Result<(i64, i64)> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT type, count(*) FROM resources WHERE type IN ('Dataplane', 'DataplaneInsight') GROUP BY type",
    )
    .fetch_all(&mut *pg)
    .await?;
    let get = |k: &str| rows.iter().find(|r| r.0 == k).map_or(0, |r| r.1);
    Ok((get("Dataplane"), get("DataplaneInsight")))
}

/// Committed transactions and rows written in `db`, from `pg_stat_database`.
async fn write_stats(pg: &mut sqlx::PgConnection, db: &str) -> anyhow::Result<(i64, i64)> {
    let (tx, rows): (i64, i64) = sqlx::query_as(
        "SELECT xact_commit, tup_inserted + tup_updated + tup_deleted FROM pg_stat_database WHERE datname = $1",
    )
    .bind(db)
    .fetch_one(&mut *pg)
    .await?;
    Ok((tx, rows))
}

/// `write_stats` once every backend has published what it did (an idle one may wait 10 s).
async fn settled_write_stats(pg: &mut sqlx::PgConnection, db: &str) -> anyhow::Result<(i64, i64)> {
    tokio::time::sleep(STATS_SETTLE).await;
    write_stats(pg, db).await
}

async fn db_size(pg: &mut sqlx::PgConnection, db: &str) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar("SELECT pg_database_size($1)")
        .bind(db)
        .fetch_one(&mut *pg)
        .await?)
}

/// The Mesh with a builtin CA and `seq` in a label (a change every zone must receive).
fn mesh_body(seq: u64) -> serde_json::Value {
    json!({"type": "Mesh", "name": MESH, "labels": {LABEL: seq.to_string()},
        "mtls": {"enabledBackend": "ca-1", "backends": [{"name": "ca-1", "type": "builtin"}]}})
}

/// Records when each zone's store first shows Mesh label `seq`.
fn watch_mesh(
    idx: usize,
    store: Arc<dyn ResourceStore>,
    seen: Arc<Mutex<HashMap<(usize, u64), Instant>>>,
) -> tokio::task::JoinHandle<()> {
    let key = ResourceKey::global(ResourceKind::Mesh, MESH);
    let mut sub = store.subscribe();
    tokio::spawn(async move {
        loop {
            match sub.recv().await {
                Received::Event(e) if e.key == key => {
                    let at = Instant::now();
                    if let Ok(Some(rec)) = store.get(&key).await
                        && let Some(seq) = rec.labels.get(LABEL).and_then(|s| s.parse().ok())
                        && let Ok(mut m) = seen.lock()
                    {
                        m.entry((idx, seq)).or_insert(at);
                    }
                }
                Received::Closed => return,
                _ => {}
            }
        }
    })
}

/// What global's change feed showed during churn.
#[derive(Default)]
struct Feed {
    /// Global name of a changed insight → when the zone wrote it.
    pending: HashMap<String, Instant>,
    lags_ms: Vec<f64>,
    deletes: u64,
    resyncs: u64,
}

fn watch_global(
    store: Arc<dyn ResourceStore>,
    feed: Arc<Mutex<Feed>>,
) -> tokio::task::JoinHandle<()> {
    let mut sub = store.subscribe();
    tokio::spawn(async move {
        loop {
            let ev = sub.recv().await;
            let at = Instant::now();
            let Ok(mut f) = feed.lock() else { return };
            match ev {
                Received::Event(e)
                    if matches!(
                        e.key.kind,
                        ResourceKind::Dataplane | ResourceKind::DataplaneInsight
                    ) =>
                {
                    if e.op == ChangeOp::Delete {
                        f.deletes += 1;
                    } else if e.key.kind == ResourceKind::DataplaneInsight
                        && let Some(w) = f.pending.remove(&e.key.name)
                    {
                        f.lags_ms.push((at - w).as_secs_f64() * 1000.0);
                    }
                }
                Received::Resync => f.resyncs += 1,
                Received::Closed => return,
                _ => {}
            }
        }
    })
}

/// Raw multi-row INSERTs of the same number of rows into a fresh database: PostgreSQL's own cost.
async fn raw_insert_secs(rows: usize) -> anyhow::Result<f64> {
    let db = migrated_db().await?;
    let mut pg = <sqlx::PgConnection as sqlx::Connection>::connect(&db.url).await?;
    let spec = serde_json::to_string(&dataplane(MESH, 0))?;
    let started = Instant::now();
    let mut i = 0;
    while i < rows {
        let n = 500.min(rows - i);
        let names: Vec<String> = (i..i + n).map(|j| format!("raw.dp-{j}")).collect();
        sqlx::query(
            "INSERT INTO resources (type, mesh, name, version, spec, creation_time, modification_time) \
             SELECT 'Dataplane', $1, n, 1, $2, now(), now() FROM unnest($3::text[]) AS n",
        )
        .bind(MESH)
        .bind(&spec)
        .bind(&names)
        .execute(&mut pg)
        .await?;
        i += n;
    }
    Ok(started.elapsed().as_secs_f64())
}

pub async fn run(env: &Env, p: &Params) -> anyhow::Result<Vec<crate::report::Table>> {
    let db = migrated_db().await?;
    let admin_url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    // Counting and statistics run on the scenario's database (pg_stat_database covers all).
    let mut pg = <sqlx::PgConnection as sqlx::Connection>::connect(&db.url).await?;
    let mut g = CpProc::global(env, "internet-global", &db.url).await?;
    let gpid = g.pid()?;
    let scope = CpuScope {
        bao_pid: None,
        admin_url: admin_url.clone(),
        database: db.name.clone(),
    };
    let mut seq = 0u64;
    g.api
        .put(&format!("/meshes/{MESH}"), &mesh_body(seq))
        .await?;
    let ca_pem = std::fs::read(g.work.join("kds-ca.pem")).context("global's kds-ca.pem")?;
    // Every zone dials global through one counting proxy (bytes of the registration and of the
    // restart's resync).
    let (proxy_addr, bytes, proxy_task) = kds_world::proxy(vec![g.kds_addr()]).await?;
    let url = format!("grpcs://127.0.0.1:{}", proxy_addr.port());
    // Zone 1 goes offline for a long while during churn; its own proxy counts its reconcile.
    let (long_addr, long_bytes, long_task) = kds_world::proxy(vec![g.kds_addr()]).await?;
    let long_url = format!("grpcs://127.0.0.1:{}", long_addr.port());
    const LONG: usize = 1;
    let url_of = |z: usize| if z == LONG { &long_url } else { &url };
    let mut tokens = Vec::with_capacity(p.zones);
    for z in 0..p.zones {
        let name = format!("zone-{z}");
        let token = g
            .api
            .post_text("/tokens/zone", &json!({"zone": name, "validFor": "24h"}))
            .await?;
        let file = env.tmp.path().join(format!("{name}.token"));
        std::fs::write(&file, token)?;
        tokens.push((name, file));
    }
    let mut zones = Vec::with_capacity(p.zones);
    for (z, (name, file)) in tokens.iter().enumerate() {
        zones.push(LightZone::start(
            name,
            url_of(z),
            file.clone(),
            &ca_pem,
            LightZone::memory(),
        ));
    }
    for z in &mut zones {
        z.wait_synced(Duration::from_secs(120)).await?;
    }
    let idle_rss = rss_of(&gpid)?;
    bytes.reset();
    eprintln!(
        "  internet-scale: {} zones synced; registering {} dataplanes each",
        p.zones, p.per_zone
    );

    // Phase 1: every zone registers its fleet at once.
    let total = (p.zones * p.per_zone) as i64;
    let cpu0 = CpuTimes::now(&gpid, &scope).await;
    let w0 = write_stats(&mut pg, &db.name).await?;
    let started = Instant::now();
    let mut writers = Vec::new();
    for (z, zone) in zones.iter().enumerate() {
        let (store, n) = (zone.store.clone(), p.per_zone);
        writers.push(tokio::spawn(register(z, store, n)));
    }
    for w in writers {
        w.await??;
    }
    let written = started.elapsed().as_secs_f64();
    let mut reached = (0, 0);
    let mut peak_rss = idle_rss.rss;
    while started.elapsed() < p.register_limit {
        reached = counts(&mut pg).await?;
        peak_rss = peak_rss.max(rss_of(&gpid)?.rss);
        if reached.0 >= total && reached.1 >= total {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let register_secs = started.elapsed().as_secs_f64();
    let register_bytes = bytes.get();
    let cpu1 = CpuTimes::now(&gpid, &scope).await.since(&cpu0);
    let w1 = settled_write_stats(&mut pg, &db.name).await?;
    let complete = reached.0 >= total && reached.1 >= total;
    eprintln!(
        "  internet-scale: global holds {} / {} dataplanes, {} insights after {register_secs:.1} s",
        reached.0, total, reached.1
    );
    let rss_full = rss_of(&gpid)?;
    let size_full = db_size(&mut pg, &db.name).await?;

    // Phase 2: churn, disconnects and Mesh updates, timed at global's change feed.
    let gstore: Arc<dyn ResourceStore> = Arc::new(
        PgStore::connect(
            &db.url,
            PgOptions {
                max_connections: 2,
                ..PgOptions::default()
            },
        )
        .await?,
    );
    let feed = Arc::new(Mutex::new(Feed::default()));
    let feed_task = watch_global(gstore.clone(), feed.clone());
    let seen = Arc::new(Mutex::new(HashMap::new()));
    let mut watchers: Vec<_> = zones
        .iter()
        .enumerate()
        .map(|(i, z)| watch_mesh(i, z.store.clone(), seen.clone()))
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let per_sec = (p.per_zone as f64 * 0.01 / 60.0).max(0.0);
    let flappers: Vec<usize> = (0..p.zones).step_by(10).collect();
    let (mut updates, mut changes) = (Vec::<(u64, Instant)>::new(), 0usize);
    let mut put_ms = Vec::new();
    let (mut carry, mut next_mesh, mut tick) = (0.0f64, Instant::now(), 0u32);
    let churn_start = Instant::now();
    let (mut down, mut back) = (false, false);
    let (mut down_at, mut back_at) = (None::<Instant>, None::<Instant>);
    let churn = p.churn.max(p.offline + Duration::from_secs(15));
    let mut long = LongOffline::default();
    let w2 = write_stats(&mut pg, &db.name).await?;
    while churn_start.elapsed() < churn {
        let el = churn_start.elapsed();
        if p.zones > LONG {
            if long.down_at.is_none() {
                zones[LONG].stop().await;
                long.down_at = Some(Instant::now());
            } else if long.back_at.is_none() && el >= p.offline {
                let store = zones[LONG].store.clone();
                long_bytes.reset();
                zones[LONG] = LightZone::start(
                    &tokens[LONG].0,
                    &long_url,
                    tokens[LONG].1.clone(),
                    &ca_pem,
                    store,
                );
                watchers.push(watch_mesh(LONG, zones[LONG].store.clone(), seen.clone()));
                long.back_at = Some(Instant::now());
            } else if long.back_at.is_some()
                && long.synced_at.is_none()
                && zones[LONG].status.borrow().synced_once
            {
                long.synced_at = Some(Instant::now());
            } else if let Some(at) = long.synced_at
                && long.bytes.is_none()
                && at.elapsed() >= internet_restart::SETTLE
            {
                long.bytes = Some(long_bytes.get());
            }
        }
        if !down && el >= p.churn / 4 {
            for &z in &flappers {
                zones[z].stop().await;
            }
            down_at = Some(Instant::now());
            down = true;
        }
        if down && !back && el >= p.churn / 2 {
            for &z in &flappers {
                let store = zones[z].store.clone();
                zones[z] =
                    LightZone::start(&tokens[z].0, &url, tokens[z].1.clone(), &ca_pem, store);
                watchers.push(watch_mesh(z, zones[z].store.clone(), seen.clone()));
            }
            back_at = Some(Instant::now());
            back = true;
        }
        if Instant::now() >= next_mesh {
            seq += 1;
            let at = Instant::now();
            g.api
                .put(&format!("/meshes/{MESH}"), &mesh_body(seq))
                .await?;
            put_ms.push(at.elapsed().as_secs_f64() * 1000.0);
            updates.push((seq, at));
            next_mesh = at + p.mesh_every;
        }
        tick += 1;
        carry += per_sec * 0.1;
        let k = carry.floor() as usize;
        carry -= k as f64;
        for (z, zone) in zones.iter().enumerate() {
            let long_offline = z == LONG && long.down_at.is_some() && long.back_at.is_none();
            let offline = (down && !back && flappers.contains(&z)) || long_offline;
            if long_offline {
                long.changes_offline += k;
            }
            for j in 0..k {
                let i = (tick as usize * 7919 + j * 104_729) % p.per_zone;
                let [_, insight] = fleet_ops(z, i, tick)?;
                if !offline && let Ok(mut f) = feed.lock() {
                    f.pending
                        .insert(format!("zone-{z}.z{z}-dp-{i}"), Instant::now());
                }
                zone.store.write(vec![insight]).await?;
                changes += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let churn_secs = churn_start.elapsed().as_secs_f64();
    let w3 = settled_write_stats(&mut pg, &db.name).await?;
    let mut mesh_missing = 0usize;
    let mut mesh_quiet_ms = Vec::new();
    let mesh_ms: Vec<f64> = {
        let s = seen
            .lock()
            .map_err(|_| anyhow::anyhow!("mesh watcher lock poisoned"))?;
        let mut v = Vec::new();
        // A zone that was offline when the update was made receives it on reconnect: that is
        // resync, not propagation, and is left out here.
        let offline = |z: usize, at: Instant| {
            let (down_at, back_at) = if z == LONG {
                (long.down_at, long.back_at)
            } else if flappers.contains(&z) {
                (down_at, back_at)
            } else {
                return false;
            };
            down_at.is_some_and(|d| at >= d) && back_at.is_none_or(|b| at <= b)
        };
        // Whether zones were reconnecting when the update was made (global reads what it holds of
        // each, the zones rebuild their views): the figure's split, not a filter.
        let reconnecting = |at: Instant| {
            [back_at, long.back_at]
                .into_iter()
                .flatten()
                .any(|b| at >= b && at <= b + RECONNECT_WINDOW)
        };
        for (sq, at) in &updates {
            for z in 0..p.zones {
                if offline(z, *at) {
                    continue;
                }
                // Sync sends state, not history: a zone that gets a later update first has this
                // one too. The update arrived when the zone first showed it or any later one.
                let first = s
                    .iter()
                    .filter(|((zz, q), _)| *zz == z && q >= sq)
                    .map(|(_, t)| *t)
                    .min();
                match first {
                    Some(t) => {
                        let ms = (t.max(*at) - *at).as_secs_f64() * 1000.0;
                        v.push(ms);
                        if !reconnecting(*at) {
                            mesh_quiet_ms.push(ms);
                        }
                    }
                    None => mesh_missing += 1,
                }
            }
        }
        v
    };
    let (lags, deletes, resyncs, lost) = {
        let f = feed
            .lock()
            .map_err(|_| anyhow::anyhow!("feed lock poisoned"))?;
        (f.lags_ms.clone(), f.deletes, f.resyncs, f.pending.len())
    };

    // Phase 3: global restarts under the connected fleet.
    eprintln!("  internet-scale: restarting global");
    let restart =
        internet_restart::restart_global(&mut g, &mut zones, &bytes, p.register_limit).await?;
    let held_after_restart = counts(&mut pg).await?;
    let deletes_seen = || -> anyhow::Result<u64> {
        Ok(feed
            .lock()
            .map_err(|_| anyhow::anyhow!("feed lock poisoned"))?
            .deletes)
    };
    let restart_deletes = deletes_seen()? - deletes;

    // Phase 4: a second replica, half of the zones on it, kill -9.
    eprintln!("  internet-scale: a second replica takes half of the zones, then kill -9");
    let before_failover = deletes_seen()?;
    let failover = internet_restart::replica_failover(
        env,
        &g,
        &mut zones,
        &tokens,
        &ca_pem,
        &mut pg,
        p.register_limit,
    )
    .await?;
    let held_after_failover = counts(&mut pg).await?;
    let failover_deletes = deletes_seen()? - before_failover;
    feed_task.abort();
    proxy_task.abort();
    long_task.abort();
    for w in watchers {
        w.abort();
    }
    for z in &mut zones {
        z.stop().await;
    }
    g.stop().await?;
    let raw = raw_insert_secs((2 * total) as usize).await?;
    if updates.is_empty() {
        bail!("no Mesh update was made during churn");
    }
    Ok(vec![table(&Measured {
        p: p.clone(),
        complete,
        reached,
        written_secs: written,
        register_secs,
        raw_insert_secs: raw,
        cpu_global: cpu1.zone,
        cpu_postgres: cpu1.postgres,
        cpu_harness: cpu1.harness,
        idle_rss: idle_rss.rss,
        peak_rss,
        rss_full: rss_full.rss,
        db_bytes: size_full,
        register_tx: w1.0 - w0.0,
        register_rows: w1.1 - w0.1,
        churn_tx: w3.0 - w2.0,
        churn_rows: w3.1 - w2.1,
        churn_secs,
        changes,
        lags_ms: lags,
        unseen: lost,
        deletes,
        resyncs,
        mesh_ms,
        mesh_quiet_ms,
        mesh_updates: updates.len(),
        put_ms,
        mesh_missing,
        register_bytes,
        restart,
        held_after_restart,
        restart_deletes,
        long,
        failover,
        held_after_failover,
        failover_deletes,
    })])
}
