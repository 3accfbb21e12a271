//! Meshplane's REST API: Kuma's paths and shapes for resources, overviews, health and metrics, shared
//! by the global and zone control planes. Resource rules live in the core `ResourceManager`.
#![forbid(unsafe_code)]

pub mod auth;
mod body;
mod error;
pub mod gui;
mod health;
mod list;
mod loopback;
pub mod metrics;
mod overview;
mod resources;
mod routes;
mod state;
pub mod tls;
pub mod tokens;

pub use error::ApiError;
pub use routes::router;
pub use state::{ApiState, ServerInfo};

use std::net::SocketAddr;

/// Largest request body accepted: a Mesh with inline certificates fits many times over, and the
/// largest Secret is 1 MiB before base64.
pub const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;

/// Serves `router` on `listener` (plain HTTP) and, when given, on the HTTPS listener, until `drain`
/// is signaled; then lets in-flight requests finish. Fails when either listener fails.
pub async fn serve(
    listener: tokio::net::TcpListener,
    https: Option<(
        tokio::net::TcpListener,
        std::sync::Arc<rustls::ServerConfig>,
    )>,
    router: axum::Router,
    drain: drain::Watch,
) -> std::io::Result<()> {
    let plain = serve_on(listener, router.clone(), drain.clone());
    match https {
        None => plain.await,
        Some((tcp, config)) => {
            use axum::serve::ListenerExt;
            // `tap_io` is what lets ConnectInfo<SocketAddr> (the loopback-admin check) see the
            // peer of a listener that is not axum's own.
            let tls = tls::TlsListener::new(tcp, config).tap_io(|_| ());
            // The console marks its cookie Secure for requests that came this way.
            let router = router.layer(axum::Extension(gui::Https));
            tokio::try_join!(plain, serve_on(tls, router, drain)).map(|_| ())
        }
    }
}

/// Serves only `/metrics` from `registry` on `listener` (`--metrics-addr`) until `drain` is
/// signaled.
pub async fn serve_metrics(
    listener: tokio::net::TcpListener,
    registry: std::sync::Arc<prometheus_client::registry::Registry>,
    drain: drain::Watch,
) -> std::io::Result<()> {
    let router = axum::Router::new()
        .route(
            "/metrics",
            axum::routing::get(move || health::encode_metrics(registry.clone())),
        )
        .fallback(|| async { ApiError::not_found("only /metrics is served here") });
    serve_on(listener, router, drain).await
}

async fn serve_on<L>(listener: L, router: axum::Router, drain: drain::Watch) -> std::io::Result<()>
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
    for<'a> SocketAddr: axum::extract::connect_info::Connected<axum::serve::IncomingStream<'a, L>>,
{
    tracing::info!(addr = ?listener.local_addr().ok(), "API server listening");
    let shutdown = drain.clone().signaled();
    let server = axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        let _release = shutdown.await;
    });
    // Hold shutdown open until every in-flight request has been answered.
    drain
        .ignore_signaled()
        .release_after(server.into_future())
        .await
}
