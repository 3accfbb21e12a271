//! One side of a sync stream after the handshake: it pushes the local view's changes as the store
//! commits them, applies the peer's pushes, and keeps per-type counters. Global and zone each run a
//! `Link` inside their own session loop.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures::FutureExt;
use meshplane_core::{
    model::{ResourceKey, ResourceKind},
    store::{ChangeEvent, Received, Record, ResourceStore, Selection, StoreError, Subscription},
};
use tokio::sync::mpsc;

use crate::{
    apply::{Applier, Policy},
    chunk,
    mirror::{Change, Mirror, split},
    proto,
    view::{Item, key_of},
};

/// The local view this side sends.
pub trait Outbound: Send + Sync {
    /// The view key a store change on `key` affects, if it is part of the view.
    fn view_key(&self, key: &ResourceKey) -> Option<ResourceKey>;
    /// The store records behind `view_keys`, plus whatever must reach the peer with them (a Mesh
    /// travels with its Secrets). The link reads it in one snapshot, so the peer never receives
    /// half of a batch the store committed whole.
    fn select(&self, view_keys: &[ResourceKey]) -> Selection;
    /// Every kind in the view.
    fn kinds(&self) -> &'static [ResourceKind];
    /// The view item for a store record; `None` when it does not flow.
    fn item(&self, rec: &Record) -> Option<Item>;
}

/// Per resource type: pushes sent, acknowledged, rejected (for ZoneInsight and metrics).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub sent: u64,
    pub acked: u64,
    pub rejected: u64,
}

pub type Stats = Arc<Mutex<BTreeMap<String, Counters>>>;

/// Why a link stopped.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("the peer stopped reading for {0:?}; closing the stream")]
    SendTimeout(Duration),
    #[error("the stream is closed")]
    Closed,
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

pub struct LinkConfig {
    pub metrics: crate::metrics::KdsMetrics,
    pub max_message: usize,
    pub send_timeout: Duration,
    pub nack_backoff: Duration,
    /// Names this side in logs ("zone east", "global").
    pub peer: String,
    /// Taken while a peer push is applied (global shares one set among all zones); the Ack is
    /// sent after it is released, so a peer that does not read never holds one.
    pub apply_permits: Option<Arc<tokio::sync::Semaphore>>,
}

/// What an inbound message meant, for the session loop.
#[derive(Debug, PartialEq, Eq)]
pub enum Inbound {
    Nothing,
    /// The peer's initial reconcile is fully applied: this side is in sync.
    InitialDone,
}

pub struct Link<T> {
    store: Arc<dyn ResourceStore>,
    outbound: Box<dyn Outbound>,
    applier: Applier<T>,
    tx: mpsc::Sender<T>,
    wrap_push: fn(proto::Push) -> T,
    mirror: Mirror,
    cfg: LinkConfig,
    /// Types contained in each unacknowledged push, by nonce.
    pending: HashMap<String, Vec<String>>,
    pub stats: Stats,
    nonce_seq: u64,
    /// When each unacknowledged push was sent, for the sync-lag histogram.
    sent_at: HashMap<String, Instant>,
}

impl<T: Send + 'static> Link<T> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Arc<dyn ResourceStore>,
        outbound: Box<dyn Outbound>,
        policy: Box<dyn Policy>,
        tx: mpsc::Sender<T>,
        wrap_push: fn(proto::Push) -> T,
        wrap_ack: fn(proto::Ack) -> T,
        cfg: LinkConfig,
    ) -> Self {
        let applier = Applier {
            store: store.clone(),
            policy: Arc::from(policy),
            tx: tx.clone(),
            wrap_ack,
            permits: cfg.apply_permits.clone(),
            send_timeout: cfg.send_timeout,
            peer: cfg.peer.clone(),
        };
        Self {
            store,
            outbound,
            applier,
            tx,
            wrap_push,
            mirror: Mirror::default(),
            cfg,
            pending: HashMap::new(),
            stats: Stats::default(),
            nonce_seq: 0,
            sent_at: HashMap::new(),
        }
    }

    async fn send(&self, msg: T) -> Result<(), LinkError> {
        send_within(&self.tx, msg, self.cfg.send_timeout).await
    }

    /// Sends `changes` (split to fit the message limit) and records them as held by the peer.
    async fn push(&mut self, changes: Vec<Change>, initial: bool) -> Result<(), LinkError> {
        if changes.is_empty() && !initial {
            return Ok(());
        }
        let (ups, rems) = split(&changes);
        let mut seq = self.nonce_seq;
        let (mut pushes, oversized) = chunk::pushes(&ups, &rems, self.cfg.max_message, || {
            seq += 1;
            seq.to_string()
        });
        self.nonce_seq = seq;
        for o in &oversized {
            tracing::error!(peer = %self.cfg.peer, error = %o, "resource not synced");
            let mut stats = self
                .stats
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            stats
                .entry(o.key.kind.name().to_string())
                .or_default()
                .rejected += 1;
        }
        // Oversized items are not held by the peer; everything else is. Whole keys are compared: a
        // same-named resource of another mesh was sent.
        let sent: Vec<Change> = changes
            .into_iter()
            .filter(|c| !matches!(c, Change::Upsert(i) if oversized.iter().any(|o| o.key == i.key)))
            .collect();
        self.mirror.mark_sent(&sent);
        let n = pushes.len();
        for (i, p) in pushes.iter_mut().enumerate() {
            p.initial = initial;
            p.initial_done = initial && i + 1 == n;
        }
        for p in pushes {
            let mut types: Vec<String> = p
                .upserts
                .iter()
                .filter_map(|r| r.r#ref.as_ref().map(|r| r.r#type.clone()))
                .collect();
            types.extend(p.removals.iter().map(|r| r.r#type.clone()));
            types.sort();
            types.dedup();
            {
                let mut stats = self
                    .stats
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                for t in &types {
                    stats.entry(t.clone()).or_default().sent += 1;
                }
            }
            self.pending.insert(p.nonce.clone(), types);
            self.sent_at.insert(p.nonce.clone(), Instant::now());
            let msg = (self.wrap_push)(p);
            self.send(msg).await?;
        }
        Ok(())
    }

    /// The first push after the handshake: exactly the difference from what the peer says it holds.
    pub async fn initial_sync(
        &mut self,
        known: &[proto::KnownVersion],
    ) -> Result<usize, LinkError> {
        let current = self.full().await?;
        self.initial_sync_from(Mirror::from_known(known), current)
            .await
    }

    /// The initial reconcile from a mirror already built (from a summary) against `current`, the
    /// view read to build it.
    pub async fn initial_sync_from(
        &mut self,
        mirror: Mirror,
        current: BTreeMap<ResourceKey, Item>,
    ) -> Result<usize, LinkError> {
        self.mirror = mirror;
        let changes = self.mirror.full_diff(&current, Instant::now());
        let n = changes.len();
        self.push(changes, true).await?;
        Ok(n)
    }

    /// A full re-diff, after the store said events may have been missed.
    pub async fn resync(&mut self) -> Result<(), LinkError> {
        let current = self.full().await?;
        let changes = self.mirror.full_diff(&current, Instant::now());
        self.push(changes, false).await
    }

    /// Handles a store event and every further event already waiting, as one batch.
    pub async fn handle_events(
        &mut self,
        first: ChangeEvent,
        sub: &mut Subscription,
    ) -> Result<(), LinkError> {
        let mut keys: Vec<ResourceKey> = Vec::new();
        let mut resync = false;
        let push_key = |keys: &mut Vec<ResourceKey>, ev: &ChangeEvent| {
            if let Some(k) = self.outbound.view_key(&ev.key)
                && !keys.contains(&k)
            {
                keys.push(k);
            }
        };
        push_key(&mut keys, &first);
        while keys.len() < 1024 {
            match sub.recv().now_or_never() {
                Some(Received::Event(ev)) => push_key(&mut keys, &ev),
                Some(Received::Resync) => {
                    resync = true;
                    break;
                }
                Some(Received::Closed) | None => break,
            }
        }
        if resync {
            return self.resync().await;
        }
        let changes = self.changes_for(&keys).await?;
        self.push(changes, false).await
    }

    /// The whole view, read in one snapshot.
    pub async fn full(&self) -> Result<BTreeMap<ResourceKey, Item>, StoreError> {
        let sel = Selection::kinds(self.outbound.kinds());
        Ok(items(
            self.outbound.as_ref(),
            &self.store.snapshot(&sel).await?,
        ))
    }

    /// What to send for `keys`, read in one snapshot with what travels with them.
    async fn changes_for(&self, keys: &[ResourceKey]) -> Result<Vec<Change>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let recs = self.store.snapshot(&self.outbound.select(keys)).await?;
        let current = items(self.outbound.as_ref(), &recs);
        Ok(self.mirror.diff_keys(keys, current, Instant::now()))
    }

    /// Re-sends resources whose NACK backoff has passed.
    pub async fn retry_due(&mut self) -> Result<(), LinkError> {
        let due = self.mirror.due_retries(Instant::now());
        let changes = self.changes_for(&due).await?;
        self.push(changes, false).await
    }

    pub fn next_retry(&self) -> Option<Instant> {
        self.mirror.next_retry()
    }

    /// Applies a peer push and acknowledges it.
    pub async fn handle_push(&mut self, p: proto::Push) -> Result<Inbound, LinkError> {
        self.applier.apply_push(p).await
    }

    /// The writing half, for a session that applies pushes beside its sending (global's).
    pub fn applier(&self) -> Applier<T> {
        self.applier.clone()
    }

    pub fn handle_ack(&mut self, ack: proto::Ack) {
        if let Some(at) = self.sent_at.remove(&ack.nonce) {
            self.cfg
                .metrics
                .ack_seconds
                .observe(at.elapsed().as_secs_f64());
        }
        let types = self.pending.remove(&ack.nonce).unwrap_or_default();
        let now = Instant::now();
        let mut rejected_types = Vec::new();
        for n in &ack.nacks {
            let Some(key) = n.r#ref.as_ref().and_then(|r| key_of(r).ok()) else {
                continue;
            };
            tracing::warn!(peer = %self.cfg.peer, kind = %key.kind, mesh = %key.mesh, name = %key.name, reason = %n.reason, "peer rejected a resource; retrying after backoff");
            self.mirror
                .nacked(&key, &n.version, self.cfg.nack_backoff, now);
            rejected_types.push(key.kind.name().to_string());
        }
        let mut stats = self
            .stats
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for t in types {
            let c = stats.entry(t.clone()).or_default();
            if rejected_types.contains(&t) {
                c.rejected += 1;
            } else {
                c.acked += 1;
            }
        }
    }

    pub fn held(&self) -> usize {
        self.mirror.len()
    }

    /// Pushes sent and not yet acknowledged.
    pub fn unacknowledged(&self) -> usize {
        self.pending.len()
    }
}

/// Queues `msg` for the peer, or fails if the stream is gone or the peer has not read for `timeout`.
pub(crate) async fn send_within<T>(
    tx: &mpsc::Sender<T>,
    msg: T,
    timeout: Duration,
) -> Result<(), LinkError> {
    match tokio::time::timeout(timeout, tx.send(msg)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(LinkError::Closed),
        Err(_) => Err(LinkError::SendTimeout(timeout)),
    }
}

/// The view items of `recs`, by view key.
fn items(outbound: &dyn Outbound, recs: &[Record]) -> BTreeMap<ResourceKey, Item> {
    recs.iter()
        .filter_map(|r| outbound.item(r))
        .map(|i| (i.key.clone(), i))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apply::Placement;
    use meshplane_core::store::memory::MemoryStore;
    use serde_json::json;

    /// Every Secret in the store, as stored.
    struct SecretsView;

    impl Outbound for SecretsView {
        fn view_key(&self, key: &ResourceKey) -> Option<ResourceKey> {
            Some(key.clone())
        }
        fn select(&self, view_keys: &[ResourceKey]) -> Selection {
            Selection {
                kinds: Vec::new(),
                keys: view_keys.to_vec(),
                ..Default::default()
            }
        }
        fn kinds(&self) -> &'static [ResourceKind] {
            &[ResourceKind::Secret]
        }
        fn item(&self, rec: &Record) -> Option<Item> {
            Some(Item::new(
                rec.key.clone(),
                rec.labels.clone(),
                rec.spec.clone(),
            ))
        }
    }

    struct Refuse;

    impl Policy for Refuse {
        fn place_upsert(
            &self,
            _key: &ResourceKey,
            _labels: BTreeMap<String, String>,
        ) -> Result<Placement, String> {
            Err("not in this test".into())
        }
        fn place_removal(&self, _key: &ResourceKey) -> Result<ResourceKey, String> {
            Err("not in this test".into())
        }
    }

    fn secret(mesh: &str, name: &str, bytes: usize) -> Item {
        Item::new(
            ResourceKey::in_mesh(ResourceKind::Secret, mesh, name),
            BTreeMap::new(),
            json!({"data": "A".repeat(bytes)}),
        )
    }

    async fn link(
        view: &[Item],
    ) -> (
        Link<Option<proto::Push>>,
        mpsc::Receiver<Option<proto::Push>>,
    ) {
        let (tx, rx) = mpsc::channel(64);
        let store = MemoryStore::new();
        for i in view {
            store
                .write(vec![meshplane_core::store::WriteOp::Upsert {
                    key: i.key.clone(),
                    spec: i.spec.clone(),
                    labels: i.labels.clone(),
                    owner: None,
                }])
                .await
                .expect("seed");
        }
        let link = Link::new(
            Arc::new(store),
            Box::new(SecretsView),
            Box::new(Refuse),
            tx,
            Some,
            |_| None,
            LinkConfig {
                metrics: Default::default(),
                max_message: 8 * 1024,
                send_timeout: Duration::from_secs(5),
                nack_backoff: Duration::from_secs(5),
                peer: "test".into(),
                apply_permits: None,
            },
        );
        (link, rx)
    }

    fn upserted(rx: &mut mpsc::Receiver<Option<proto::Push>>) -> Vec<(String, String)> {
        let mut out = Vec::new();
        while let Ok(Some(p)) = rx.try_recv() {
            out.extend(
                p.upserts
                    .into_iter()
                    .filter_map(|r| r.r#ref.map(|r| (r.mesh, r.name))),
            );
        }
        out
    }

    #[tokio::test]
    async fn oversized_resource_does_not_hide_same_name_in_another_mesh() {
        let huge = secret("a", "x", 50_000);
        let small = secret("b", "x", 100);
        let (mut link, mut rx) = link(&[huge.clone(), small.clone()]).await;
        link.initial_sync(&[]).await.expect("initial sync");
        assert_eq!(upserted(&mut rx), vec![("b".into(), "x".into())]);
        assert_eq!(
            link.held(),
            1,
            "the small secret is held, the huge one is not"
        );
        assert_eq!(
            link.stats.lock().unwrap()["Secret"].rejected,
            1,
            "the oversized one is counted as rejected"
        );

        // A resync does not send the held secret again.
        link.resync().await.expect("resync");
        assert_eq!(upserted(&mut rx), Vec::<(String, String)>::new());

        // Its deletion is sent.
        assert_eq!(
            link.mirror.diff_one(&small.key, None, Instant::now()),
            Some(Change::Remove(small.key.clone()))
        );
        assert_eq!(
            link.mirror.diff_one(&huge.key, None, Instant::now()),
            None,
            "the peer never got the oversized one"
        );
    }
}
