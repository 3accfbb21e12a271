//! Writers whose every acknowledged write is remembered.

use super::*;

/// What a writer saw.
#[derive(Default)]
pub(crate) struct Ledger {
    /// Meshes whose PUT was answered 200/201, with the `seq` label written.
    pub(crate) acked: BTreeMap<String, String>,
    /// Meshes whose PUT failed without a clear refusal (connection error, 5xx): they may or may
    /// not exist, but if they exist they must be whole.
    pub(crate) unsure: BTreeSet<String>,
    /// Answers by status (0 = no answer).
    pub(crate) statuses: BTreeMap<u16, u64>,
}

/// Mesh writes at global in a loop (`<prefix>-<n>`), until stopped.
pub(crate) struct Writer {
    pub(crate) stop: Arc<AtomicBool>,
    pub(crate) acked: Arc<AtomicU64>,
    pub(crate) failed: Arc<AtomicU64>,
    pub(crate) unavailable: Arc<AtomicU64>,
    pub(crate) ledger: Arc<Mutex<Ledger>>,
    pub(crate) task: tokio::task::JoinHandle<()>,
}

pub(crate) fn plain_mesh(name: &str, seq: u64) -> Value {
    json!({"type": "Mesh", "name": name, "labels": {"seq": seq.to_string()}})
}

/// A Mesh whose write is a batch of three rows: the Mesh and its builtin CA's two Secrets.
pub(crate) fn builtin_mesh(name: &str, seq: u64) -> Value {
    json!({"type": "Mesh", "name": name, "labels": {"seq": seq.to_string()},
        "mtls": {"enabledBackend": "ca-1", "backends": [{"name": "ca-1", "type": "builtin"}]}})
}

impl Writer {
    pub(crate) fn spawn(
        api: &Api,
        prefix: &str,
        body: fn(&str, u64) -> Value,
        pause: Duration,
    ) -> Self {
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

    pub(crate) fn acked(&self) -> u64 {
        self.acked.load(Ordering::SeqCst)
    }

    pub(crate) fn failed(&self) -> u64 {
        self.failed.load(Ordering::SeqCst)
    }

    /// Waits until `n` more writes than now were acknowledged.
    pub(crate) async fn wait_more(&self, n: u64, what: &str) {
        let target = self.acked() + n;
        eventually(WAIT, what, || async {
            (self.acked() >= target).then_some(())
        })
        .await
        .expect("writes acknowledged");
    }

    pub(crate) async fn finish(self) -> Ledger {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.expect("writer task");
        Arc::try_unwrap(self.ledger)
            .map_err(|_| "ledger still shared")
            .expect("ledger")
            .into_inner()
            .expect("ledger")
    }
}

pub(crate) fn merge(ledgers: Vec<Ledger>) -> Ledger {
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
pub(crate) struct Burst {
    pub(crate) acked: Arc<AtomicU64>,
    pub(crate) tasks: Vec<tokio::task::JoinHandle<(String, u16)>>,
}

impl Burst {
    pub(crate) fn spawn(api: &Api, prefix: &str, n: u64) -> Self {
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

    pub(crate) async fn finish(self) -> Ledger {
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
