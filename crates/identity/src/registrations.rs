//! What the zone's store holds for each Dataplane, as a digest, so the dataplane server can answer
//! a dataplane registering again unchanged (every agent on reconnect, a whole fleet after a zone
//! restart) without a store read.
//!
//! The store watcher is the only writer besides the dataplane server's own deregistrations, and it
//! writes what it read from the store, in the store's order: an entry is the store's state as of
//! the last event the watcher handled. The dataplane server still goes to the store when the digest
//! differs, the dataplane is unknown, or its Mesh has membership rules (which a changed Mesh may
//! now break), so a stale entry can only ever make it do the full check.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
};

pub type Digest = [u8; 32];

#[derive(Clone, Default)]
pub struct Registrations {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Default)]
struct Inner {
    stored: HashMap<(String, String), Digest>,
    /// Meshes that exist and have no membership rules.
    open_meshes: HashSet<String>,
}

impl Registrations {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// True when the store holds exactly this Dataplane (same digest) in a Mesh without
    /// membership rules: registering it again would write nothing and refuse nothing.
    pub fn unchanged(&self, mesh: &str, name: &str, digest: &Digest) -> bool {
        let inner = self.lock();
        inner.open_meshes.contains(mesh)
            && inner
                .stored
                .get(&(mesh.to_string(), name.to_string()))
                .is_some_and(|d| d == digest)
    }

    /// The dataplane server deleted it: the next registration must write.
    pub fn forget(&self, mesh: &str, name: &str) {
        self.lock()
            .stored
            .remove(&(mesh.to_string(), name.to_string()));
    }

    pub(crate) fn dataplane(&self, mesh: String, name: String, digest: Option<Digest>) {
        let mut inner = self.lock();
        match digest {
            Some(d) => inner.stored.insert((mesh, name), d),
            None => inner.stored.remove(&(mesh, name)),
        };
    }

    /// `open`: the Mesh exists and has no membership rules.
    pub(crate) fn mesh(&self, name: String, open: bool) {
        let mut inner = self.lock();
        if open {
            inner.open_meshes.insert(name);
        } else {
            inner.open_meshes.remove(&name);
        }
    }

    pub(crate) fn replace(
        &self,
        open_meshes: HashSet<String>,
        stored: HashMap<(String, String), Digest>,
    ) {
        let mut inner = self.lock();
        inner.open_meshes = open_meshes;
        inner.stored = stored;
    }

    pub fn len(&self) -> usize {
        self.lock().stored.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unchanged_needs_the_same_digest_in_an_open_mesh() {
        let r = Registrations::default();
        let d = [1u8; 32];
        r.dataplane("m".into(), "a".into(), Some(d));
        assert!(!r.unchanged("m", "a", &d), "the Mesh is not known yet");
        r.mesh("m".into(), true);
        assert!(r.unchanged("m", "a", &d));
        assert!(!r.unchanged("m", "a", &[2u8; 32]), "another digest");
        assert!(!r.unchanged("m", "b", &d), "another dataplane");
        r.mesh("m".into(), false);
        assert!(
            !r.unchanged("m", "a", &d),
            "the Mesh now has membership rules"
        );
        r.mesh("m".into(), true);
        r.forget("m", "a");
        assert!(!r.unchanged("m", "a", &d), "deregistered");
        r.dataplane("m".into(), "a".into(), Some(d));
        r.dataplane("m".into(), "a".into(), None);
        assert!(!r.unchanged("m", "a", &d), "deleted in the store");
        r.replace(
            HashSet::from(["n".to_string()]),
            HashMap::from([(("n".to_string(), "x".to_string()), d)]),
        );
        assert!(r.unchanged("n", "x", &d));
        assert!(!r.unchanged("m", "a", &d));
        assert_eq!(r.len(), 1);
    }
}
