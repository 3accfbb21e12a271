//! Manager behaviour under paused time, with a scripted backend that counts and times its calls.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;
use chrono::TimeDelta;
use meshplane_core::{
    ValidationError,
    ca::{CaBackend, CaError, CaRegistry, IssuedCert, LeafRequest, MeshCa},
    datasource::StoreLoader,
    model::{Backend, BackendType, DataplaneIdentity, MeshSpec, Resource, Spec},
    store::{ResourceStore, WriteOp, memory::MemoryStore},
};
use serde_json::json;

use crate::{
    CertKey, CertManager, CertState, Deps, ManagerConfig,
    clock::{Clock, TokioClock},
    metrics::Metrics,
};

struct FakeCa {
    clock: Arc<dyn Clock>,
    calls: AtomicUsize,
    running: AtomicUsize,
    max_running: AtomicUsize,
    failing: AtomicBool,
    latency: Duration,
    log: Mutex<Vec<String>>,
    /// The services each issued mesh certificate was for.
    services: Mutex<Vec<Vec<String>>>,
    released: Mutex<Vec<String>>,
}

#[async_trait]
impl CaBackend for FakeCa {
    fn backend_type(&self) -> BackendType {
        BackendType::Builtin
    }
    async fn validate(&self, _: &MeshCa<'_>, _: &Backend) -> Result<Vec<String>, ValidationError> {
        Ok(vec![])
    }
    async fn ensure(&self, _: &MeshCa<'_>, _: &Backend) -> Result<Vec<Resource>, CaError> {
        Ok(vec![])
    }
    async fn root_certs(&self, _: &MeshCa<'_>, b: &Backend) -> Result<Vec<String>, CaError> {
        Ok(vec![format!("root-of-{}", b.name)])
    }
    fn release(&self, mesh: &str, backend: &str) {
        self.released
            .lock()
            .unwrap()
            .push(format!("{mesh}/{backend}"));
    }
    async fn issue(
        &self,
        ca: &MeshCa<'_>,
        b: &Backend,
        req: &LeafRequest,
    ) -> Result<IssuedCert, CaError> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        let running = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_running.fetch_max(running, Ordering::SeqCst);
        tokio::time::sleep(self.latency).await;
        self.running.fetch_sub(1, Ordering::SeqCst);
        self.log
            .lock()
            .unwrap()
            .push(format!("{}/{}@{}", req.mesh, req.dataplane, b.name));
        self.services
            .lock()
            .unwrap()
            .push(req.services().iter().map(|s| s.to_string()).collect());
        if self.failing.load(Ordering::SeqCst) {
            return Err(CaError::transient(ca.mesh, &b.name, "Vault is sealed"));
        }
        let now = self.clock.now();
        Ok(IssuedCert {
            cert_pem: format!("cert-{n}-{}", b.name),
            key_pem: format!("key-{n}"),
            chain_pem: vec![],
            not_before: now - TimeDelta::seconds(10),
            not_after: now + TimeDelta::from_std(req.validity).unwrap(),
            serial_hex: format!("{n:x}"),
        })
    }
}

struct Setup {
    mgr: CertManager,
    ca: Arc<FakeCa>,
    store: Arc<dyn ResourceStore>,
    clock: Arc<dyn Clock>,
    _task: tokio::task::JoinHandle<()>,
}

fn setup_with(
    store: Arc<dyn ResourceStore>,
    clock: Arc<dyn Clock>,
    cfg: ManagerConfig,
    latency: Duration,
) -> Setup {
    let ca = Arc::new(FakeCa {
        clock: clock.clone(),
        calls: AtomicUsize::new(0),
        running: AtomicUsize::new(0),
        max_running: AtomicUsize::new(0),
        failing: AtomicBool::new(false),
        latency,
        log: Mutex::default(),
        services: Mutex::default(),
        released: Mutex::default(),
    });
    let mut reg = CaRegistry::new();
    reg.register(ca.clone());
    let deps = Deps {
        store: store.clone(),
        ca: reg,
        loader: Arc::new(StoreLoader::new(store.clone())),
        clock: clock.clone(),
        metrics: Metrics::unregistered(),
    };
    let (mgr, task) = CertManager::spawn(cfg, deps, None);
    Setup {
        mgr,
        ca,
        store,
        clock,
        _task: task,
    }
}

fn setup(cfg: ManagerConfig) -> Setup {
    setup_with(
        Arc::new(MemoryStore::new()),
        TokioClock::new(),
        cfg,
        Duration::from_millis(10),
    )
}

fn mesh(enabled: &str, expiration: &str) -> MeshSpec {
    let r = Resource::from_universal(
        &json!({"type": "Mesh", "name": "m", "mtls": {"enabledBackend": enabled, "backends": [
            {"name": "ca-1", "type": "builtin", "dpCert": {"rotation": {"expiration": expiration}}},
            {"name": "ca-2", "type": "builtin", "dpCert": {"rotation": {"expiration": expiration}}}
        ]}}),
    )
    .unwrap();
    match r.spec {
        Spec::Mesh(m) => m,
        _ => unreachable!(),
    }
}

fn dataplane(service: &str) -> DataplaneIdentity {
    identity(
        json!({"type": "Dataplane", "mesh": "m", "name": "x", "networking": {"address": "10.0.0.1",
        "inbound": [{"port": 80, "tags": {"kuma.io/service": service}}]}}),
    )
}

fn identity(doc: serde_json::Value) -> DataplaneIdentity {
    let r = Resource::from_universal(&doc).unwrap();
    match &r.spec {
        Spec::Dataplane(d) => DataplaneIdentity::of(&r.meta.name, d, &r.meta.labels),
        _ => unreachable!(),
    }
}

async fn ready(rx: &mut tokio::sync::watch::Receiver<CertState>) -> Arc<crate::Identity> {
    let st = tokio::time::timeout(
        Duration::from_secs(3600),
        rx.wait_for(|s| matches!(s, CertState::Ready(_))),
    )
    .await
    .expect("ready in time")
    .expect("open");
    st.identity().cloned().expect("identity")
}

#[tokio::test(start_paused = true)]
async fn issues_then_renews_within_the_window() {
    let s = setup(ManagerConfig::default());
    s.mgr.snapshot(
        vec![("m".into(), mesh("ca-1", "1h"))],
        vec![("m".into(), "dp".into(), dataplane("web"))],
    );
    let mut rx = s.mgr.watch(&CertKey::mesh_cert("m", "dp"));
    let first = ready(&mut rx).await;
    assert_eq!(s.ca.calls.load(Ordering::SeqCst), 1);
    assert_eq!(first.backend, "ca-1");
    let issued_at = s.clock.now();
    rx.mark_unchanged();
    rx.changed().await.unwrap();
    let second = ready(&mut rx).await;
    assert_ne!(first.cert_pem, second.cert_pem);
    let renewed_after = (s.clock.now() - issued_at).num_seconds();
    // 70-80% of a 1h lifetime that started 10s before issuance.
    assert!(
        (2500..=2900).contains(&renewed_after),
        "renewed after {renewed_after}s"
    );
    assert_eq!(s.ca.calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn concurrency_is_capped() {
    let s = setup_with(
        Arc::new(MemoryStore::new()),
        TokioClock::new(),
        ManagerConfig {
            concurrency: 4,
            ..Default::default()
        },
        Duration::from_millis(50),
    );
    let dps: Vec<_> = (0..40)
        .map(|i| ("m".to_string(), format!("dp{i}"), dataplane("web")))
        .collect();
    s.mgr.snapshot(vec![("m".into(), mesh("ca-1", "24h"))], dps);
    for i in 0..40 {
        ready(&mut s.mgr.watch(&CertKey::mesh_cert("m", format!("dp{i}")))).await;
    }
    assert_eq!(s.ca.calls.load(Ordering::SeqCst), 40);
    assert_eq!(s.ca.max_running.load(Ordering::SeqCst), 4);
}

/// A store whose writes take `delay`.
struct SlowWrites {
    inner: MemoryStore,
    delay: Duration,
}

#[async_trait]
impl ResourceStore for SlowWrites {
    async fn get(
        &self,
        key: &meshplane_core::model::ResourceKey,
    ) -> Result<Option<meshplane_core::store::Record>, meshplane_core::store::StoreError> {
        self.inner.get(key).await
    }
    async fn list(
        &self,
        q: &meshplane_core::store::ListQuery,
    ) -> Result<meshplane_core::store::ListResult, meshplane_core::store::StoreError> {
        self.inner.list(q).await
    }
    async fn snapshot(
        &self,
        sel: &meshplane_core::store::Selection,
    ) -> Result<Vec<meshplane_core::store::Record>, meshplane_core::store::StoreError> {
        self.inner.snapshot(sel).await
    }
    async fn write(
        &self,
        ops: Vec<WriteOp>,
    ) -> Result<Vec<meshplane_core::store::WriteResult>, meshplane_core::store::StoreError> {
        tokio::time::sleep(self.delay).await;
        self.inner.write(ops).await
    }
    fn subscribe(&self) -> meshplane_core::store::Subscription {
        self.inner.subscribe()
    }
    async fn ping(&self) -> Result<(), meshplane_core::store::StoreError> {
        Ok(())
    }
    fn describe(&self) -> String {
        "slow".into()
    }
}

#[tokio::test(start_paused = true)]
async fn persisting_does_not_hold_backend_slots() {
    let s = setup_with(
        Arc::new(SlowWrites {
            inner: MemoryStore::new(),
            delay: Duration::from_secs(10),
        }),
        TokioClock::new(),
        ManagerConfig {
            concurrency: 1,
            persist: crate::PersistConfig {
                max_batch: 2,
                ..Default::default()
            },
            ..Default::default()
        },
        Duration::from_millis(10),
    );
    let dps: Vec<_> = (0..3)
        .map(|i| ("m".to_string(), format!("dp{i}"), dataplane("web")))
        .collect();
    s.mgr.snapshot(vec![("m".into(), mesh("ca-1", "24h"))], dps);
    // Two 10 ms backend calls, one at a time, long before the first 10 s write ends: the
    // first persisting does not hold the slot. The third waits, since at most concurrency +
    // max_batch / 2 issuances are unfinished at once.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(s.ca.calls.load(Ordering::SeqCst), 2);
    assert_eq!(s.ca.max_running.load(Ordering::SeqCst), 1);
    for i in 0..3 {
        ready(&mut s.mgr.watch(&CertKey::mesh_cert("m", format!("dp{i}")))).await;
    }
}

#[tokio::test(start_paused = true)]
async fn outage_keeps_serving_the_valid_certificate_and_recovers() {
    let s = setup(ManagerConfig::default());
    s.mgr.snapshot(
        vec![("m".into(), mesh("ca-1", "1h"))],
        vec![("m".into(), "dp".into(), dataplane("web"))],
    );
    let mut rx = s.mgr.watch(&CertKey::mesh_cert("m", "dp"));
    let first = ready(&mut rx).await;
    s.ca.failing.store(true, Ordering::SeqCst);
    // Past the renewal window: renewals fail, the old certificate is still served.
    tokio::time::sleep(Duration::from_secs(52 * 60)).await;
    assert!(s.ca.calls.load(Ordering::SeqCst) > 2, "renewal was retried");
    assert_eq!(
        rx.borrow().identity().map(|i| i.cert_pem.clone()),
        Some(first.cert_pem.clone()),
        "still serving the valid certificate"
    );
    s.ca.failing.store(false, Ordering::SeqCst);
    let renewed = tokio::time::timeout(
        Duration::from_secs(600),
        rx.wait_for(|st| st.identity().is_some_and(|i| i.cert_pem != first.cert_pem)),
    )
    .await;
    assert!(
        renewed.is_ok(),
        "renewal resumed when the backend came back"
    );
}

#[tokio::test(start_paused = true)]
async fn breaker_stops_the_fleet_from_hammering_a_failing_backend() {
    let s = setup(ManagerConfig {
        breaker_min_failures: 5,
        ..Default::default()
    });
    s.ca.failing.store(true, Ordering::SeqCst);
    let dps: Vec<_> = (0..50)
        .map(|i| ("m".to_string(), format!("dp{i}"), dataplane("web")))
        .collect();
    s.mgr.snapshot(vec![("m".into(), mesh("ca-1", "24h"))], dps);
    let _rx = s.mgr.watch(&CertKey::mesh_cert("m", "dp0"));
    tokio::time::sleep(Duration::from_secs(60)).await;
    let calls = s.ca.calls.load(Ordering::SeqCst);
    // Without the breaker each of the 50 would retry ~6 times in a minute (1s base, doubling).
    assert!(
        calls < 100,
        "{calls} calls in a minute against a broken backend"
    );
    s.ca.failing.store(false, Ordering::SeqCst);
    for i in 0..50 {
        ready(&mut s.mgr.watch(&CertKey::mesh_cert("m", format!("dp{i}")))).await;
    }
}

#[tokio::test(start_paused = true)]
async fn restart_reissues_nothing_valid() {
    let store: Arc<dyn ResourceStore> = Arc::new(MemoryStore::new());
    let clock: Arc<dyn Clock> = TokioClock::new();
    // The records the manager persists are owned by the Dataplane, as in a zone.
    let m = Resource::from_universal(&json!({"type": "Mesh", "name": "m"})).unwrap();
    let d = Resource::from_universal(&json!({"type": "Dataplane", "mesh": "m", "name": "dp", "networking": {"address": "10.0.0.1", "inbound": [{"port": 80, "tags": {"kuma.io/service": "web"}}]}})).unwrap();
    store
        .write(vec![
            WriteOp::create(&m, None),
            WriteOp::create(&d, Some(m.key())),
        ])
        .await
        .unwrap();
    let first = {
        let s = setup_with(
            store.clone(),
            clock.clone(),
            ManagerConfig::default(),
            Duration::from_millis(10),
        );
        s.mgr.snapshot(
            vec![("m".into(), mesh("ca-1", "24h"))],
            vec![("m".into(), "dp".into(), dataplane("web"))],
        );
        let id = ready(&mut s.mgr.watch(&CertKey::mesh_cert("m", "dp"))).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        id
    };
    let s = setup_with(
        store,
        clock,
        ManagerConfig::default(),
        Duration::from_millis(10),
    );
    s.mgr.snapshot(
        vec![("m".into(), mesh("ca-1", "24h"))],
        vec![("m".into(), "dp".into(), dataplane("web"))],
    );
    let again = ready(&mut s.mgr.watch(&CertKey::mesh_cert("m", "dp"))).await;
    assert_eq!(again.cert_pem, first.cert_pem);
    assert_eq!(
        s.ca.calls.load(Ordering::SeqCst),
        0,
        "a restart issues nothing that is still valid"
    );
}

#[tokio::test(start_paused = true)]
async fn tag_change_and_backend_switch_reissue_and_trust_covers_both() {
    let s = setup(ManagerConfig::default());
    s.mgr.snapshot(
        vec![("m".into(), mesh("ca-1", "24h"))],
        vec![("m".into(), "dp".into(), dataplane("web"))],
    );
    let mut rx = s.mgr.watch(&CertKey::mesh_cert("m", "dp"));
    let a = ready(&mut rx).await;
    let mut trust = s.mgr.trust("m");
    let t = trust
        .wait_for(|t| t.roots.len() == 2)
        .await
        .unwrap()
        .clone();
    assert_eq!(
        t.roots,
        vec!["root-of-ca-1".to_string(), "root-of-ca-2".to_string()]
    );

    s.mgr
        .dataplane_changed("m".into(), "dp".into(), Some(dataplane("web-v2")));
    let b = rx
        .wait_for(|st| st.identity().is_some_and(|i| i.cert_pem != a.cert_pem))
        .await
        .unwrap()
        .identity()
        .cloned()
        .unwrap();
    assert_eq!(b.backend, "ca-1");

    s.mgr.mesh_changed("m".into(), Some(mesh("ca-2", "24h")));
    let c = rx
        .wait_for(|st| st.identity().is_some_and(|i| i.backend == "ca-2"))
        .await
        .unwrap()
        .identity()
        .cloned()
        .unwrap();
    assert_ne!(c.cert_pem, b.cert_pem);
    assert_eq!(s.ca.calls.load(Ordering::SeqCst), 3);
    let log = s.ca.log.lock().unwrap().clone();
    assert_eq!(log, vec!["m/dp@ca-1", "m/dp@ca-1", "m/dp@ca-2"]);
}

#[tokio::test(start_paused = true)]
async fn deleted_dataplanes_are_forgotten_and_disabled_mtls_is_said() {
    let s = setup(ManagerConfig::default());
    s.mgr.snapshot(
        vec![("m".into(), mesh("ca-1", "24h"))],
        vec![("m".into(), "dp".into(), dataplane("web"))],
    );
    ready(&mut s.mgr.watch(&CertKey::mesh_cert("m", "dp"))).await;
    s.mgr.dataplane_changed("m".into(), "dp".into(), None);
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(s.mgr.managed(), 0);

    let off = Resource::from_universal(&json!({"type": "Mesh", "name": "off"})).unwrap();
    let Spec::Mesh(off) = off.spec else {
        unreachable!()
    };
    s.mgr.snapshot(
        vec![("off".into(), off)],
        vec![("off".into(), "dp".into(), dataplane("web"))],
    );
    let mut rx = s.mgr.watch(&CertKey::mesh_cert("off", "dp"));
    let st = rx
        .wait_for(|s| matches!(s, CertState::Unavailable(_)))
        .await
        .unwrap()
        .clone();
    assert_eq!(
        st,
        CertState::Unavailable("mTLS is not enabled in mesh \"off\"".into())
    );
    assert_eq!(s.store.describe(), "memory");
}

/// Kuma's `identityTags`: a gateway is its service; a Dataplane with no service tag and no
/// `kuma.io/workload` label has no identity, and says so instead of getting a certificate without one.
#[tokio::test(start_paused = true)]
async fn gateways_are_their_service_and_dataplanes_without_one_have_no_identity() {
    let s = setup(ManagerConfig::default());
    let gateway = identity(
        json!({"type": "Dataplane", "mesh": "m", "name": "gw", "networking": {
        "address": "10.0.0.1", "gateway": {"type": "BUILTIN", "tags": {"kuma.io/service": "edge"}}}}),
    );
    let none = identity(
        json!({"type": "Dataplane", "mesh": "m", "name": "tp", "networking": {
        "address": "10.0.0.2", "transparentProxying": {"redirectPortInbound": 15006}}}),
    );
    s.mgr.snapshot(
        vec![("m".into(), mesh("ca-1", "24h"))],
        vec![
            ("m".into(), "gw".into(), gateway),
            ("m".into(), "tp".into(), none),
        ],
    );
    ready(&mut s.mgr.watch(&CertKey::mesh_cert("m", "gw"))).await;
    assert_eq!(s.ca.services.lock().unwrap().clone(), vec![vec!["edge"]]);
    let st = s
        .mgr
        .watch(&CertKey::mesh_cert("m", "tp"))
        .wait_for(|s| matches!(s, CertState::Unavailable(_)))
        .await
        .unwrap()
        .clone();
    assert_eq!(
        st,
        CertState::Unavailable(
            "dataplane \"tp\" has no kuma.io/service tag and no kuma.io/workload label, cannot derive mTLS identity".into()
        )
    );
    assert_eq!(s.ca.log.lock().unwrap().clone(), vec!["m/gw@ca-1"]);
}

#[tokio::test(start_paused = true)]
async fn backends_of_a_removed_mesh_or_backend_are_released() {
    let s = setup(ManagerConfig::default());
    let released = |s: &Setup| {
        let mut r = s.ca.released.lock().unwrap().clone();
        r.sort();
        r
    };
    s.mgr.snapshot(
        vec![
            ("m".into(), mesh("ca-1", "24h")),
            ("n".into(), mesh("ca-1", "24h")),
        ],
        vec![],
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(released(&s).is_empty());

    // ca-2 dropped from m: only that backend is released.
    let only_ca1 = match Resource::from_universal(&json!({"type": "Mesh", "name": "m", "mtls": {
        "enabledBackend": "ca-1", "backends": [{"name": "ca-1", "type": "builtin"}]}}))
    .unwrap()
    .spec
    {
        Spec::Mesh(m) => m,
        _ => unreachable!(),
    };
    s.mgr.mesh_changed("m".into(), Some(only_ca1));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(released(&s), ["m/ca-2"]);

    // m deleted: its remaining backend too.
    s.mgr.mesh_changed("m".into(), None);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(released(&s), ["m/ca-1", "m/ca-2"]);

    // n missing from a resync snapshot: both of its backends.
    s.mgr.snapshot(vec![], vec![]);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(released(&s), ["m/ca-1", "m/ca-2", "n/ca-1", "n/ca-2"]);
}

/// The store watcher keeps each stored Dataplane's digest, and says "unchanged" only for exactly
/// what is stored, in a Mesh without membership rules.
#[tokio::test]
async fn the_watcher_keeps_registration_digests_as_the_store_changes() {
    let store: Arc<dyn ResourceStore> = Arc::new(MemoryStore::new());
    let m = Resource::from_universal(&json!({"type": "Mesh", "name": "m"})).unwrap();
    let dp = |address: &str| {
        Resource::from_universal(&json!({"type": "Dataplane", "mesh": "m", "name": "dp", "networking": {"address": address, "inbound": [{"port": 80, "tags": {"kuma.io/service": "web"}}]}})).unwrap()
    };
    let d = dp("10.0.0.1");
    store
        .write(vec![
            WriteOp::create(&m, None),
            WriteOp::create(&d, Some(m.key())),
        ])
        .await
        .unwrap();
    let s = setup(ManagerConfig::default());
    let watcher = tokio::spawn(crate::watcher::run(store.clone(), s.mgr.clone(), None));
    let regs = s.mgr.registrations().clone();
    // Waits until `unchanged` answers `want` for this digest (the watcher follows the store).
    let settles = |r: &Resource, want: bool| {
        let (regs, digest) = (regs.clone(), r.content_digest());
        async move {
            for _ in 0..500 {
                if regs.unchanged("m", "dp", &digest) == want {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            false
        }
    };
    assert!(
        settles(&d, true).await,
        "the start-up snapshot records the stored Dataplane"
    );
    assert!(
        !regs.unchanged("m", "dp", &dp("10.0.0.2").content_digest()),
        "another address is a change"
    );

    // The stored record changes: the new one is unchanged, the old one no longer.
    let v = store_version(&store, &d).await;
    let d2 = dp("10.0.0.2");
    store.write(vec![WriteOp::update(&d2, v)]).await.unwrap();
    assert!(settles(&d2, true).await, "the update is recorded");
    assert!(!regs.unchanged("m", "dp", &d.content_digest()));

    // Membership rules on the Mesh: every registration is judged again.
    let mv = store_version(&store, &m).await;
    let ruled = Resource::from_universal(&json!({"type": "Mesh", "name": "m", "constraints": {"dataplaneProxy": {"requirements": [{"tags": {"kuma.io/zone": "east"}}]}}})).unwrap();
    store
        .write(vec![WriteOp::update(&ruled, mv)])
        .await
        .unwrap();
    assert!(
        settles(&d2, false).await,
        "a Mesh with membership rules turns the shortcut off"
    );

    // Rules gone again, then the Dataplane deleted.
    let mv = store_version(&store, &m).await;
    store.write(vec![WriteOp::update(&m, mv)]).await.unwrap();
    assert!(settles(&d2, true).await, "rules removed");
    store
        .write(vec![WriteOp::Delete {
            key: d2.key(),
            expected_version: None,
        }])
        .await
        .unwrap();
    assert!(
        settles(&d2, false).await,
        "a deleted Dataplane must be written again"
    );
    watcher.abort();
}

async fn store_version(store: &Arc<dyn ResourceStore>, r: &Resource) -> i64 {
    store.get(&r.key()).await.unwrap().expect("stored").version
}
