//! A Mesh and the CA Secrets committed with it reach a zone together, also when the batch commits
//! while global re-reads its whole view after losing PostgreSQL's change events (what a PostgreSQL
//! restart does): the window behind "Mesh pg2-10 lacks its CA cert Secret" in the PostgreSQL fault
//! test. Global runs on a real PostgreSQL; the fault is injected at a chosen point, deterministically:
//! global's LISTEN connection is killed with `pg_terminate_backend`, and a failpoint store commits a
//! Mesh with its two CA Secrets exactly when the resync reads the view (between the per-kind reads
//! of the view, where the window was).

mod support;

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use meshplane_core::{
    model::{ResourceKey, ResourceKind},
    store::{
        ChangeOp, ListQuery, ListResult, Received, Record, ResourceStore, Selection, StoreError,
        Subscription, WriteOp, WriteResult, memory::MemoryStore,
    },
};
use meshplane_store_postgres::{PgOptions, PgStore, migrate_up};
use meshplane_test_support::postgres::{TestDatabase, listener_pids};
use serde_json::json;
use support::{Global, Zone};

const WAIT: Duration = Duration::from_secs(20);

/// A PgStore that, when armed, commits a batch through itself the moment a sync view reads
/// Secrets: inside `list(Secret)` (the old per-kind read, after Meshes were listed) or at the start
/// of a snapshot that includes Secrets.
struct Failpoint {
    inner: PgStore,
    armed: Mutex<Option<Vec<WriteOp>>>,
    fired: tokio::sync::Notify,
}

impl Failpoint {
    async fn fire(&self) {
        let batch = self
            .armed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(ops) = batch {
            self.inner.write(ops).await.expect("the injected batch");
            self.fired.notify_one();
        }
    }
}

#[async_trait]
impl ResourceStore for Failpoint {
    async fn get(&self, key: &ResourceKey) -> Result<Option<Record>, StoreError> {
        self.inner.get(key).await
    }
    async fn list(&self, q: &ListQuery) -> Result<ListResult, StoreError> {
        if q.kind == ResourceKind::Secret {
            self.fire().await;
        }
        self.inner.list(q).await
    }
    async fn snapshot(&self, sel: &Selection) -> Result<Vec<Record>, StoreError> {
        if sel
            .kinds
            .iter()
            .any(|(k, m)| *k == ResourceKind::Secret && m.is_none())
        {
            self.fire().await;
        }
        self.inner.snapshot(sel).await
    }
    async fn write(&self, ops: Vec<WriteOp>) -> Result<Vec<WriteResult>, StoreError> {
        self.inner.write(ops).await
    }
    fn subscribe(&self) -> Subscription {
        self.inner.subscribe()
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
    fn describe(&self) -> String {
        "failpoint over postgres".into()
    }
}

/// A builtin Mesh and its CA's two Secrets, owned by it: the batch global's manager writes.
fn builtin_mesh_batch(mesh: &str) -> Vec<WriteOp> {
    let mut ops = vec![WriteOp::Create {
        key: ResourceKey::mesh(mesh),
        spec: json!({"mtls": {"enabledBackend": "ca-1", "backends": [{"name": "ca-1", "type": "builtin"}]}}),
        labels: BTreeMap::new(),
        owner: None,
    }];
    for (k, pem) in [("cert", "CERTIFICATE"), ("key", "PRIVATE KEY")] {
        let data = base64_of(&format!("-----BEGIN {pem}-----\n-----END {pem}-----\n"));
        ops.push(WriteOp::Create {
            key: ca_secret(mesh, k),
            spec: json!({"data": data}),
            labels: BTreeMap::new(),
            owner: Some(ResourceKey::mesh(mesh)),
        });
    }
    ops
}

fn base64_of(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn ca_secret(mesh: &str, kind: &str) -> ResourceKey {
    ResourceKey::in_mesh(
        ResourceKind::Secret,
        mesh,
        format!("{mesh}.ca-builtin-{kind}-ca-1"),
    )
}

/// Waits for the zone to create Mesh `mesh` and says which of its CA Secrets the zone lacked at
/// that moment (the zone applies a push in one transaction and announces it after, so a Mesh that
/// arrived with its Secrets has them when its create event is seen).
async fn lacking_when_created(
    sub: &mut Subscription,
    zone: &dyn ResourceStore,
    mesh: &str,
) -> Vec<String> {
    let key = ResourceKey::mesh(mesh);
    loop {
        match tokio::time::timeout(WAIT, sub.recv()).await {
            Ok(Received::Event(e)) if e.key == key && e.op == ChangeOp::Create => break,
            Ok(Received::Event(_) | Received::Resync) => {}
            Ok(Received::Closed) => panic!("the zone store closed"),
            Err(_) => panic!("Mesh {mesh} never reached the zone"),
        }
    }
    let mut lacking = Vec::new();
    for k in ["cert", "key"] {
        if zone.get(&ca_secret(mesh, k)).await.expect("get").is_none() {
            lacking.push(format!("{mesh}.ca-builtin-{k}-ca-1"));
        }
    }
    lacking
}

struct Setup {
    _db: TestDatabase,
    pool: sqlx::PgPool,
    store: Arc<Failpoint>,
    global: Global,
    zone: Zone,
}

async fn setup() -> Setup {
    let db = TestDatabase::create().await.expect("test database");
    let pool = sqlx::PgPool::connect(&db.url).await.expect("connect");
    migrate_up(&pool).await.expect("migrate");
    let inner = PgStore::connect(&db.url, PgOptions::default())
        .await
        .expect("store");
    let store = Arc::new(Failpoint {
        inner,
        armed: Mutex::new(None),
        fired: tokio::sync::Notify::new(),
    });
    let global = Global::start_on(store.clone(), None).await;
    let token = global.token("zone-1").await;
    let mut zone = Zone::start_with(&global, "zone-1", &token, Arc::new(MemoryStore::new())).await;
    zone.wait_synced().await;
    Setup {
        _db: db,
        pool,
        store,
        global,
        zone,
    }
}

/// `n` times: arm the failpoint, kill global's LISTEN connection, and check the Mesh committed in
/// the resync's window reaches the zone with both CA Secrets.
async fn resync_window(n: usize) {
    let mut s = setup().await;
    let mut torn = Vec::new();
    for i in 0..n {
        let mesh = format!("rs-{i}");
        let mut sub = s.zone.store.subscribe();
        *s.store.armed.lock().expect("lock") = Some(builtin_mesh_batch(&mesh));
        let pids = listener_pids(&s.pool).await.expect("listeners");
        assert_eq!(pids.len(), 1, "global listens on one connection: {pids:?}");
        sqlx::query("SELECT pg_terminate_backend($1)")
            .bind(pids[0])
            .execute(&s.pool)
            .await
            .expect("terminate the LISTEN connection");
        tokio::time::timeout(WAIT, s.store.fired.notified())
            .await
            .expect("the resync read the view, and the batch was committed inside it");
        let lacking = lacking_when_created(&mut sub, s.zone.store.as_ref(), &mesh).await;
        if !lacking.is_empty() {
            torn.push(format!("Mesh {mesh} arrived without {lacking:?}"));
        }
        // Whatever happened, the zone ends up whole before the next round.
        for k in ["cert", "key"] {
            support::eventually_present(&s.zone.store, &ca_secret(&mesh, k), true).await;
        }
    }
    s.zone.stop().await;
    s.global.stop().await;
    assert!(
        torn.is_empty(),
        "{} of {n} Meshes committed during a resync reached the zone without their CA Secrets: {torn:#?}",
        torn.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mesh_committed_during_a_resync_reaches_the_zone_with_its_ca_secrets() {
    resync_window(20).await;
}

/// The same, 200 times: `cargo nextest run -p meshplane-kds --run-ignored only`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long: 200 iterations of the resync window"]
async fn a_mesh_committed_during_a_resync_reaches_the_zone_with_its_ca_secrets_200_times() {
    resync_window(200).await;
}

/// Without a fault: Meshes written back to back, each pushed as its change events arrive (which
/// may be one by one), still land with their Secrets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meshes_pushed_from_change_events_arrive_with_their_ca_secrets() {
    let mut s = setup().await;
    let mut torn = Vec::new();
    for i in 0..20 {
        let mesh = format!("ev-{i}");
        let mut sub = s.zone.store.subscribe();
        s.store
            .write(builtin_mesh_batch(&mesh))
            .await
            .expect("batch");
        let lacking = lacking_when_created(&mut sub, s.zone.store.as_ref(), &mesh).await;
        if !lacking.is_empty() {
            torn.push(format!("Mesh {mesh} arrived without {lacking:?}"));
        }
    }
    s.zone.stop().await;
    s.global.stop().await;
    assert!(torn.is_empty(), "{torn:#?}");
}
