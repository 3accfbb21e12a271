//! The zone side of sync: dials global, authenticates with the zone token, and keeps the zone's store
//! in step with global while pushing the zone's Dataplanes and insights up. Reconnects forever with
//! jittered exponential backoff; a clean end of stream counts as a disconnect (Kuma issue 16428).

mod session;
mod sides;

use std::{path::PathBuf, sync::Arc, time::Duration};

use meshplane_core::{runtime::backoff::Backoff, store::ResourceStore};
use tokio::sync::watch;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

#[derive(Clone, Debug)]
pub struct ClientConfig {
    pub zone: String,
    /// `grpcs://host:port` (TLS) or `grpc://host:port` (plaintext, for tests behind a trusted network).
    pub global_address: String,
    /// PEM of the CA that signs global's KDS certificate; the system roots are used when absent.
    pub ca_pem: Option<Vec<u8>>,
    /// Re-read before every connection attempt, so a rotated token is picked up without a restart.
    pub token_file: PathBuf,
    pub instance_id: String,
    pub version: String,
    pub max_message: usize,
    pub keepalive: Duration,
    pub connect_timeout: Duration,
    pub send_timeout: Duration,
    pub nack_backoff: Duration,
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
    pub metrics: crate::metrics::KdsMetrics,
    /// Ask global for a summary of what it holds instead of the whole list (on by default; off
    /// speaks the handshake of releases before summaries, which global still answers).
    pub accept_summary: bool,
}

impl ClientConfig {
    pub fn new(
        zone: impl Into<String>,
        global_address: impl Into<String>,
        token_file: PathBuf,
    ) -> Self {
        Self {
            zone: zone.into(),
            global_address: global_address.into(),
            ca_pem: None,
            token_file,
            instance_id: format!("zone-{}", uuid::Uuid::new_v4().simple()),
            version: env!("CARGO_PKG_VERSION").into(),
            max_message: 16 * 1024 * 1024,
            keepalive: Duration::from_secs(15),
            connect_timeout: Duration::from_secs(10),
            send_timeout: Duration::from_secs(60),
            nack_backoff: Duration::from_secs(5),
            backoff_base: Duration::from_millis(500),
            backoff_cap: Duration::from_secs(30),
            metrics: crate::metrics::KdsMetrics::default(),
            accept_summary: true,
        }
    }
}

/// What the zone's sync is doing, for readiness, metrics and logs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncStatus {
    pub connected: bool,
    /// The initial reconcile of some connection was applied: the zone holds global's state.
    pub synced_once: bool,
    pub connects: u64,
    /// The number (as `connects` counts) of the last connection whose initial reconcile was
    /// applied: equal to `connects` once the current connection is in sync.
    pub synced_connection: u64,
    pub last_error: Option<String>,
    /// When `last_error` happened.
    pub last_error_time: Option<chrono::DateTime<chrono::Utc>>,
    /// When the current connection was established.
    pub connected_since: Option<chrono::DateTime<chrono::Utc>>,
    /// The global replica of the current (or last) connection.
    pub global_instance: Option<String>,
    /// When a push from global was last applied.
    pub last_sync: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("--global-address {0:?}: {1}")]
    Address(String, String),
    #[error("--zone-token-file {path}: {reason}")]
    Token { path: String, reason: String },
    #[error("could not connect to global at {address}: {reason}")]
    Connect { address: String, reason: String },
    #[error("global refused the stream: {:?}: {}", .0.code(), .0.message())]
    Refused(tonic::Status),
    #[error("the stream to global ended: {0}")]
    Stream(String),
}

/// Turns `grpcs://host:port` into an endpoint with TLS (or plaintext for `grpc://`).
pub fn endpoint(cfg: &ClientConfig) -> Result<Endpoint, ClientError> {
    let addr = &cfg.global_address;
    let bad = |why: &str| ClientError::Address(addr.clone(), why.to_string());
    let (tls, rest) = if let Some(r) = addr.strip_prefix("grpcs://") {
        (true, r)
    } else if let Some(r) = addr.strip_prefix("grpc://") {
        (false, r)
    } else {
        return Err(bad("must start with grpcs:// (or grpc:// for plaintext)"));
    };
    let host = rest
        .rsplit_once(':')
        .map(|(h, _)| h)
        .ok_or_else(|| bad("must include a port"))?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let url = format!("{}://{rest}", if tls { "https" } else { "http" });
    let mut ep = Endpoint::from_shared(url)
        .map_err(|e| bad(&e.to_string()))?
        .connect_timeout(cfg.connect_timeout)
        .http2_keep_alive_interval(cfg.keepalive)
        .keep_alive_timeout(cfg.keepalive)
        .keep_alive_while_idle(true)
        .tcp_keepalive(Some(cfg.keepalive));
    if tls {
        let mut t = ClientTlsConfig::new().domain_name(host);
        match &cfg.ca_pem {
            Some(pem) => t = t.ca_certificate(Certificate::from_pem(pem)),
            None => t = t.with_native_roots(),
        }
        ep = ep.tls_config(t).map_err(|e| bad(&e.to_string()))?;
    }
    Ok(ep)
}

/// One connection attempt, run until the stream ends (for tests and diagnostics).
pub async fn connect_once(
    cfg: &ClientConfig,
    store: Arc<dyn ResourceStore>,
    status: &watch::Sender<SyncStatus>,
) -> Result<(), ClientError> {
    session::connect_and_sync(cfg, store, status).await
}

/// Runs the sync client until `drain` is signaled.
pub async fn run(
    cfg: ClientConfig,
    store: Arc<dyn ResourceStore>,
    drain: drain::Watch,
    status: watch::Sender<SyncStatus>,
) {
    let mut backoff = Backoff::new(cfg.backoff_base, cfg.backoff_cap);
    let drained = drain.signaled();
    tokio::pin!(drained);
    loop {
        let started = std::time::Instant::now();
        let attempt = session::connect_and_sync(&cfg, store.clone(), &status);
        let result = tokio::select! {
            r = attempt => r,
            _release = &mut drained => {
                tracing::info!(zone = %cfg.zone, "shutting down sync");
                status.send_modify(|s| s.connected = false);
                return;
            }
        };
        let message = match result {
            Ok(()) => "global closed the stream".to_string(),
            Err(e) => e.to_string(),
        };
        status.send_modify(|s| {
            s.connected = false;
            s.connected_since = None;
            s.last_error = Some(message.clone());
            s.last_error_time = Some(chrono::Utc::now());
        });
        // A connection that lived long enough was healthy: start the backoff over.
        if started.elapsed() > cfg.backoff_cap * 2 {
            backoff.reset();
        }
        let delay = backoff.next_delay();
        tracing::warn!(zone = %cfg.zone, error = %message, retry_in = ?delay, "disconnected from global");
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _release = &mut drained => {
                status.send_modify(|s| s.connected = false);
                return;
            }
        }
    }
}
