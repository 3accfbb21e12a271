//! The route table: Kuma's REST paths mapped to the generic handlers.

use std::time::Duration;

use axum::{
    Router,
    extract::DefaultBodyLimit,
    routing::{MethodRouter, get},
};
use meshplane_core::model::ResourceKind;
use tower_http::timeout::TimeoutLayer;

use crate::{
    ApiState, MAX_BODY_BYTES, health, overview,
    resources::handlers::{
        delete_global, delete_meshed, get_global, get_meshed, list_global, list_meshed, put_global,
        put_meshed,
    },
};

/// Mesh validation may issue test certificates from Vault; leave it room, but never hang forever.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

fn global_item(kind: ResourceKind) -> MethodRouter<ApiState> {
    get(move |s, p| get_global(kind, s, p))
        .put(move |s, p, h, b| put_global(kind, s, p, h, b))
        .delete(move |s, p, q, h| delete_global(kind, s, p, q, h))
}

fn global_list(kind: ResourceKind) -> MethodRouter<ApiState> {
    get(move |s, q, h, u| list_global(kind, s, q, h, u))
}

fn meshed_item(kind: ResourceKind) -> MethodRouter<ApiState> {
    get(move |s, p| get_meshed(kind, s, p))
        .put(move |s, p, h, b| put_meshed(kind, s, p, h, b))
        .delete(move |s, p, q, h| delete_meshed(kind, s, p, q, h))
}

fn meshed_list(kind: ResourceKind) -> MethodRouter<ApiState> {
    get(move |s, p, q, h, u| list_meshed(kind, s, p, q, h, u))
}

/// Refuses a request whose declared length is over the limit before reading any of it.
async fn refuse_oversized(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let declared = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES) {
        return axum::response::IntoResponse::into_response(crate::ApiError::too_large(
            MAX_BODY_BYTES,
        ));
    }
    next.run(req).await
}

/// Every API route, with body limits and timeouts. `extra` is merged in (token endpoints and other
/// routes that belong to one control plane).
pub fn router(state: ApiState, extra: Router<ApiState>) -> Router {
    use ResourceKind::*;
    Router::new()
        .route("/", get(health::index))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route("/meshes", global_list(Mesh))
        .route("/meshes/{name}", global_item(Mesh))
        .route("/meshes/{mesh}/secrets", meshed_list(Secret))
        .route("/meshes/{mesh}/secrets/{name}", meshed_item(Secret))
        .route("/secrets", global_list(Secret))
        .route("/global-secrets", global_list(GlobalSecret))
        .route("/global-secrets/{name}", global_item(GlobalSecret))
        .route("/zones", global_list(Zone))
        .route("/zones/_overview", get(overview::zones))
        .route("/zones/{name}", global_item(Zone))
        .route("/zones/{name}/_overview", get(overview::zone))
        .route(
            "/zone-insights/{name}",
            get(move |s, p| get_global(ZoneInsight, s, p)),
        )
        .route("/meshes/{mesh}/dataplanes", meshed_list(Dataplane))
        .route(
            "/meshes/{mesh}/dataplanes/_overview",
            get(overview::dataplanes),
        )
        .route("/meshes/{mesh}/dataplanes/{name}", meshed_item(Dataplane))
        .route(
            "/meshes/{mesh}/dataplanes/{name}/_overview",
            get(overview::dataplane),
        )
        .route(
            "/meshes/{mesh}/dataplane-insights/{name}",
            get(move |s, p| get_meshed(DataplaneInsight, s, p)),
        )
        .route("/dataplanes", global_list(Dataplane))
        .merge(extra)
        .fallback(|| async { crate::ApiError::not_found("no such API path") })
        // Inside the access check: who may write is answered before what they wrote in.
        .layer(axum::middleware::from_fn(
            crate::body::require_document_type,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::auth::middleware,
        ))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(refuse_oversized))
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        // Outermost, so refusals and timeouts are counted with the status the client saw.
        .layer(axum::middleware::from_fn_with_state(
            state.api_metrics.clone(),
            crate::metrics::track,
        ))
        .with_state(state)
}
