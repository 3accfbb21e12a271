//! Prometheus metrics of certificate issuance.

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackendLabels {
    pub mesh: String,
    pub backend: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    pub mesh: String,
    pub backend: String,
    /// `config` (needs a fix), `transient` (retried), `timeout`, `breaker`.
    pub cause: String,
}

#[derive(Clone)]
pub struct Metrics {
    pub issued: Family<BackendLabels, Counter>,
    pub failures: Family<FailureLabels, Counter>,
    pub latency: Family<BackendLabels, Histogram>,
    pub identities: Gauge,
    pub breaker_open: Family<BackendLabels, Gauge>,
    pub token_ttl: Family<BackendLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
}

fn latency_histogram() -> Histogram {
    Histogram::new([
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ])
}

impl Metrics {
    /// Metrics not exported anywhere (tests, benches).
    pub fn unregistered() -> Self {
        Self {
            issued: Family::default(),
            failures: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            identities: Gauge::default(),
            breaker_open: Family::default(),
            token_ttl: Family::default(),
        }
    }

    pub fn register(reg: &mut Registry) -> Self {
        let m = Self::unregistered();
        reg.register(
            "certificates_issued",
            "Dataplane certificates issued",
            m.issued.clone(),
        );
        reg.register(
            "certificate_issuance_failures",
            "Failed certificate issuances, by cause",
            m.failures.clone(),
        );
        reg.register(
            "certificate_issuance_seconds",
            "Time to issue one certificate",
            m.latency.clone(),
        );
        reg.register(
            "managed_identities",
            "Identities (certificates) the zone keeps",
            m.identities.clone(),
        );
        reg.register(
            "ca_circuit_breaker_open",
            "1 while a backend's circuit breaker is open",
            m.breaker_open.clone(),
        );
        m
    }
}

/// Refreshes the Vault token TTL gauge from the backends every `every`, until the task is aborted.
pub async fn watch_credentials(
    ca: meshplane_core::ca::CaRegistry,
    m: Metrics,
    every: std::time::Duration,
) {
    loop {
        for t in meshplane_core::model::BackendType::ALL {
            if let Some(b) = ca.get(t) {
                for e in b.credential_expiries() {
                    m.token_ttl
                        .get_or_create(&BackendLabels {
                            mesh: e.mesh,
                            backend: e.backend,
                        })
                        .set(e.seconds_left);
                }
            }
        }
        tokio::time::sleep(every).await;
    }
}
