//! Feeds the manager from the zone's store: Meshes and Dataplanes as they change, and a full snapshot
//! at start and whenever the store says events may have been missed.

use meshplane_core::{
    model::{ResourceKind, Spec},
    store::{ListQuery, Received, ResourceStore, StoreError},
};

use crate::CertManager;

async fn snapshot(store: &dyn ResourceStore, mgr: &CertManager) -> Result<(), StoreError> {
    let mut meshes = Vec::new();
    for rec in store.list(&ListQuery::all(ResourceKind::Mesh)).await?.items {
        if let Ok(r) = rec.to_resource()
            && let Spec::Mesh(m) = r.spec
        {
            meshes.push((rec.key.name.clone(), m));
        }
    }
    let mut dps = Vec::new();
    for rec in store
        .list(&ListQuery::all(ResourceKind::Dataplane))
        .await?
        .items
    {
        if let Ok(r) = rec.to_resource()
            && let Spec::Dataplane(d) = r.spec
        {
            dps.push((rec.key.mesh.clone(), rec.key.name.clone(), d));
        }
    }
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
        match sub.recv().await {
            Received::Event(e)
                if matches!(e.key.kind, ResourceKind::Mesh | ResourceKind::Dataplane) =>
            {
                let rec = match store.get(&e.key).await {
                    Ok(r) => r,
                    Err(err) => {
                        tracing::warn!(error = %err, key = %e.key, "could not read a changed resource; resyncing");
                        while let Err(e) = snapshot(store.as_ref(), &mgr).await {
                            tracing::warn!(error = %e, "resync failed; retrying");
                            tokio::time::sleep(backoff.next_delay()).await;
                        }
                        continue;
                    }
                };
                let spec = rec.and_then(|r| r.to_resource().ok()).map(|r| r.spec);
                match (e.key.kind, spec) {
                    (ResourceKind::Mesh, Some(Spec::Mesh(m))) => {
                        mgr.mesh_changed(e.key.name, Some(m))
                    }
                    (ResourceKind::Mesh, _) => mgr.mesh_changed(e.key.name, None),
                    (ResourceKind::Dataplane, Some(Spec::Dataplane(d))) => {
                        mgr.dataplane_changed(e.key.mesh, e.key.name, Some(d))
                    }
                    (ResourceKind::Dataplane, _) => {
                        mgr.dataplane_changed(e.key.mesh, e.key.name, None)
                    }
                    _ => {}
                }
            }
            Received::Event(_) => {}
            Received::Resync => {
                while let Err(e) = snapshot(store.as_ref(), &mgr).await {
                    tracing::warn!(error = %e, "resync failed; retrying");
                    tokio::time::sleep(backoff.next_delay()).await;
                }
            }
            Received::Closed => return,
        }
    }
}
