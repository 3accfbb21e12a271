//! Envoy's Secret Discovery Service, so an Envoy sidecar can take its identity from the zone directly:
//! `identity_cert:secret:<mesh>` (certificate and key) and `mesh_ca:secret:<mesh>` (the roots of all
//! the mesh's backends). The dataplane is the one its token names; it can ask only for its own mesh.

use std::{pin::Pin, sync::Arc};

use envoy_types::pb::{
    envoy::{
        config::core::v3::{DataSource, data_source::Specifier},
        extensions::transport_sockets::tls::v3::{
            CertificateValidationContext, Secret, TlsCertificate, secret,
        },
        service::{
            discovery::v3::{
                DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
            },
            secret::v3::secret_discovery_service_server::SecretDiscoveryService,
        },
    },
    google::protobuf::Any,
};
use futures::Stream;
use meshplane_identity::{CertKey, CertState, MeshTrust};
use prost::{Message, Name};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::{Inner, auth};

pub const IDENTITY_PREFIX: &str = "identity_cert:secret:";
pub const CA_PREFIX: &str = "mesh_ca:secret:";

fn inline(pem: &str) -> Option<DataSource> {
    Some(DataSource {
        specifier: Some(Specifier::InlineBytes(pem.as_bytes().to_vec())),
        ..Default::default()
    })
}

/// The secrets named in `names` that this dataplane may have and that exist now.
fn secrets(
    names: &[String],
    mesh: &str,
    cert: &CertState,
    trust: &MeshTrust,
) -> Result<Vec<Secret>, Status> {
    let mut out = Vec::new();
    for n in names {
        if let Some(m) = n.strip_prefix(IDENTITY_PREFIX) {
            if m != mesh {
                return Err(Status::permission_denied(format!(
                    "secret {n:?} belongs to another mesh"
                )));
            }
            if let Some(id) = cert.identity() {
                out.push(Secret {
                    name: n.clone(),
                    r#type: Some(secret::Type::TlsCertificate(TlsCertificate {
                        certificate_chain: inline(&id.cert_pem),
                        private_key: inline(&id.key_pem),
                        ..Default::default()
                    })),
                });
            }
        } else if let Some(m) = n.strip_prefix(CA_PREFIX) {
            if m != mesh {
                return Err(Status::permission_denied(format!(
                    "secret {n:?} belongs to another mesh"
                )));
            }
            if !trust.roots.is_empty() {
                out.push(Secret {
                    name: n.clone(),
                    r#type: Some(secret::Type::ValidationContext(
                        CertificateValidationContext {
                            trusted_ca: inline(&trust.roots.join("\n")),
                            ..Default::default()
                        },
                    )),
                });
            }
        } else {
            return Err(Status::not_found(format!(
                "unknown secret {n:?}: expected {IDENTITY_PREFIX}<mesh> or {CA_PREFIX}<mesh>"
            )));
        }
    }
    Ok(out)
}

fn response(secrets: Vec<Secret>, version: u64, nonce: u64) -> DiscoveryResponse {
    DiscoveryResponse {
        version_info: version.to_string(),
        resources: secrets
            .iter()
            .map(|s| Any {
                type_url: Secret::type_url(),
                value: s.encode_to_vec(),
            })
            .collect(),
        type_url: Secret::type_url(),
        nonce: nonce.to_string(),
        ..Default::default()
    }
}

pub struct Service {
    pub(crate) inner: Arc<Inner>,
}

#[tonic::async_trait]
impl SecretDiscoveryService for Service {
    type StreamSecretsStream =
        Pin<Box<dyn Stream<Item = Result<DiscoveryResponse, Status>> + Send>>;
    type DeltaSecretsStream =
        Pin<Box<dyn Stream<Item = Result<DeltaDiscoveryResponse, Status>> + Send>>;

    async fn delta_secrets(
        &self,
        _: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaSecretsStream>, Status> {
        Err(Status::unimplemented(
            "use StreamSecrets (state of the world) or FetchSecrets",
        ))
    }

    async fn fetch_secrets(
        &self,
        req: Request<DiscoveryRequest>,
    ) -> Result<Response<DiscoveryResponse>, Status> {
        let claims = auth::dataplane(&self.inner.tokens, req.metadata()).await?;
        let names = req.into_inner().resource_names;
        let mut cert = self
            .inner
            .certs
            .watch(&CertKey::mesh_cert(&claims.mesh, &claims.name));
        let trust = self.inner.certs.trust(&claims.mesh);
        // A fetch wants an answer now; give the first issuance a moment.
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            cert.wait_for(|s| !matches!(s, CertState::Pending)),
        )
        .await;
        let (c, t) = (cert.borrow().clone(), trust.borrow().clone());
        let s = secrets(&names, &claims.mesh, &c, &t)?;
        Ok(Response::new(response(s, 1, 1)))
    }

    async fn stream_secrets(
        &self,
        req: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamSecretsStream>, Status> {
        let claims = auth::dataplane(&self.inner.tokens, req.metadata()).await?;
        let Some(drain) = self.inner.drain_watch() else {
            return Err(Status::unavailable("the zone is shutting down"));
        };
        let mut inbound = req.into_inner();
        let mut cert = self
            .inner
            .certs
            .watch(&CertKey::mesh_cert(&claims.mesh, &claims.name));
        let mut trust = self.inner.certs.trust(&claims.mesh);
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            let drained = drain.signaled();
            tokio::pin!(drained);
            let mut names: Vec<String> = Vec::new();
            let (mut version, mut nonce) = (0u64, 0u64);
            let mut sent: Option<Vec<Secret>> = None;
            loop {
                if !names.is_empty() {
                    let current = {
                        let (c, t) = (
                            cert.borrow_and_update().clone(),
                            trust.borrow_and_update().clone(),
                        );
                        secrets(&names, &claims.mesh, &c, &t)
                    };
                    match current {
                        Ok(s) if sent.as_ref() != Some(&s) && !s.is_empty() => {
                            version += 1;
                            nonce += 1;
                            if tx
                                .send(Ok(response(s.clone(), version, nonce)))
                                .await
                                .is_err()
                            {
                                return;
                            }
                            sent = Some(s);
                        }
                        Ok(_) => {}
                        Err(st) => {
                            let _ = tx.send(Err(st)).await;
                            return;
                        }
                    }
                }
                tokio::select! {
                    m = inbound.message() => match m {
                        Ok(Some(r)) => {
                            if let Some(err) = &r.error_detail {
                                tracing::warn!(mesh = %claims.mesh, dataplane = %claims.name, nonce = %r.response_nonce, reason = %err.message, "Envoy rejected a secret");
                            }
                            if r.resource_names != names {
                                names = r.resource_names;
                                // A new subscription gets an answer even if nothing else changed.
                                sent = None;
                            }
                        }
                        _ => return,
                    },
                    r = cert.changed() => if r.is_err() { return },
                    r = trust.changed() => if r.is_err() { return },
                    _release = &mut drained => return,
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
