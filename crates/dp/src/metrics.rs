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

pub async fn serve(addr: std::net::SocketAddr, reg: Arc<Registry>) -> anyhow::Result<()> {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let reg = reg.clone();
            async move {
                let mut out = String::new();
                let _ = prometheus_client::encoding::text::encode(&mut out, &reg);
                out
            }
        }),
    );
    let l = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("--metrics-addr {addr}: {e}"))?;
    axum::serve(l, app).await?;
    Ok(())
}
