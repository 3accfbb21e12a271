//! Scenario 4, kds-resync: a zone reconnecting to a global holding M = 1,000 Meshes. Measured: time
//! from starting the zone's sync client until its initial reconcile is applied (`synced_once`),
//! and bytes on the wire both ways, counted by a TCP proxy in front of global's sync listener (TLS
//! records including the handshake, HTTP/2 frames, gzip-compressed gRPC messages).
//!
//! Cases: first connect (empty zone: the full state); reconnect holding everything; reconnect after
//! 1 % of the Meshes changed at global while the zone was away. Baseline beside the reconnects:
//! the full-state transfer measured in the same run, which is what Kuma's KDS sends on every
//! reconnect (the zone sends no initial resource versions; kuma.md §4.6).

use std::{sync::Arc, time::Duration};

use anyhow::bail;
use meshplane_core::{
    model::ResourceKind,
    store::{ListQuery, ResourceStore, WriteOp},
};
use serde_json::json;
use tokio::time::Instant;

use crate::{
    kds_world::{KdsGlobal, LightZone, proxy},
    mesh::resource,
    report::{Row, Stat, Table},
};

pub struct Params {
    pub meshes: usize,
    pub repeats: usize,
}

impl Params {
    pub fn new(quick: bool) -> Self {
        Self {
            meshes: 1000,
            repeats: if quick { 1 } else { 3 },
        }
    }
}

fn mesh(i: usize, rev: usize) -> anyhow::Result<WriteOp> {
    let name = format!("mesh-{i:04}");
    let mut r = resource(&json!({
        "type": "Mesh",
        "name": name,
        "mtls": {"enabledBackend": "vault-1", "backends": [{
            "name": "vault-1", "type": "vault",
            "dpCert": {"rotation": {"expiration": "1d"}},
            "conf": {"fromCp": {"address": "https://vault.example:8200", "pki": format!("kmesh-pki-{name}"),
                "role": "dataplane-proxies", "commonName": "{{ tag \"kuma.io/service\" }}.mesh",
                "auth": {"token": {"secret": "vault-token"}}}}
        }]}
    }))?;
    r.meta
        .labels
        .insert("team".into(), format!("team-{}", i % 17));
    r.meta.labels.insert("rev".into(), rev.to_string());
    Ok(WriteOp::upsert(&r, None))
}

#[derive(Default)]
struct Case {
    secs: Vec<f64>,
    down: Vec<f64>,
    up: Vec<f64>,
}

impl Case {
    fn total(&self) -> Vec<f64> {
        self.up.iter().zip(&self.down).map(|(u, d)| u + d).collect()
    }

    fn push(&mut self, secs: f64, (up, down): (u64, u64)) {
        self.secs.push(secs);
        self.up.push(up as f64);
        self.down.push(down as f64);
    }
}

async fn count(store: &Arc<dyn ResourceStore>) -> anyhow::Result<usize> {
    Ok(store.list(&ListQuery::all(ResourceKind::Mesh)).await?.total)
}

pub async fn run(p: &Params) -> anyhow::Result<Table> {
    let mut t = Table::new(
        "kds-resync",
        "a zone (re)connecting to a global holding M Meshes",
    );
    let m = p.meshes;
    let g = KdsGlobal::start().await?;
    for chunk in (0..m).collect::<Vec<_>>().chunks(100) {
        let ops = chunk
            .iter()
            .map(|&i| mesh(i, 0))
            .collect::<anyhow::Result<Vec<_>>>()?;
        g.store.write(ops).await?;
    }
    let (addr, counter, proxy_task) = proxy(vec![g.addr]).await?;
    let (mut cold, mut warm, mut changed) = (Case::default(), Case::default(), Case::default());
    for rep in 0..p.repeats {
        let rev = rep + 1;
        let name = format!("resync-{rep}");
        let store = LightZone::memory();
        g.prepare(&name).await?;
        // First connect: the full state.
        counter.reset();
        let started = Instant::now();
        let mut z = g.zone(&name, addr, store.clone()).await?;
        z.wait_synced(Duration::from_secs(120)).await?;
        cold.push(started.elapsed().as_secs_f64(), counter.get());
        if count(&store).await? != m {
            bail!("the zone holds {} Meshes, not {m}", count(&store).await?);
        }
        z.stop().await;
        // Reconnect holding everything.
        tokio::time::sleep(Duration::from_millis(200)).await;
        counter.reset();
        let started = Instant::now();
        let mut z = g.zone(&name, addr, store.clone()).await?;
        z.wait_synced(Duration::from_secs(120)).await?;
        warm.push(started.elapsed().as_secs_f64(), counter.get());
        z.stop().await;
        // Reconnect after 1 % changed at global while away.
        let ops = (0..m.div_ceil(100))
            .map(|k| mesh(k * 100 % m, rev))
            .collect::<anyhow::Result<Vec<_>>>()?;
        g.store.write(ops).await?;
        tokio::time::sleep(Duration::from_millis(200)).await;
        counter.reset();
        let started = Instant::now();
        let mut z = g.zone(&name, addr, store.clone()).await?;
        z.wait_synced(Duration::from_secs(120)).await?;
        changed.push(started.elapsed().as_secs_f64(), counter.get());
        z.stop().await;
    }
    proxy_task.abort();
    g.stop().await;
    let ms = |v: &[f64]| Stat::of(&v.iter().map(|s| s * 1000.0).collect::<Vec<_>>());
    let kb = |v: &[f64]| Stat::of(&v.iter().map(|b| b / 1000.0).collect::<Vec<_>>());
    let full = "full state, measured: what Kuma resends on every reconnect";
    t.rows.push(Row::new(
        format!("M={m}: first connect (empty zone): time to converge"),
        "ms",
        ms(&cold.secs),
    ));
    t.rows.push(Row::new(
        format!("M={m}: first connect: bytes global → zone"),
        "KB",
        kb(&cold.down),
    ));
    t.rows.push(Row::new(
        format!("M={m}: first connect: bytes zone → global"),
        "KB",
        kb(&cold.up),
    ));
    t.rows.push(Row::new(
        format!("M={m}: first connect: bytes both ways"),
        "KB",
        kb(&cold.total()),
    ));
    for (label, c) in [
        ("reconnect holding all", &warm),
        ("reconnect, 1 % changed while away", &changed),
    ] {
        t.rows.push(
            Row::new(
                format!("M={m}: {label}: time to converge"),
                "ms",
                ms(&c.secs),
            )
            .baseline(ms(&cold.secs), full),
        );
        t.rows.push(
            Row::new(
                format!("M={m}: {label}: bytes global → zone"),
                "KB",
                kb(&c.down),
            )
            .baseline(kb(&cold.down), full),
        );
        t.rows.push(
            Row::new(
                format!("M={m}: {label}: bytes zone → global"),
                "KB",
                kb(&c.up),
            )
            .baseline(kb(&cold.up), full),
        );
        t.rows.push(
            Row::new(
                format!("M={m}: {label}: bytes both ways"),
                "KB",
                kb(&c.total()),
            )
            .baseline(kb(&cold.total()), full),
        );
    }
    t.note(
        "Bytes are wire bytes counted by a TCP proxy in front of global's sync listener: TLS records \
         (the handshake with global's certificate chain included), HTTP/2 frames and gzip-compressed gRPC \
         messages, up to the moment the zone reports its initial reconcile applied. KB = 1,000 bytes. Time \
         runs from starting the zone's sync client (dial, TLS, token check, Hello/Welcome) to that moment.",
    );
    t.note(format!(
        "Global: in-process sync server over TLS on PostgreSQL with {m} Meshes (vault backend, 2 labels); \
         zone: the real sync client with an in-memory store. Repeats: {}.",
        p.repeats
    ));
    t.extra = json!({
        "first_connect": {"secs": cold.secs, "up": cold.up, "down": cold.down},
        "reconnect": {"secs": warm.secs, "up": warm.up, "down": warm.down},
        "reconnect_changed": {"secs": changed.secs, "up": changed.up, "down": changed.down},
    });
    Ok(t)
}
