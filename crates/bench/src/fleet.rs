//! Scenario 2, fleet-cold-start (and the numbers scenario 5, memory, reports): N simulated agents
//! register at once with one real `meshplane-zone` (standalone, PostgreSQL, secrets encrypted at
//! rest, default issuance concurrency) whose Mesh issues from an EC P-256 OpenBao role.
//!
//! Measured: time until every agent holds a valid certificate, certificates Vault made
//! (`LIST <pki>/certs` before and after), the zone's RSS (`/proc/<pid>/status`). Baseline, same
//! run: raw OpenBao issue calls on the same role at the zone's concurrency; target: within
//! 1.2 × N ÷ that rate. Then the zone restarts on the same database: certificates Vault made
//! (target 0: persisted ones are served) and time from the restart until all are served again.

use std::{collections::HashMap, sync::Arc, time::Duration};

use anyhow::{Context, bail};
use meshplane_core::{
    model::Resource,
    store::{ResourceStore, WriteOp, memory::MemoryStore},
    tokens::{DataplaneClaims, TokenKind, Tokens},
};
use serde_json::json;
use tokio::{
    sync::{mpsc, watch},
    time::Instant,
};

use crate::{
    agents::{self, Agent, Served},
    env::{CpuScope, CpuTimes, Env, KeyKind, Rss, migrated_db},
    mesh::{dataplane, dataplane_name, token_secret, vault_mesh},
    procs::CpProc,
    report::{Stat, percentile},
    vault_raw::{self, Mode, service_of},
};

/// The zone's `--issuance-concurrency` (its default), also the raw baseline's concurrency.
pub const ZONE_CONCURRENCY: usize = 16;

pub struct Params {
    pub n: usize,
    pub restart: bool,
    pub raw_repeats: usize,
    pub raw_secs: Duration,
}

/// Everything one fleet run measured.
#[derive(Clone, Debug, serde::Serialize)]
pub struct FleetResult {
    pub n: usize,
    /// Raw OpenBao EC issue rate at the zone's concurrency (certs/s), per repeat.
    pub raw_rate: Vec<f64>,
    pub cold_secs: f64,
    pub cold_served: usize,
    pub cold_p50_secs: f64,
    pub cold_p99_secs: f64,
    pub cold_retries: usize,
    /// When Register returned: p50 and the last one (s from the start).
    pub cold_registered: (f64, f64),
    pub cold_vault_certs: usize,
    pub first_errors: Vec<String>,
    pub rss_idle: Rss,
    pub rss_loaded: Rss,
    /// The zone's own mean time per Vault call (`certificate_issuance_seconds` sum ÷ count).
    pub issue_latency_ms: f64,
    /// CPU seconds used during the cold start by the zone, OpenBao, PostgreSQL and the agents.
    pub cold_cpu: CpuTimes,
    pub restart: Option<RestartResult>,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct RestartResult {
    pub from_spawn_secs: f64,
    pub spawn_to_ready_secs: f64,
    pub from_ready_secs: f64,
    pub served: usize,
    pub vault_certs: usize,
    pub same_certificates: usize,
    pub retries: usize,
    pub registered: (f64, f64),
    pub rss: Rss,
    pub cpu: CpuTimes,
}

/// N dataplane tokens, signed locally with the zone's own signing key (read once through the
/// zone's API as an admin), so that minting 10,000 tokens does not load the zone.
async fn tokens(zone: &CpProc, mesh: &str, n: usize) -> anyhow::Result<Vec<String>> {
    // The first token makes the zone create its signing key.
    zone.api
        .post_text(
            "/tokens/dataplane",
            &json!({"mesh": mesh, "name": dataplane_name(0), "validFor": "24h"}),
        )
        .await?;
    let name = TokenKind::Dataplane.signing_key_name(1);
    let key = zone
        .api
        .get(&format!("/global-secrets/{name}"))
        .await
        .context("reading the zone's dataplane-token signing key")?;
    let data = key["data"]
        .as_str()
        .context("the signing key has no data")?
        .to_string();
    let store: Arc<dyn ResourceStore> = Arc::new(MemoryStore::new());
    let r = Resource::from_universal(&json!({"type": "GlobalSecret", "name": name, "data": data}))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    store.write(vec![WriteOp::create(&r, None)]).await?;
    let t = Tokens::new(store);
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let claims = DataplaneClaims {
            mesh: mesh.to_string(),
            name: dataplane_name(i),
            tags: [("kuma.io/service".to_string(), service_of(i))].into(),
        };
        out.push(
            t.issue(TokenKind::Dataplane, claims, Duration::from_secs(86_400))
                .await?,
        );
    }
    Ok(out)
}

/// Mean of the zone's `certificate_issuance_seconds` histogram, in ms.
async fn issuance_latency_ms(zone: &CpProc) -> anyhow::Result<f64> {
    let text = zone
        .api
        .http
        .get(format!("{}/metrics", zone.api.base))
        .send()
        .await?
        .text()
        .await?;
    let value = |suffix: &str| -> f64 {
        text.lines()
            .filter(|l| l.starts_with(&format!("meshplane_certificate_issuance_seconds_{suffix}")))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    let count = value("count");
    Ok(if count > 0.0 {
        value("sum") / count * 1000.0
    } else {
        0.0
    })
}

fn fleet(mesh: &str, tokens: &[String]) -> anyhow::Result<Vec<Agent>> {
    tokens
        .iter()
        .enumerate()
        .map(|(i, t)| {
            Ok(Agent {
                index: i,
                token: t.clone(),
                dataplane: serde_json::to_vec(&dataplane(mesh, i))?,
            })
        })
        .collect()
}

/// A running fleet: reports arrive on `served`; `stop` ends every agent.
struct Wave {
    served: HashMap<usize, Served>,
    latencies: Vec<f64>,
    /// When each agent's Register returned (from t0).
    registered: Vec<f64>,
    elapsed: f64,
    retries: usize,
    errors: Vec<String>,
    stop: watch::Sender<bool>,
    tasks: tokio::task::JoinSet<()>,
}

impl Wave {
    async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
    }
}

/// Starts every agent at once (timed from `t0`) and waits until all hold a certificate.
async fn wave(
    port: u16,
    ca_pem: &[u8],
    agents: Vec<Agent>,
    t0: Instant,
    limit: Duration,
) -> anyhow::Result<Wave> {
    let n = agents.len();
    let chans = agents::channels(port, ca_pem, n).await?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (etx, mut erx) = mpsc::unbounded_channel();
    let (stop, stop_rx) = watch::channel(false);
    let tasks = agents::start(agents, &chans, tx, etx, stop_rx);
    let mut served = HashMap::with_capacity(n);
    let mut latencies = Vec::with_capacity(n);
    let deadline = t0 + limit;
    while served.len() < n {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(s)) => {
                latencies.push((s.at - t0).as_secs_f64());
                served.insert(s.index, s);
            }
            Ok(None) | Err(_) => break,
        }
    }
    let elapsed = latencies.iter().copied().fold(0.0, f64::max);
    let registered: Vec<f64> = served
        .values()
        .map(|s| (s.registered_at - t0).as_secs_f64())
        .collect();
    eprintln!(
        "    registered: p50 {:.2} s, max {:.2} s; certificate: p50 {:.2} s, max {elapsed:.2} s",
        percentile(&registered, 50.0),
        registered.iter().copied().fold(0.0, f64::max),
        percentile(&latencies, 50.0)
    );
    let mut errors = Vec::new();
    while let Ok(e) = erx.try_recv() {
        errors.push(e);
    }
    let retries = served.values().map(|s| (s.attempts - 1) as usize).sum();
    Ok(Wave {
        served,
        latencies,
        registered,
        elapsed,
        retries,
        errors,
        stop,
        tasks,
    })
}

/// Checks every served certificate: parses, valid now, and names the agent's service.
fn check_certs(mesh: &str, served: &HashMap<usize, Served>) -> anyhow::Result<()> {
    let now = chrono::Utc::now().timestamp();
    for (i, s) in served {
        let c = &s.cert;
        if !(c.not_before_unix <= now && now < c.not_after_unix) {
            bail!("dataplane {i}: certificate not valid now");
        }
        let der = pem_der(&c.cert_pem).with_context(|| format!("dataplane {i}"))?;
        let (_, x) = x509_parser::parse_x509_certificate(&der)
            .map_err(|e| anyhow::anyhow!("dataplane {i}: certificate does not parse: {e}"))?;
        let want = format!("spiffe://{mesh}/{}", service_of(*i));
        let has = x
            .subject_alternative_name()
            .ok()
            .flatten()
            .is_some_and(|san| {
                san.value.general_names.iter().any(
                    |g| matches!(g, x509_parser::extensions::GeneralName::URI(u) if *u == want),
                )
            });
        if !has {
            bail!("dataplane {i}: certificate lacks URI SAN {want}");
        }
    }
    Ok(())
}

fn pem_der(pem: &str) -> anyhow::Result<Vec<u8>> {
    use base64::Engine;
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    Ok(base64::engine::general_purpose::STANDARD.decode(body)?)
}

pub async fn run(env: &Env, p: &Params) -> anyhow::Result<FleetResult> {
    let n = p.n;
    let mesh = format!("fleet-{n}");
    let pki = env.pki(&mesh).await?;
    let db = migrated_db().await?;
    let scope = CpuScope::new(env, &db).await?;
    let (mut zone, dp_port) = CpProc::zone(
        env,
        &format!("zone-{mesh}"),
        &db.url,
        &["--issuance-concurrency", &ZONE_CONCURRENCY.to_string()],
    )
    .await?;
    // A Mesh to own the token Secret, the Secret, then the vault backend (validated by a test issue).
    zone.api
        .put(
            &format!("/meshes/{mesh}"),
            &json!({"type": "Mesh", "name": mesh}),
        )
        .await?;
    zone.api
        .put(
            &format!("/meshes/{mesh}/secrets/{}", crate::mesh::TOKEN_SECRET),
            &token_secret(&pki),
        )
        .await?;
    zone.api
        .put(
            &format!("/meshes/{mesh}"),
            &vault_mesh(&pki, KeyKind::Ec, Mode::Issue),
        )
        .await?;
    let ca_pem = std::fs::read(zone.work.join("dp-server-ca.pem"))?;
    let toks = tokens(&zone, &mesh, n).await?;

    let http = vault_raw::client()?;
    let mut raw_rate = Vec::new();
    for _ in 0..p.raw_repeats {
        raw_rate.push(
            vault_raw::run_for(
                &http,
                &pki,
                KeyKind::Ec,
                Mode::Issue,
                ZONE_CONCURRENCY,
                p.raw_secs,
            )
            .await?,
        );
    }
    let raw_median = Stat::of(&raw_rate).map_or(1.0, |s| s.median);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_idle = zone.rss()?;
    let before = env.stored_certs(&pki.mount).await?;
    // Generous: ten times the target, at least two minutes.
    let limit = Duration::from_secs_f64((12.0 * n as f64 / raw_median).max(120.0));

    let cpu0 = CpuTimes::now(&zone.pid()?, &scope).await;
    let t0 = Instant::now();
    let cold = wave(dp_port, &ca_pem, fleet(&mesh, &toks)?, t0, limit).await?;
    eprintln!(
        "  fleet-cold-start n={n}: {} served in {:.2} s ({} retries; first errors {:?})",
        cold.served.len(),
        cold.elapsed,
        cold.retries,
        cold.errors.iter().take(3).collect::<Vec<_>>()
    );
    if cold.served.len() == n {
        check_certs(&mesh, &cold.served)?;
    }
    let cold_cpu = CpuTimes::now(&zone.pid()?, &scope).await.since(&cpu0);
    eprintln!("    CPU seconds during the cold start: {cold_cpu:?}");
    let issue_ms = issuance_latency_ms(&zone).await.unwrap_or(0.0);
    eprintln!("    zone's mean Vault call time (certificate_issuance_seconds): {issue_ms:.1} ms");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_loaded = zone.rss()?;
    let cold_vault_certs = env.stored_certs(&pki.mount).await?.saturating_sub(before);
    let certs_before: HashMap<usize, String> = cold
        .served
        .iter()
        .map(|(i, s)| (*i, s.cert.cert_pem.clone()))
        .collect();
    let mut result = FleetResult {
        n,
        raw_rate,
        cold_secs: cold.elapsed,
        cold_served: cold.served.len(),
        cold_p50_secs: percentile(&cold.latencies, 50.0),
        cold_p99_secs: percentile(&cold.latencies, 99.0),
        cold_retries: cold.retries,
        cold_registered: spread(&cold.registered),
        cold_vault_certs,
        first_errors: cold.errors.iter().take(5).cloned().collect(),
        rss_idle,
        rss_loaded,
        issue_latency_ms: issue_ms,
        cold_cpu,
        restart: None,
    };
    cold.shutdown().await;
    if cold_served_all(&result) && p.restart {
        zone.stop().await?;
        let before = env.stored_certs(&pki.mount).await?;
        let (spawned, ready) = zone.launch().await?;
        let cpu0 = CpuTimes::now(&zone.pid()?, &scope).await;
        let w = wave(
            dp_port,
            &ca_pem,
            fleet(&mesh, &toks)?,
            spawned.into(),
            limit,
        )
        .await?;
        eprintln!(
            "  fleet-restart n={n}: {} served {:.2} s after the restart",
            w.served.len(),
            w.elapsed
        );
        let same = w
            .served
            .iter()
            .filter(|(i, s)| certs_before.get(i) == Some(&s.cert.cert_pem))
            .count();
        let cpu = CpuTimes::now(&zone.pid()?, &scope).await.since(&cpu0);
        eprintln!("    CPU seconds after the restart: {cpu:?}");
        tokio::time::sleep(Duration::from_secs(1)).await;
        let rss = zone.rss()?;
        let vault_certs = env.stored_certs(&pki.mount).await?.saturating_sub(before);
        let spawn_to_ready = (ready - spawned).as_secs_f64();
        result.restart = Some(RestartResult {
            from_spawn_secs: w.elapsed,
            spawn_to_ready_secs: spawn_to_ready,
            from_ready_secs: (w.elapsed - spawn_to_ready).max(0.0),
            served: w.served.len(),
            vault_certs,
            same_certificates: same,
            retries: w.retries,
            registered: spread(&w.registered),
            rss,
            cpu,
        });
        if result.first_errors.is_empty() {
            result.first_errors = w.errors.iter().take(5).cloned().collect();
        }
        w.shutdown().await;
    }
    if result.cold_served < n {
        eprintln!("  zone log tail:\n{}", zone.log_tail());
    }
    zone.stop().await?;
    drop(db);
    Ok(result)
}

/// p50 and maximum.
fn spread(v: &[f64]) -> (f64, f64) {
    (percentile(v, 50.0), v.iter().copied().fold(0.0, f64::max))
}

fn cold_served_all(r: &FleetResult) -> bool {
    r.cold_served == r.n
}
