//! Per-zone isolation both ways: a zone that stops applying what global sends never delays
//! another zone, and once it applies again it catches up with nothing lost; a zone whose pushes
//! global cannot apply yet is held back (global reads at most a few of its messages ahead) while
//! every other zone's pushes are applied and global's changes still reach it; and however many zones push at once, global applies at
//! most `concurrent_applies` of their pushes at a time.

mod support;

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;
use meshplane_core::{
    model::{ResourceKey, ResourceKind},
    store::{
        ListQuery, ListResult, Record, ResourceStore, Selection, StoreError, Subscription, WriteOp,
        WriteResult, memory::MemoryStore,
    },
};
use serde_json::json;
use support::{Global, Zone, count, until_holds};
use tokio::sync::watch;

/// A memory store whose writes of the keys `held` picks wait while the gate (if any) is shut, then
/// take `delay` (as a PostgreSQL round trip does); it counts how many such writes run at once.
struct Gated {
    inner: MemoryStore,
    open: Option<watch::Receiver<bool>>,
    held: fn(&ResourceKey) -> bool,
    delay: Duration,
    now: AtomicUsize,
    most: AtomicUsize,
}

impl Gated {
    fn new(open: Option<watch::Receiver<bool>>, held: fn(&ResourceKey) -> bool) -> Self {
        Self {
            inner: MemoryStore::new(),
            open,
            held,
            delay: Duration::ZERO,
            now: AtomicUsize::new(0),
            most: AtomicUsize::new(0),
        }
    }
}

#[async_trait]
impl ResourceStore for Gated {
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
        if !ops.iter().any(|op| (self.held)(op.key())) {
            return self.inner.write(ops).await;
        }
        if let Some(open) = &self.open {
            let mut open = open.clone();
            let _ = open.wait_for(|o| *o).await;
        }
        let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(n, Ordering::SeqCst);
        tokio::time::sleep(self.delay).await;
        let out = self.inner.write(ops).await;
        self.now.fetch_sub(1, Ordering::SeqCst);
        out
    }
    fn subscribe(&self) -> Subscription {
        self.inner.subscribe()
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
    fn describe(&self) -> String {
        "gated memory".into()
    }
}

/// `len` bytes of hex that gzip cannot shrink (the sync stream is compressed), from xorshift.
fn incompressible(seed: u64, len: usize) -> String {
    let mut x = seed | 1;
    let mut out = String::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.push_str(&format!("{x:016x}"));
    }
    out.truncate(len);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zone_that_stops_reading_never_delays_the_others() {
    let g = Global::start().await;
    g.put_mesh("bulk", true).await;
    let mut fast = Zone::start(&g, "fast").await;
    let (gate, open) = watch::channel(true);
    let slow_store: Arc<dyn ResourceStore> = Arc::new(Gated::new(Some(open), |_| true));
    let token = g.token("slow").await;
    let mut slow = Zone::start_with(&g, "slow", &token, slow_store.clone()).await;
    fast.wait_synced().await;
    slow.wait_synced().await;

    // The slow zone stops applying (its client still reads and queues what global sends).
    gate.send_replace(false);
    const N: usize = 40;
    const SIZE: usize = 128 * 1024;
    for i in 0..N {
        g.store
            .write(vec![WriteOp::Create {
                key: ResourceKey::in_mesh(ResourceKind::Secret, "bulk", format!("bulk-{i}")),
                spec: json!({"data": incompressible(i as u64 + 1, SIZE)}),
                labels: BTreeMap::new(),
                owner: Some(ResourceKey::mesh("bulk")),
            }])
            .await
            .expect("write a secret");
    }
    until_holds(&fast.store, ResourceKind::Secret, "bulk-", N).await;
    assert_eq!(
        count(&slow_store, ResourceKind::Secret, "bulk-").await,
        0,
        "the slow zone applied nothing meanwhile (its store is shut)"
    );

    // More changes still reach the fast zone while the slow one is stuck.
    g.put_mesh("later", true).await;
    support::eventually_present(&fast.store, &ResourceKey::mesh("later"), true).await;
    assert_eq!(count(&slow_store, ResourceKind::Secret, "bulk-").await, 0);

    // The slow zone takes again: it catches up, nothing lost.
    gate.send_replace(true);
    until_holds(&slow_store, ResourceKind::Secret, "bulk-", N).await;
    support::eventually_present(&slow_store, &ResourceKey::mesh("later"), true).await;
    for i in [0, N / 2, N - 1] {
        let key = ResourceKey::in_mesh(ResourceKind::Secret, "bulk", format!("bulk-{i}"));
        let rec = slow_store.get(&key).await.expect("get").expect("synced");
        assert_eq!(
            rec.spec["data"].as_str().map(str::len),
            Some(SIZE),
            "{key} arrived whole"
        );
    }
    fast.stop().await;
    slow.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zone_whose_pushes_global_cannot_apply_never_delays_the_others() {
    let (gate, open) = watch::channel(true);
    // Global stores a zone's dataplanes as `<zone>.<name>`.
    let store: Arc<dyn ResourceStore> = Arc::new(Gated::new(Some(open), |k| {
        k.kind == ResourceKind::Dataplane && k.name.starts_with("slow.")
    }));
    let g = Global::start_on(store.clone(), None).await;
    g.put_mesh("m", true).await;
    let mut fast = Zone::start(&g, "fast").await;
    let mut slow = Zone::start(&g, "slow").await;
    fast.wait_synced().await;
    slow.wait_synced().await;
    support::eventually_present(&fast.store, &ResourceKey::mesh("m"), true).await;
    support::eventually_present(&slow.store, &ResourceKey::mesh("m"), true).await;

    gate.send_replace(false);
    const N: usize = 300;
    for i in 0..N {
        slow.put_dataplane("m", &format!("dp-{i}"), "web").await;
    }
    for i in 0..N {
        fast.put_dataplane("m", &format!("dp-{i}"), "web").await;
    }
    until_holds(&store, ResourceKind::Dataplane, "fast.", N).await;
    assert_eq!(
        count(&store, ResourceKind::Dataplane, "slow.").await,
        0,
        "nothing of the held zone was applied meanwhile"
    );
    // Its downstream does not wait behind its upstream: a Mesh change made now reaches the held
    // zone itself while its own pushes still wait.
    g.put_mesh("later", true).await;
    support::eventually_present(&slow.store, &ResourceKey::mesh("later"), true).await;
    assert_eq!(count(&store, ResourceKind::Dataplane, "slow.").await, 0);

    gate.send_replace(true);
    until_holds(&store, ResourceKind::Dataplane, "slow.", N).await;
    fast.stop().await;
    slow.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_zones_pushing_at_once_are_applied_a_few_at_a_time() {
    const PERMITS: usize = 2;
    const ZONES: usize = 5;
    const N: usize = 40;
    let overlap = Arc::new(Gated {
        delay: Duration::from_millis(40),
        ..Gated::new(None, |k| k.kind == ResourceKind::Dataplane)
    });
    let store: Arc<dyn ResourceStore> = overlap.clone();
    let g = Global::start_configured(store.clone(), None, |cfg| {
        cfg.concurrent_applies = PERMITS;
    })
    .await;
    g.put_mesh("m", true).await;
    let mut zones = Vec::new();
    for i in 0..ZONES {
        let mut z = Zone::start(&g, &format!("z{i}")).await;
        z.wait_synced().await;
        support::eventually_present(&z.store, &ResourceKey::mesh("m"), true).await;
        zones.push(z);
    }
    // Every zone registers its dataplanes at the same time, one write each.
    futures::future::join_all(zones.iter().map(|z| async move {
        for i in 0..N {
            z.put_dataplane("m", &format!("dp-{i}"), "web").await;
        }
    }))
    .await;
    for i in 0..ZONES {
        until_holds(&store, ResourceKind::Dataplane, &format!("z{i}."), N).await;
    }
    assert_eq!(
        overlap.most.load(Ordering::SeqCst),
        PERMITS,
        "zone pushes applied at once (with {ZONES} zones pushing)"
    );
    for z in &mut zones {
        z.stop().await;
    }
}
