//! Process-level pieces every binary shares: configuration, logging, readiness, shutdown.

pub mod api_args;
pub mod backoff;
pub mod config;
pub mod critical;
pub mod datasource_args;
pub mod host;
pub mod metrics;
pub mod names_args;
pub mod readiness;
pub mod server_cert;
pub mod signal;
pub mod store_args;
pub mod telemetry;
pub mod tls;
pub mod tls_refusal;
