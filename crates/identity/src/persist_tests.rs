//! The persister against a memory store that counts (and can fail) its transactions.

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use async_trait::async_trait;
use meshplane_core::{
    model::{Meta, Resource, ResourceKey, ResourceKind, Spec},
    store::{
        ListQuery, ListResult, Record, ResourceStore, ResourceStoreExt, Selection, StoreError,
        Subscription, WriteOp, WriteResult, memory::MemoryStore,
    },
};
use serde_json::json;

use super::*;

/// Counts transactions and their records; fails the first `fail` ones with `Unavailable`.
struct Counting {
    inner: MemoryStore,
    writes: AtomicUsize,
    records: AtomicUsize,
    fail: AtomicUsize,
    delay: Duration,
}

impl Counting {
    fn new(delay: Duration, fail: usize) -> Arc<Self> {
        Arc::new(Self {
            inner: MemoryStore::new(),
            writes: AtomicUsize::new(0),
            records: AtomicUsize::new(0),
            fail: AtomicUsize::new(fail),
            delay,
        })
    }
}

#[async_trait]
impl ResourceStore for Counting {
    async fn get(&self, key: &ResourceKey) -> Result<Option<Record>, StoreError> {
        self.inner.get(key).await
    }
    async fn list(&self, q: &ListQuery) -> Result<ListResult, StoreError> {
        self.inner.list(q).await
    }
    async fn snapshot(&self, sel: &Selection) -> Result<Vec<Record>, StoreError> {
        self.inner.snapshot(sel).await
    }
    async fn write(&self, ops: Vec<WriteOp>) -> Result<Vec<WriteResult>, StoreError> {
        tokio::time::sleep(self.delay).await;
        if self
            .fail
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(StoreError::Unavailable("stopped for the test".into()));
        }
        let n = ops.len();
        let r = self.inner.write(ops).await?;
        self.writes.fetch_add(1, Ordering::SeqCst);
        self.records.fetch_add(n, Ordering::SeqCst);
        Ok(r)
    }
    fn subscribe(&self) -> Subscription {
        self.inner.subscribe()
    }
    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
    fn describe(&self) -> String {
        "counting".into()
    }
}

async fn with_dataplanes(store: &Counting, n: usize) {
    let mesh = Resource::from_universal(&json!({"type": "Mesh", "name": "m"})).unwrap();
    let mut ops = vec![WriteOp::create(&mesh, None)];
    for i in 0..n {
        let dp = Resource::from_universal(&json!({"type": "Dataplane", "mesh": "m", "name": format!("dp{i}"),
            "networking": {"address": "10.0.0.1", "inbound": [{"port": 80, "tags": {"kuma.io/service": "web"}}]}}))
        .unwrap();
        let owner = ResourceKey::global(ResourceKind::Mesh, "m");
        ops.push(WriteOp::create(&dp, Some(owner)));
    }
    store.inner.write(ops).await.unwrap();
}

/// A certificate record as the manager writes it (its content does not matter here).
fn cert_op(dp: &str, serial: u32) -> WriteOp {
    let r = Resource::new(
        Meta {
            name: dp.into(),
            mesh: "m".into(),
            ..Default::default()
        },
        Spec::DataplaneCertificate(
            serde_json::from_value(json!({
                "dataplane": dp, "backend": "ca-1", "fingerprint": format!("f{serial}"),
                "certPem": format!("cert-{serial}"), "keyPem": "key", "chainPem": [],
                "notBefore": "2026-01-01T00:00:00Z", "notAfter": "2027-01-01T00:00:00Z",
                "issuedAt": "2026-01-01T00:00:00Z", "regenerations": 1
            }))
            .unwrap(),
        ),
    );
    WriteOp::upsert(
        &r,
        Some(ResourceKey::in_mesh(ResourceKind::Dataplane, "m", dp)),
    )
}

fn count_regeneration() -> Option<InsightChange> {
    Some(Box::new(|s: &mut DataplaneInsightSpec| {
        s.mtls
            .get_or_insert_with(Default::default)
            .certificate_regenerations += 1;
    }))
}

async fn stored_insight(store: &Counting, dp: &str) -> Option<DataplaneInsightSpec> {
    let key = ResourceKey::in_mesh(ResourceKind::DataplaneInsight, "m", dp);
    match store.inner.get_resource(&key).await.unwrap() {
        Some((
            Resource {
                spec: Spec::DataplaneInsight(s),
                ..
            },
            _,
        )) => Some(s),
        _ => None,
    }
}

async fn stored_cert(store: &Counting, dp: &str) -> Option<String> {
    let key = ResourceKey::in_mesh(ResourceKind::DataplaneCertificate, "m", dp);
    match store.inner.get_resource(&key).await.unwrap() {
        Some((
            Resource {
                spec: Spec::DataplaneCertificate(c),
                ..
            },
            _,
        )) => Some(c.cert_pem),
        _ => None,
    }
}

#[tokio::test(start_paused = true)]
async fn a_fleet_of_certificates_is_written_in_a_few_transactions() {
    let store = Counting::new(Duration::from_millis(20), 0);
    with_dataplanes(&store, 200).await;
    let (p, _task) = Persister::spawn(store.clone(), PersistConfig::default(), None);
    let waits: Vec<_> = (0..200)
        .map(|i| {
            let p = p.clone();
            tokio::spawn(async move {
                p.certificate(
                    "m",
                    &format!("dp{i}"),
                    cert_op(&format!("dp{i}"), i),
                    count_regeneration(),
                )
                .await
            })
        })
        .collect();
    for w in waits {
        w.await.unwrap().unwrap();
    }
    // Acknowledged means committed: every record is there when its caller hears back.
    for i in 0..200 {
        let dp = format!("dp{i}");
        assert_eq!(stored_cert(&store, &dp).await, Some(format!("cert-{i}")));
        let insight = stored_insight(&store, &dp)
            .await
            .expect("insight written with its certificate");
        assert_eq!(insight.mtls.unwrap().certificate_regenerations, 1);
    }
    let writes = store.writes.load(Ordering::SeqCst);
    assert!(writes <= 4, "200 certificates took {writes} transactions");
    assert_eq!(store.records.load(Ordering::SeqCst), 400);
}

#[tokio::test(start_paused = true)]
async fn a_failed_batch_is_retried_and_applies_each_change_once() {
    let store = Counting::new(Duration::from_millis(5), 3);
    with_dataplanes(&store, 10).await;
    let (p, _task) = Persister::spawn(store.clone(), PersistConfig::default(), None);
    let mut first_errors = 0;
    for i in 0..10 {
        let dp = format!("dp{i}");
        if p.certificate("m", &dp, cert_op(&dp, i), count_regeneration())
            .await
            .is_err()
        {
            first_errors += 1;
        }
    }
    assert!(first_errors >= 1, "the stopped store was not noticed");
    p.flush().await;
    // The retries run on their backoff; wait them out.
    tokio::time::sleep(Duration::from_secs(30)).await;
    p.flush().await;
    for i in 0..10 {
        let dp = format!("dp{i}");
        assert_eq!(
            stored_cert(&store, &dp).await,
            Some(format!("cert-{i}")),
            "{dp}"
        );
        let regen = stored_insight(&store, &dp)
            .await
            .unwrap()
            .mtls
            .unwrap()
            .certificate_regenerations;
        assert_eq!(regen, 1, "{dp}: a retry applied the change again");
    }
}

#[tokio::test(start_paused = true)]
async fn records_of_a_deleted_dataplane_are_dropped_and_the_rest_written() {
    let store = Counting::new(Duration::from_millis(20), 0);
    with_dataplanes(&store, 3).await;
    let (p, _task) = Persister::spawn(store.clone(), PersistConfig::default(), None);
    let (a, b, c) = tokio::join!(
        p.certificate("m", "dp0", cert_op("dp0", 0), count_regeneration()),
        p.certificate("m", "gone", cert_op("gone", 1), count_regeneration()),
        p.certificate("m", "dp2", cert_op("dp2", 2), count_regeneration()),
    );
    assert_eq!((a, b, c), (Ok(()), Ok(()), Ok(())));
    assert_eq!(stored_cert(&store, "dp0").await.as_deref(), Some("cert-0"));
    assert_eq!(stored_cert(&store, "dp2").await.as_deref(), Some("cert-2"));
    assert_eq!(stored_cert(&store, "gone").await, None);
    assert_eq!(stored_insight(&store, "gone").await, None);
}

#[tokio::test(start_paused = true)]
async fn insight_changes_are_coalesced_and_written_within_the_delay() {
    let store = Counting::new(Duration::from_millis(1), 0);
    with_dataplanes(&store, 1).await;
    let cfg = PersistConfig::default();
    let delay = cfg.insight_delay;
    let (p, _task) = Persister::spawn(store.clone(), cfg, None);
    for _ in 0..10 {
        p.insight("m", "dp0", count_regeneration().unwrap());
    }
    tokio::time::sleep(delay / 2).await;
    assert_eq!(
        stored_insight(&store, "dp0").await,
        None,
        "written before its delay"
    );
    tokio::time::sleep(delay).await;
    let s = stored_insight(&store, "dp0")
        .await
        .expect("written after its delay");
    assert_eq!(s.mtls.unwrap().certificate_regenerations, 10);
    assert_eq!(store.writes.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn stored_insights_are_the_starting_point_after_a_restart() {
    let store = Counting::new(Duration::from_millis(1), 0);
    with_dataplanes(&store, 1).await;
    let (p, task) = Persister::spawn(store.clone(), PersistConfig::default(), None);
    p.certificate("m", "dp0", cert_op("dp0", 0), count_regeneration())
        .await
        .unwrap();
    drop(p);
    task.await.unwrap();
    let (p, _task) = Persister::spawn(store.clone(), PersistConfig::default(), None);
    p.certificate("m", "dp0", cert_op("dp0", 1), count_regeneration())
        .await
        .unwrap();
    let s = stored_insight(&store, "dp0").await.unwrap();
    assert_eq!(s.mtls.unwrap().certificate_regenerations, 2);
}

#[tokio::test(start_paused = true)]
async fn a_drain_waits_until_the_last_changes_are_written() {
    let store = Counting::new(Duration::from_millis(50), 0);
    with_dataplanes(&store, 1).await;
    let (signal, watch) = drain::channel();
    let (p, _task) = Persister::spawn(store.clone(), PersistConfig::default(), Some(watch));
    p.insight("m", "dp0", count_regeneration().unwrap());
    tokio::task::yield_now().await;
    signal.drain().await;
    let s = stored_insight(&store, "dp0")
        .await
        .expect("written before the drain ended");
    assert_eq!(s.mtls.unwrap().certificate_regenerations, 1);
}
