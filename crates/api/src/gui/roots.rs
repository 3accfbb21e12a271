//! The roots each backend puts in a mesh's trust bundle, read through the backend (for Vault, its
//! CA chain) and cached briefly, so that a live-refreshing mesh page does not call Vault every few
//! seconds and a slow Vault cannot hold the page.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use meshplane_core::{
    ca::MeshCa,
    model::{Backend, certificate::CertificateSummary, certificate::summarize_roots},
};

use crate::ApiState;

/// How long an answer is reused.
const FRESH: Duration = Duration::from_secs(60);
/// How long a failure is reused before asking again.
const FRESH_ERROR: Duration = Duration::from_secs(15);
/// The page shows what it has after this long rather than wait for the backend.
const TIMEOUT: Duration = Duration::from_secs(5);

type Answer = Result<Vec<CertificateSummary>, String>;

#[derive(Default)]
pub struct RootsCache {
    /// By mesh and the backend's whole conf, so a changed conf is read anew.
    entries: Mutex<HashMap<(String, String), (Instant, Answer)>>,
}

impl RootsCache {
    pub async fn roots(&self, s: &ApiState, mesh: &str, backend: &Backend) -> Answer {
        let id = (
            mesh.to_string(),
            serde_json::to_string(backend).unwrap_or_default(),
        );
        if let Some((at, answer)) = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&id)
        {
            let fresh = if answer.is_ok() { FRESH } else { FRESH_ERROR };
            if at.elapsed() < fresh {
                return answer.clone();
            }
        }
        let answer = read(s, mesh, backend).await;
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Bounded by what exists: entries of changed confs go when they age out.
        entries.retain(|_, (at, _)| at.elapsed() < FRESH);
        entries.insert(id, (Instant::now(), answer.clone()));
        answer
    }
}

async fn read(s: &ApiState, mesh: &str, backend: &Backend) -> Answer {
    let Some(ca) = s.manager.ca().get(backend.backend_type) else {
        return Err(format!(
            "no {} backend is installed in this control plane",
            backend.backend_type.name()
        ));
    };
    let ctx = MeshCa {
        mesh,
        loader: s.manager.loader().as_ref(),
    };
    let pems = match tokio::time::timeout(TIMEOUT, ca.root_certs(&ctx, backend)).await {
        Ok(Ok(p)) => p,
        Ok(Err(e)) => return Err(e.message().to_string()),
        Err(_) => return Err(format!("the backend did not answer within {TIMEOUT:?}")),
    };
    let mut out = Vec::new();
    for pem in &pems {
        out.extend(summarize_roots(pem).map_err(|e| e.to_string())?);
    }
    Ok(out)
}
