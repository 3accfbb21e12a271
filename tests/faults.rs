//! Fault injection with real processes: `kill -9` of global while zones sync; PostgreSQL stopped
//! and started under write load (a private server, never the shared one); OpenBao stopped, sealed
//! and brought back during certificate rotation; a zone, then global, frozen (SIGSTOP) and resumed.
//!
//! After each fault: every acknowledged write is present at global and in every zone, and every
//! dataplane holds a valid certificate (notAfter in the future, verified against its bundle). Each
//! test prints a summary table (visible with `--nocapture`) and asserts its zeros; with
//! `MESHPLANE_RELIABILITY_REPORT=<file>` it also appends its row there (scripts/reliability.sh).

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use base64::Engine;
use meshplane_test_support::{
    openbao::OpenBao,
    postgres::PrivateCluster,
    process::{bin, init_test_logging},
};
use meshplane_tests::{Agent, Api, Global, Store, Zone, eventually, migrated_db, run};
use serde_json::{Value, json};

/// How long the system may take to converge after a fault on a loaded 2-core machine.
const WAIT: Duration = Duration::from_secs(90);

// ---------------------------------------------------------------------------------------------
// A writer whose every acknowledged write is remembered
// ---------------------------------------------------------------------------------------------

/// What a writer saw.
#[derive(Default)]
struct Ledger {
    /// Meshes whose PUT was answered 200/201, with the `seq` label written.
    acked: BTreeMap<String, String>,
    /// Meshes whose PUT failed without a clear refusal (connection error, 5xx): they may or may
    /// not exist, but if they exist they must be whole.
    unsure: BTreeSet<String>,
    /// Answers by status (0 = no answer).
    statuses: BTreeMap<u16, u64>,
}

/// Mesh writes at global in a loop (`<prefix>-<n>`), until stopped.
struct Writer {
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    unavailable: Arc<AtomicU64>,
    ledger: Arc<Mutex<Ledger>>,
    task: tokio::task::JoinHandle<()>,
}

fn plain_mesh(name: &str, seq: u64) -> Value {
    json!({"type": "Mesh", "name": name, "labels": {"seq": seq.to_string()}})
}

/// A Mesh whose write is a batch of three rows: the Mesh and its builtin CA's two Secrets.
fn builtin_mesh(name: &str, seq: u64) -> Value {
    json!({"type": "Mesh", "name": name, "labels": {"seq": seq.to_string()},
        "mtls": {"enabledBackend": "ca-1", "backends": [{"name": "ca-1", "type": "builtin"}]}})
}

impl Writer {
    fn spawn(api: &Api, prefix: &str, body: fn(&str, u64) -> Value, pause: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let unavailable = Arc::new(AtomicU64::new(0));
        let ledger = Arc::new(Mutex::new(Ledger::default()));
        let (base, prefix) = (api.base.clone(), prefix.to_string());
        let task = {
            let (stop, acked, failed, unavailable, ledger) = (
                stop.clone(),
                acked.clone(),
                failed.clone(),
                unavailable.clone(),
                ledger.clone(),
            );
            tokio::spawn(async move {
                // Long enough to outlive a frozen (SIGSTOP) global: the write completes late.
                let http = reqwest::Client::builder()
                    .timeout(Duration::from_secs(60))
                    .build()
                    .expect("client");
                let mut seq = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    seq += 1;
                    let name = format!("{prefix}-{seq}");
                    let r = http
                        .put(format!("{base}/meshes/{name}"))
                        .json(&body(&name, seq))
                        .send()
                        .await;
                    let status = r.as_ref().map_or(0, |r| r.status().as_u16());
                    {
                        let mut l = ledger.lock().expect("ledger");
                        *l.statuses.entry(status).or_default() += 1;
                        match status {
                            200 | 201 => {
                                l.acked.insert(name, seq.to_string());
                                acked.fetch_add(1, Ordering::SeqCst);
                            }
                            _ => {
                                if status == 503 {
                                    unavailable.fetch_add(1, Ordering::SeqCst);
                                }
                                l.unsure.insert(name);
                                failed.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                    }
                    tokio::time::sleep(pause).await;
                }
            })
        };
        Self {
            stop,
            acked,
            failed,
            unavailable,
            ledger,
            task,
        }
    }

    fn acked(&self) -> u64 {
        self.acked.load(Ordering::SeqCst)
    }

    fn failed(&self) -> u64 {
        self.failed.load(Ordering::SeqCst)
    }

    /// Waits until `n` more writes than now were acknowledged.
    async fn wait_more(&self, n: u64, what: &str) {
        let target = self.acked() + n;
        eventually(WAIT, what, || async {
            (self.acked() >= target).then_some(())
        })
        .await
        .expect("writes acknowledged");
    }

    async fn finish(self) -> Ledger {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.expect("writer task");
        Arc::try_unwrap(self.ledger)
            .map_err(|_| "ledger still shared")
            .expect("ledger")
            .into_inner()
            .expect("ledger")
    }
}

fn merge(ledgers: Vec<Ledger>) -> Ledger {
    let mut all = Ledger::default();
    for l in ledgers {
        all.acked.extend(l.acked);
        all.unsure.extend(l.unsure);
        for (s, n) in l.statuses {
            *all.statuses.entry(s).or_default() += n;
        }
    }
    all
}

/// `n` Mesh writes sent at once (`<prefix>-<i>`): a batch global commits and then has to push.
struct Burst {
    acked: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<(String, u16)>>,
}

impl Burst {
    fn spawn(api: &Api, prefix: &str, n: u64) -> Self {
        let acked = Arc::new(AtomicU64::new(0));
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("client");
        let tasks = (1..=n)
            .map(|seq| {
                let (http, acked) = (http.clone(), acked.clone());
                let name = format!("{prefix}-{seq}");
                let url = format!("{}/meshes/{name}", api.base);
                tokio::spawn(async move {
                    let r = http.put(url).json(&plain_mesh(&name, seq)).send().await;
                    let status = r.map_or(0, |r| r.status().as_u16());
                    if status == 200 || status == 201 {
                        acked.fetch_add(1, Ordering::SeqCst);
                    }
                    (name, status)
                })
            })
            .collect();
        Self { acked, tasks }
    }

    async fn finish(self) -> Ledger {
        let mut l = Ledger::default();
        for t in self.tasks {
            let (name, status) = t.await.expect("burst task");
            *l.statuses.entry(status).or_default() += 1;
            if status == 200 || status == 201 {
                let seq = name.rsplit('-').next().unwrap_or("").to_string();
                l.acked.insert(name, seq);
            } else {
                l.unsure.insert(name);
            }
        }
        l
    }
}

// ---------------------------------------------------------------------------------------------
// Checks
// ---------------------------------------------------------------------------------------------

/// Every item of a list path, following pages; `None` when the API does not answer 200.
async fn list_all(api: &Api, path: &str) -> Option<Vec<Value>> {
    let mut out = Vec::new();
    loop {
        let (s, v) = api
            .get(&format!("{path}?size=1000&offset={}", out.len()))
            .await
            .ok()?;
        if s != 200 {
            return None;
        }
        let items = v["items"].as_array()?.clone();
        let done = items.len() < 1000;
        out.extend(items);
        if done {
            return Some(out);
        }
    }
}

/// Meshes whose name starts with `prefix`: name → `seq` label.
async fn meshes(api: &Api, prefix: &str) -> Option<BTreeMap<String, String>> {
    Some(
        list_all(api, "/meshes")
            .await?
            .into_iter()
            .filter_map(|m| {
                let name = m["name"].as_str()?.to_string();
                name.starts_with(prefix).then(|| {
                    let seq = m["labels"]["seq"].as_str().unwrap_or("").to_string();
                    (name, seq)
                })
            })
            .collect(),
    )
}

/// Acknowledged writes missing (or different) at `api`.
fn missing(acked: &BTreeMap<String, String>, found: &BTreeMap<String, String>) -> Vec<String> {
    acked
        .iter()
        .filter(|(name, seq)| found.get(*name) != Some(*seq))
        .map(|(name, _)| name.clone())
        .collect()
}

/// Waits until every acknowledged Mesh is at global and in every zone, and every zone holds exactly
/// what global holds (a write whose answer was lost is everywhere or nowhere). Returns how many
/// acknowledged writes are missing somewhere when that does not happen within `WAIT`.
async fn converge(global: &Api, zones: &[&Zone], prefixes: &[&str], ledger: &Ledger) -> usize {
    let check = || async {
        let mut lost = BTreeSet::new();
        let mut differ = false;
        for prefix in prefixes {
            let acked: BTreeMap<String, String> = ledger
                .acked
                .iter()
                .filter(|(n, _)| n.starts_with(prefix))
                .map(|(n, s)| (n.clone(), s.clone()))
                .collect();
            let Some(at_global) = meshes(global, prefix).await else {
                return (usize::MAX, true);
            };
            lost.extend(missing(&acked, &at_global));
            for z in zones {
                let Some(at_zone) = meshes(&z.api, prefix).await else {
                    return (usize::MAX, true);
                };
                lost.extend(missing(&acked, &at_zone));
                differ |= at_zone != at_global;
            }
        }
        (lost.len(), differ)
    };
    match eventually(
        WAIT,
        "every acknowledged write at global and in every zone",
        || async {
            let (lost, differ) = check().await;
            (lost == 0 && !differ).then_some(())
        },
    )
    .await
    {
        Ok(()) => 0,
        Err(e) => {
            let (lost, differ) = check().await;
            println!("{e}: {lost} acknowledged writes missing; zones differ from global: {differ}");
            lost
        }
    }
}

/// The agent's certificate is valid now: it exists, notAfter is in the future, and it verifies
/// against the agent's trust bundle.
async fn cert_valid(a: &Agent) -> Result<(), String> {
    let cert = a.cert_dir.join("cert.pem");
    let bundle = a.cert_dir.join("bundle.pem");
    if !cert.exists() || !bundle.exists() {
        return Err("no certificate files".into());
    }
    let cert = cert.display().to_string();
    let (code, out, err) = run(
        "openssl",
        &["x509", "-in", &cert, "-noout", "-checkend", "0"],
    )
    .await
    .map_err(|e| e.to_string())?;
    if code != 0 {
        return Err(format!("expired or unreadable: {out}{err}"));
    }
    let (code, out, err) = run(
        "openssl",
        &["verify", "-CAfile", &bundle.display().to_string(), &cert],
    )
    .await
    .map_err(|e| e.to_string())?;
    if code != 0 {
        return Err(format!("does not verify: {out}{err}"));
    }
    Ok(())
}

/// How many agents do not hold a valid certificate within `WAIT` (each is given the time to get
/// one re-issued after the fault).
async fn without_valid_certificate(agents: &mut [&mut Agent]) -> usize {
    let mut bad = 0;
    for a in agents.iter_mut() {
        if let Err(e) = a.proc.check_running() {
            println!("an agent died: {e}");
            bad += 1;
            continue;
        }
        let a: &Agent = a;
        let r = eventually(WAIT, "a valid certificate", || async {
            cert_valid(a).await.ok()
        })
        .await;
        if r.is_err() {
            println!(
                "agent without a valid certificate ({:?}); log:\n{}",
                cert_valid(a).await,
                a.proc.logs()
            );
            bad += 1;
        }
    }
    bad
}

fn dataplane(mesh: &str, name: &str, service: &str) -> String {
    format!(
        "type: Dataplane\nmesh: {mesh}\nname: {name}\nnetworking:\n  address: 127.0.0.1\n  inbound:\n    - port: 8080\n      tags:\n        kuma.io/service: {service}\n"
    )
}

async fn agent(g: &Global, z: &Zone, name: &str) -> Agent {
    let token = g
        .dataplane_token("default", name, Some(name))
        .await
        .expect("dataplane token");
    let mut a = Agent::start(z, &dataplane("default", name, name), &token)
        .await
        .expect("agent");
    a.wait_cert(None, WAIT).await.expect("first certificate");
    a
}

async fn put_ok(api: &Api, path: &str, body: &Value) {
    let (s, b) = api.put(path, body).await.expect("PUT");
    assert!(s == 200 || s == 201, "PUT {path}: {s} {b}");
}

/// Mesh `default` on a builtin CA, for the agents.
async fn builtin_default(g: &Global) {
    put_ok(&g.api, "/meshes/default", &builtin_mesh("default", 0)).await;
}

fn count(log: &str, needle: &str) -> usize {
    log.matches(needle).count()
}

/// One fault test's outcome: printed as a table, appended to the report file, zeros asserted.
struct Summary {
    test: &'static str,
    faults: usize,
    acked: usize,
    lost: usize,
    dataplanes: usize,
    without_cert: usize,
    /// Further measures that must be zero, and notes.
    zeros: Vec<(&'static str, usize)>,
    notes: Vec<(&'static str, String)>,
}

impl Summary {
    fn report_and_assert(self) {
        let mut t = format!("\nfault summary: {}\n", self.test);
        t.push_str(&format!(
            "| {:>15} | {:>19} | {:>11} | {:>10} | {:>38} |\n",
            "faults injected",
            "writes acknowledged",
            "writes lost",
            "dataplanes",
            "dataplanes without a valid certificate"
        ));
        t.push_str(&format!(
            "|{:->17}|{:->21}|{:->13}|{:->12}|{:->40}|\n",
            "", "", "", "", ""
        ));
        t.push_str(&format!(
            "| {:>15} | {:>19} | {:>11} | {:>10} | {:>38} |\n",
            self.faults, self.acked, self.lost, self.dataplanes, self.without_cert
        ));
        for (k, v) in &self.zeros {
            t.push_str(&format!("  {k}: {v} (must be 0)\n"));
        }
        for (k, v) in &self.notes {
            t.push_str(&format!("  {k}: {v}\n"));
        }
        println!("{t}");
        if let Ok(path) = std::env::var("MESHPLANE_RELIABILITY_REPORT") {
            use std::io::Write;
            if let Ok(mut f) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
            {
                let _ = writeln!(
                    f,
                    "{}|{}|{}|{}|{}",
                    self.test, self.faults, self.acked, self.lost, self.without_cert
                );
            }
        }
        assert!(self.faults > 0, "no fault was injected");
        assert!(self.acked > 0, "no write was acknowledged");
        assert_eq!(self.lost, 0, "{}: acknowledged writes lost", self.test);
        assert_eq!(
            self.without_cert, 0,
            "{}: dataplanes without a valid certificate",
            self.test
        );
        for (k, v) in &self.zeros {
            assert_eq!(*v, 0, "{}: {k}", self.test);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// (a) kill -9 of global in the middle of sync
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_global_in_the_middle_of_sync() {
    init_test_logging();
    let db = migrated_db().await.expect("database");
    let mut g = Global::start(Store::Postgres(db.url.clone()), &[])
        .await
        .expect("global");
    builtin_default(&g).await;
    let z1 = Zone::start(&g, "zone-1", Store::Memory, &[])
        .await
        .expect("zone-1");
    let z2 = Zone::start(&g, "zone-2", Store::Memory, &[])
        .await
        .expect("zone-2");
    let mut a1 = agent(&g, &z1, "web").await;
    let mut a2 = agent(&g, &z2, "api").await;

    let w = Writer::spawn(&g.api, "kill", plain_mesh, Duration::from_millis(5));
    w.wait_more(20, "writes before the kill").await;
    // Kill global right after the first write of a burst is acknowledged: it has committed writes
    // it has not pushed to the zones yet. Repeat (at most 5 times) until a kill caught the zones
    // behind, which is measured exactly: nothing reaches a zone after global died.
    let mut ledgers = Vec::new();
    let (mut faults, mut behind) = (0, 0);
    for round in 0..5 {
        let burst = Burst::spawn(&g.api, &format!("burst{round}"), 40);
        eventually(WAIT, "the first write of the burst", || async {
            (burst.acked.load(Ordering::SeqCst) > 0).then_some(())
        })
        .await
        .expect("burst acknowledged");
        g.proc.kill().await; // SIGKILL
        faults += 1;
        let failed = w.failed();
        let burst = burst.finish().await;
        let at_zone = meshes(&z1.api, &format!("burst{round}-"))
            .await
            .unwrap_or_default();
        behind = missing(&burst.acked, &at_zone).len();
        ledgers.push(burst);
        eventually(WAIT, "writes to fail while global is dead", || async {
            (w.failed() > failed).then_some(())
        })
        .await
        .expect("global is down");
        g.launch().await.expect("global restarts");
        w.wait_more(10, "writes after the restart").await;
        if behind > 0 {
            break;
        }
    }
    ledgers.push(w.finish().await);
    let ledger = merge(ledgers);

    let lost = converge(&g.api, &[&z1, &z2], &["kill", "burst"], &ledger).await;
    // Tokens and signing keys survived: a new dataplane registers and gets a certificate.
    let mut a3 = agent(&g, &z1, "late").await;
    let without_cert = without_valid_certificate(&mut [&mut a1, &mut a2, &mut a3]).await;
    Summary {
        test: "kill -9 of global during sync",
        faults,
        acked: ledger.acked.len(),
        lost,
        dataplanes: 3,
        without_cert,
        zeros: vec![(
            "kills that did not catch a zone behind (sync really interrupted)",
            usize::from(behind == 0),
        )],
        notes: vec![
            (
                "acknowledged writes not yet at zone-1 when global was killed",
                behind.to_string(),
            ),
            ("answers by status", format!("{:?}", ledger.statuses)),
        ],
    }
    .report_and_assert();
}

// ---------------------------------------------------------------------------------------------
// (b) PostgreSQL stopped and started under write load
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stopped_and_started_under_write_load() {
    init_test_logging();
    let pg = PrivateCluster::create().await.expect("private PostgreSQL");
    let url = pg.create_database("meshplane").await.expect("database");
    let (code, _, err) = run(
        &bin("meshplane-global").display().to_string(),
        &["migrate", "up", "--database-url", &url],
    )
    .await
    .expect("migrate");
    assert_eq!(code, 0, "{err}");
    let mut g = Global::start(Store::Postgres(url.clone()), &[])
        .await
        .expect("global");
    builtin_default(&g).await;
    let z = Zone::start(&g, "zone-1", Store::Memory, &[])
        .await
        .expect("zone");
    let mut a = agent(&g, &z, "web").await;
    let pid = g.proc.pid();

    let writers: Vec<Writer> = (0..3)
        .map(|i| {
            Writer::spawn(
                &g.api,
                &format!("pg{i}"),
                builtin_mesh,
                Duration::from_millis(10),
            )
        })
        .collect();
    let total = |ws: &[Writer]| ws.iter().map(Writer::acked).sum::<u64>();
    let unavailable = |ws: &[Writer]| {
        ws.iter()
            .map(|w| w.unavailable.load(Ordering::SeqCst))
            .sum::<u64>()
    };
    let before = total(&writers);
    eventually(WAIT, "writes before the outage", || async {
        (total(&writers) >= before + 9).then_some(())
    })
    .await
    .expect("writes");

    pg.stop().await.expect("stop PostgreSQL");
    // While it is down the API answers 503: writes, reads and readiness.
    let probe = json!({"type": "Mesh", "name": "probe-down"});
    let (status, body) = eventually(WAIT, "a write answered 503", || async {
        let (s, b) = g.api.put("/meshes/probe-down", &probe).await.ok()?;
        (s == 503).then_some((s, b))
    })
    .await
    .expect("503 on write");
    assert_eq!(body["title"], "Service unavailable", "{status} {body}");
    let (s, b) = g.api.get("/meshes/default").await.expect("get");
    assert_eq!(s, 503, "a read while PostgreSQL is down: {b}");
    let (s, b) = g.api.get("/readyz").await.expect("readyz");
    assert_eq!(s, 503, "readiness while PostgreSQL is down: {b}");
    let seen = unavailable(&writers);
    eventually(WAIT, "the writers to be refused with 503", || async {
        (unavailable(&writers) >= seen + 3).then_some(())
    })
    .await
    .expect("writers refused");
    let acked_while_down = total(&writers);

    pg.start().await.expect("start PostgreSQL");
    // Recovery without a restart: the same process serves again.
    eventually(WAIT, "writes to succeed again", || async {
        let (s, _) = g
            .api
            .put(
                "/meshes/probe-up",
                &json!({"type": "Mesh", "name": "probe-up"}),
            )
            .await
            .ok()?;
        (s == 201 || s == 200).then_some(())
    })
    .await
    .expect("recovered");
    let (s, b) = g.api.get("/readyz").await.expect("readyz");
    assert_eq!(s, 200, "{b}");
    g.proc.check_running().expect("global never exited");
    assert_eq!(g.proc.pid(), pid, "global was not restarted");
    let after = total(&writers);
    eventually(WAIT, "writes after the outage", || async {
        (total(&writers) >= after + 9).then_some(())
    })
    .await
    .expect("writes");
    let mut ledgers = Vec::new();
    for w in writers {
        ledgers.push(w.finish().await);
    }
    let ledger = merge(ledgers);

    let lost = converge(&g.api, &[&z], &["pg"], &ledger).await;
    // No partial write: every Mesh that exists has both CA Secrets of its batch, at global and in
    // the zone, and no CA Secret exists without its Mesh.
    let partial = |meshes: &BTreeMap<String, String>, secrets: &[Value]| {
        let names: BTreeSet<(String, String)> = secrets
            .iter()
            .filter_map(|s| {
                Some((
                    s["mesh"].as_str()?.to_string(),
                    s["name"].as_str()?.to_string(),
                ))
            })
            .collect();
        let mut bad = 0;
        for m in meshes.keys() {
            for kind in ["cert", "key"] {
                if !names.contains(&(m.clone(), format!("{m}.ca-builtin-{kind}-ca-1"))) {
                    println!("Mesh {m} lacks its CA {kind} Secret");
                    bad += 1;
                }
            }
        }
        for (mesh, name) in &names {
            if mesh.starts_with("pg") && !meshes.contains_key(mesh) {
                println!("Secret {name} exists without its Mesh {mesh}");
                bad += 1;
            }
        }
        bad
    };
    let mut partial_writes = 0;
    for api in [&g.api, &z.api] {
        let m = meshes(api, "pg").await.expect("meshes");
        let s = list_all(api, "/secrets").await.expect("secrets");
        partial_writes += partial(&m, &s);
    }
    let unsure_present = {
        let at_global = meshes(&g.api, "pg").await.expect("meshes");
        ledger
            .unsure
            .iter()
            .filter(|n| at_global.contains_key(*n))
            .count()
    };
    let unexpected = ledger
        .statuses
        .iter()
        .filter(|(s, _)| ![200, 201, 503].contains(*s))
        .map(|(_, n)| *n as usize)
        .sum();
    let without_cert = without_valid_certificate(&mut [&mut a]).await;
    Summary {
        test: "PostgreSQL stopped and started under write load",
        faults: 1,
        acked: ledger.acked.len(),
        lost,
        dataplanes: 1,
        without_cert,
        zeros: vec![
            (
                "partial writes (a Mesh without its CA Secrets or the reverse)",
                partial_writes,
            ),
            (
                "answers other than 200, 201 or 503 (no answer, 500, …)",
                unexpected,
            ),
        ],
        notes: vec![
            (
                "503 answers to the writers",
                ledger.statuses.get(&503).copied().unwrap_or(0).to_string(),
            ),
            (
                "writes acknowledged before the outage",
                acked_while_down.to_string(),
            ),
            (
                "unacknowledged writes that turned out to be applied (whole)",
                unsure_present.to_string(),
            ),
            ("answers by status", format!("{:?}", ledger.statuses)),
        ],
    }
    .report_and_assert();
}

// ---------------------------------------------------------------------------------------------
// (c) OpenBao stopped, sealed and brought back during rotation
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openbao_stopped_and_sealed_during_rotation() {
    init_test_logging();
    let mut bao = OpenBao::start_dev().await.expect("openbao");
    let seed = bao.seed_setup("default").await.expect("seed");
    let g = Global::start(Store::Memory, &[]).await.expect("global");
    put_ok(
        &g.api,
        "/meshes/default/secrets/vault-token",
        &json!({"type": "Secret", "mesh": "default", "name": "vault-token",
            "data": base64::engine::general_purpose::STANDARD.encode(&seed.token)}),
    )
    .await;
    put_ok(
        &g.api,
        "/meshes/default",
        &json!({"type": "Mesh", "name": "default", "mtls": {"enabledBackend": "vault-1", "backends": [
            {"name": "vault-1", "type": "vault",
             "dpCert": {"rotation": {"expiration": "20s"}, "requestTimeout": "3s"},
             "conf": {"fromCp": {"address": bao.addr, "pki": seed.mount, "role": seed.role,
                "auth": {"token": {"secret": "vault-token"}}}}}]}}),
    )
    .await;
    let z = Zone::start(&g, "zone-1", Store::Memory, &["--cert-backoff-max", "2s"])
        .await
        .expect("zone");
    let mut a1 = agent(&g, &z, "web").await;
    let mut a2 = agent(&g, &z, "api").await;
    let w = Writer::spawn(&g.api, "bao", plain_mesh, Duration::from_millis(50));
    let failures = || count(&z.proc.logs(), "certificate issuance failed");
    let current = |a: &Agent| std::fs::read_to_string(a.cert_dir.join("cert.pem")).expect("cert");

    // Fault 1: OpenBao stops answering (SIGSTOP) until a renewal has failed against it.
    let held = [current(&a1), current(&a2)];
    let before = failures();
    bao.signal("STOP").expect("stop OpenBao");
    eventually(
        WAIT,
        "a renewal to fail while OpenBao is stopped",
        || async { (failures() > before).then_some(()) },
    )
    .await
    .expect("renewal attempted during the outage");
    let kept_1 = [current(&a1), current(&a2)] == held;
    bao.signal("CONT").expect("resume OpenBao");
    let c1 = a1
        .wait_cert(Some(&held[0]), WAIT)
        .await
        .expect("web renewed");
    let c2 = a2
        .wait_cert(Some(&held[1]), WAIT)
        .await
        .expect("api renewed");

    // Fault 2: OpenBao sealed until a renewal has failed against it, then unsealed.
    let before = failures();
    bao.seal().await.expect("seal");
    eventually(
        WAIT,
        "a renewal to fail while OpenBao is sealed",
        || async { (failures() > before).then_some(()) },
    )
    .await
    .expect("renewal attempted while sealed");
    let kept_2 = [current(&a1), current(&a2)] == [c1.clone(), c2.clone()];
    bao.unseal().await.expect("unseal");
    a1.wait_cert(Some(&c1), WAIT)
        .await
        .expect("web renewed after unseal");
    a2.wait_cert(Some(&c2), WAIT)
        .await
        .expect("api renewed after unseal");

    w.wait_more(5, "writes after the faults").await;
    let ledger = w.finish().await;
    let lost = converge(&g.api, &[&z], &["bao"], &ledger).await;
    let without_cert = without_valid_certificate(&mut [&mut a1, &mut a2]).await;
    Summary {
        test: "OpenBao stopped and sealed during rotation",
        faults: 2,
        acked: ledger.acked.len(),
        lost,
        dataplanes: 2,
        without_cert,
        zeros: vec![(
            "outages in which a held certificate was withdrawn",
            usize::from(!kept_1) + usize::from(!kept_2),
        )],
        notes: vec![(
            "issuance failures logged by the zone",
            failures().to_string(),
        )],
    }
    .report_and_assert();
}

// ---------------------------------------------------------------------------------------------
// (d) a zone cut off from global, then global frozen, and both reconnected
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zone_cut_off_from_global_and_reconnected() {
    init_test_logging();
    let g = Global::start(Store::Memory, &[]).await.expect("global");
    builtin_default(&g).await;
    put_ok(
        &g.api,
        "/meshes/plain",
        &json!({"type": "Mesh", "name": "plain"}),
    )
    .await;
    let z1 = Zone::start(&g, "zone-1", Store::Memory, &[])
        .await
        .expect("zone-1");
    let z2 = Zone::start(&g, "zone-2", Store::Memory, &[])
        .await
        .expect("zone-2");
    let mut a1 = agent(&g, &z1, "web").await;
    let mut a2 = agent(&g, &z2, "api").await;
    let w = Writer::spawn(&g.api, "cut", plain_mesh, Duration::from_millis(20));
    w.wait_more(10, "writes before the cut").await;

    // Fault 1: zone-1 frozen until global declares it offline; writes go on meanwhile.
    let online = |zone: &'static str| {
        let api = g.api.clone();
        async move {
            let (s, v) = api.get(&format!("/zones/{zone}/_overview")).await.ok()?;
            if s != 200 {
                return None;
            }
            let last = v["zoneInsight"]["subscriptions"]
                .as_array()?
                .last()?
                .clone();
            Some(last.get("disconnectTime").is_none())
        }
    };
    z1.proc.signal("STOP").expect("freeze zone-1");
    eventually(WAIT, "global to see zone-1 offline", || async {
        (online("zone-1").await == Some(false)).then_some(())
    })
    .await
    .expect("zone-1 offline");
    w.wait_more(10, "writes while zone-1 is cut off").await;
    z1.proc.signal("CONT").expect("resume zone-1");
    eventually(WAIT, "zone-1 online again", || async {
        (online("zone-1").await == Some(true)).then_some(())
    })
    .await
    .expect("zone-1 reconnected");

    // Fault 2: global frozen until both zones noticed; the zones keep accepting their own writes.
    let disconnects = |z: &Zone| count(&z.proc.logs(), "disconnected from global");
    let (d1, d2) = (disconnects(&z1), disconnects(&z2));
    g.proc.signal("STOP").expect("freeze global");
    eventually(WAIT, "both zones to lose global", || async {
        (disconnects(&z1) > d1 && disconnects(&z2) > d2).then_some(())
    })
    .await
    .expect("zones noticed");
    let mut zone_writes = BTreeSet::new();
    for (z, n) in [(&z1, 3), (&z2, 3)] {
        for i in 0..n {
            let name = format!("offline-{i}");
            let (s, b) = z
                .api
                .put(
                    &format!("/meshes/plain/dataplanes/{name}"),
                    &json!({"type": "Dataplane", "mesh": "plain", "name": name,
                        "networking": {"address": "10.0.0.1", "inbound": [{"port": 80, "tags": {"kuma.io/service": "svc"}}]}}),
                )
                .await
                .expect("dataplane");
            assert_eq!(
                s, 201,
                "a zone accepts its own writes while global is away: {b}"
            );
            zone_writes.insert(format!("{}.{name}", z.name));
        }
    }
    g.proc.signal("CONT").expect("resume global");
    w.wait_more(10, "writes after global resumed").await;
    let ledger = w.finish().await;

    let mut lost = converge(&g.api, &[&z1, &z2], &["cut"], &ledger).await;
    // Zone → global: what the zones wrote while global was frozen reached it.
    let reported = || async {
        let items = list_all(&g.api, "/meshes/plain/dataplanes").await?;
        Some(
            items
                .iter()
                .filter_map(|d| d["name"].as_str().map(str::to_string))
                .collect::<BTreeSet<_>>(),
        )
    };
    if eventually(WAIT, "the zones' writes at global", || async {
        reported().await.filter(|r| r.is_superset(&zone_writes))
    })
    .await
    .is_err()
    {
        let r = reported().await.unwrap_or_default();
        lost += zone_writes.difference(&r).count();
    }
    let without_cert = without_valid_certificate(&mut [&mut a1, &mut a2]).await;
    Summary {
        test: "zone cut off (SIGSTOP zone, then global) and reconnected",
        faults: 2,
        acked: ledger.acked.len() + zone_writes.len(),
        lost,
        dataplanes: 2,
        without_cert,
        zeros: vec![],
        notes: vec![
            ("Mesh writes at global", ledger.acked.len().to_string()),
            (
                "Dataplane writes at the zones while global was frozen",
                zone_writes.len().to_string(),
            ),
        ],
    }
    .report_and_assert();
}
