//! The zone's one writer of DataplaneCertificates and DataplaneInsights: a cloneable handle over a
//! task that keeps every dataplane's insight in memory and commits certificates and insights in
//! batches (group commit), so a fleet costs one transaction per batch instead of two or three
//! per dataplane.
//!
//! - A certificate is acknowledged only after the transaction holding it (and the insight that
//!   reports it) committed; the caller serves it only then. A crash before the commit costs a
//!   re-issue at the next start, never a half-written record.
//! - Batches form while the previous one is being written, so a quiet zone writes at once and a
//!   busy one writes more per transaction; insight-only changes (connections, failures) wait at
//!   most `insight_delay`, so a connect and the certificate that follows it are one write.
//! - A batch that fails is kept and retried (upserts: a retry never duplicates); a record whose
//!   dataplane is gone is dropped.
//!
//! The zone runs as a single instance, so this task is the only writer of these two kinds in the
//! zone's store; it reads every stored insight once at start.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use meshplane_core::{
    model::{DataplaneInsightSpec, Meta, Resource, ResourceKey, ResourceKind, Spec},
    runtime::backoff::Backoff,
    store::{ListQuery, ResourceStore, StoreError, WriteOp},
};
use tokio::{
    sync::{mpsc, oneshot},
    time::Instant,
};

/// A change to one dataplane's insight.
pub type InsightChange = Box<dyn FnOnce(&mut DataplaneInsightSpec) + Send>;

#[derive(Clone, Debug)]
pub struct PersistConfig {
    /// Longest an insight-only change waits before it is written.
    pub insight_delay: Duration,
    /// Most records in one transaction.
    pub max_batch: usize,
    pub retry_base: Duration,
    pub retry_max: Duration,
}

impl Default for PersistConfig {
    fn default() -> Self {
        Self {
            insight_delay: Duration::from_millis(500),
            max_batch: 512,
            retry_base: Duration::from_millis(200),
            retry_max: Duration::from_secs(10),
        }
    }
}

type Dp = (String, String);

enum Msg {
    Certificate {
        dp: Dp,
        op: WriteOp,
        change: Option<InsightChange>,
        ack: oneshot::Sender<Result<(), StoreError>>,
    },
    Insight {
        dp: Dp,
        change: InsightChange,
    },
    Forget(Dp),
    Flush(oneshot::Sender<()>),
}

/// The handle. Cheap to clone; the task ends once every handle is gone and everything is written.
#[derive(Clone)]
pub struct Persister {
    tx: mpsc::UnboundedSender<Msg>,
}

impl Persister {
    /// Starts the task. With `drain`, a shutdown waits until what was handed over until
    /// `insight_delay` after the signal is written (the last disconnections included).
    pub fn spawn(
        store: Arc<dyn ResourceStore>,
        cfg: PersistConfig,
        drain: Option<drain::Watch>,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(Worker::new(store, cfg, rx).run(drain));
        (Self { tx }, task)
    }

    fn send(&self, m: Msg) {
        // The task ends only when every handle is gone.
        let _ = self.tx.send(m);
    }

    /// Persists a certificate record (`op`, an upsert owned by the dataplane) together with
    /// `change` to the dataplane's insight, in one transaction. Resolves once it committed; `Ok`
    /// too when the dataplane was deleted meanwhile (nothing to keep). On an error the record is
    /// still pending and written when the store answers again.
    pub async fn certificate(
        &self,
        mesh: &str,
        dataplane: &str,
        op: WriteOp,
        change: Option<InsightChange>,
    ) -> Result<(), StoreError> {
        let (ack, rx) = oneshot::channel();
        self.send(Msg::Certificate {
            dp: (mesh.to_string(), dataplane.to_string()),
            op,
            change,
            ack,
        });
        rx.await
            .unwrap_or_else(|_| Err(StoreError::Internal("the persister stopped".into())))
    }

    /// Changes a dataplane's insight; written within `insight_delay`.
    pub fn insight(&self, mesh: &str, dataplane: &str, change: InsightChange) {
        self.send(Msg::Insight {
            dp: (mesh.to_string(), dataplane.to_string()),
            change,
        });
    }

    /// The dataplane is gone: its pending records are dropped and its insight forgotten.
    pub fn forget(&self, mesh: &str, dataplane: &str) {
        self.send(Msg::Forget((mesh.to_string(), dataplane.to_string())));
    }

    /// Waits until everything handed over before this call was written (or failed and is
    /// waiting for its retry). For shutdown and tests.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        self.send(Msg::Flush(tx));
        let _ = rx.await;
    }
}

struct Worker {
    store: Arc<dyn ResourceStore>,
    cfg: PersistConfig,
    rx: mpsc::UnboundedReceiver<Msg>,
    insights: HashMap<Dp, DataplaneInsightSpec>,
    /// Insights changed since written, with when the oldest change was made.
    dirty: HashSet<Dp>,
    dirty_since: Option<Instant>,
    /// Certificate records waiting to be written, newest per key, and who waits for them.
    certs: HashMap<ResourceKey, (Dp, WriteOp)>,
    waiters: HashMap<ResourceKey, Vec<oneshot::Sender<Result<(), StoreError>>>>,
    flushes: Vec<oneshot::Sender<()>>,
    backoff: Backoff,
    retry_at: Option<Instant>,
}

/// What one transaction carries, to put back if it fails.
struct Batch {
    certs: Vec<(ResourceKey, Dp, WriteOp)>,
    /// Each insight as it was when the batch was taken.
    insights: Vec<(Dp, DataplaneInsightSpec)>,
    waiters: Vec<(ResourceKey, oneshot::Sender<Result<(), StoreError>>)>,
    flushes: Vec<oneshot::Sender<()>>,
}

fn insight_op(dp: &Dp, spec: &DataplaneInsightSpec) -> WriteOp {
    let r = Resource::new(
        Meta {
            name: dp.1.clone(),
            mesh: dp.0.clone(),
            ..Default::default()
        },
        Spec::DataplaneInsight(spec.clone()),
    );
    let owner = ResourceKey::in_mesh(ResourceKind::Dataplane, dp.0.clone(), dp.1.clone());
    WriteOp::upsert(&r, Some(owner))
}

impl Worker {
    fn new(
        store: Arc<dyn ResourceStore>,
        cfg: PersistConfig,
        rx: mpsc::UnboundedReceiver<Msg>,
    ) -> Self {
        let backoff = Backoff::new(cfg.retry_base, cfg.retry_max);
        Self {
            store,
            cfg,
            rx,
            insights: HashMap::new(),
            dirty: HashSet::new(),
            dirty_since: None,
            certs: HashMap::new(),
            waiters: HashMap::new(),
            flushes: Vec::new(),
            backoff,
            retry_at: None,
        }
    }

    /// Every stored insight, once, before any change is applied: a change must start from what
    /// is stored, or it would reset counters such as `certificateRegenerations`.
    async fn load(&mut self) {
        let q = ListQuery::all(ResourceKind::DataplaneInsight);
        let mut backoff = Backoff::new(self.cfg.retry_base, self.cfg.retry_max);
        let recs = loop {
            match self.store.list(&q).await {
                Ok(r) => break r.items,
                Err(e) => {
                    tracing::warn!(error = %e, "could not read the dataplane insights; retrying");
                    tokio::time::sleep(backoff.next_delay()).await;
                }
            }
        };
        for rec in recs {
            if let Ok(r) = rec.to_resource()
                && let Spec::DataplaneInsight(s) = r.spec
            {
                self.insights
                    .insert((rec.key.mesh.clone(), rec.key.name.clone()), s);
            }
        }
    }

    async fn run(mut self, drain: Option<drain::Watch>) {
        self.load().await;
        let mut writing: Option<futures::future::BoxFuture<'static, WriteOutcome>> = None;
        let mut open = true;
        let signaled = async move {
            match drain {
                Some(d) => d.signaled().await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(signaled);
        // Once the drain is signaled: until when changes are still taken in, and the release
        // that lets the shutdown go on once everything is written.
        let mut draining: Option<(Instant, drain::ReleaseShutdown)> = None;
        let mut signal_seen = false;
        loop {
            let closing = !open || draining.as_ref().is_some_and(|(t, _)| Instant::now() >= *t);
            if writing.is_none()
                && let Some(batch) = self.take_batch(closing)
            {
                writing = Some(Box::pin(write(self.store.clone(), batch)));
            }
            if closing && writing.is_none() && (self.idle() || self.retry_at.is_some()) {
                if !open {
                    if !self.idle() {
                        tracing::warn!(
                            certificates = self.certs.len(),
                            insights = self.dirty.len(),
                            "stopping with records the store did not take; certificates among them are re-issued at the next start"
                        );
                    }
                    return;
                }
                // Written (or the store is down and nothing more can be done): let the
                // shutdown go on, and keep serving whoever still writes.
                draining.take();
            }
            let mut wake = self.wake_at();
            if let Some((t, _)) = &draining {
                wake = Some(wake.map_or(*t, |w| w.min(*t)));
            }
            tokio::select! {
                m = self.rx.recv(), if open => match m {
                    Some(m) => self.handle(m),
                    None => open = false,
                },
                out = async { writing.as_mut().expect("guarded").await }, if writing.is_some() => {
                    writing = None;
                    self.finish(out);
                }
                release = &mut signaled, if !signal_seen => {
                    signal_seen = true;
                    draining = Some((Instant::now() + self.cfg.insight_delay, release));
                }
                _ = sleep_until(wake), if wake.is_some() && writing.is_none() => {}
            }
        }
    }

    fn idle(&self) -> bool {
        self.certs.is_empty() && self.dirty.is_empty() && self.flushes.is_empty()
    }

    fn handle(&mut self, m: Msg) {
        match m {
            Msg::Certificate {
                dp,
                op,
                change,
                ack,
            } => {
                if let Some(change) = change {
                    self.change(&dp, change);
                }
                let key = op.key().clone();
                self.waiters.entry(key.clone()).or_default().push(ack);
                self.certs.insert(key, (dp, op));
            }
            Msg::Insight { dp, change } => self.change(&dp, change),
            Msg::Forget(dp) => self.forget(&dp),
            Msg::Flush(tx) => self.flushes.push(tx),
        }
    }

    fn change(&mut self, dp: &Dp, change: InsightChange) {
        let spec = self.insights.entry(dp.clone()).or_default();
        let before = spec.clone();
        change(spec);
        if *spec != before && self.dirty.insert(dp.clone()) && self.dirty_since.is_none() {
            self.dirty_since = Some(Instant::now());
        }
    }

    fn forget(&mut self, dp: &Dp) {
        self.insights.remove(dp);
        self.dirty.remove(dp);
        if self.dirty.is_empty() {
            self.dirty_since = None;
        }
        let gone: Vec<ResourceKey> = self
            .certs
            .iter()
            .filter(|(_, (d, _))| d == dp)
            .map(|(k, _)| k.clone())
            .collect();
        for k in gone {
            self.certs.remove(&k);
            for w in self.waiters.remove(&k).unwrap_or_default() {
                let _ = w.send(Ok(()));
            }
        }
    }

    /// When the next batch is due if nothing else arrives: a retry, or the oldest insight change.
    fn wake_at(&self) -> Option<Instant> {
        if let Some(at) = self.retry_at {
            return Some(at);
        }
        if self.dirty.is_empty() {
            return None;
        }
        self.dirty_since.map(|t| t + self.cfg.insight_delay)
    }

    /// The next transaction's records, if one is due: certificates (and flush requests) go at
    /// once; insight-only changes once the oldest waited `insight_delay` (or at the end).
    fn take_batch(&mut self, closing: bool) -> Option<Batch> {
        let now = Instant::now();
        if self.retry_at.is_some_and(|at| now < at) {
            return None;
        }
        let insights_due = self
            .dirty_since
            .is_some_and(|t| now >= t + self.cfg.insight_delay);
        if self.certs.is_empty() && self.flushes.is_empty() && !insights_due && !closing {
            return None;
        }
        if self.idle() {
            return None;
        }
        let mut batch = Batch {
            certs: Vec::new(),
            insights: Vec::new(),
            waiters: Vec::new(),
            flushes: std::mem::take(&mut self.flushes),
        };
        let max = self.cfg.max_batch.max(2);
        let keys: Vec<ResourceKey> = self.certs.keys().take(max / 2).cloned().collect();
        for k in keys {
            if let Some((dp, op)) = self.certs.remove(&k) {
                for w in self.waiters.remove(&k).unwrap_or_default() {
                    batch.waiters.push((k.clone(), w));
                }
                // The insight reporting the certificate goes in the same transaction.
                if self.dirty.remove(&dp)
                    && let Some(spec) = self.insights.get(&dp)
                {
                    batch.insights.push((dp.clone(), spec.clone()));
                }
                batch.certs.push((k, dp, op));
            }
        }
        let room = max.saturating_sub(batch.certs.len() + batch.insights.len());
        let more: Vec<Dp> = self.dirty.iter().take(room).cloned().collect();
        for dp in more {
            self.dirty.remove(&dp);
            if let Some(spec) = self.insights.get(&dp) {
                batch.insights.push((dp, spec.clone()));
            }
        }
        if self.dirty.is_empty() {
            self.dirty_since = None;
        }
        Some(batch)
    }

    fn finish(&mut self, out: WriteOutcome) {
        let WriteOutcome { batch, result } = out;
        match result {
            Ok(()) => {
                self.backoff.reset();
                self.retry_at = None;
                for (_, w) in batch.waiters {
                    let _ = w.send(Ok(()));
                }
                for f in batch.flushes {
                    let _ = f.send(());
                }
            }
            Err(StoreError::OwnerMissing { owner, .. }) => {
                // One dataplane left while its records waited: drop its records, retry the rest
                // at once.
                let dp = (owner.mesh.clone(), owner.name.clone());
                tracing::debug!(mesh = %dp.0, dataplane = %dp.1, "dataplane gone; dropping its pending records");
                self.requeue(batch);
                self.forget(&dp);
            }
            Err(e) => {
                let delay = self.backoff.next_delay();
                tracing::warn!(error = %e, retry_in = ?delay, records = batch.certs.len() + batch.insights.len(), "could not write certificates and insights; keeping them for a retry");
                self.retry_at = Some(Instant::now() + delay);
                let mut batch = batch;
                // Whoever waits serves the certificate anyway; it is written when the store answers.
                for (_, w) in batch.waiters.drain(..) {
                    let _ = w.send(Err(e.clone()));
                }
                for f in batch.flushes.drain(..) {
                    let _ = f.send(());
                }
                self.requeue(batch);
            }
        }
    }

    /// Puts a batch's records back, unless newer ones for the same keys arrived meanwhile.
    fn requeue(&mut self, batch: Batch) {
        for (k, w) in batch.waiters {
            self.waiters.entry(k).or_default().push(w);
        }
        for (k, dp, op) in batch.certs {
            self.certs.entry(k).or_insert((dp, op));
        }
        for (dp, _) in batch.insights {
            if self.insights.contains_key(&dp) && self.dirty.insert(dp) {
                self.dirty_since.get_or_insert_with(Instant::now);
            }
        }
        self.flushes.extend(batch.flushes);
    }
}

struct WriteOutcome {
    batch: Batch,
    result: Result<(), StoreError>,
}

async fn write(store: Arc<dyn ResourceStore>, batch: Batch) -> WriteOutcome {
    // Insights are written as they are when the batch is taken; built here from the snapshot the
    // worker handed over, so the worker keeps absorbing changes meanwhile.
    let ops: Vec<WriteOp> = batch
        .certs
        .iter()
        .map(|(_, _, op)| op.clone())
        .chain(batch.insights.iter().map(|(dp, spec)| insight_op(dp, spec)))
        .collect();
    let result = if ops.is_empty() {
        Ok(())
    } else {
        store.write(ops).await.map(|_| ())
    };
    WriteOutcome { batch, result }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
#[path = "persist_tests.rs"]
mod tests;
