//! The memory store run through the shared store conformance suite.

use std::sync::Arc;

use super::{conformance, memory::MemoryStore};

#[tokio::test]
async fn memory_store_conforms() {
    conformance::run_all(Arc::new(MemoryStore::new())).await;
}
