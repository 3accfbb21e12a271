//! The DataplaneInsight each dataplane has in its zone (and, by sync, at global): the changes the
//! manager (certificate status) and the dataplane server (connections) make to it, applied and
//! written by the persister (`persist.rs`).

use chrono::{DateTime, Utc};
use meshplane_core::model::{
    DataplaneInsightSpec, MtlsInsight, certificate::CertificateSummary,
    dataplane::DiscoverySubscription,
};

/// Most connections an insight remembers (the newest).
const SUBSCRIPTIONS_KEPT: usize = 5;

/// Records a new connection of the dataplane to this control plane.
pub fn connected(s: &mut DataplaneInsightSpec, sub: DiscoverySubscription) {
    s.subscriptions.push(sub);
    let excess = s.subscriptions.len().saturating_sub(SUBSCRIPTIONS_KEPT);
    s.subscriptions.drain(..excess);
}

/// Records the end of connection `id`.
pub fn disconnected(s: &mut DataplaneInsightSpec, id: &str, at: DateTime<Utc>) {
    if let Some(sub) = s.subscriptions.iter_mut().find(|x| x.id == id) {
        sub.disconnect_time = Some(at);
    }
}

/// Records a successful issuance. `certificate` is what the new certificate says (`None` when it
/// could not be read, which the insight then does not claim).
pub fn issued(
    m: &mut MtlsInsight,
    backend: &str,
    not_after: DateTime<Utc>,
    at: DateTime<Utc>,
    supported: &[String],
    certificate: Option<CertificateSummary>,
) {
    m.certificate = certificate;
    m.issued_backend = Some(backend.to_string());
    m.certificate_expiration_time = Some(not_after);
    m.last_certificate_regeneration = Some(at);
    m.certificate_regenerations += 1;
    m.supported_backends = supported.to_vec();
    m.last_error = None;
    m.last_error_time = None;
}

/// Records a failure; the certificate fields keep describing what is still served.
pub fn failed(m: &mut MtlsInsight, error: &str, at: DateTime<Utc>, supported: &[String]) {
    m.last_error = Some(error.to_string());
    m.last_error_time = Some(at);
    m.supported_backends = supported.to_vec();
}
