//! Meshplane's REST API: Kuma's paths and shapes for resources, overviews, health and metrics, shared
//! by the global and zone control planes. Resource rules live in the core `ResourceManager`.
#![forbid(unsafe_code)]

pub mod auth;
mod body;
mod error;
mod health;
mod list;
mod overview;
mod resources;
mod routes;
mod state;
pub mod tokens;

pub use error::ApiError;
pub use routes::router;
pub use state::{ApiState, ServerInfo};

use std::net::SocketAddr;

/// Largest request body accepted: a Mesh with inline certificates fits many times over, and the
/// largest Secret is 1 MiB before base64.
pub const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;

/// Serves `router` on `listener` until `drain` is signaled, then lets in-flight requests finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    drain: drain::Watch,
) -> std::io::Result<()> {
    let addr: Option<SocketAddr> = listener.local_addr().ok();
    tracing::info!(addr = ?addr, "API server listening");
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
