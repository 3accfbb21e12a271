//! The zone's dataplane server (Kuma's port 5678, TLS): Meshplane's dataplane API for the agent and
//! Envoy's Secret Discovery Service, both answering only for the dataplane a token names.
#![forbid(unsafe_code)]

mod auth;
mod dataplanes;
pub mod sds;
mod watch;

use std::sync::{Arc, Mutex};

use meshplane_core::{manager::ResourceManager, runtime::tls::ServerTls, tokens::Tokens};
use meshplane_identity::CertManager;

pub(crate) struct Inner {
    zone: String,
    instance_id: String,
    manager: Arc<ResourceManager>,
    certs: CertManager,
    tokens: Tokens,
    /// Handed to each stream so a drain waits for them; taken once the drain starts (then new
    /// streams are refused), so the server itself never holds the drain open.
    drain: Mutex<Option<drain::Watch>>,
    /// Requests reading or writing the store at once. A fleet registering together queues here, in
    /// order, instead of in the store's connection pool, whose acquire timeout would fail the
    /// excess and send every agent into retries that redo the work.
    store_slots: tokio::sync::Semaphore,
}

/// How many dataplane requests use the store at once (well under the pool's default 20
/// connections, which the certificate manager shares).
const STORE_SLOTS: usize = 8;

impl Inner {
    /// Waits for a turn at the store; the semaphore is never closed.
    async fn store_slot(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        self.store_slots.acquire().await.ok()
    }

    fn drain_watch(&self) -> Option<drain::Watch> {
        self.drain
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

#[derive(Clone)]
pub struct DpServer {
    inner: Arc<Inner>,
}

impl DpServer {
    pub fn new(
        zone: String,
        instance_id: String,
        manager: Arc<ResourceManager>,
        certs: CertManager,
        tokens: Tokens,
        drain: drain::Watch,
    ) -> Self {
        let inner = Arc::new(Inner {
            zone,
            instance_id,
            manager,
            certs,
            tokens,
            drain: Mutex::new(Some(drain.clone())),
            store_slots: tokio::sync::Semaphore::new(STORE_SLOTS),
        });
        let weak = Arc::downgrade(&inner);
        tokio::spawn(async move {
            let _release = drain.signaled().await;
            if let Some(i) = weak.upgrade() {
                i.drain
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .take();
            }
        });
        Self { inner }
    }

    /// Serves both services with TLS until `drain` is signaled.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        tls: &ServerTls,
        drain: drain::Watch,
    ) -> Result<(), tonic::transport::Error> {
        let identity = tonic::transport::Identity::from_pem(&tls.cert_pem, &tls.key_pem);
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        let shutdown = drain.clone().signaled();
        let dps = meshplane_dp_api::dp::dataplane_service_server::DataplaneServiceServer::new(
            dataplanes::Service {
                inner: self.inner.clone(),
            },
        );
        let sds = envoy_types::pb::envoy::service::secret::v3::secret_discovery_service_server::SecretDiscoveryServiceServer::new(sds::Service {
            inner: self.inner.clone(),
        });
        let fut = tonic::transport::Server::builder()
            .tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))?
            .http2_keepalive_interval(Some(std::time::Duration::from_secs(15)))
            .http2_keepalive_timeout(Some(std::time::Duration::from_secs(15)))
            .add_service(dps)
            .add_service(sds)
            .serve_with_incoming_shutdown(incoming, async move {
                let _release = shutdown.await;
            });
        drain.ignore_signaled().release_after(fut).await
    }
}
