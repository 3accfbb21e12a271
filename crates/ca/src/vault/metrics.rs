//! Vault call metrics: every HTTP call to a Vault, by operation, with its latency and its failures
//! by cause. One set per process: the backends are created by `registry()` before any binary's
//! metric registry exists, so they record into process-wide families that the binary registers.

use std::{sync::OnceLock, time::Instant};

use meshplane_core::runtime::metrics::OpMetrics;
use prometheus_client::registry::Registry;

use super::error::{Op, VaultError};

fn families() -> &'static OpMetrics {
    static M: OnceLock<OpMetrics> = OnceLock::new();
    M.get_or_init(OpMetrics::default)
}

/// Registers `vault_request_duration_seconds{op}` and `vault_request_errors_total{op,error}`.
pub fn register(reg: &mut Registry) {
    families().register(
        reg,
        "vault_request",
        "calls to Vault (issue, ca_chain, lookup_self, renew_self, login)",
    );
}

pub(crate) fn op_label(op: &Op<'_>) -> &'static str {
    match op {
        Op::Issue { .. } => "issue",
        Op::CaChain { .. } => "ca_chain",
        Op::LookupSelf => "lookup_self",
        Op::RenewSelf => "renew_self",
        Op::Login { .. } => "login",
    }
}

pub(crate) fn cause_label(e: &VaultError) -> &'static str {
    match e {
        VaultError::Unreachable { .. } => "unreachable",
        VaultError::Timeout { .. } => "timeout",
        VaultError::Untrusted { .. } | VaultError::Handshake { .. } => "tls",
        VaultError::HttpToHttps { .. } => "http_to_https",
        VaultError::Sealed { .. } => "sealed",
        VaultError::NamespaceNotFound { .. } => "namespace_not_found",
        VaultError::TokenRejected { .. } => "token_rejected",
        VaultError::Forbidden { .. } => "forbidden",
        VaultError::UnknownRole { .. } => "unknown_role",
        VaultError::NoMount { .. } | VaultError::NoAuthMount { .. } => "no_mount",
        VaultError::CommonName { .. } | VaultError::UriSans { .. } => "refused_request",
        VaultError::LoginRefused { .. } => "login_refused",
        VaultError::RateLimited { .. } => "rate_limited",
        VaultError::Server { .. } => "server_error",
        VaultError::Rejected { .. } => "rejected",
        VaultError::Malformed { .. } => "malformed",
        VaultError::Setup { .. } => "setup",
    }
}

/// Runs one call to Vault and records its latency and, if it failed, its cause.
pub(crate) async fn timed<T>(
    op: &'static str,
    call: impl std::future::Future<Output = Result<T, VaultError>>,
) -> Result<T, VaultError> {
    let started = Instant::now();
    let r = call.await;
    families().observe(op, started, r.as_ref().err().map(cause_label));
    r
}
