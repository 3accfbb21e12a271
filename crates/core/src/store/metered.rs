//! `MeteredStore`: any `ResourceStore` with the latency of each call and its failures by kind
//! exported, so an operator sees a slow or failing database before users do.

use std::{sync::Arc, time::Instant};

use async_trait::async_trait;
use prometheus_client::registry::Registry;

use super::{
    ListQuery, ListResult, Record, ResourceStore, Selection, StoreError, Subscription, WriteOp,
    WriteResult,
};
use crate::{model::ResourceKey, runtime::metrics::OpMetrics};

/// The store's call metrics: `store_operation_duration_seconds{op}`, `store_operation_errors_total`.
#[derive(Clone, Debug, Default)]
pub struct StoreMetrics(OpMetrics);

impl StoreMetrics {
    pub fn register(reg: &mut Registry) -> Self {
        let m = OpMetrics::default();
        m.register(
            reg,
            "store_operation",
            "store calls (get, list, snapshot, write, ping)",
        );
        Self(m)
    }
}

/// A short label for a store error; refusals a caller expects (not found, conflicts) are counted
/// too, so a surge of conflicts shows.
fn error_label(e: &StoreError) -> &'static str {
    match e {
        StoreError::NotFound(_) => "not_found",
        StoreError::AlreadyExists(_) => "already_exists",
        StoreError::Conflict { .. } => "conflict",
        StoreError::OwnerMissing { .. } => "owner_missing",
        StoreError::Unavailable(_) => "unavailable",
        StoreError::Corrupt { .. } => "corrupt",
        StoreError::Internal(_) => "internal",
    }
}

pub struct MeteredStore {
    inner: Arc<dyn ResourceStore>,
    metrics: StoreMetrics,
}

impl MeteredStore {
    pub fn new(inner: Arc<dyn ResourceStore>, metrics: StoreMetrics) -> Self {
        Self { inner, metrics }
    }

    fn observe<T>(&self, op: &'static str, started: Instant, r: &Result<T, StoreError>) {
        self.metrics
            .0
            .observe(op, started, r.as_ref().err().map(error_label));
    }
}

#[async_trait]
impl ResourceStore for MeteredStore {
    async fn get(&self, key: &ResourceKey) -> Result<Option<Record>, StoreError> {
        let t = Instant::now();
        let r = self.inner.get(key).await;
        self.observe("get", t, &r);
        r
    }

    async fn list(&self, query: &ListQuery) -> Result<ListResult, StoreError> {
        let t = Instant::now();
        let r = self.inner.list(query).await;
        self.observe("list", t, &r);
        r
    }

    async fn snapshot(&self, selection: &Selection) -> Result<Vec<Record>, StoreError> {
        let t = Instant::now();
        let r = self.inner.snapshot(selection).await;
        self.observe("snapshot", t, &r);
        r
    }

    async fn write(&self, ops: Vec<WriteOp>) -> Result<Vec<WriteResult>, StoreError> {
        let t = Instant::now();
        let r = self.inner.write(ops).await;
        self.observe("write", t, &r);
        r
    }

    fn subscribe(&self) -> Subscription {
        self.inner.subscribe()
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let t = Instant::now();
        let r = self.inner.ping().await;
        self.observe("ping", t, &r);
        r
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{conformance, memory::MemoryStore};

    #[tokio::test]
    async fn conforms_and_counts_calls_and_errors() {
        let mut reg = Registry::with_prefix("meshplane");
        let metrics = StoreMetrics::register(&mut reg);
        let store = Arc::new(MeteredStore::new(
            Arc::new(MemoryStore::new()),
            metrics.clone(),
        ));
        conformance::run_all(store.clone()).await;
        let text = crate::runtime::metrics::encode(&reg).expect("encode");
        assert!(
            text.contains(r#"meshplane_store_operation_duration_seconds_count{op="write"}"#),
            "{text}"
        );
        // The conformance checks provoke conflicts and missing keys on purpose.
        assert!(
            text.contains(r#"meshplane_store_operation_errors_total{op="write",error="conflict"}"#),
            "{text}"
        );
    }
}
