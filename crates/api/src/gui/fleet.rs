//! The console's in-memory index of every dataplane and its certificate status, kept current from
//! the store's change events, so that filtering, counting and paginating 10,000 dataplanes is a walk
//! over memory rather than a store read per refresh. Built on the first console request.

use std::{
    collections::BTreeMap,
    sync::{Arc, RwLock, Weak},
};

use futures::FutureExt;
use meshplane_core::{
    model::{
        MtlsInsight, ResourceKey, ResourceKind, Spec, dataplane::ZONE_TAG, resource::ZONE_LABEL,
    },
    store::{Received, Record, ResourceStore, Selection, StoreError, Subscription},
};

/// The label sync sets on a dataplane reported by a zone: its name in that zone.
const DISPLAY_NAME_LABEL: &str = "kuma.io/display-name";

/// One dataplane as the console lists it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DpRow {
    pub mesh: String,
    /// The name in this control plane's store (at global: `<zone>.<name>`).
    pub name: String,
    /// The name its zone knows it by.
    pub display: String,
    pub zone: Option<String>,
    pub services: Vec<String>,
    pub address: String,
    pub tags: BTreeMap<String, Vec<String>>,
    /// Whether its agent holds a connection to its zone now.
    pub online: bool,
    pub mtls: Option<MtlsInsight>,
    /// `false` until the Dataplane itself was seen (an insight can arrive first).
    pub(crate) has_dataplane: bool,
}

type Rows = BTreeMap<(String, String), DpRow>;

/// A shared, continuously updated view of the fleet.
#[derive(Clone)]
pub struct Fleet {
    rows: Arc<RwLock<Rows>>,
}

impl Fleet {
    /// Reads every Dataplane and DataplaneInsight and keeps following the store.
    pub async fn start(store: Arc<dyn ResourceStore>) -> Result<Self, StoreError> {
        // Subscribe first: nothing committed between the read and the loop is missed.
        let sub = store.subscribe();
        let rows = Arc::new(RwLock::new(read_all(store.as_ref()).await?));
        let weak = Arc::downgrade(&rows);
        tokio::spawn(follow(store, sub, weak));
        Ok(Self { rows })
    }

    /// Every dataplane, ordered by mesh then name.
    pub fn snapshot(&self) -> Vec<DpRow> {
        self.rows
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .filter(|r| r.has_dataplane)
            .cloned()
            .collect()
    }

    /// Runs `f` over the rows without copying them (for counts and filters over big fleets).
    pub fn with_rows<T>(&self, f: impl FnOnce(&mut dyn Iterator<Item = &DpRow>) -> T) -> T {
        let guard = self
            .rows
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut it = guard.values().filter(|r| r.has_dataplane);
        f(&mut it)
    }

    pub fn get(&self, mesh: &str, name: &str) -> Option<DpRow> {
        self.rows
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&(mesh.to_string(), name.to_string()))
            .filter(|r| r.has_dataplane)
            .cloned()
    }

    /// An index over given rows, not following any store (for page model tests).
    pub fn from_rows(rows: Vec<DpRow>) -> Self {
        let map = rows
            .into_iter()
            .map(|mut r| {
                r.has_dataplane = true;
                ((r.mesh.clone(), r.name.clone()), r)
            })
            .collect();
        Self {
            rows: Arc::new(RwLock::new(map)),
        }
    }
}

const KINDS: [ResourceKind; 2] = [ResourceKind::Dataplane, ResourceKind::DataplaneInsight];

async fn read_all(store: &dyn ResourceStore) -> Result<Rows, StoreError> {
    let recs = store.snapshot(&Selection::kinds(&KINDS)).await?;
    let mut rows = Rows::new();
    for rec in &recs {
        apply(&mut rows, &rec.key, Some(rec));
    }
    Ok(rows)
}

async fn follow(store: Arc<dyn ResourceStore>, mut sub: Subscription, rows: Weak<RwLock<Rows>>) {
    loop {
        let first = sub.recv().await;
        let Some(target) = rows.upgrade() else {
            return;
        };
        let mut keys: Vec<ResourceKey> = Vec::new();
        let mut resync = false;
        let mut note = |r: Received, keys: &mut Vec<ResourceKey>| match r {
            Received::Event(e) if KINDS.contains(&e.key.kind) => {
                if !keys.contains(&e.key) {
                    keys.push(e.key);
                }
                true
            }
            Received::Event(_) => true,
            Received::Resync => {
                resync = true;
                true
            }
            Received::Closed => false,
        };
        if !note(first, &mut keys) {
            tracing::debug!("the store closed; the console's dataplane index stops following it");
            return;
        }
        // Take the whole burst (a fleet starting writes thousands of insights) in one read.
        while keys.len() < 1024 {
            match sub.recv().now_or_never() {
                Some(r) => {
                    if !note(r, &mut keys) {
                        break;
                    }
                }
                None => break,
            }
        }
        if resync {
            match read_all(store.as_ref()).await {
                Ok(all) => {
                    *target
                        .write()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = all;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "the console's dataplane index could not re-read the store")
                }
            }
            continue;
        }
        if keys.is_empty() {
            continue;
        }
        let sel = Selection {
            kinds: Vec::new(),
            keys: keys.clone(),
            ..Default::default()
        };
        match store.snapshot(&sel).await {
            Ok(recs) => {
                let mut guard = target
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                for k in &keys {
                    apply(&mut guard, k, recs.iter().find(|r| &r.key == k));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "the console's dataplane index could not read changes")
            }
        }
    }
}

/// Applies the current record (or its absence) of `key` to the rows.
fn apply(rows: &mut Rows, key: &ResourceKey, rec: Option<&Record>) {
    let id = (key.mesh.clone(), key.name.clone());
    let Some(rec) = rec else {
        match key.kind {
            ResourceKind::Dataplane => {
                rows.remove(&id);
            }
            _ => {
                if let Some(r) = rows.get_mut(&id) {
                    r.mtls = None;
                    r.online = false;
                }
            }
        }
        return;
    };
    let Ok(res) = rec.to_resource() else {
        tracing::debug!(key = %key, "the console skips a record it cannot read");
        return;
    };
    let row = rows.entry(id).or_insert_with(|| DpRow {
        mesh: key.mesh.clone(),
        name: key.name.clone(),
        display: key.name.clone(),
        ..Default::default()
    });
    match res.spec {
        Spec::Dataplane(dp) => {
            row.has_dataplane = true;
            row.display = rec
                .labels
                .get(DISPLAY_NAME_LABEL)
                .cloned()
                .unwrap_or_else(|| key.name.clone());
            row.services = dp.services();
            row.address = dp.networking.address.clone().unwrap_or_default();
            row.tags = dp
                .tag_set()
                .into_iter()
                .map(|(k, v)| (k, v.into_iter().collect()))
                .collect();
            row.zone = rec
                .labels
                .get(ZONE_LABEL)
                .cloned()
                .or_else(|| row.tags.get(ZONE_TAG).and_then(|z| z.first().cloned()));
        }
        Spec::DataplaneInsight(i) => {
            row.online = i.is_online();
            row.mtls = i.mtls;
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshplane_core::{
        model::Resource,
        store::{WriteOp, memory::MemoryStore},
    };
    use serde_json::json;

    async fn put(store: &MemoryStore, v: serde_json::Value, owner: Option<ResourceKey>) {
        let r = Resource::from_universal(&v).expect("resource");
        store
            .write(vec![WriteOp::upsert(&r, owner)])
            .await
            .expect("write");
    }

    async fn insight(store: &MemoryStore, name: &str, backend: &str) {
        let spec = meshplane_core::model::DataplaneInsightSpec {
            subscriptions: vec![],
            mtls: Some(MtlsInsight {
                issued_backend: Some(backend.into()),
                certificate_regenerations: 1,
                ..Default::default()
            }),
        };
        let r = Resource::new(
            meshplane_core::model::Meta {
                name: name.into(),
                mesh: "default".into(),
                ..Default::default()
            },
            Spec::DataplaneInsight(spec),
        );
        store
            .write(vec![WriteOp::upsert(
                &r,
                Some(ResourceKey::in_mesh(
                    ResourceKind::Dataplane,
                    "default",
                    name,
                )),
            )])
            .await
            .expect("insight");
    }

    async fn eventually(f: impl Fn() -> bool) {
        for _ in 0..200 {
            if f() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("the index did not catch up");
    }

    #[tokio::test]
    async fn follows_creates_updates_and_deletes() {
        let store = Arc::new(MemoryStore::new());
        put(&store, json!({"type": "Mesh", "name": "default"}), None).await;
        let dp = |name: &str, svc: &str| {
            json!({"type": "Dataplane", "mesh": "default", "name": name,
                "networking": {"address": "10.0.0.1", "inbound": [{"port": 80, "tags": {"kuma.io/service": svc, "kuma.io/zone": "east"}}]}})
        };
        put(
            &store,
            dp("web-1", "web"),
            Some(ResourceKey::mesh("default")),
        )
        .await;
        let fleet = Fleet::start(store.clone()).await.expect("start");
        assert_eq!(fleet.snapshot().len(), 1);
        let row = fleet.get("default", "web-1").expect("row");
        assert_eq!(row.services, vec!["web"]);
        assert_eq!(row.zone.as_deref(), Some("east"), "from the inbound tag");
        assert!(row.mtls.is_none());

        insight(&store, "web-1", "vault-1").await;
        put(
            &store,
            dp("api-1", "api"),
            Some(ResourceKey::mesh("default")),
        )
        .await;
        eventually(|| {
            fleet.snapshot().len() == 2
                && fleet
                    .get("default", "web-1")
                    .and_then(|r| r.mtls)
                    .is_some_and(|m| m.issued_backend.as_deref() == Some("vault-1"))
        })
        .await;

        // An insight without its Dataplane is not listed.
        store
            .write(vec![WriteOp::Delete {
                key: ResourceKey::in_mesh(ResourceKind::Dataplane, "default", "web-1"),
                expected_version: None,
            }])
            .await
            .expect("delete");
        eventually(|| fleet.snapshot().len() == 1 && fleet.get("default", "web-1").is_none()).await;
        assert_eq!(fleet.with_rows(|it| it.count()), 1);
    }
}
