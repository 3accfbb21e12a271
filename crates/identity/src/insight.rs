//! The DataplaneInsight each dataplane has in its zone (and, by sync, at global): certificate status
//! written by the manager, connection subscriptions written by the dataplane server.

use chrono::{DateTime, Utc};
use meshplane_core::{
    model::{
        DataplaneInsightSpec, Meta, MtlsInsight, Resource, ResourceKey, ResourceKind, Spec,
        certificate::CertificateSummary,
    },
    store::{ResourceStore, ResourceStoreExt, StoreError, WriteOp},
};

/// Read-modify-write of one dataplane's insight with optimistic retries (two writers share it).
pub async fn update(
    store: &dyn ResourceStore,
    mesh: &str,
    dataplane: &str,
    f: impl Fn(&mut DataplaneInsightSpec),
) -> Result<(), StoreError> {
    update_with(store, mesh, dataplane, Vec::new(), f).await
}

/// Like [`update`], with `with` written in the same transaction (the manager persists an issued
/// certificate together with the insight that reports it: one commit instead of two). `with` must
/// be safe to repeat (upserts): it is re-sent when the insight changed concurrently.
pub async fn update_with(
    store: &dyn ResourceStore,
    mesh: &str,
    dataplane: &str,
    with: Vec<WriteOp>,
    f: impl Fn(&mut DataplaneInsightSpec),
) -> Result<(), StoreError> {
    let key = ResourceKey::in_mesh(ResourceKind::DataplaneInsight, mesh, dataplane);
    let owner = ResourceKey::in_mesh(ResourceKind::Dataplane, mesh, dataplane);
    for _ in 0..20 {
        let (mut spec, version) = match store.get_resource(&key).await? {
            Some((
                Resource {
                    spec: Spec::DataplaneInsight(s),
                    ..
                },
                v,
            )) => (s, Some(v)),
            _ => (DataplaneInsightSpec::default(), None),
        };
        let before = spec.clone();
        f(&mut spec);
        let unchanged = Some(&spec) == Some(&before) && version.is_some();
        if unchanged && with.is_empty() {
            return Ok(());
        }
        let r = Resource::new(
            Meta {
                name: dataplane.into(),
                mesh: mesh.into(),
                ..Default::default()
            },
            Spec::DataplaneInsight(spec),
        );
        let op = match version {
            Some(v) => WriteOp::update(&r, v),
            None => WriteOp::create(&r, Some(owner.clone())),
        };
        let mut ops = with.clone();
        if !unchanged {
            ops.push(op);
        }
        match store.write(ops).await {
            Ok(_) => return Ok(()),
            Err(StoreError::Conflict { .. } | StoreError::AlreadyExists(_)) => continue,
            // The dataplane is gone: nothing to report on.
            Err(StoreError::OwnerMissing { .. } | StoreError::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e),
        }
    }
    Err(StoreError::Internal(format!(
        "insight of {mesh}/{dataplane} kept changing"
    )))
}

/// Records a successful issuance. `certificate` is what the new certificate says (`None` when it
/// could not be read, which the insight then does not claim).
pub fn issued(
    m: &mut MtlsInsight,
    backend: &str,
    not_after: DateTime<Utc>,
    at: DateTime<Utc>,
    supported: &[String],
    certificate: Option<CertificateSummary>,
) {
    m.certificate = certificate;
    m.issued_backend = Some(backend.to_string());
    m.certificate_expiration_time = Some(not_after);
    m.last_certificate_regeneration = Some(at);
    m.certificate_regenerations += 1;
    m.supported_backends = supported.to_vec();
    m.last_error = None;
    m.last_error_time = None;
}

/// Records a failure; the certificate fields keep describing what is still served.
pub fn failed(m: &mut MtlsInsight, error: &str, at: DateTime<Utc>, supported: &[String]) {
    m.last_error = Some(error.to_string());
    m.last_error_time = Some(at);
    m.supported_backends = supported.to_vec();
}
