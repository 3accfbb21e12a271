//! Feeds the manager from the zone's store: Meshes and Dataplanes as they change, and a full snapshot
//! at start and whenever the store says events may have been missed.

use std::collections::{HashMap, HashSet};

use futures::FutureExt;
use meshplane_core::{
    manager::mesh_has_membership_rules,
    model::{DataplaneIdentity, Resource, ResourceKey, ResourceKind, Spec},
    store::{ListQuery, Received, Record, ResourceStore, Selection, StoreError},
};

use crate::CertManager;

async fn snapshot(store: &dyn ResourceStore, mgr: &CertManager) -> Result<(), StoreError> {
    let mut meshes = Vec::new();
    let mut open_meshes = HashSet::new();
    for rec in store.list(&ListQuery::all(ResourceKind::Mesh)).await?.items {
        if let Ok(r) = rec.to_resource()
            && let Spec::Mesh(m) = r.spec
        {
            if !mesh_has_membership_rules(&m) {
                open_meshes.insert(rec.key.name.clone());
            }
            meshes.push((rec.key.name.clone(), m));
        }
    }
    let mut dps = Vec::new();
    let mut stored = HashMap::new();
    for rec in store
        .list(&ListQuery::all(ResourceKind::Dataplane))
        .await?
        .items
    {
        if let Ok(r) = rec.to_resource()
            && let Spec::Dataplane(d) = &r.spec
        {
            let id = DataplaneIdentity::of(&r.meta.name, d, &r.meta.labels);
            let key = (rec.key.mesh.clone(), rec.key.name.clone());
            stored.insert(key.clone(), r.content_digest());
            dps.push((key.0, key.1, id));
        }
    }
    mgr.registrations().replace(open_meshes, stored);
    mgr.snapshot(meshes, dps);
    Ok(())
}

/// Runs until the store closes. Store errors are retried; they never stop the watcher. `ready` is
/// released once the manager has its first full picture.
pub async fn run(
    store: std::sync::Arc<dyn ResourceStore>,
    mgr: CertManager,
    ready: Option<meshplane_core::runtime::readiness::ReadyGuard>,
) {
    let mut sub = store.subscribe();
    let mut backoff = meshplane_core::runtime::backoff::Backoff::new(
        std::time::Duration::from_millis(200),
        std::time::Duration::from_secs(10),
    );
    while let Err(e) = snapshot(store.as_ref(), &mgr).await {
        tracing::warn!(error = %e, "could not read the zone's meshes and dataplanes; retrying");
        tokio::time::sleep(backoff.next_delay()).await;
    }
    drop(ready);
    loop {
        let first = match sub.recv().await {
            Received::Event(e) => e,
            Received::Resync => {
                resync(store.as_ref(), &mgr, &mut backoff).await;
                continue;
            }
            Received::Closed => return,
        };
        // Take every event already waiting as one batch: each changed key is read once, all in
        // one snapshot, so a burst of registrations is not fed to the manager one round trip at
        // a time.
        let mut keys = Keys::default();
        keys.add(first.key);
        let mut then = None;
        while keys.order.len() < BATCH {
            match sub.recv().now_or_never() {
                Some(Received::Event(e)) => keys.add(e.key),
                Some(other) => {
                    then = Some(other);
                    break;
                }
                None => break,
            }
        }
        // One consistent read for the whole burst: one statement instead of one per key.
        let sel = Selection {
            kinds: Vec::new(),
            keys: keys.order.clone(),
            ..Default::default()
        };
        let failed = match store.snapshot(&sel).await {
            Ok(recs) => {
                let mut found: std::collections::HashMap<ResourceKey, Record> =
                    recs.into_iter().map(|r| (r.key.clone(), r)).collect();
                for key in keys.order {
                    let resource = found.remove(&key).and_then(|r| r.to_resource().ok());
                    let digest = resource.as_ref().map(Resource::content_digest);
                    match (key.kind, resource) {
                        (
                            ResourceKind::Mesh,
                            Some(Resource {
                                spec: Spec::Mesh(m),
                                ..
                            }),
                        ) => {
                            let open = !mesh_has_membership_rules(&m);
                            mgr.registrations().mesh(key.name.clone(), open);
                            mgr.mesh_changed(key.name, Some(m))
                        }
                        (ResourceKind::Mesh, _) => {
                            mgr.registrations().mesh(key.name.clone(), false);
                            mgr.mesh_changed(key.name, None)
                        }
                        (
                            ResourceKind::Dataplane,
                            Some(Resource {
                                meta,
                                spec: Spec::Dataplane(d),
                            }),
                        ) => {
                            let id = DataplaneIdentity::of(&meta.name, &d, &meta.labels);
                            mgr.registrations().dataplane(
                                key.mesh.clone(),
                                key.name.clone(),
                                digest,
                            );
                            mgr.dataplane_changed(key.mesh, key.name, Some(id))
                        }
                        (ResourceKind::Dataplane, _) => {
                            mgr.registrations()
                                .dataplane(key.mesh.clone(), key.name.clone(), None);
                            mgr.dataplane_changed(key.mesh, key.name, None)
                        }
                        _ => {}
                    }
                }
                false
            }
            Err(err) => {
                tracing::warn!(error = %err, keys = keys.order.len(), "could not read changed resources; resyncing");
                true
            }
        };
        match then {
            Some(Received::Closed) => return,
            Some(Received::Resync) => resync(store.as_ref(), &mgr, &mut backoff).await,
            _ if failed => resync(store.as_ref(), &mgr, &mut backoff).await,
            _ => {}
        }
    }
}

/// The changed keys of a batch the manager cares about, each once, in the order they changed.
#[derive(Default)]
struct Keys {
    order: Vec<ResourceKey>,
    seen: std::collections::HashSet<ResourceKey>,
}

impl Keys {
    fn add(&mut self, k: ResourceKey) {
        if matches!(k.kind, ResourceKind::Mesh | ResourceKind::Dataplane)
            && self.seen.insert(k.clone())
        {
            self.order.push(k);
        }
    }
}

/// Most changed keys read per batch (one snapshot).
const BATCH: usize = 1024;

async fn resync(
    store: &dyn ResourceStore,
    mgr: &CertManager,
    backoff: &mut meshplane_core::runtime::backoff::Backoff,
) {
    while let Err(e) = snapshot(store, mgr).await {
        tracing::warn!(error = %e, "resync failed; retrying");
        tokio::time::sleep(backoff.next_delay()).await;
    }
}
