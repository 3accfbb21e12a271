//! API request metrics: requests by route template, method and status, and their latency, so an
//! operator sees which endpoint is slow or failing without the paths' names and meshes exploding
//! the label space.

use std::time::Instant;

use axum::{
    extract::{MatchedPath, Request, State},
    middleware::Next,
    response::Response,
};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, histogram::Histogram},
    registry::Registry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The route template (`/meshes/{name}`), or `unmatched`.
    pub route: String,
    pub method: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
    pub method: String,
}

#[derive(Clone, Debug)]
pub struct ApiMetrics {
    pub requests: Family<RequestLabels, Counter>,
    pub seconds: Family<RouteLabels, Histogram>,
}

impl Default for ApiMetrics {
    fn default() -> Self {
        Self {
            requests: Family::default(),
            seconds: Family::new_with_constructor(|| {
                Histogram::new([
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                    30.0, 60.0,
                ])
            }),
        }
    }
}

impl ApiMetrics {
    /// Registers `api_requests_total{route,method,status}` and
    /// `api_request_duration_seconds{route,method}`.
    pub fn register(reg: &mut Registry) -> Self {
        let m = Self::default();
        reg.register(
            "api_requests",
            "REST API requests answered, by route template, method and status",
            m.requests.clone(),
        );
        reg.register(
            "api_request_duration_seconds",
            "Time the REST API took to answer, by route template and method",
            m.seconds.clone(),
        );
        m
    }
}

/// Counts and times every request. Installed with `Router::layer`, so it runs after routing and
/// sees the matched template; the fallback has none.
pub async fn track(State(m): State<ApiMetrics>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let method = req.method().as_str().to_string();
    let started = Instant::now();
    let resp = next.run(req).await;
    m.seconds
        .get_or_create(&RouteLabels {
            route: route.clone(),
            method: method.clone(),
        })
        .observe(started.elapsed().as_secs_f64());
    m.requests
        .get_or_create(&RequestLabels {
            route,
            method,
            status: resp.status().as_u16(),
        })
        .inc();
    resp
}
