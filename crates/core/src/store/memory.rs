//! The in-memory store: the embedded default for a one-process start, and the reference behaviour the
//! PostgreSQL store is tested against.

use std::{collections::BTreeMap, sync::Mutex};

use async_trait::async_trait;
use chrono::Utc;

use super::{
    ChangeEvent, ChangeOp, EventHub, ListQuery, ListResult, Record, ResourceStore, Selection,
    StoreError, Subscription, WriteOp, WriteResult,
};
use crate::model::ResourceKey;

pub struct MemoryStore {
    records: Mutex<BTreeMap<ResourceKey, Record>>,
    events: EventHub,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        Self {
            records: Mutex::new(BTreeMap::new()),
            events: EventHub::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<ResourceKey, Record>> {
        // A panic while holding the lock cannot leave a half-applied batch (see `write`), so a
        // poisoned lock still guards consistent data.
        self.records
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Undo log entry: the previous value of a key (None = it did not exist).
type Undo = (ResourceKey, Option<Record>);

fn apply(
    map: &mut BTreeMap<ResourceKey, Record>,
    op: WriteOp,
    undo: &mut Vec<Undo>,
    events: &mut Vec<ChangeEvent>,
) -> Result<WriteResult, StoreError> {
    let now = Utc::now();
    match op {
        WriteOp::Create {
            key,
            spec,
            labels,
            owner,
        } => {
            if map.contains_key(&key) {
                return Err(StoreError::AlreadyExists(key));
            }
            if let Some(o) = &owner
                && !map.contains_key(o)
            {
                return Err(StoreError::OwnerMissing {
                    key,
                    owner: o.clone(),
                });
            }
            let rec = Record {
                key: key.clone(),
                version: 1,
                spec,
                labels,
                owner,
                creation_time: now,
                modification_time: now,
            };
            undo.push((key.clone(), None));
            map.insert(key.clone(), rec.clone());
            events.push(ChangeEvent {
                op: ChangeOp::Create,
                key,
                version: 1,
            });
            Ok(Some(rec))
        }
        WriteOp::Update {
            key,
            expected_version,
            spec,
            labels,
        } => {
            let Some(cur) = map.get(&key) else {
                return Err(StoreError::NotFound(key));
            };
            if cur.version != expected_version {
                return Err(StoreError::Conflict {
                    key,
                    expected: expected_version,
                    found: cur.version,
                });
            }
            let mut rec = cur.clone();
            undo.push((key.clone(), Some(cur.clone())));
            rec.version += 1;
            rec.spec = spec;
            rec.labels = labels;
            rec.modification_time = now;
            map.insert(key.clone(), rec.clone());
            events.push(ChangeEvent {
                op: ChangeOp::Update,
                key,
                version: rec.version,
            });
            Ok(Some(rec))
        }
        WriteOp::Upsert {
            key,
            spec,
            labels,
            owner,
        } => {
            if let Some(o) = &owner
                && !map.contains_key(o)
            {
                return Err(StoreError::OwnerMissing {
                    key,
                    owner: o.clone(),
                });
            }
            let prev = map.get(&key).cloned();
            let rec = match &prev {
                Some(cur) => Record {
                    version: cur.version + 1,
                    spec,
                    labels,
                    owner,
                    modification_time: now,
                    ..cur.clone()
                },
                None => Record {
                    key: key.clone(),
                    version: 1,
                    spec,
                    labels,
                    owner,
                    creation_time: now,
                    modification_time: now,
                },
            };
            let op = if prev.is_some() {
                ChangeOp::Update
            } else {
                ChangeOp::Create
            };
            undo.push((key.clone(), prev));
            map.insert(key.clone(), rec.clone());
            events.push(ChangeEvent {
                op,
                key,
                version: rec.version,
            });
            Ok(Some(rec))
        }
        WriteOp::Delete {
            key,
            expected_version,
        } => {
            let Some(cur) = map.get(&key) else {
                return Err(StoreError::NotFound(key));
            };
            if let Some(v) = expected_version
                && cur.version != v
            {
                return Err(StoreError::Conflict {
                    key,
                    expected: v,
                    found: cur.version,
                });
            }
            // Delete the owned subtree, children first, as ON DELETE CASCADE would.
            let mut doomed = vec![key.clone()];
            let mut i = 0;
            while i < doomed.len() {
                let parent = doomed[i].clone();
                doomed.extend(
                    map.values()
                        .filter(|r| r.owner.as_ref() == Some(&parent))
                        .map(|r| r.key.clone()),
                );
                i += 1;
            }
            for k in doomed.into_iter().rev() {
                if let Some(rec) = map.remove(&k) {
                    events.push(ChangeEvent {
                        op: ChangeOp::Delete,
                        key: k.clone(),
                        version: rec.version,
                    });
                    undo.push((k, Some(rec)));
                }
            }
            Ok(None)
        }
    }
}

#[async_trait]
impl ResourceStore for MemoryStore {
    async fn get(&self, key: &ResourceKey) -> Result<Option<Record>, StoreError> {
        Ok(self.lock().get(key).cloned())
    }

    async fn list(&self, q: &ListQuery) -> Result<ListResult, StoreError> {
        let map = self.lock();
        let matching: Vec<&Record> = map
            .values()
            .filter(|r| r.key.kind == q.kind && q.mesh.as_ref().is_none_or(|m| &r.key.mesh == m))
            .collect();
        let total = matching.len();
        // BTreeMap order is (kind, mesh, name): the order the PostgreSQL store uses too.
        let items = matching
            .into_iter()
            .skip(q.offset)
            .take(q.limit.unwrap_or(usize::MAX))
            .cloned()
            .collect();
        Ok(ListResult { items, total })
    }

    async fn snapshot(&self, sel: &Selection) -> Result<Vec<Record>, StoreError> {
        // One lock: a batch is applied under the same lock, so it is seen whole or not at all.
        let map = self.lock();
        let mut out: BTreeMap<ResourceKey, Record> = BTreeMap::new();
        for (kind, mesh) in &sel.kinds {
            for r in map
                .values()
                .filter(|r| r.key.kind == *kind && mesh.as_ref().is_none_or(|m| &r.key.mesh == m))
            {
                out.insert(r.key.clone(), r.clone());
            }
        }
        for k in &sel.keys {
            if let Some(r) = map.get(k) {
                out.insert(k.clone(), r.clone());
            }
        }
        if !sel.owned_by.is_empty() {
            for r in map
                .values()
                .filter(|r| r.owner.as_ref().is_some_and(|o| sel.owned_by.contains(o)))
            {
                out.insert(r.key.clone(), r.clone());
            }
        }
        Ok(out.into_values().collect())
    }

    async fn write(&self, ops: Vec<WriteOp>) -> Result<Vec<WriteResult>, StoreError> {
        let mut events = Vec::new();
        let mut out = Vec::with_capacity(ops.len());
        {
            let mut map = self.lock();
            let mut undo: Vec<Undo> = Vec::new();
            for op in ops {
                match apply(&mut map, op, &mut undo, &mut events) {
                    Ok(r) => out.push(r),
                    Err(e) => {
                        for (k, prev) in undo.into_iter().rev() {
                            match prev {
                                Some(r) => map.insert(k, r),
                                None => map.remove(&k),
                            };
                        }
                        return Err(e);
                    }
                }
            }
        }
        for e in events {
            self.events.publish(e);
        }
        Ok(out)
    }

    fn subscribe(&self) -> Subscription {
        self.events.subscribe()
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn describe(&self) -> String {
        "memory".into()
    }
}
