//! The agent's Prometheus metrics.

use std::sync::Arc;

use prometheus_client::{
    metrics::{counter::Counter, gauge::Gauge},
    registry::Registry,
};

#[derive(Clone, Default)]
pub struct Metrics {
    pub rotations: Counter,
    pub expiry: Gauge,
    pub connected: Gauge,
}

impl Metrics {
    pub fn register(reg: &mut Registry) -> Self {
        let m = Self::default();
        reg.register(
            "dp_certificate_rotations",
            "Certificates received from the zone",
            m.rotations.clone(),
        );
        reg.register(
            "dp_certificate_expiry_timestamp_seconds",
            "When the current certificate expires (Unix time)",
            m.expiry.clone(),
        );
        reg.register(
            "dp_connected",
            "1 while the identity stream to the zone is open",
            m.connected.clone(),
        );
        m
    }
}

/// Serves `/metrics` on `listener` (bound at start, so a bad `--metrics-addr` stops the start) until
/// `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    reg: Arc<Registry>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let reg = reg.clone();
            async move {
                match meshplane_core::runtime::metrics::encode(&reg) {
                    Ok(out) => axum::response::IntoResponse::into_response((
                        [(
                            axum::http::header::CONTENT_TYPE,
                            meshplane_core::runtime::metrics::OPENMETRICS,
                        )],
                        out,
                    )),
                    Err(e) => axum::response::IntoResponse::into_response((
                        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                        format!("could not encode metrics: {e}"),
                    )),
                }
            }
        }),
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}
