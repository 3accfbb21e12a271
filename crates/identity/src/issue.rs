//! One issuance, run as a future outside the worker: ask the backend, then hand the certificate and
//! the insight change reporting it to the persister and wait for their batch to commit, so the
//! worker never waits on I/O.

use std::{sync::Arc, time::Duration};

use meshplane_core::{
    ca::{CaError, IssuedCert, LeafRequest, MeshCa},
    model::{
        Backend, DataplaneInsightSpec, Meta, Resource, ResourceKey, ResourceKind, Spec, TagSet,
        certificate::CertificateSummary, dataplane::DataplaneCertificateSpec,
    },
    store::WriteOp,
};
use sha2::Digest;
use tokio::sync::OwnedSemaphorePermit;

use crate::{
    Deps, insight,
    persist::{InsightChange, Persister},
    state::{CertKey, Identity, Profile},
};

/// Digest of everything a certificate depends on: a change means it must be re-issued.
pub(crate) fn fingerprint(
    key: &CertKey,
    backend: &meshplane_core::model::Backend,
    tags: &meshplane_core::model::TagSet,
) -> String {
    let doc = serde_json::json!({ "profile": format!("{:?}", key.profile), "backend": backend, "tags": tags });
    hex::encode(sha2::Sha256::digest(doc.to_string().as_bytes()))
}

/// What an entry wants issued.
#[derive(Clone, Debug)]
pub struct Order {
    pub backend: Backend,
    pub tags: TagSet,
    pub validity: Duration,
    pub fingerprint: String,
    /// Backends of the mesh (for the insight's `supportedBackends`).
    pub supported: Vec<String>,
}

pub struct Done {
    pub key: CertKey,
    pub generation: u64,
    pub fingerprint: String,
    pub backend: String,
    pub result: Result<Arc<Identity>, CaError>,
    pub elapsed: Duration,
}

/// How long one issuance may take when the backend sets no `dpCert.requestTimeout`.
pub const DEFAULT_ISSUE_TIMEOUT: Duration = Duration::from_secs(60);

async fn call_backend(deps: &Deps, key: &CertKey, order: &Order) -> Result<IssuedCert, CaError> {
    let mesh = key.mesh.as_str();
    let backend = &order.backend;
    let ca = deps.ca.get(backend.backend_type).ok_or_else(|| {
        CaError::config(
            mesh,
            &backend.name,
            format!("no {} backend is installed", backend.backend_type.name()),
        )
    })?;
    let ctx = MeshCa {
        mesh,
        loader: deps.loader.as_ref(),
    };
    let req = LeafRequest {
        mesh: mesh.to_string(),
        dataplane: key.dataplane.clone(),
        tags: order.tags.clone(),
        validity: order.validity,
    };
    let timeout = backend
        .dp_cert_request_timeout()
        .unwrap_or(DEFAULT_ISSUE_TIMEOUT);
    let call = async {
        match &key.profile {
            Profile::Mesh => ca.issue(&ctx, backend, &req).await,
            Profile::Svid(service) => ca.issue_svid(&ctx, backend, &req, service).await,
        }
    };
    match tokio::time::timeout(timeout, call).await {
        Ok(r) => r,
        Err(_) => Err(CaError::Transient {
            mesh: mesh.into(),
            backend: backend.name.clone(),
            message: format!("issuing took longer than {timeout:?} (dpCert.requestTimeout)"),
            retry_after: None,
        }),
    }
}

/// The write that persists an issued certificate (owned by its Dataplane).
fn persist_op(id: &Identity, regenerations: u64) -> WriteOp {
    let spec = DataplaneCertificateSpec {
        dataplane: id.key.dataplane.clone(),
        svid_service: match &id.key.profile {
            Profile::Mesh => None,
            Profile::Svid(s) => Some(s.clone()),
        },
        backend: id.backend.clone(),
        fingerprint: id.fingerprint.clone(),
        cert_pem: id.cert_pem.clone(),
        key_pem: id.key_pem.clone(),
        chain_pem: id.chain_pem.to_vec(),
        not_before: id.not_before,
        not_after: id.not_after,
        issued_at: id.issued_at,
        regenerations,
    };
    let r = Resource::new(
        Meta {
            name: id.key.record_name(),
            mesh: id.key.mesh.clone(),
            ..Default::default()
        },
        Spec::DataplaneCertificate(spec),
    );
    let owner = ResourceKey::in_mesh(
        ResourceKind::Dataplane,
        id.key.mesh.clone(),
        id.key.dataplane.clone(),
    );
    WriteOp::upsert(&r, Some(owner))
}

/// Issues, persists and reports one certificate. `slot` is the manager's permit for one backend
/// call: it is released as soon as the backend answered, so persisting never holds up issuance.
pub async fn run(
    deps: Deps,
    persist: Persister,
    key: CertKey,
    generation: u64,
    order: Order,
    regenerations: u64,
    slot: OwnedSemaphorePermit,
) -> Done {
    let started = tokio::time::Instant::now();
    let answer = call_backend(&deps, &key, &order).await;
    drop(slot);
    let result = answer.map(|c| {
        Arc::new(Identity {
            key: key.clone(),
            backend: order.backend.name.clone(),
            cert_pem: c.cert_pem,
            key_pem: c.key_pem,
            chain_pem: crate::state::intern_chain(c.chain_pem),
            not_before: c.not_before,
            not_after: c.not_after,
            issued_at: deps.clock.now(),
            fingerprint: order.fingerprint.clone(),
        })
    });
    let elapsed = started.elapsed();
    let now = deps.clock.now();
    match &result {
        Ok(id) => {
            let op = persist_op(id, regenerations + 1);
            // The certificate and the insight reporting it (mesh certificates only: SVIDs have
            // none), in one transaction.
            let change: Option<InsightChange> = (key.profile == Profile::Mesh).then(|| {
                let (backend, not_after) = (id.backend.clone(), id.not_after);
                let summary = match CertificateSummary::from_pem(&id.cert_pem, &id.chain_pem) {
                    Ok(s) => Some(s),
                    Err(e) => {
                        tracing::warn!(mesh = %key.mesh, dataplane = %key.dataplane, error = %e, "could not read the issued certificate for the insight");
                        None
                    }
                };
                let supported = order.supported.clone();
                Box::new(move |s: &mut DataplaneInsightSpec| {
                    insight::issued(
                        s.mtls.get_or_insert_with(Default::default),
                        &backend,
                        not_after,
                        now,
                        &supported,
                        summary,
                    );
                }) as InsightChange
            });
            if let Err(e) = persist
                .certificate(&key.mesh, &key.dataplane, op, change)
                .await
            {
                // Still served, and still pending: written once the store answers again.
                tracing::warn!(mesh = %key.mesh, dataplane = %key.dataplane, error = %e, "could not persist an issued certificate yet");
            }
        }
        Err(err) => {
            let msg = err.to_string();
            let supported = order.supported.clone();
            persist.insight(
                &key.mesh,
                &key.dataplane,
                Box::new(move |s: &mut DataplaneInsightSpec| {
                    insight::failed(
                        s.mtls.get_or_insert_with(Default::default),
                        &msg,
                        now,
                        &supported,
                    );
                }),
            );
        }
    }
    Done {
        key,
        generation,
        fingerprint: order.fingerprint,
        backend: order.backend.name,
        result,
        elapsed,
    }
}
