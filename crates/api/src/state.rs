//! What every handler can reach: the resource manager, this server's identity, readiness, metrics.

use std::sync::Arc;

use meshplane_core::{manager::ResourceManager, runtime::readiness::Readiness, tokens::Tokens};
use prometheus_client::registry::Registry;

/// Identity of this control plane, as `GET /` reports it.
#[derive(Clone, Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerInfo {
    pub product: &'static str,
    pub version: &'static str,
    pub instance_id: String,
    /// `global` or `zone`.
    pub mode: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    pub store: String,
}

#[derive(Clone)]
pub struct ApiState {
    pub manager: Arc<ResourceManager>,
    pub info: Arc<ServerInfo>,
    pub readiness: Readiness,
    pub metrics: Arc<Registry>,
    /// Request counts and latencies, recorded by `metrics::track`.
    pub api_metrics: crate::metrics::ApiMetrics,
    /// Present where tokens are issued (global, standalone zones).
    pub tokens: Option<Tokens>,
    /// Verifies user tokens (with the private keys at global, the synced public keys at a zone).
    pub verifier: Tokens,
    pub access: crate::auth::AccessConfig,
}
