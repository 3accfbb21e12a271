//! Scenario 6, api-writes: Mesh PUTs per second through the real `meshplane-global` (REST API,
//! validation, resource manager, PostgreSQL store with secrets encrypted at rest) at 1 and 16
//! concurrent clients, beside raw `INSERT`s of the same rows (the spec text and labels global
//! stored, the store's own INSERT statement, which fires the same NOTIFY trigger) through sqlx at
//! the same concurrency into a second migrated database. Fixed duration per run, raw and ours
//! alternating, repeated.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use sqlx::postgres::PgPoolOptions;

use crate::{
    env::{Env, migrated_db},
    procs::CpProc,
    report::{Row, Stat, Table},
};

pub struct Params {
    pub concurrency: Vec<usize>,
    pub repeats: usize,
    pub secs: Duration,
}

impl Params {
    pub fn new(quick: bool) -> Self {
        Self {
            concurrency: vec![1, 16],
            repeats: if quick { 1 } else { 3 },
            secs: Duration::from_millis(if quick { 1000 } else { 2000 }),
        }
    }
}

/// The Mesh every PUT creates (a vault backend as Kong Mesh's page configures it; `skipValidation`
/// so the figure measures the API and the store, not Vault).
fn body(name: &str) -> Value {
    json!({
        "type": "Mesh",
        "name": name,
        "mtls": {"enabledBackend": "vault-1", "skipValidation": true, "backends": [{
            "name": "vault-1", "type": "vault",
            "dpCert": {"rotation": {"expiration": "1d"}},
            "conf": {"fromCp": {"address": "https://vault.example:8200", "pki": "kmesh-pki-default",
                "role": "dataplane-proxies", "commonName": "{{ tag \"kuma.io/service\" }}.mesh",
                "auth": {"token": {"secret": "vault-token"}}}}
        }]}
    })
}

/// The store's INSERT (crates/store-postgres/src/write.rs), one statement per transaction.
const INSERT: &str = "INSERT INTO resources \
     (type, mesh, name, version, spec, labels, owner_type, owner_mesh, owner_name, \
      creation_time, modification_time) \
     VALUES ($1, $2, $3, 1, $4, $5, $6, $7, $8, statement_timestamp(), statement_timestamp()) \
     RETURNING version, creation_time, modification_time";

async fn ours(
    api: &str,
    http: &reqwest::Client,
    c: usize,
    tag: &str,
    dur: Duration,
) -> anyhow::Result<f64> {
    let done = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for w in 0..c {
        let (http, done, api, tag) = (http.clone(), done.clone(), api.to_string(), tag.to_string());
        set.spawn(async move {
            let mut k = 0;
            while started.elapsed() < dur {
                let name = format!("api-{tag}-{w}-{k}");
                let r = http
                    .put(format!("{api}/meshes/{name}"))
                    .json(&body(&name))
                    .send()
                    .await?;
                let status = r.status();
                if !status.is_success() {
                    bail!(
                        "PUT /meshes/{name}: {status}: {}",
                        r.text().await.unwrap_or_default()
                    );
                }
                k += 1;
                done.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<_, anyhow::Error>(())
        });
    }
    while let Some(r) = set.join_next().await {
        r??;
    }
    Ok(done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64())
}

async fn raw(
    pool: &sqlx::PgPool,
    c: usize,
    tag: &str,
    spec: &str,
    labels: &Value,
    dur: Duration,
) -> anyhow::Result<f64> {
    let done = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for w in 0..c {
        let (pool, done, tag) = (pool.clone(), done.clone(), tag.to_string());
        let (spec, labels) = (spec.to_string(), labels.clone());
        set.spawn(async move {
            let mut k = 0;
            while started.elapsed() < dur {
                sqlx::query(INSERT)
                    .bind("Mesh")
                    .bind("")
                    .bind(format!("raw-{tag}-{w}-{k}"))
                    .bind(&spec)
                    .bind(sqlx::types::Json(&labels))
                    .bind(None::<String>)
                    .bind(None::<String>)
                    .bind(None::<String>)
                    .fetch_one(&pool)
                    .await?;
                k += 1;
                done.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<_, anyhow::Error>(())
        });
    }
    while let Some(r) = set.join_next().await {
        r??;
    }
    Ok(done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64())
}

pub async fn run(env: &Env, p: &Params) -> anyhow::Result<Table> {
    let mut t = Table::new(
        "api-writes",
        "Mesh PUTs/s through global on PostgreSQL vs raw INSERTs of the same rows",
    );
    let db = migrated_db().await?;
    let raw_db = migrated_db().await?;
    let mut global = CpProc::global(env, "global-api", &db.url).await?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(64)
        .build()?;
    let api = global.api.base.clone();
    // One PUT to learn the row global stores, then the same row for the raw inserts.
    http.put(format!("{api}/meshes/probe"))
        .json(&body("probe"))
        .send()
        .await?
        .error_for_status()?;
    let probe = PgPoolOptions::new()
        .max_connections(1)
        .connect(&db.url)
        .await?;
    let (spec, labels): (String, sqlx::types::Json<Value>) = sqlx::query_as(
        "SELECT spec, labels FROM resources WHERE type = 'Mesh' AND mesh = '' AND name = 'probe'",
    )
    .fetch_one(&probe)
    .await
    .context("reading the row global stored")?;
    probe.close().await;
    let mut runs = Vec::new();
    for &c in &p.concurrency {
        let pool = PgPoolOptions::new()
            .max_connections(u32::try_from(c)?)
            .min_connections(u32::try_from(c)?)
            .connect(&raw_db.url)
            .await?;
        // Warm both sides' connections.
        ours(
            &api,
            &http,
            c,
            &format!("warm{c}"),
            Duration::from_millis(200),
        )
        .await?;
        raw(
            &pool,
            c,
            &format!("warm{c}"),
            &spec,
            &labels.0,
            Duration::from_millis(200),
        )
        .await?;
        let (mut mine, mut base) = (Vec::new(), Vec::new());
        for rep in 0..p.repeats {
            let tag = format!("c{c}r{rep}");
            if rep % 2 == 0 {
                base.push(raw(&pool, c, &tag, &spec, &labels.0, p.secs).await?);
                mine.push(ours(&api, &http, c, &tag, p.secs).await?);
            } else {
                mine.push(ours(&api, &http, c, &tag, p.secs).await?);
                base.push(raw(&pool, c, &tag, &spec, &labels.0, p.secs).await?);
            }
        }
        pool.close().await;
        eprintln!("  api-writes c={c}: ours {mine:.0?} raw {base:.0?}");
        t.rows.push(
            Row::new(
                format!("{c} concurrent client(s)"),
                "writes/s",
                Stat::of(&mine),
            )
            .baseline(Stat::of(&base), "raw sqlx INSERT"),
        );
        runs.push(json!({"concurrency": c, "ours": mine, "raw": base}));
    }
    global.stop().await?;
    t.note(format!(
        "Ours: `PUT /meshes/<new name>` with a {}-byte Mesh (vault backend, skipValidation) to the real \
         `meshplane-global` (PostgreSQL, secrets encrypted at rest, log level warn), reqwest with keep-alive, \
         each client sequential. Raw: the store's own INSERT statement with the row global stored (spec text \
         and labels), one autocommit statement per row, through a sqlx pool of c connections, into a second \
         database with the same schema and NOTIFY trigger. {} s per run, {} repeat(s), alternating. No target \
         is set for this figure.",
        body("probe").to_string().len(),
        p.secs.as_secs_f64(),
        p.repeats
    ));
    t.extra = json!({ "runs": runs });
    Ok(t)
}
