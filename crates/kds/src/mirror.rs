//! What the peer holds, as this side believes it: key -> version. Diffs against it produce pushes
//! that contain only real changes, and a reconnect starts from the peer's own list, so nothing that
//! still exists is ever removed and re-created.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    time::{Duration, Instant},
};

use meshplane_core::model::ResourceKey;

use crate::{
    proto,
    view::{Item, is_owner, key_of, owner_of, ref_of},
};

/// Held-version marker for a key whose push the peer rejected: the peer holds *something* (an older
/// version, or the resource we asked it to remove) but not what we sent. Real versions are hex
/// digests, so this never equals one: the key's next diff sends the upsert or the Remove, whichever
/// the current state needs.
const UNKNOWN: &str = "<nacked>";

/// The version a NACK of a removal carries.
const REMOVAL: &str = "";

#[derive(Default)]
pub struct Mirror {
    held: HashMap<ResourceKey, String>,
    /// Rejected by the peer at this version (empty: a removal); retried at the instant, or at once
    /// when the current state changes (another version, or deleted after a rejected upsert).
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

    /// Starts from held versions already resolved to keys.
    pub fn from_held(held: HashMap<ResourceKey, String>) -> Self {
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
        let owners_sent = self.owners_sent(current.values(), now);
        for (key, item) in current {
            if self.held.get(key) != Some(&item.version)
                && (!self.nack_blocks(key, &item.version, now)
                    || sent_with_owner(key, &owners_sent))
            {
                out.push(Change::Upsert(item.clone()));
            }
        }
        for key in self.held.keys() {
            if !current.contains_key(key) && !self.nack_blocks(key, REMOVAL, now) {
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
            None if self.held.contains_key(key) && !self.nack_blocks(key, REMOVAL, now) => {
                Some(Change::Remove(key.clone()))
            }
            None => None,
        }
    }

    /// The changes for `keys` (absent from `current`: deleted), plus upserts of the other items in
    /// `current`, which were read because they travel with one of `keys`.
    pub fn diff_keys(
        &self,
        keys: &[ResourceKey],
        mut current: BTreeMap<ResourceKey, Item>,
        now: Instant,
    ) -> Vec<Change> {
        let mut out: Vec<Change> = keys
            .iter()
            .filter_map(|k| {
                let cur = current.remove(k);
                self.diff_one(k, cur, now)
            })
            .collect();
        let owners_sent: HashSet<ResourceKey> = out
            .iter()
            .filter_map(|c| match c {
                Change::Upsert(i) if is_owner(&i.key) => Some(i.key.clone()),
                _ => None,
            })
            .collect();
        for (key, item) in current {
            if self.held.get(&key) == Some(&item.version) {
                continue;
            }
            if !self.nack_blocks(&key, &item.version, now) || sent_with_owner(&key, &owners_sent) {
                out.push(Change::Upsert(item));
            }
        }
        out
    }

    /// Owners among `items` that a diff will upsert (held at another version, not NACK-blocked).
    fn owners_sent<'a>(
        &self,
        items: impl Iterator<Item = &'a Item>,
        now: Instant,
    ) -> HashSet<ResourceKey> {
        items
            .filter(|i| {
                is_owner(&i.key)
                    && self.held.get(&i.key) != Some(&i.version)
                    && !self.nack_blocks(&i.key, &i.version, now)
            })
            .map(|i| i.key.clone())
            .collect()
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

    /// The peer rejected `key` at `version` (empty for a removal): it holds something else, and we
    /// retry after `backoff`. The key stays held, at a version matching nothing, so the retry (or a
    /// later change) re-sends the upsert or, if the resource is gone by then, the Remove.
    pub fn nacked(&mut self, key: &ResourceKey, version: &str, backoff: Duration, now: Instant) {
        self.held.insert(key.clone(), UNKNOWN.to_string());
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

/// A NACK-blocked resource goes again, at once, when its owner goes: most likely it was refused
/// because the owner was missing (a Secret that arrived before its Mesh).
fn sent_with_owner(key: &ResourceKey, owners_sent: &HashSet<ResourceKey>) -> bool {
    owner_of(key).is_some_and(|o| owners_sent.contains(&o))
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

    #[test]
    fn nacked_removal_is_retried() {
        let mut m = Mirror::default();
        let a = item("a", 1);
        let now = Instant::now();
        let later = now + Duration::from_secs(6);
        m.mark_sent(&[Change::Upsert(a.clone())]);
        m.mark_sent(&[Change::Remove(a.key.clone())]);
        // The peer's store failed briefly: it NACKs the removal (removals carry no version).
        m.nacked(&a.key, "", Duration::from_secs(5), now);
        assert_eq!(
            m.diff_one(&a.key, None, now),
            None,
            "not re-sent before the backoff"
        );
        assert!(m.full_diff(&BTreeMap::new(), now).is_empty());
        assert_eq!(m.due_retries(later), vec![a.key.clone()]);
        assert_eq!(
            m.diff_one(&a.key, None, later),
            Some(Change::Remove(a.key.clone())),
            "the retry sends the removal again"
        );
        assert_eq!(
            m.full_diff(&BTreeMap::new(), later),
            vec![Change::Remove(a.key.clone())],
            "a resync sends it too"
        );
        m.mark_sent(&[Change::Remove(a.key.clone())]);
        assert!(m.is_empty());
    }

    #[test]
    fn nacked_upsert_then_deleted_sends_remove() {
        let a1 = item("a", 1);
        let a2 = item("a", 2);
        let now = Instant::now();
        let later = now + Duration::from_secs(6);
        let nacked_at_v2 = || {
            let mut m = Mirror::default();
            m.mark_sent(&[Change::Upsert(a1.clone())]);
            m.mark_sent(&[Change::Upsert(a2.clone())]);
            // The peer keeps v1 and rejects v2.
            m.nacked(&a2.key, &a2.version, Duration::from_secs(5), now);
            m
        };

        // Deleted before the retry: the deletion event sends the Remove at once.
        let mut m = nacked_at_v2();
        assert_eq!(
            m.diff_one(&a2.key, None, now),
            Some(Change::Remove(a2.key.clone()))
        );
        m.mark_sent(&[Change::Remove(a2.key.clone())]);
        assert_eq!(m.due_retries(later), vec![a2.key.clone()]);
        assert_eq!(
            m.diff_one(&a2.key, None, later),
            None,
            "nothing left to send"
        );

        // Only the retry sees the deletion (or a resync does): it sends the Remove.
        let mut m = nacked_at_v2();
        assert_eq!(m.due_retries(later), vec![a2.key.clone()]);
        assert_eq!(
            m.diff_one(&a2.key, None, later),
            Some(Change::Remove(a2.key.clone()))
        );
        let m = nacked_at_v2();
        assert_eq!(
            m.full_diff(&BTreeMap::new(), now),
            vec![Change::Remove(a2.key.clone())]
        );

        // Still present at the retry: the upsert goes again.
        let mut m = nacked_at_v2();
        assert_eq!(m.due_retries(later), vec![a2.key.clone()]);
        assert_eq!(
            m.diff_one(&a2.key, Some(a2.clone()), later),
            Some(Change::Upsert(a2.clone()))
        );
    }

    #[test]
    fn a_secret_refused_for_its_missing_mesh_goes_again_with_the_mesh() {
        let now = Instant::now();
        let secret = Item::new(
            ResourceKey::in_mesh(ResourceKind::Secret, "m", "cert"),
            Default::default(),
            json!({"data": "YQ=="}),
        );
        let mesh = item("m", 1);
        let mut mirror = Mirror::default();
        mirror.mark_sent(&[Change::Upsert(secret.clone())]);
        mirror.nacked(&secret.key, &secret.version, Duration::from_secs(60), now);

        // Alone, it waits out its backoff.
        let current: BTreeMap<_, _> = [(secret.key.clone(), secret.clone())].into();
        assert_eq!(
            mirror.diff_keys(std::slice::from_ref(&secret.key), current.clone(), now),
            vec![]
        );
        assert_eq!(mirror.full_diff(&current, now), vec![]);

        // With its Mesh, at once: from events (read as the Mesh's companion) and in a full diff.
        let mut with_mesh = current.clone();
        with_mesh.insert(mesh.key.clone(), mesh.clone());
        assert_eq!(
            mirror.diff_keys(std::slice::from_ref(&mesh.key), with_mesh.clone(), now),
            vec![Change::Upsert(mesh.clone()), Change::Upsert(secret.clone())]
        );
        let full = mirror.full_diff(&with_mesh, now);
        assert!(
            full.contains(&Change::Upsert(secret.clone())) && full.contains(&Change::Upsert(mesh)),
            "{full:?}"
        );
    }
}
