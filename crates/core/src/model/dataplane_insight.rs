//! `DataplaneInsight` (a dataplane's connections and certificate status) and `DataplaneCertificate`
//! (the zone's record of what it issued).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What a zone reports about one dataplane: its connections and its certificate.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DataplaneInsightSpec {
    #[serde(default)]
    pub subscriptions: Vec<DiscoverySubscription>,
    #[serde(rename = "mTLS", default, skip_serializing_if = "Option::is_none")]
    pub mtls: Option<MtlsInsight>,
}

impl DataplaneInsightSpec {
    pub fn is_online(&self) -> bool {
        self.subscriptions
            .last()
            .is_some_and(|s| s.disconnect_time.is_none())
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DiscoverySubscription {
    pub id: String,
    pub control_plane_instance_id: String,
    pub connect_time: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disconnect_time: Option<DateTime<Utc>>,
}

/// Kuma's `DataplaneInsight.mTLS`, plus the last issuance error.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MtlsInsight {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_expiration_time: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_certificate_regeneration: Option<DateTime<Utc>>,
    #[serde(default)]
    pub certificate_regenerations: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued_backend: Option<String>,
    #[serde(default)]
    pub supported_backends: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error_time: Option<DateTime<Utc>>,
    /// What the certificate now served says, read from it by the zone (Meshplane's addition).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<super::certificate::CertificateSummary>,
}

/// The zone's record of the certificate it issued to one dataplane. The key is encrypted at rest.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DataplaneCertificateSpec {
    /// The dataplane it belongs to.
    #[serde(default)]
    pub dataplane: String,
    /// `None` for the mesh certificate, the service for an X.509-SVID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub svid_service: Option<String>,
    /// The backend that issued it.
    pub backend: String,
    /// A digest of what the certificate was issued for (identity, backend conf); a change means re-issue.
    pub fingerprint: String,
    pub cert_pem: String,
    pub key_pem: String,
    #[serde(default)]
    pub chain_pem: Vec<String>,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
    /// When it was issued (the start of the renewal clock).
    pub issued_at: DateTime<Utc>,
    #[serde(default)]
    pub regenerations: u64,
}

impl std::fmt::Debug for DataplaneCertificateSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataplaneCertificateSpec")
            .field("backend", &self.backend)
            .field("fingerprint", &self.fingerprint)
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}
