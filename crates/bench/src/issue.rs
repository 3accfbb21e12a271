//! Scenario 1, issue-throughput: certificates per second through the zone's issuance manager
//! (`CertManager` with the real vault backend, persisting into an in-memory store) against raw HTTP
//! calls to the same OpenBao role at the same concurrency (`vault_raw`), for an EC P-256 and an
//! RSA-2048 role, in issue and CSR-sign mode, at concurrency 1, 8 and 32.
//!
//! Each cell first calibrates the count on the raw path (about `run_secs` of work), then repeats
//! raw and ours alternately with that fixed count, so drift in machine load hits both sides alike.
//! Figure: ours ÷ raw (medians). Target ≥ 0.9.

use std::{sync::Arc, time::Duration};

use anyhow::{Context, bail};
use meshplane_core::{
    ca::CaRegistry,
    datasource::StoreLoader,
    model::ResourceKey,
    store::{ResourceStore, WriteOp, memory::MemoryStore},
};
use meshplane_identity::{
    CertKey, CertManager, CertState, Deps, ManagerConfig, clock::SystemClock, metrics::Metrics,
};
use serde_json::json;
use tokio::time::Instant;

use crate::{
    env::{Env, KeyKind, Pki},
    mesh::{dataplane, dataplane_name, mesh_spec, resource, token_secret, vault_mesh},
    report::{Row, Stat, Table, Verdict},
    vault_raw::{self, Mode},
};

pub struct Params {
    pub repeats: usize,
    /// Rough length of one measured run.
    pub run_secs: f64,
    pub calibrate: Duration,
    pub concurrency: Vec<usize>,
    pub keys: Vec<KeyKind>,
    pub modes: Vec<Mode>,
}

impl Params {
    pub fn new(quick: bool) -> Self {
        if quick {
            Self {
                repeats: 2,
                run_secs: 0.5,
                calibrate: Duration::from_millis(300),
                concurrency: vec![1, 8, 32],
                keys: vec![KeyKind::Ec, KeyKind::Rsa],
                modes: vec![Mode::Issue, Mode::Csr],
            }
        } else {
            Self {
                repeats: 3,
                run_secs: 1.5,
                calibrate: Duration::from_millis(500),
                concurrency: vec![1, 8, 32],
                keys: vec![KeyKind::Ec, KeyKind::Rsa],
                modes: vec![Mode::Issue, Mode::Csr],
            }
        }
    }
}

/// Writes the Mesh, its token Secret and `n` dataplanes into a fresh memory store.
async fn world(
    pki: &Pki,
    kind: KeyKind,
    mode: Mode,
    n: usize,
) -> anyhow::Result<(Arc<dyn ResourceStore>, ManagerInput)> {
    let store: Arc<dyn ResourceStore> = Arc::new(MemoryStore::new());
    let mesh_json = vault_mesh(pki, kind, mode);
    let owner = ResourceKey::mesh(pki.mesh.clone());
    store
        .write(vec![WriteOp::create(&resource(&mesh_json)?, None)])
        .await?;
    store
        .write(vec![WriteOp::create(
            &resource(&token_secret(pki))?,
            Some(owner.clone()),
        )])
        .await?;
    let mut ops = Vec::with_capacity(n);
    let mut dps = Vec::with_capacity(n);
    for i in 0..n {
        let v = dataplane(&pki.mesh, i);
        ops.push(WriteOp::create(&resource(&v)?, Some(owner.clone())));
        dps.push((
            pki.mesh.clone(),
            dataplane_name(i),
            crate::mesh::dataplane_identity(&v)?,
        ));
    }
    store.write(ops).await?;
    Ok((
        store,
        ManagerInput {
            meshes: vec![(pki.mesh.clone(), mesh_spec(&mesh_json)?)],
            dataplanes: dps,
        },
    ))
}

struct ManagerInput {
    meshes: Vec<(String, meshplane_core::model::MeshSpec)>,
    dataplanes: Vec<(String, String, meshplane_core::model::DataplaneIdentity)>,
}

/// `n` dataplanes handed to a fresh manager at once; certificates per second until all are ready.
async fn ours(
    ca: &CaRegistry,
    pki: &Pki,
    kind: KeyKind,
    mode: Mode,
    concurrency: usize,
    n: usize,
) -> anyhow::Result<f64> {
    let (store, input) = world(pki, kind, mode, n).await?;
    let deps = Deps {
        store: store.clone(),
        ca: ca.clone(),
        loader: Arc::new(StoreLoader::new(store.clone())),
        clock: Arc::new(SystemClock),
        metrics: Metrics::unregistered(),
    };
    let cfg = ManagerConfig {
        concurrency,
        ..ManagerConfig::default()
    };
    let (mgr, task) = CertManager::spawn(cfg, deps, None);
    // Watch first: the identities are known but blocked until the snapshot brings the dataplanes.
    let rxs: Vec<_> = (0..n)
        .map(|i| mgr.watch(&CertKey::mesh_cert(pki.mesh.clone(), dataplane_name(i))))
        .collect();
    let started = Instant::now();
    mgr.snapshot(input.meshes, input.dataplanes);
    let wait_all = async {
        for mut rx in rxs {
            let st = rx
                .wait_for(|s| matches!(s, CertState::Ready(_) | CertState::Unavailable(_)))
                .await
                .context("manager stopped")?
                .clone();
            if let CertState::Unavailable(why) = st {
                bail!("issuance failed: {why}");
            }
        }
        Ok(())
    };
    tokio::time::timeout(Duration::from_secs(600), wait_all)
        .await
        .context("issuance did not finish within 600 s")??;
    let elapsed = started.elapsed();
    drop(mgr);
    let _ = task.await;
    Ok(n as f64 / elapsed.as_secs_f64())
}

pub async fn run(env: &Env, p: &Params) -> anyhow::Result<Table> {
    let mut t = Table::new(
        "issue-throughput",
        "certificates/s through the issuance manager vs raw OpenBao HTTP calls, same role, same concurrency",
    );
    let pki = env.pki("bench").await?;
    let ca = meshplane_ca::registry();
    let http = vault_raw::client()?;
    let mut cells = Vec::new();
    for &kind in &p.keys {
        for &mode in &p.modes {
            for &c in &p.concurrency {
                let calib = vault_raw::run_for(&http, &pki, kind, mode, c, p.calibrate).await?;
                let n = ((calib * p.run_secs).round() as usize).clamp((2 * c).max(10), 50_000);
                let (mut raw, mut mine) = (Vec::new(), Vec::new());
                for rep in 0..p.repeats {
                    if rep % 2 == 0 {
                        raw.push(vault_raw::run_count(&http, &pki, kind, mode, c, n).await?);
                        mine.push(ours(&ca, &pki, kind, mode, c, n).await?);
                    } else {
                        mine.push(ours(&ca, &pki, kind, mode, c, n).await?);
                        raw.push(vault_raw::run_count(&http, &pki, kind, mode, c, n).await?);
                    }
                }
                let row = Row::new(
                    format!("{} {} c={c}", kind.label(), mode.label()),
                    "certs/s",
                    Stat::of(&mine),
                )
                .baseline(Stat::of(&raw), "");
                let ok = row.ratio.is_some_and(|r| r >= 0.9);
                eprintln!(
                    "  issue-throughput {} {} c={c} n={n}: ours {:.0}/s raw {:.0}/s",
                    kind.label(),
                    mode.label(),
                    row.value.as_ref().map_or(0.0, |s| s.median),
                    row.baseline.as_ref().map_or(0.0, |s| s.median)
                );
                t.rows
                    .push(row.target("ratio ≥ 0.90", Verdict::from_bool(ok)));
                cells.push(
                    json!({"key": kind, "mode": mode, "concurrency": c, "count": n,
                    "ours": mine, "raw": raw, "calibration_raw": calib}),
                );
            }
        }
    }
    t.note(format!(
        "Baseline: raw HTTP POSTs to OpenBao `{}/{{issue,sign}}/<role>` from one shared pooled reqwest client, \
         same token, body and concurrency; CSR mode makes a fresh key + CSR per call with rcgen on both sides. \
         OpenBao dev server (in-memory storage, plain HTTP, RSA-2048 root from the seed's step 1) on the same 2 CPUs.",
        pki.mount
    ));
    t.note(
        "Ours: a fresh `CertManager` (manager concurrency = c) is handed N dataplanes at once; timed until every \
         identity is Ready. It persists each certificate and insight into an in-memory store (PostgreSQL is \
         covered by fleet-cold-start). N is calibrated per cell to ≈ the run length on the raw side; raw and ours \
         alternate, repeated; table shows the median and [min–max] of the repeats.",
    );
    t.extra = json!({ "cells": cells, "repeats": p.repeats });
    Ok(t)
}
