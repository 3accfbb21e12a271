//! `Dataplane`: Kuma 2.14's universal Dataplane (a sidecar, a gateway, an outbound-only or
//! transparent-proxy-only proxy), and the identity its certificates carry.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

pub use super::dataplane_insight::{
    DataplaneCertificateSpec, DataplaneInsightSpec, DiscoverySubscription, MtlsInsight,
};
pub use super::dataplane_net::*;
use super::{dataplane_rules, mesh_metrics::MetricsBackend};
use crate::{
    decode::{Decoder, Obj},
    validation::FieldPath,
};

/// The tag naming a dataplane's service.
pub const SERVICE_TAG: &str = "kuma.io/service";
/// The tag the zone stamps on every inbound (and gateway) of its dataplanes.
pub const ZONE_TAG: &str = "kuma.io/zone";
/// The tag naming an inbound's protocol.
pub const PROTOCOL_TAG: &str = "kuma.io/protocol";
/// The label Kuma takes a dataplane's identity from when it has no `kuma.io/service` tag.
pub const WORKLOAD_LABEL: &str = "kuma.io/workload";

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DataplaneSpec {
    pub networking: Networking,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics: Option<MetricsBackend>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probes: Option<Probes>,
}

/// Every tag name with every value it takes, sorted.
pub type TagSet = BTreeMap<String, BTreeSet<String>>;

impl DataplaneSpec {
    /// Kuma's `TagSet`: the tags of every inbound and of the gateway.
    pub fn tag_set(&self) -> TagSet {
        let mut out: TagSet = BTreeMap::new();
        for tags in self.tag_maps() {
            for (k, v) in tags {
                out.entry(k.clone()).or_default().insert(v.clone());
            }
        }
        out
    }

    fn tag_maps(&self) -> impl Iterator<Item = &Tags> {
        let n = &self.networking;
        n.inbound
            .iter()
            .flatten()
            .filter_map(|i| i.tags.as_ref())
            .chain(n.gateway.as_ref().and_then(|g| g.tags.as_ref()))
    }

    /// The values of `kuma.io/service` in inbound order (the gateway's last), without repeats.
    pub fn services(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for tags in self.tag_maps() {
            if let Some(s) = tags.get(SERVICE_TAG)
                && !out.contains(s)
            {
                out.push(s.clone());
            }
        }
        out
    }

    /// Whether this is a gateway (delegated or builtin) rather than a sidecar.
    pub fn is_gateway(&self) -> bool {
        self.networking.gateway.is_some()
    }

    /// Stamps the zone's name on every inbound and on the gateway, as Kuma's dataplane manager
    /// does. Tag maps left empty (Kuma's newer setup without inbound tags) stay empty: a lone
    /// `kuma.io/zone` would make them tags without a service, which Kuma's rules refuse.
    pub fn stamp_zone(&mut self, zone: &str) {
        let n = &mut self.networking;
        let maps = n
            .inbound
            .iter_mut()
            .flatten()
            .filter_map(|i| i.tags.as_mut())
            .chain(n.gateway.as_mut().and_then(|g| g.tags.as_mut()));
        for tags in maps.filter(|t| !t.is_empty()) {
            tags.insert(ZONE_TAG.into(), zone.to_string());
        }
    }

    pub(crate) fn decode(d: &mut Decoder, o: &mut Obj<'_>) -> Option<Self> {
        let Some((v, p)) = o.field("networking") else {
            // Kuma says only this of a Dataplane without networking.
            d.violation(&FieldPath::root().field("networking"), "must be defined");
            o.ignore("probes");
            o.ignore("metrics");
            return None;
        };
        let networking = Networking::decode(d, v, &p);
        let probes = o.field("probes").map(|(v, p)| Probes::decode(d, v, &p));
        let metrics = dataplane_rules::check(
            d,
            dataplane_rules::Parts {
                networking: networking.as_ref(),
                probes: probes.as_ref().map(Option::as_ref),
                metrics: o.field("metrics"),
            },
        );
        Some(Self {
            networking: networking?,
            metrics: metrics.ok()?,
            probes: match probes {
                Some(p) => Some(p?),
                None => None,
            },
        })
    }
}

/// What a dataplane's certificates say it is: Kuma's `identityTags`, derived once from its
/// resource. A dataplane without any `kuma.io/service` tag (outbound-only, transparent-proxy-only,
/// inbounds without tags) takes its service from the `kuma.io/workload` label, or has none.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataplaneIdentity {
    tags: Result<TagSet, String>,
    services: Vec<String>,
}

impl DataplaneIdentity {
    pub fn of(name: &str, spec: &DataplaneSpec, labels: &BTreeMap<String, String>) -> Self {
        let services = spec.services();
        if !services.is_empty() {
            return Self {
                tags: Ok(spec.tag_set()),
                services,
            };
        }
        match labels.get(WORKLOAD_LABEL).filter(|w| !w.is_empty()) {
            Some(w) => Self {
                tags: Ok(BTreeMap::from([(
                    SERVICE_TAG.to_string(),
                    BTreeSet::from([w.clone()]),
                )])),
                services: vec![w.clone()],
            },
            None => Self {
                tags: Err(format!(
                    "dataplane {name:?} has no {SERVICE_TAG} tag and no {WORKLOAD_LABEL} label, cannot derive mTLS identity"
                )),
                services: Vec::new(),
            },
        }
    }

    /// The tags its mesh certificate carries, or why it has no identity.
    pub fn tags(&self) -> Result<&TagSet, &str> {
        self.tags.as_ref().map_err(String::as_str)
    }

    /// Its services, in the order the Dataplane names them.
    pub fn services(&self) -> &[String] {
        &self.services
    }
}
