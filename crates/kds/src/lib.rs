//! Meshplane's global<->zone sync (KDS): the gRPC protocol, the global-side server and the zone-side
//! client. Stores are reached only through the core `ResourceStore` trait.
#![forbid(unsafe_code)]

pub mod proto {
    #![allow(clippy::all, unreachable_pub, missing_docs)]
    tonic::include_proto!("meshplane.kds.v1");
}

pub mod apply;
pub mod chunk;
pub mod client;
pub mod link;
pub mod metrics;
pub mod mirror;
pub mod server;
pub mod summary;
pub mod version;
pub mod view;

use std::time::Duration;

/// Serves the sync service on `listener` with TLS until `drain` is signaled; open streams end first.
pub async fn serve(
    listener: tokio::net::TcpListener,
    server: server::KdsServer,
    tls: &meshplane_core::runtime::tls::ServerTls,
    keepalive: Duration,
    drain: drain::Watch,
) -> Result<(), tonic::transport::Error> {
    let identity = tonic::transport::Identity::from_pem(&tls.cert_pem, &tls.key_pem);
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    let shutdown = drain.clone().signaled();
    let fut = tonic::transport::Server::builder()
        .tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))?
        .http2_keepalive_interval(Some(keepalive))
        .http2_keepalive_timeout(Some(keepalive))
        .tcp_keepalive(Some(keepalive))
        .add_service(server.service())
        .serve_with_incoming_shutdown(incoming, async move {
            let _release = shutdown.await;
        });
    drain.ignore_signaled().release_after(fut).await
}
