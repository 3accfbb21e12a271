//! `Dataplane` (a proxy and its inbound services), `DataplaneInsight` (its certificate status) and
//! `DataplaneCertificate` (the zone's record of what it issued).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{
    decode::{Decoder, Obj},
    validation::FieldPath,
};

/// The tag every inbound must carry.
pub const SERVICE_TAG: &str = "kuma.io/service";
/// The tag the zone stamps on every inbound of its dataplanes.
pub const ZONE_TAG: &str = "kuma.io/zone";

/// Networking fields of Kuma's Dataplane that Meshplane keeps verbatim without interpreting.
const OPAQUE_NETWORKING_FIELDS: [&str; 5] = [
    "outbound",
    "transparentProxying",
    "admin",
    "gateway",
    "advertisedAddress",
];
const OPAQUE_INBOUND_FIELDS: [&str; 4] = ["health", "serviceProbe", "state", "name"];

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DataplaneSpec {
    pub networking: Networking,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Networking {
    pub address: String,
    pub inbound: Vec<Inbound>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Inbound {
    pub port: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_port: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    pub tags: BTreeMap<String, String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Every tag name with every value it takes across the inbounds, sorted.
pub type TagSet = BTreeMap<String, BTreeSet<String>>;

impl DataplaneSpec {
    pub fn tag_set(&self) -> TagSet {
        let mut out: TagSet = BTreeMap::new();
        for inbound in &self.networking.inbound {
            for (k, v) in &inbound.tags {
                out.entry(k.clone()).or_default().insert(v.clone());
            }
        }
        out
    }

    /// The values of `kuma.io/service` in inbound order, without repeats.
    pub fn services(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for inbound in &self.networking.inbound {
            if let Some(s) = inbound.tags.get(SERVICE_TAG)
                && !out.contains(s)
            {
                out.push(s.clone());
            }
        }
        out
    }

    pub(crate) fn decode(d: &mut Decoder, o: &mut Obj<'_>) -> Option<Self> {
        let networking = o.req_with(d, "networking", Networking::decode);
        Some(Self {
            networking: networking?,
        })
    }
}

impl Networking {
    fn decode(d: &mut Decoder, v: &Value, path: &FieldPath) -> Option<Self> {
        let mut o = d.object(v, path)?;
        let address = o.req_string(d, "address");
        let inbound = o.req_with(d, "inbound", |d, v, p| {
            let items = d.array(v, p)?;
            if items.is_empty() {
                d.violation(p, "has to contain at least one inbound interface");
            }
            let mut out = Vec::new();
            let mut ok = true;
            for (i, item) in items.iter().enumerate() {
                match Inbound::decode(d, item, &p.index(i)) {
                    Some(x) => out.push(x),
                    None => ok = false,
                }
            }
            ok.then_some(out)
        });
        let extra = o.take_rest(&OPAQUE_NETWORKING_FIELDS);
        o.finish(d);
        Some(Self {
            address: address?,
            inbound: inbound?,
            extra,
        })
    }
}

fn valid_tag_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':' | b'/'))
}

fn valid_tag_value(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':'))
}

impl Inbound {
    fn decode(d: &mut Decoder, v: &Value, path: &FieldPath) -> Option<Self> {
        let mut o = d.object(v, path)?;
        let port = o.req_with(d, "port", |d, v, p| {
            let n = d.u32(v, p)?;
            if !(1..=65535).contains(&n) {
                d.violation(p, "port must be in the range [1, 65535]");
                return None;
            }
            Some(n)
        });
        let service_port = o.opt_u32(d, "servicePort");
        let service_address = o.opt_string(d, "serviceAddress");
        let address = o.opt_string(d, "address");
        let tags = o.req_with(d, "tags", |d, v, p| {
            let tags = d.string_map(v, p)?;
            let mut ok = true;
            for (k, val) in &tags {
                if !valid_tag_name(k) {
                    ok = false;
                    d.violation(&p.key(k), "tag name must consist of alphanumeric characters, dots, dashes, colons, slashes and underscores");
                } else if val.is_empty() {
                    ok = false;
                    d.violation(&p.key(k), "tag value cannot be empty");
                } else if !valid_tag_value(val) {
                    ok = false;
                    d.violation(&p.key(k), "tag value must consist of alphanumeric characters, dots, dashes, colons and underscores");
                }
            }
            if !tags.contains_key(SERVICE_TAG) {
                ok = false;
                d.violation(&p.key(SERVICE_TAG), "tag has to exist");
            }
            ok.then_some(tags)
        });
        let extra = o.take_rest(&OPAQUE_INBOUND_FIELDS);
        o.finish(d);
        Some(Self {
            port: port?,
            service_port,
            service_address,
            address,
            tags: tags?,
            extra,
        })
    }
}

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
