//! The dataplane API: register, deregister, and the identity stream.

use std::{pin::Pin, sync::Arc};

use chrono::Utc;
use futures::Stream;
use meshplane_core::{
    manager::{ApplyOptions, DeleteOptions, ManagerError},
    model::{
        DataplaneIdentity, ResourceKey, ResourceKind, Spec,
        dataplane::{DiscoverySubscription, SERVICE_TAG},
    },
    store::ResourceStoreExt,
    tokens::DataplaneClaims,
};
use meshplane_dp_api::dp::{self, IdentityUpdate};
use meshplane_identity::{CertKey, Profile, insight};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::{Inner, auth, watch::identity_stream};

fn manager_status(e: ManagerError) -> Status {
    match e {
        ManagerError::Invalid(v) => {
            Status::invalid_argument(format!("dataplane is not valid: {v}"))
        }
        ManagerError::NotFound(k) => Status::not_found(format!("{k} not found")),
        ManagerError::Conflict(m) => Status::aborted(m),
        ManagerError::ReadOnly(m) => Status::permission_denied(m),
        ManagerError::Unavailable(m) => Status::unavailable(m),
        ManagerError::Internal(m) => Status::internal(m),
    }
}

/// The token may only register the dataplane it names, with the service it names: the services
/// of the identity its certificates would carry (inbounds, gateway, or `kuma.io/workload`).
fn check_binding(
    claims: &DataplaneClaims,
    mesh: &str,
    name: &str,
    services: &[String],
) -> Result<(), Status> {
    if claims.mesh != mesh || claims.name != name {
        tracing::warn!(token_mesh = %claims.mesh, token_name = %claims.name, mesh, dataplane = name, "dataplane refused: token is for another dataplane");
        return Err(Status::permission_denied(format!(
            "the dataplane token is for {}/{}, not {mesh}/{name}",
            claims.mesh, claims.name
        )));
    }
    if let Some(allowed) = claims.tags.get(SERVICE_TAG)
        && services.is_empty()
    {
        tracing::warn!(mesh, dataplane = name, token_service = %allowed, "dataplane refused: it has no service and the token names one");
        return Err(Status::permission_denied(format!(
            "dataplane has no tag {SERVICE_TAG:?} required by the token"
        )));
    }
    if let Some(allowed) = claims.tags.get(SERVICE_TAG)
        && let Some(other) = services.iter().find(|s| *s != allowed)
    {
        tracing::warn!(mesh, dataplane = name, token_service = %allowed, service = %other, "dataplane refused: token is for another service");
        return Err(Status::permission_denied(format!(
            "the dataplane token is for service {allowed:?}, not {other:?}"
        )));
    }
    Ok(())
}

pub struct Service {
    pub(crate) inner: Arc<Inner>,
}

#[tonic::async_trait]
impl dp::dataplane_service_server::DataplaneService for Service {
    async fn register(
        &self,
        req: Request<dp::RegisterRequest>,
    ) -> Result<Response<dp::RegisterResponse>, Status> {
        let claims = auth::dataplane(&self.inner.tokens, req.metadata()).await?;
        let body = req.into_inner().dataplane;
        let text = std::str::from_utf8(&body)
            .map_err(|_| Status::invalid_argument("the dataplane is not UTF-8"))?;
        let doc = meshplane_core::format::parse_yaml(text)
            .map_err(|e| Status::invalid_argument(format!("could not parse the dataplane: {e}")))?;
        let mut r = meshplane_core::model::Resource::from_universal(&doc)
            .map_err(|e| Status::invalid_argument(format!("dataplane is not valid: {e}")))?;
        let Spec::Dataplane(spec) = &mut r.spec else {
            return Err(Status::invalid_argument(format!(
                "expected a Dataplane, got {}",
                r.kind()
            )));
        };
        let identity = DataplaneIdentity::of(&r.meta.name, spec, &r.meta.labels);
        check_binding(&claims, &r.meta.mesh, &r.meta.name, identity.services())?;
        spec.stamp_zone(&self.inner.zone);
        let (mesh, name) = (r.meta.mesh.clone(), r.meta.name.clone());
        // The store already holds exactly this (as the store watcher last saw it) and the Mesh has
        // no membership rules to judge it by: applying it would write and refuse nothing, so a
        // fleet reconnecting after a zone restart costs no store read per dataplane.
        if self
            .inner
            .certs
            .registrations()
            .unchanged(&mesh, &name, &r.content_digest())
        {
            tracing::info!(mesh, dataplane = name, "dataplane registered (unchanged)");
            return Ok(Response::new(dp::RegisterResponse {
                mesh,
                name,
                zone: self.inner.zone.clone(),
            }));
        }
        let _slot = self.inner.store_slot().await;
        self.inner
            .manager
            .apply(r, ApplyOptions::default())
            .await
            .map_err(manager_status)?;
        tracing::info!(mesh, dataplane = name, "dataplane registered");
        Ok(Response::new(dp::RegisterResponse {
            mesh,
            name,
            zone: self.inner.zone.clone(),
        }))
    }

    async fn deregister(
        &self,
        req: Request<dp::DeregisterRequest>,
    ) -> Result<Response<dp::DeregisterResponse>, Status> {
        let claims = auth::dataplane(&self.inner.tokens, req.metadata()).await?;
        let key = ResourceKey::in_mesh(
            ResourceKind::Dataplane,
            claims.mesh.clone(),
            claims.name.clone(),
        );
        // Before the delete: a registration after it must write again.
        self.inner
            .certs
            .registrations()
            .forget(&claims.mesh, &claims.name);
        let _slot = self.inner.store_slot().await;
        match self
            .inner
            .manager
            .delete(&key, DeleteOptions::default())
            .await
        {
            Ok(()) | Err(ManagerError::NotFound(_)) => {
                tracing::info!(mesh = %claims.mesh, dataplane = %claims.name, "dataplane deregistered");
                Ok(Response::new(dp::DeregisterResponse {}))
            }
            Err(e) => Err(manager_status(e)),
        }
    }

    type WatchIdentityStream = Pin<Box<dyn Stream<Item = Result<IdentityUpdate, Status>> + Send>>;

    async fn watch_identity(
        &self,
        req: Request<dp::WatchIdentityRequest>,
    ) -> Result<Response<Self::WatchIdentityStream>, Status> {
        let claims = auth::dataplane(&self.inner.tokens, req.metadata()).await?;
        let want_svids = req.into_inner().svids;
        let key = ResourceKey::in_mesh(
            ResourceKind::Dataplane,
            claims.mesh.clone(),
            claims.name.clone(),
        );
        // A reconnecting dataplane is known to the certificate manager: no store read. One that
        // just registered may not have reached it yet; the store decides then.
        let identity = match self.inner.certs.dataplane(&claims.mesh, &claims.name) {
            Some(d) => d,
            None => {
                let _slot = self.inner.store_slot().await;
                match self.inner.manager.store().get_resource(&key).await {
                    Ok(Some((r, _))) => match &r.spec {
                        Spec::Dataplane(d) => std::sync::Arc::new(DataplaneIdentity::of(
                            &r.meta.name,
                            d,
                            &r.meta.labels,
                        )),
                        _ => return Err(Status::internal("stored dataplane has another kind")),
                    },
                    Ok(None) => {
                        return Err(Status::failed_precondition(format!(
                            "dataplane {}/{} is not registered: call Register first",
                            claims.mesh, claims.name
                        )));
                    }
                    Err(e) => return Err(Status::unavailable(e.to_string())),
                }
            }
        };
        let Some(drain) = self.inner.drain_watch() else {
            return Err(Status::unavailable("the zone is shutting down"));
        };
        let mut keys = vec![CertKey::mesh_cert(&claims.mesh, &claims.name)];
        if want_svids {
            keys.extend(identity.services().iter().map(|s| CertKey {
                mesh: claims.mesh.clone(),
                dataplane: claims.name.clone(),
                profile: Profile::Svid(s.clone()),
            }));
        }
        let (tx, rx) = mpsc::channel(4);
        let inner = self.inner.clone();
        let (mesh, name) = (claims.mesh.clone(), claims.name.clone());
        let sub_id = uuid::Uuid::new_v4().to_string();
        let persist = inner.certs.persister().clone();
        // Recorded in memory and written with the next batch: a fleet reconnecting costs no
        // store write per connection.
        persist.insight(
            &mesh,
            &name,
            Box::new({
                let sub = DiscoverySubscription {
                    id: sub_id.clone(),
                    control_plane_instance_id: inner.instance_id.clone(),
                    connect_time: Utc::now(),
                    disconnect_time: None,
                };
                move |s| insight::connected(s, sub)
            }),
        );
        tracing::info!(
            mesh,
            dataplane = name,
            svids = want_svids,
            "dataplane watching its identity"
        );
        tokio::spawn(async move {
            identity_stream(&inner.certs, keys, tx, drain).await;
            let now = Utc::now();
            persist.insight(
                &mesh,
                &name,
                Box::new(move |s| insight::disconnected(s, &sub_id, now)),
            );
            tracing::info!(
                mesh,
                dataplane = name,
                "dataplane stopped watching its identity"
            );
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
