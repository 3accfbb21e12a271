//! Readiness earned at start-up: each dependency registers a guard, and the process is ready only when
//! every guard has been released (store migrated, CA answering, zone synced, …).

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

#[derive(Clone, Default)]
pub struct Readiness {
    pending: Arc<Mutex<BTreeMap<u64, String>>>,
    next: Arc<Mutex<u64>>,
}

/// Marks its task ready when released or dropped.
#[must_use = "the task is ready when this guard is dropped"]
pub struct ReadyGuard {
    id: u64,
    pending: Arc<Mutex<BTreeMap<u64, String>>>,
}

impl Readiness {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a task that must finish before the process is ready.
    pub fn register(&self, name: impl Into<String>) -> ReadyGuard {
        let id = {
            let mut n = self
                .next
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            *n += 1;
            *n
        };
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(id, name.into());
        ReadyGuard {
            id,
            pending: self.pending.clone(),
        }
    }

    /// Names of tasks still pending, sorted.
    pub fn pending(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        v.sort();
        v
    }

    pub fn is_ready(&self) -> bool {
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_empty()
    }
}

impl ReadyGuard {
    pub fn ready(self) {}
}

impl Drop for ReadyGuard {
    fn drop(&mut self) {
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_when_all_released() {
        let r = Readiness::new();
        let a = r.register("store");
        let b = r.register("kds");
        assert_eq!(r.pending(), vec!["kds", "store"]);
        a.ready();
        assert!(!r.is_ready());
        drop(b);
        assert!(r.is_ready());
    }
}
