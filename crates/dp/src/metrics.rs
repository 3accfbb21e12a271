//! The agent's Prometheus metrics, and its health and readiness for probes (a Kubernetes sidecar's
//! startupProbe holds the application back until the certificate is on disk).

use std::sync::Arc;

use meshplane_dp_api::dp::IdentityUpdate;
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

/// Whether the agent is ready: its files hold a certificate that has not expired. A zone outage
/// does not make it unready while that certificate is valid (nothing is withdrawn for it).
fn readiness(state: &Option<IdentityUpdate>, now: i64) -> Result<String, String> {
    let cert = state
        .as_ref()
        .and_then(|u| u.mesh_certificate.as_ref())
        .ok_or_else(|| "no certificate yet".to_string())?;
    let until = chrono::DateTime::from_timestamp(cert.not_after_unix, 0)
        .map_or_else(|| cert.not_after_unix.to_string(), |t| t.to_rfc3339());
    if cert.not_after_unix <= now {
        return Err(format!("the certificate expired at {until}"));
    }
    Ok(format!("ready: certificate valid until {until}"))
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `listener` (bound at start, so a bad
/// `--metrics-addr` stops the start) until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    reg: Arc<Registry>,
    state: tokio::sync::watch::Receiver<Option<IdentityUpdate>>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    use axum::{http::StatusCode, response::IntoResponse};
    let ready = move || {
        let result = readiness(&state.borrow(), chrono::Utc::now().timestamp());
        async move {
            match result {
                Ok(text) => (StatusCode::OK, text).into_response(),
                Err(why) => (StatusCode::SERVICE_UNAVAILABLE, why).into_response(),
            }
        }
    };
    let app = axum::Router::new()
        .route("/healthz", axum::routing::get(|| async { "ok" }))
        .route("/readyz", axum::routing::get(ready))
        .route(
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

#[cfg(test)]
mod tests {
    use super::*;
    use meshplane_dp_api::dp::Certificate;

    #[test]
    fn ready_while_a_certificate_is_valid() {
        assert_eq!(readiness(&None, 100), Err("no certificate yet".into()));
        let without = IdentityUpdate::default();
        assert!(readiness(&Some(without), 100).is_err());
        let with = Some(IdentityUpdate {
            mesh_certificate: Some(Certificate {
                not_after_unix: 1_600_000_000,
                ..Default::default()
            }),
            ..Default::default()
        });
        assert_eq!(
            readiness(&with, 1_599_999_999),
            Ok("ready: certificate valid until 2020-09-13T12:26:40+00:00".into())
        );
        assert_eq!(
            readiness(&with, 1_600_000_000),
            Err("the certificate expired at 2020-09-13T12:26:40+00:00".into())
        );
    }
}
