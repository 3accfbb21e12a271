//! The certificate manager: a cloneable handle over one worker that owns every identity's schedule.
//! The worker keeps a priority queue of due work, runs at most `concurrency` issuances at once, backs
//! off per identity with jitter, stops calling a backend whose circuit breaker is open, and keeps
//! serving the last valid certificate while a backend is failing.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::{StreamExt, future::BoxFuture, stream::FuturesUnordered};
use meshplane_core::{
    model::{DataplaneIdentity, MeshSpec, ResourceKind, Spec, dataplane::DataplaneCertificateSpec},
    runtime::backoff::Backoff,
    store::ListQuery,
};
use rand::Rng;
use tokio::{
    sync::{Semaphore, mpsc, watch},
    time::Instant,
};

use crate::{
    Deps,
    breaker::{Breaker, Decision},
    clock::instant_at,
    config::ManagerConfig,
    issue::{self, Done, Order},
    metrics::{BackendLabels, FailureLabels},
    persist::Persister,
    registrations::Registrations,
    schedule::{self, Priority, Schedule},
    state::{CertKey, CertState, Identity, MeshTrust, Profile},
    trust,
};

pub(crate) enum Command {
    /// Everything the worker should know, replacing what it knew (start-up and store resyncs).
    Snapshot {
        meshes: Vec<(String, MeshSpec)>,
        dataplanes: Vec<(String, String, DataplaneIdentity)>,
    },
    Mesh(String, Option<MeshSpec>),
    Dataplane(String, String, Option<DataplaneIdentity>),
    Ensure(CertKey),
}

struct Shared {
    states: Mutex<HashMap<CertKey, watch::Sender<CertState>>>,
    trust: Mutex<HashMap<String, watch::Sender<Arc<MeshTrust>>>>,
    /// The Dataplanes the worker knows (the same `Arc`s), so the dataplane server can answer a
    /// reconnecting dataplane without reading the store.
    dataplanes: Mutex<HashMap<(String, String), Arc<DataplaneIdentity>>>,
}

/// The handle: cheap to clone, used by the dataplane server and the store watcher.
#[derive(Clone)]
pub struct CertManager {
    tx: mpsc::UnboundedSender<Command>,
    shared: Arc<Shared>,
    persist: Persister,
    registrations: Registrations,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl CertManager {
    /// Starts the worker and the persister it writes through. It loads the certificates the zone
    /// persisted, so a restart re-issues only what is missing, changed or due. The task ends when
    /// both have (the persister last, once what it holds is written); with `drain`, a shutdown
    /// waits for the persister's last writes.
    pub fn spawn(
        cfg: ManagerConfig,
        deps: Deps,
        drain: Option<drain::Watch>,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            states: Mutex::default(),
            trust: Mutex::default(),
            dataplanes: Mutex::default(),
        });
        let (persist, persist_task) =
            Persister::spawn(deps.store.clone(), cfg.persist.clone(), drain);
        let worker = Worker::new(cfg, deps, shared.clone(), rx, persist.clone());
        let worker_task = tokio::spawn(worker.run());
        let task = tokio::spawn(async move {
            tokio::pin!(worker_task, persist_task);
            tokio::select! {
                r = &mut worker_task => {
                    if let Err(e) = r {
                        std::panic::resume_unwind(e.into_panic());
                    }
                    if let Err(e) = persist_task.await {
                        std::panic::resume_unwind(e.into_panic());
                    }
                }
                r = &mut persist_task => match r {
                    Err(e) => std::panic::resume_unwind(e.into_panic()),
                    // It ends only once every handle is gone, the worker's included.
                    Ok(()) => {
                        let _ = worker_task.await;
                    }
                },
            }
        });
        (
            Self {
                tx,
                shared,
                persist,
                registrations: Registrations::default(),
            },
            task,
        )
    }

    /// The writer of the zone's certificates and insights (the dataplane server records
    /// connections through it).
    pub fn persister(&self) -> &Persister {
        &self.persist
    }

    /// The stored Dataplanes' digests, kept by the store watcher (see `registrations.rs`).
    pub fn registrations(&self) -> &Registrations {
        &self.registrations
    }

    fn send(&self, c: Command) {
        // The worker ends only when every handle is gone, so a failed send cannot happen while we exist.
        let _ = self.tx.send(c);
    }

    /// The state of one identity, starting to manage it if needed.
    pub fn watch(&self, key: &CertKey) -> watch::Receiver<CertState> {
        let rx = {
            let mut states = lock(&self.shared.states);
            states
                .entry(key.clone())
                .or_insert_with(|| watch::channel(CertState::Pending).0)
                .subscribe()
        };
        self.send(Command::Ensure(key.clone()));
        rx
    }

    /// The trust bundle of a mesh.
    pub fn trust(&self, mesh: &str) -> watch::Receiver<Arc<MeshTrust>> {
        let mut t = lock(&self.shared.trust);
        t.entry(mesh.to_string())
            .or_insert_with(|| {
                watch::channel(Arc::new(MeshTrust {
                    mesh: mesh.into(),
                    ..Default::default()
                }))
                .0
            })
            .subscribe()
    }

    pub fn mesh_changed(&self, name: String, spec: Option<MeshSpec>) {
        self.send(Command::Mesh(name, spec));
    }

    pub fn dataplane_changed(&self, mesh: String, name: String, spec: Option<DataplaneIdentity>) {
        self.send(Command::Dataplane(mesh, name, spec));
    }

    pub fn snapshot(
        &self,
        meshes: Vec<(String, MeshSpec)>,
        dataplanes: Vec<(String, String, DataplaneIdentity)>,
    ) {
        self.send(Command::Snapshot { meshes, dataplanes });
    }

    /// The Dataplane as the manager last heard of it from the store, if it did. A dataplane that
    /// just registered may not be here yet: callers fall back to the store.
    pub fn dataplane(&self, mesh: &str, name: &str) -> Option<Arc<DataplaneIdentity>> {
        lock(&self.shared.dataplanes)
            .get(&(mesh.to_string(), name.to_string()))
            .cloned()
    }

    /// Identities currently managed (for diagnostics and tests).
    pub fn managed(&self) -> usize {
        lock(&self.shared.states).len()
    }
}

enum Want {
    Issue(Order),
    /// No certificate can be issued; says why.
    Blocked(String),
}

struct Entry {
    generation: u64,
    current: Option<Arc<Identity>>,
    want: Want,
    backoff: Backoff,
    in_flight: bool,
    regenerations: u64,
}

struct Worker {
    cfg: ManagerConfig,
    deps: Deps,
    shared: Arc<Shared>,
    rx: mpsc::UnboundedReceiver<Command>,
    meshes: HashMap<String, MeshSpec>,
    dataplanes: HashMap<(String, String), Arc<DataplaneIdentity>>,
    entries: HashMap<CertKey, Entry>,
    /// The keys of `entries` by (mesh, dataplane), so a dataplane's change touches only its own.
    by_dataplane: HashMap<(String, String), Vec<CertKey>>,
    /// One permit per backend call in flight (`concurrency`).
    slots: Arc<Semaphore>,
    persisted: HashMap<CertKey, (Arc<Identity>, u64)>,
    schedule: Schedule,
    inflight: FuturesUnordered<BoxFuture<'static, Done>>,
    breakers: HashMap<(String, String), Breaker>,
    trust_tasks: HashMap<String, tokio::task::JoinHandle<()>>,
    persist: Persister,
}

impl Worker {
    fn new(
        cfg: ManagerConfig,
        deps: Deps,
        shared: Arc<Shared>,
        rx: mpsc::UnboundedReceiver<Command>,
        persist: Persister,
    ) -> Self {
        Self {
            persist,
            slots: Arc::new(Semaphore::new(cfg.concurrency.max(1))),
            cfg,
            deps,
            shared,
            rx,
            meshes: HashMap::new(),
            dataplanes: HashMap::new(),
            entries: HashMap::new(),
            by_dataplane: HashMap::new(),
            persisted: HashMap::new(),
            schedule: Schedule::default(),
            inflight: FuturesUnordered::new(),
            breakers: HashMap::new(),
            trust_tasks: HashMap::new(),
        }
    }

    /// Loads persisted certificates; a store failure only means more issuance, never a crash.
    async fn load_persisted(&mut self) {
        let q = ListQuery::all(ResourceKind::DataplaneCertificate);
        let recs = match self.deps.store.list(&q).await {
            Ok(r) => r.items,
            Err(e) => {
                tracing::warn!(error = %e, "could not load persisted certificates; they will be re-issued");
                return;
            }
        };
        for rec in recs {
            let Ok(r) = rec.to_resource() else { continue };
            let Spec::DataplaneCertificate(c) = r.spec else {
                continue;
            };
            let c: DataplaneCertificateSpec = c;
            let profile = match c.svid_service.clone() {
                Some(s) => Profile::Svid(s),
                None => Profile::Mesh,
            };
            let key = CertKey {
                mesh: rec.key.mesh.clone(),
                dataplane: c.dataplane.clone(),
                profile,
            };
            let id = Identity {
                key: key.clone(),
                backend: c.backend,
                cert_pem: c.cert_pem,
                key_pem: c.key_pem,
                chain_pem: crate::state::intern_chain(c.chain_pem),
                not_before: c.not_before,
                not_after: c.not_after,
                issued_at: c.issued_at,
                fingerprint: c.fingerprint,
            };
            self.persisted.insert(key, (Arc::new(id), c.regenerations));
        }
        tracing::info!(
            certificates = self.persisted.len(),
            "loaded persisted certificates"
        );
    }

    async fn run(mut self) {
        self.load_persisted().await;
        loop {
            self.start_ready();
            let next = self.schedule.next_timer();
            // Work is waiting for a backend slot that an issuance still persisting may free.
            let waiting = self.schedule.has_ready() && self.inflight.len() < self.max_inflight();
            tokio::select! {
                cmd = self.rx.recv() => match cmd {
                    Some(c) => self.handle(c),
                    None => break,
                },
                Some(done) = self.inflight.next(), if !self.inflight.is_empty() => self.finish(done),
                _ = self.slots.clone().acquire_owned(), if waiting => {}
                _ = sleep_until(next), if next.is_some() => {}
            }
        }
        // Every handle is gone: let running issuances finish so their results are persisted.
        while self.inflight.next().await.is_some() {}
        for t in self.trust_tasks.values() {
            t.abort();
        }
    }

    fn publish(&self, key: &CertKey, state: CertState) {
        let mut states = lock(&self.shared.states);
        let tx = states
            .entry(key.clone())
            .or_insert_with(|| watch::channel(CertState::Pending).0);
        tx.send_if_modified(|cur| {
            if *cur == state {
                false
            } else {
                *cur = state.clone();
                true
            }
        });
    }

    fn handle(&mut self, c: Command) {
        match c {
            Command::Snapshot { meshes, dataplanes } => {
                let meshes: HashMap<String, MeshSpec> = meshes.into_iter().collect();
                let known: Vec<String> = self.meshes.keys().cloned().collect();
                for name in known {
                    match meshes.get(&name) {
                        Some(spec) => self.release_dropped_backends(&name, Some(spec)),
                        None => self.remove_mesh(&name),
                    }
                }
                self.meshes = meshes;
                let dataplanes: HashMap<(String, String), Arc<DataplaneIdentity>> = dataplanes
                    .into_iter()
                    .map(|(m, n, s)| ((m, n), Arc::new(s)))
                    .collect();
                for gone in self
                    .dataplanes
                    .keys()
                    .filter(|k| !dataplanes.contains_key(*k))
                {
                    self.persist.forget(&gone.0, &gone.1);
                }
                self.dataplanes = dataplanes;
                *lock(&self.shared.dataplanes) = self.dataplanes.clone();
                let names: Vec<String> = self.meshes.keys().cloned().collect();
                for m in names {
                    self.refresh_trust(&m);
                }
                let gone: Vec<CertKey> = self
                    .entries
                    .keys()
                    .filter(|k| {
                        !self
                            .dataplanes
                            .contains_key(&(k.mesh.clone(), k.dataplane.clone()))
                    })
                    .cloned()
                    .collect();
                for k in gone {
                    self.forget(&k);
                }
                let dps: Vec<(String, String)> = self.dataplanes.keys().cloned().collect();
                for (m, n) in dps {
                    self.reconcile(&CertKey::mesh_cert(m, n));
                }
                let keys: Vec<CertKey> = self.entries.keys().cloned().collect();
                for k in keys {
                    self.reconcile(&k);
                }
            }
            Command::Mesh(name, spec) => {
                match spec {
                    Some(s) => {
                        self.release_dropped_backends(&name, Some(&s));
                        self.meshes.insert(name.clone(), s);
                        self.refresh_trust(&name);
                    }
                    None => self.remove_mesh(&name),
                }
                let keys: Vec<CertKey> = self
                    .entries
                    .keys()
                    .filter(|k| k.mesh == name)
                    .cloned()
                    .collect();
                for k in keys {
                    self.reconcile(&k);
                }
            }
            Command::Dataplane(mesh, name, spec) => match spec {
                Some(s) => {
                    let s = Arc::new(s);
                    lock(&self.shared.dataplanes).insert((mesh.clone(), name.clone()), s.clone());
                    self.dataplanes.insert((mesh.clone(), name.clone()), s);
                    let mut keys = self.keys_of(&mesh, &name);
                    let mesh_key = CertKey::mesh_cert(mesh, name);
                    if !keys.contains(&mesh_key) {
                        keys.push(mesh_key);
                    }
                    for k in keys {
                        self.reconcile(&k);
                    }
                }
                None => {
                    self.dataplanes.remove(&(mesh.clone(), name.clone()));
                    lock(&self.shared.dataplanes).remove(&(mesh.clone(), name.clone()));
                    self.persist.forget(&mesh, &name);
                    let keys = self.keys_of(&mesh, &name);
                    for k in keys {
                        self.forget(&k);
                    }
                }
            },
            Command::Ensure(key) => self.reconcile(&key),
        }
        self.deps
            .metrics
            .identities
            .set(i64::try_from(self.entries.len()).unwrap_or(i64::MAX));
    }

    /// Releases (Vault sessions, token renewers) the backends of `name` that `new` no longer has;
    /// all of them when the Mesh is gone.
    fn release_dropped_backends(&self, name: &str, new: Option<&MeshSpec>) {
        if let Some(old) = self.meshes.get(name) {
            self.deps.ca.release_removed(name, old, new);
        }
    }

    /// A Mesh is gone: its backends are released and its trust bundle is no longer refreshed.
    /// Its identities are reconciled by the caller (they become blocked and are served until expiry).
    fn remove_mesh(&mut self, name: &str) {
        self.release_dropped_backends(name, None);
        self.meshes.remove(name);
        if let Some(task) = self.trust_tasks.remove(name) {
            task.abort();
        }
    }

    /// The identities of one dataplane the manager keeps.
    fn keys_of(&self, mesh: &str, name: &str) -> Vec<CertKey> {
        self.by_dataplane
            .get(&(mesh.to_string(), name.to_string()))
            .cloned()
            .unwrap_or_default()
    }

    fn refresh_trust(&mut self, mesh: &str) {
        let Some(spec) = self.meshes.get(mesh).cloned() else {
            return;
        };
        let tx = {
            let mut t = lock(&self.shared.trust);
            t.entry(mesh.to_string())
                .or_insert_with(|| {
                    watch::channel(Arc::new(MeshTrust {
                        mesh: mesh.into(),
                        ..Default::default()
                    }))
                    .0
                })
                .clone()
        };
        if let Some(old) = self.trust_tasks.remove(mesh) {
            old.abort();
        }
        let task = tokio::spawn(trust::refresh(
            self.deps.clone(),
            mesh.to_string(),
            spec,
            tx,
        ));
        self.trust_tasks.insert(mesh.to_string(), task);
    }

    fn want(&self, key: &CertKey) -> Want {
        let Some(dp) = self
            .dataplanes
            .get(&(key.mesh.clone(), key.dataplane.clone()))
        else {
            return Want::Blocked(format!("dataplane {} is not registered", key.dataplane));
        };
        let Some(mesh) = self.meshes.get(&key.mesh) else {
            return Want::Blocked(format!("mesh {:?} does not exist in this zone", key.mesh));
        };
        let Some(backend) = mesh.enabled_backend() else {
            return Want::Blocked(format!("mTLS is not enabled in mesh {:?}", key.mesh));
        };
        let tags = match dp.tags() {
            Ok(t) => t.clone(),
            Err(why) => return Want::Blocked(why.to_string()),
        };
        if let Profile::Svid(service) = &key.profile
            && !dp.services().contains(service)
        {
            return Want::Blocked(format!(
                "dataplane {} has no service {service:?}",
                key.dataplane
            ));
        }
        Want::Issue(Order {
            fingerprint: issue::fingerprint(key, backend, &tags),
            backend: backend.clone(),
            validity: backend.dp_cert_expiration(),
            tags,
            supported: mesh.backends().iter().map(|b| b.name.clone()).collect(),
        })
    }

    /// Brings one entry in line with what is wanted: serve, schedule renewal, or schedule issuance.
    fn reconcile(&mut self, key: &CertKey) {
        let want = self.want(key);
        let now = self.deps.clock.now();
        if !self.entries.contains_key(key) {
            let (current, regenerations) = match self.persisted.remove(key) {
                Some((id, n)) if id.is_valid_at(now) => (Some(id), n),
                _ => (None, 0),
            };
            let backoff = Backoff::new(self.cfg.backoff_base, self.cfg.backoff_max);
            self.by_dataplane
                .entry((key.mesh.clone(), key.dataplane.clone()))
                .or_default()
                .push(key.clone());
            self.entries.insert(
                key.clone(),
                Entry {
                    generation: 0,
                    current,
                    want: Want::Blocked(String::new()),
                    backoff,
                    in_flight: false,
                    regenerations,
                },
            );
        }
        let Some(entry) = self.entries.get_mut(key) else {
            return;
        };
        entry.want = want;
        entry.generation += 1;
        let generation = entry.generation;
        let valid = entry.current.clone().filter(|c| c.is_valid_at(now));
        let (state, schedule) = match &entry.want {
            Want::Blocked(reason) => {
                let state = if self
                    .dataplanes
                    .contains_key(&(key.mesh.clone(), key.dataplane.clone()))
                {
                    CertState::Unavailable(reason.clone())
                } else {
                    CertState::Pending
                };
                (state, None)
            }
            Want::Issue(order) => match &valid {
                Some(cur) if cur.fingerprint == order.fingerprint => {
                    let at = schedule::renew_at(cur, self.cfg.renew_window);
                    (
                        CertState::Ready(cur.clone()),
                        Some((instant_at(self.deps.clock.as_ref(), at), Priority::Renewal)),
                    )
                }
                // Identity or backend changed: keep serving the old one while the new one is made.
                Some(cur) => (
                    CertState::Ready(cur.clone()),
                    Some((Instant::now(), Priority::Initial)),
                ),
                None => (
                    CertState::Pending,
                    Some((Instant::now(), Priority::Initial)),
                ),
            },
        };
        let in_flight = entry.in_flight;
        self.publish(key, state);
        if let Some((at, prio)) = schedule
            && !in_flight
        {
            self.schedule.push(key.clone(), generation, at, prio);
        }
    }

    fn forget(&mut self, key: &CertKey) {
        if self.entries.remove(key).is_some() {
            let dp = (key.mesh.clone(), key.dataplane.clone());
            if let Some(keys) = self.by_dataplane.get_mut(&dp) {
                keys.retain(|k| k != key);
                if keys.is_empty() {
                    self.by_dataplane.remove(&dp);
                }
            }
        }
        self.persisted.remove(key);
        lock(&self.shared.states).remove(key);
        for b in self.breakers.values_mut() {
            b.forget(key);
        }
    }

    fn breaker(&mut self, mesh: &str, backend: &str) -> &mut Breaker {
        let cfg = &self.cfg;
        self.breakers
            .entry((mesh.to_string(), backend.to_string()))
            .or_insert_with(|| {
                Breaker::new(cfg.breaker_min_failures, cfg.breaker_base, cfg.breaker_max)
            })
    }

    /// Issuances started and not finished: calling the backend or waiting for their batch to
    /// commit. Persisting is batched, so room for a batch's worth beyond the backend calls keeps
    /// the backend busy while a batch commits.
    fn max_inflight(&self) -> usize {
        self.cfg.concurrency.max(1) + self.cfg.persist.max_batch / 2
    }

    fn start_ready(&mut self) {
        let now = Instant::now();
        self.schedule.promote(now);
        while self.inflight.len() < self.max_inflight() && self.schedule.has_ready() {
            let Ok(slot) = self.slots.clone().try_acquire_owned() else {
                break;
            };
            let entries = &self.entries;
            let Some(key) = self.schedule.pop_ready(|k, generation| {
                entries
                    .get(k)
                    .is_some_and(|e| e.generation == generation && !e.in_flight)
            }) else {
                break;
            };
            let (order, generation, regenerations) = match self.entries.get(&key) {
                Some(Entry {
                    want: Want::Issue(o),
                    generation,
                    regenerations,
                    ..
                }) => (o.clone(), *generation, *regenerations),
                _ => continue,
            };
            let backend = order.backend.name.clone();
            if let Decision::Deny(until) = self.breaker(&key.mesh, &backend).allow(&key, now) {
                // Not this identity's fault: no backoff step, just wait for the breaker.
                let jitter = Duration::from_millis(rand::rng().random_range(0..500));
                self.schedule
                    .push(key, generation, until + jitter, Priority::Retry);
                continue;
            }
            if let Some(e) = self.entries.get_mut(&key) {
                e.in_flight = true;
            }
            let span = tracing::info_span!("issue", mesh = %key.mesh, dataplane = %key.dataplane, backend = %backend);
            let fut = issue::run(
                self.deps.clone(),
                self.persist.clone(),
                key,
                generation,
                order,
                regenerations,
                slot,
            );
            self.inflight
                .push(Box::pin(tracing::Instrument::instrument(fut, span)));
        }
    }

    fn finish(&mut self, done: Done) {
        let now_i = Instant::now();
        let labels = BackendLabels {
            mesh: done.key.mesh.clone(),
            backend: done.backend.clone(),
        };
        let Some(entry) = self.entries.get_mut(&done.key) else {
            return;
        };
        entry.in_flight = false;
        match done.result {
            Ok(id) => {
                self.deps.metrics.issued.get_or_create(&labels).inc();
                self.deps
                    .metrics
                    .latency
                    .get_or_create(&labels)
                    .observe(done.elapsed.as_secs_f64());
                entry.backoff.reset();
                entry.regenerations += 1;
                entry.current = Some(id.clone());
                tracing::info!(mesh = %done.key.mesh, dataplane = %done.key.dataplane, backend = %done.backend, not_after = %id.not_after, took = ?done.elapsed, "certificate issued");
                let breaker = self.breaker(&done.key.mesh, &done.backend);
                breaker.on_success(&done.key);
                self.deps.metrics.breaker_open.get_or_create(&labels).set(0);
                self.publish(&done.key, CertState::Ready(id));
                // Re-evaluate: the identity may have changed while this was in flight.
                self.reconcile(&done.key);
            }
            Err(err) => {
                let cause = if err.is_transient() {
                    "transient"
                } else {
                    "config"
                };
                self.deps
                    .metrics
                    .failures
                    .get_or_create(&FailureLabels {
                        mesh: labels.mesh.clone(),
                        backend: labels.backend.clone(),
                        cause: cause.into(),
                    })
                    .inc();
                let delay = entry.backoff.next_delay();
                let now = self.deps.clock.now();
                let valid = entry.current.clone().filter(|c| c.is_valid_at(now));
                let mut at = now_i + delay;
                if let Some(cur) = &valid {
                    // Retry no later than the moment the served certificate expires.
                    at = at.min(instant_at(self.deps.clock.as_ref(), cur.not_after));
                }
                let generation = entry.generation;
                let prio = if valid.is_some() {
                    Priority::Retry
                } else {
                    Priority::Initial
                };
                tracing::warn!(mesh = %done.key.mesh, dataplane = %done.key.dataplane, backend = %done.backend, error = %err, retry_in = ?delay, serving_previous = valid.is_some(), "certificate issuance failed");
                if let Some(cur) = valid {
                    self.publish(&done.key, CertState::Ready(cur));
                } else {
                    self.publish(&done.key, CertState::Unavailable(err.to_string()));
                }
                self.schedule.push(done.key.clone(), generation, at, prio);
                if self
                    .breaker(&done.key.mesh, &done.backend)
                    .on_failure(&done.key, now_i)
                {
                    tracing::warn!(mesh = %done.key.mesh, backend = %done.backend, "circuit breaker opened: pausing issuance from this backend");
                    self.deps.metrics.breaker_open.get_or_create(&labels).set(1);
                }
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Keys the identities of one dataplane by mesh and name (for callers building snapshots).
pub type DataplaneIndex = BTreeMap<(String, String), DataplaneIdentity>;
