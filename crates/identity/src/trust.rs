//! Each mesh's trust bundle: the roots of every backend, refreshed when the Mesh changes and retried
//! with backoff when a backend cannot answer (the last known roots stay in place meanwhile).

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use meshplane_core::{ca::MeshCa, model::MeshSpec, runtime::backoff::Backoff};
use tokio::sync::watch;

use crate::{Deps, state::MeshTrust};

/// Fetches every backend's roots until all answered once, publishing as it goes.
pub async fn refresh(deps: Deps, mesh: String, spec: MeshSpec, tx: watch::Sender<Arc<MeshTrust>>) {
    let backends: Vec<_> = spec.backends().to_vec();
    let enabled = spec.enabled_backend().map(|b| b.name.clone());
    // Start from what was published, so a failing backend keeps its last roots.
    let previous = tx.borrow().clone();
    let mut roots: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut missing: Vec<usize> = (0..backends.len()).collect();
    let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
    loop {
        let mut still = Vec::new();
        for i in missing {
            let b = &backends[i];
            let Some(ca) = deps.ca.get(b.backend_type) else {
                continue;
            };
            let ctx = MeshCa {
                mesh: &mesh,
                loader: deps.loader.as_ref(),
            };
            match tokio::time::timeout(b.root_chain_request_timeout(), ca.root_certs(&ctx, b)).await
            {
                Ok(Ok(r)) => {
                    roots.insert(b.name.clone(), r);
                }
                Ok(Err(e)) => {
                    tracing::warn!(mesh, backend = %b.name, error = %e, "could not read the backend's root certificates");
                    still.push(i);
                }
                Err(_) => {
                    tracing::warn!(mesh, backend = %b.name, "reading root certificates timed out (rootChain.requestTimeout)");
                    still.push(i);
                }
            }
        }
        let mut by_backend = BTreeMap::new();
        for b in &backends {
            // Not fetched yet: keep what this backend had before.
            if let Some(r) = roots
                .get(&b.name)
                .or_else(|| previous.by_backend.get(&b.name))
            {
                by_backend.insert(b.name.clone(), r.clone());
            }
        }
        let mut all: Vec<String> = Vec::new();
        for b in &backends {
            for r in by_backend.get(&b.name).into_iter().flatten() {
                if !all.contains(r) {
                    all.push(r.clone());
                }
            }
        }
        let trust = MeshTrust {
            mesh: mesh.clone(),
            roots: all,
            by_backend,
            backends: backends.iter().map(|b| b.name.clone()).collect(),
            enabled_backend: enabled.clone(),
        };
        tx.send_if_modified(|cur| {
            if **cur == trust {
                false
            } else {
                *cur = Arc::new(trust.clone());
                true
            }
        });
        if still.is_empty() {
            return;
        }
        missing = still;
        tokio::time::sleep(backoff.next_delay()).await;
    }
}
