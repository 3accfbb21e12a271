//! `GET /` (who is this), `/healthz` (the process runs), `/readyz` (it can serve: start-up done and the
//! store answering), and `/metrics` (Prometheus text).

use axum::{
    Json,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::json;

use crate::ApiState;

pub async fn index(State(s): State<ApiState>) -> Response {
    let mut v = serde_json::to_value(s.info.as_ref()).unwrap_or_else(|_| json!({}));
    v["tagline"] = json!("Meshplane");
    v["hostname"] = json!(hostname());
    Json(v).into_response()
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

pub async fn healthz() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

pub async fn readyz(State(s): State<ApiState>) -> Response {
    let pending = s.readiness.pending();
    if !pending.is_empty() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"ready": false, "waitingFor": pending})),
        )
            .into_response();
    }
    match s.manager.store().ping().await {
        Ok(()) => Json(json!({"ready": true})).into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"ready": false, "store": e.to_string()})),
        )
            .into_response(),
    }
}

pub async fn metrics(State(s): State<ApiState>) -> Response {
    encode_metrics(s.metrics.clone()).await
}

/// The registry as OpenMetrics text, for the API's `/metrics` and the metrics-only listener.
pub async fn encode_metrics(
    reg: std::sync::Arc<prometheus_client::registry::Registry>,
) -> Response {
    match meshplane_core::runtime::metrics::encode(&reg) {
        Ok(out) => (
            [(
                header::CONTENT_TYPE,
                meshplane_core::runtime::metrics::OPENMETRICS,
            )],
            out,
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("could not encode metrics: {e}"),
        )
            .into_response(),
    }
}
