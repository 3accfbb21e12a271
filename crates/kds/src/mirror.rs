//! What the peer holds, as this side believes it: key -> version. Diffs against it produce pushes
//! that contain only real changes, and a reconnect starts from the peer's own list, so nothing that
//! still exists is ever removed and re-created.

use std::{
    collections::{BTreeMap, HashMap},
    time::{Duration, Instant},
};

use meshplane_core::model::ResourceKey;

use crate::{
    proto,
    view::{Item, key_of, ref_of},
};

#[derive(Default)]
pub struct Mirror {
    held: HashMap<ResourceKey, String>,
    /// Rejected by the peer at this version; retried at the instant, or at once when the version changes.
    nacked: HashMap<ResourceKey, (String, Instant)>,
}

/// A change to send.
#[derive(Debug, PartialEq)]
pub enum Change {
    Upsert(Item),
    Remove(ResourceKey),
}

impl Mirror {
    /// Starts from the versions the peer reported; unknown refs are skipped.
    pub fn from_known(known: &[proto::KnownVersion]) -> Self {
        let held = known
            .iter()
            .filter_map(|k| {
                k.r#ref
                    .as_ref()
                    .and_then(|r| key_of(r).ok())
                    .map(|key| (key, k.version.clone()))
            })
            .collect();
        Self {
            held,
            nacked: HashMap::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.held.len()
    }

    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    fn nack_blocks(&self, key: &ResourceKey, version: &str, now: Instant) -> bool {
        self.nacked
            .get(key)
            .is_some_and(|(v, at)| v == version && now < *at)
    }

    /// Every difference between `current` (the full view) and what the peer holds.
    pub fn full_diff(&self, current: &BTreeMap<ResourceKey, Item>, now: Instant) -> Vec<Change> {
        let mut out = Vec::new();
        for (key, item) in current {
            if self.held.get(key) != Some(&item.version)
                && !self.nack_blocks(key, &item.version, now)
            {
                out.push(Change::Upsert(item.clone()));
            }
        }
        for key in self.held.keys() {
            if !current.contains_key(key) {
                out.push(Change::Remove(key.clone()));
            }
        }
        out
    }

    /// The change for one key whose current state is `current` (None = it no longer exists).
    pub fn diff_one(
        &self,
        key: &ResourceKey,
        current: Option<Item>,
        now: Instant,
    ) -> Option<Change> {
        match current {
            Some(item) if self.held.get(key) == Some(&item.version) => None,
            Some(item) if self.nack_blocks(key, &item.version, now) => None,
            Some(item) => Some(Change::Upsert(item)),
            None if self.held.contains_key(key) => Some(Change::Remove(key.clone())),
            None => None,
        }
    }

    /// Records changes as sent; the peer is assumed to hold them until it says otherwise.
    pub fn mark_sent(&mut self, changes: &[Change]) {
        for c in changes {
            match c {
                Change::Upsert(i) => {
                    self.held.insert(i.key.clone(), i.version.clone());
                }
                Change::Remove(k) => {
                    self.held.remove(k);
                }
            }
        }
    }

    /// The peer rejected `key` at `version`: it holds something else, and we retry after `backoff`.
    pub fn nacked(&mut self, key: &ResourceKey, version: &str, backoff: Duration, now: Instant) {
        self.held.remove(key);
        self.nacked
            .insert(key.clone(), (version.to_string(), now + backoff));
    }

    /// Keys whose retry time has come, cleared from the NACK list.
    pub fn due_retries(&mut self, now: Instant) -> Vec<ResourceKey> {
        let due: Vec<ResourceKey> = self
            .nacked
            .iter()
            .filter(|(_, (_, at))| now >= *at)
            .map(|(k, _)| k.clone())
            .collect();
        for k in &due {
            self.nacked.remove(k);
        }
        due
    }

    pub fn next_retry(&self) -> Option<Instant> {
        self.nacked.values().map(|(_, at)| *at).min()
    }

    /// The peer's view, for a Hello/Welcome.
    pub fn known(&self) -> Vec<proto::KnownVersion> {
        self.held
            .iter()
            .map(|(k, v)| proto::KnownVersion {
                r#ref: Some(ref_of(k)),
                version: v.clone(),
            })
            .collect()
    }
}

/// Splits changes into upserts and removal refs.
pub fn split(changes: &[Change]) -> (Vec<Item>, Vec<proto::ResourceRef>) {
    let mut ups = Vec::new();
    let mut rems = Vec::new();
    for c in changes {
        match c {
            Change::Upsert(i) => ups.push(i.clone()),
            Change::Remove(k) => rems.push(ref_of(k)),
        }
    }
    (ups, rems)
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshplane_core::model::ResourceKind;
    use serde_json::json;

    fn item(name: &str, v: i64) -> Item {
        Item::new(ResourceKey::mesh(name), Default::default(), json!({"v": v}))
    }

    #[test]
    fn reconnect_diff_keeps_what_exists() {
        let a = item("a", 1);
        let b = item("b", 1);
        let known = vec![
            proto::KnownVersion {
                r#ref: Some(ref_of(&a.key)),
                version: a.version.clone(),
            },
            proto::KnownVersion {
                r#ref: Some(ref_of(&b.key)),
                version: "stale".into(),
            },
            proto::KnownVersion {
                r#ref: Some(ref_of(&ResourceKey::mesh("gone"))),
                version: "x".into(),
            },
        ];
        let m = Mirror::from_known(&known);
        let c = item("c", 1);
        let current: BTreeMap<_, _> = [a.clone(), b.clone(), c.clone()]
            .into_iter()
            .map(|i| (i.key.clone(), i))
            .collect();
        let diff = m.full_diff(&current, Instant::now());
        // a is unchanged: neither removed nor re-sent.
        assert_eq!(
            diff,
            vec![
                Change::Upsert(b),
                Change::Upsert(c),
                Change::Remove(ResourceKey::mesh("gone"))
            ]
        );
    }

    #[test]
    fn nack_blocks_same_version_until_retry() {
        let mut m = Mirror::default();
        let a = item("a", 1);
        let now = Instant::now();
        m.mark_sent(&[Change::Upsert(a.clone())]);
        m.nacked(&a.key, &a.version, Duration::from_secs(5), now);
        assert_eq!(
            m.diff_one(&a.key, Some(a.clone()), now),
            None,
            "same version is not re-sent at once"
        );
        let a2 = item("a", 2);
        assert!(
            m.diff_one(&a2.key, Some(a2.clone()), now).is_some(),
            "a new version goes out at once"
        );
        assert!(m.due_retries(now).is_empty());
        assert_eq!(
            m.due_retries(now + Duration::from_secs(6)),
            vec![a.key.clone()]
        );
        assert!(
            m.diff_one(&a.key, Some(a.clone()), now + Duration::from_secs(6))
                .is_some()
        );
        let _ = ResourceKind::Mesh;
    }
}
