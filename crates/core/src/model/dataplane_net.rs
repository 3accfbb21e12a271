//! The typed parts of Kuma 2.14's universal Dataplane (`networking` with its inbounds, outbounds,
//! gateway, transparent proxying, admin and listeners, and `probes`), decoded with their JSON types
//! checked. Every field keeps whether it was written, so a Dataplane reads back as it was applied.
//! Kuma's rules over them are in `dataplane_rules.rs`.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use super::mesh_telemetry::decode_enum;
use crate::{
    decode::{Decoder, Obj},
    duration::GoDuration,
    validation::FieldPath,
};

/// A tag map: tag name to value.
pub type Tags = BTreeMap<String, String>;

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Networking {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advertised_address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inbound: Option<Vec<Inbound>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outbound: Option<Vec<Outbound>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway: Option<Gateway>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transparent_proxying: Option<TransparentProxying>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin: Option<Admin>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listeners: Option<Vec<Listener>>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Inbound {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_port: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Absent or empty means Kuma's newer setup without inbound tags.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<Tags>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health: Option<Health>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_probe: Option<ServiceProbe>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<InboundState>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Health {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ready: Option<bool>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceProbe {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<GoDuration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<GoDuration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unhealthy_threshold: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub healthy_threshold: Option<u32>,
    /// An empty object: the probe is a TCP connect.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp: Option<Empty>,
}

/// An object with no fields (`tcp: {}`).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Empty {}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum InboundState {
    Ready,
    NotReady,
    Ignored,
}

const INBOUND_STATES: [(&str, InboundState); 3] = [
    ("Ready", InboundState::Ready),
    ("NotReady", InboundState::NotReady),
    ("Ignored", InboundState::Ignored),
];

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Outbound {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<Tags>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend_ref: Option<BackendRef>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct BackendRef {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<Tags>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Gateway {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<Tags>,
    /// Absent means `DELEGATED`, as in Kuma.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub gateway_type: Option<GatewayType>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum GatewayType {
    Delegated,
    Builtin,
}

const GATEWAY_TYPES: [(&str, GatewayType); 2] = [
    ("DELEGATED", GatewayType::Delegated),
    ("BUILTIN", GatewayType::Builtin),
];

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TransparentProxying {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redirect_port_inbound: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redirect_port_outbound: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub direct_access_services: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reachable_services: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip_family_mode: Option<IpFamilyMode>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reachable_backends: Option<ReachableBackends>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum IpFamilyMode {
    UnSpecified,
    DualStack,
    IPv4,
    IPv6,
}

const IP_FAMILY_MODES: [(&str, IpFamilyMode); 4] = [
    ("UnSpecified", IpFamilyMode::UnSpecified),
    ("DualStack", IpFamilyMode::DualStack),
    ("IPv4", IpFamilyMode::IPv4),
    ("IPv6", IpFamilyMode::IPv6),
];

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ReachableBackends {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refs: Option<Vec<ReachableBackendRef>>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ReachableBackendRef {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<Tags>,
}

/// Envoy's admin interface; port 0 or absent means the agent's default.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Admin {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u32>,
}

/// A zone-proxy listener embedded in a Dataplane (ZoneIngress or ZoneEgress).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Listener {
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub listener_type: Option<ListenerType>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<ListenerState>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum ListenerType {
    Unspecified,
    ZoneIngress,
    ZoneEgress,
}

const LISTENER_TYPES: [(&str, ListenerType); 3] = [
    ("Unspecified", ListenerType::Unspecified),
    ("ZoneIngress", ListenerType::ZoneIngress),
    ("ZoneEgress", ListenerType::ZoneEgress),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum ListenerState {
    Ready,
    NotReady,
}

const LISTENER_STATES: [(&str, ListenerState); 2] = [
    ("Ready", ListenerState::Ready),
    ("NotReady", ListenerState::NotReady),
];

/// Kuma's virtual probes: an HTTP port on which the sidecar answers for the inbounds' health checks.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Probes {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoints: Option<Vec<ProbeEndpoint>>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProbeEndpoint {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inbound_port: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inbound_path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

fn opt_tags(d: &mut Decoder, o: &mut Obj<'_>, key: &str) -> Result<Option<Tags>, ()> {
    match o.field(key) {
        Some((v, p)) => d.tag_map(v, &p).map(Some).ok_or(()),
        None => Ok(None),
    }
}

fn opt_labels(d: &mut Decoder, o: &mut Obj<'_>, key: &str) -> Result<Option<Tags>, ()> {
    match o.field(key) {
        Some((v, p)) => d.string_map(v, &p).map(Some).ok_or(()),
        None => Ok(None),
    }
}

/// An optional field decoded by `f`: `Err` when present and refused, so the caller fails too.
fn opt<'v, T>(
    d: &mut Decoder,
    o: &mut Obj<'v>,
    key: &str,
    f: impl FnOnce(&mut Decoder, &'v Value, &FieldPath) -> Option<T>,
) -> Result<Option<T>, ()> {
    match o.field(key) {
        Some((v, p)) => f(d, v, &p).map(Some).ok_or(()),
        None => Ok(None),
    }
}

fn string(d: &mut Decoder, v: &Value, p: &FieldPath) -> Option<String> {
    d.string(v, p)
}

fn uint(d: &mut Decoder, v: &Value, p: &FieldPath) -> Option<u32> {
    d.u32(v, p)
}

fn strings(d: &mut Decoder, v: &Value, p: &FieldPath) -> Option<Vec<String>> {
    d.list(v, p, |d, v, p| d.string(v, p))
}

/// Ends an object's decoding: unknown fields are reported, and any failed field fails the whole.
fn done<T>(d: &mut Decoder, o: Obj<'_>, fields: Result<T, ()>) -> Option<T> {
    o.finish(d);
    fields.ok()
}

impl Networking {
    pub(super) fn decode(d: &mut Decoder, v: &Value, path: &FieldPath) -> Option<Self> {
        let mut o = d.object(v, path)?;
        let address = opt(d, &mut o, "address", string);
        let advertised_address = opt(d, &mut o, "advertisedAddress", string);
        let inbound = opt(d, &mut o, "inbound", |d, v, p| {
            d.list(v, p, Inbound::decode)
        });
        let outbound = opt(d, &mut o, "outbound", |d, v, p| {
            d.list(v, p, Outbound::decode)
        });
        let gateway = opt(d, &mut o, "gateway", Gateway::decode);
        let transparent_proxying = opt(
            d,
            &mut o,
            "transparentProxying",
            TransparentProxying::decode,
        );
        let admin = opt(d, &mut o, "admin", |d, v, p| {
            let mut o = d.object(v, p)?;
            let port = opt(d, &mut o, "port", uint);
            done(d, o, port.map(|port| Admin { port }))
        });
        let listeners = opt(d, &mut o, "listeners", |d, v, p| {
            d.list(v, p, Listener::decode)
        });
        let fields = (|| -> Result<_, ()> {
            Ok(Self {
                address: address?,
                advertised_address: advertised_address?,
                inbound: inbound?,
                outbound: outbound?,
                gateway: gateway?,
                transparent_proxying: transparent_proxying?,
                admin: admin?,
                listeners: listeners?,
            })
        })();
        done(d, o, fields)
    }
}

impl Inbound {
    fn decode(d: &mut Decoder, v: &Value, path: &FieldPath) -> Option<Self> {
        let mut o = d.object(v, path)?;
        let port = opt(d, &mut o, "port", uint);
        let service_port = opt(d, &mut o, "servicePort", uint);
        let service_address = opt(d, &mut o, "serviceAddress", string);
        let address = opt(d, &mut o, "address", string);
        let tags = opt_tags(d, &mut o, "tags");
        let health = opt(d, &mut o, "health", |d, v, p| {
            let mut o = d.object(v, p)?;
            let ready = opt(d, &mut o, "ready", |d, v, p| d.bool(v, p));
            done(d, o, ready.map(|ready| Health { ready }))
        });
        let service_probe = opt(d, &mut o, "serviceProbe", ServiceProbe::decode);
        let state = opt(d, &mut o, "state", |d, v, p| {
            decode_enum(d, v, p, &INBOUND_STATES)
        });
        let name = opt(d, &mut o, "name", string);
        let protocol = opt(d, &mut o, "protocol", string);
        let fields = (|| -> Result<_, ()> {
            Ok(Self {
                port: port?,
                service_port: service_port?,
                service_address: service_address?,
                address: address?,
                tags: tags?,
                health: health?,
                service_probe: service_probe?,
                state: state?,
                name: name?,
                protocol: protocol?,
            })
        })();
        done(d, o, fields)
    }
}

fn go_duration(d: &mut Decoder, v: &Value, p: &FieldPath) -> Option<GoDuration> {
    let s = d.string(v, p)?;
    match GoDuration::parse(&s) {
        Ok(g) => Some(g),
        Err(e) => {
            d.violation_detailed(p, format!("bad Duration: {e}"), crate::duration::GO_GRAMMAR);
            None
        }
    }
}

impl ServiceProbe {
    fn decode(d: &mut Decoder, v: &Value, path: &FieldPath) -> Option<Self> {
        let mut o = d.object(v, path)?;
        let interval = opt(d, &mut o, "interval", go_duration);
        let timeout = opt(d, &mut o, "timeout", go_duration);
        let unhealthy_threshold = opt(d, &mut o, "unhealthyThreshold", uint);
        let healthy_threshold = opt(d, &mut o, "healthyThreshold", uint);
        let tcp = opt(d, &mut o, "tcp", |d, v, p| {
            let o = d.object(v, p)?;
            done(d, o, Ok(Empty {}))
        });
        let fields = (|| -> Result<_, ()> {
            Ok(Self {
                interval: interval?,
                timeout: timeout?,
                unhealthy_threshold: unhealthy_threshold?,
                healthy_threshold: healthy_threshold?,
                tcp: tcp?,
            })
        })();
        done(d, o, fields)
    }
}

impl Outbound {
    fn decode(d: &mut Decoder, v: &Value, path: &FieldPath) -> Option<Self> {
        let mut o = d.object(v, path)?;
        let address = opt(d, &mut o, "address", string);
        let port = opt(d, &mut o, "port", uint);
        let tags = opt_tags(d, &mut o, "tags");
        let backend_ref = opt(d, &mut o, "backendRef", |d, v, p| {
            let mut o = d.object(v, p)?;
            let kind = opt(d, &mut o, "kind", string);
            let name = opt(d, &mut o, "name", string);
            let port = opt(d, &mut o, "port", uint);
            let labels = opt_labels(d, &mut o, "labels");
            let fields = (|| -> Result<_, ()> {
                Ok(BackendRef {
                    kind: kind?,
                    name: name?,
                    port: port?,
                    labels: labels?,
                })
            })();
            done(d, o, fields)
        });
        let fields = (|| -> Result<_, ()> {
            Ok(Self {
                address: address?,
                port: port?,
                tags: tags?,
                backend_ref: backend_ref?,
            })
        })();
        done(d, o, fields)
    }
}

impl Gateway {
    fn decode(d: &mut Decoder, v: &Value, path: &FieldPath) -> Option<Self> {
        let mut o = d.object(v, path)?;
        let tags = opt_tags(d, &mut o, "tags");
        let gateway_type = opt(d, &mut o, "type", |d, v, p| {
            decode_enum(d, v, p, &GATEWAY_TYPES)
        });
        let fields = (|| -> Result<_, ()> {
            Ok(Self {
                tags: tags?,
                gateway_type: gateway_type?,
            })
        })();
        done(d, o, fields)
    }
}

impl TransparentProxying {
    fn decode(d: &mut Decoder, v: &Value, path: &FieldPath) -> Option<Self> {
        let mut o = d.object(v, path)?;
        let redirect_port_inbound = opt(d, &mut o, "redirectPortInbound", redirect_port);
        let redirect_port_outbound = opt(d, &mut o, "redirectPortOutbound", redirect_port);
        let direct_access_services = opt(d, &mut o, "directAccessServices", strings);
        let reachable_services = opt(d, &mut o, "reachableServices", strings);
        let ip_family_mode = opt(d, &mut o, "ipFamilyMode", |d, v, p| {
            decode_enum(d, v, p, &IP_FAMILY_MODES)
        });
        let reachable_backends = opt(d, &mut o, "reachableBackends", |d, v, p| {
            let mut o = d.object(v, p)?;
            let refs = opt(d, &mut o, "refs", |d, v, p| {
                d.list(v, p, ReachableBackendRef::decode)
            });
            done(d, o, refs.map(|refs| ReachableBackends { refs }))
        });
        let fields = (|| -> Result<_, ()> {
            Ok(Self {
                redirect_port_inbound: redirect_port_inbound?,
                redirect_port_outbound: redirect_port_outbound?,
                direct_access_services: direct_access_services?,
                reachable_services: reachable_services?,
                ip_family_mode: ip_family_mode?,
                reachable_backends: reachable_backends?,
            })
        })();
        done(d, o, fields)
    }
}

/// A redirect port: 0 means the agent's default; above 65535 is refused with Kuma's words (Kuma's
/// schema declares the bound but does not enforce it).
fn redirect_port(d: &mut Decoder, v: &Value, p: &FieldPath) -> Option<u32> {
    let port = d.u32(v, p)?;
    if port > 65535 {
        d.violation(p, super::mesh_telemetry::PORT_RANGE);
        return None;
    }
    Some(port)
}

impl ReachableBackendRef {
    fn decode(d: &mut Decoder, v: &Value, path: &FieldPath) -> Option<Self> {
        let mut o = d.object(v, path)?;
        let kind = opt(d, &mut o, "kind", string);
        let name = opt(d, &mut o, "name", string);
        let namespace = opt(d, &mut o, "namespace", string);
        let port = opt(d, &mut o, "port", uint);
        let labels = opt_labels(d, &mut o, "labels");
        let fields = (|| -> Result<_, ()> {
            Ok(Self {
                kind: kind?,
                name: name?,
                namespace: namespace?,
                port: port?,
                labels: labels?,
            })
        })();
        done(d, o, fields)
    }
}

impl Listener {
    fn decode(d: &mut Decoder, v: &Value, path: &FieldPath) -> Option<Self> {
        let mut o = d.object(v, path)?;
        let listener_type = opt(d, &mut o, "type", |d, v, p| {
            decode_enum(d, v, p, &LISTENER_TYPES)
        });
        let address = opt(d, &mut o, "address", string);
        let port = opt(d, &mut o, "port", uint);
        let name = opt(d, &mut o, "name", string);
        let state = opt(d, &mut o, "state", |d, v, p| {
            decode_enum(d, v, p, &LISTENER_STATES)
        });
        let fields = (|| -> Result<_, ()> {
            Ok(Self {
                listener_type: listener_type?,
                address: address?,
                port: port?,
                name: name?,
                state: state?,
            })
        })();
        done(d, o, fields)
    }
}

impl Probes {
    pub(super) fn decode(d: &mut Decoder, v: &Value, path: &FieldPath) -> Option<Self> {
        let mut o = d.object(v, path)?;
        let port = opt(d, &mut o, "port", uint);
        let endpoints = opt(d, &mut o, "endpoints", |d, v, p| {
            d.list(v, p, |d, v, p| {
                let mut o = d.object(v, p)?;
                let inbound_port = opt(d, &mut o, "inboundPort", uint);
                let inbound_path = opt(d, &mut o, "inboundPath", string);
                let path = opt(d, &mut o, "path", string);
                let fields = (|| -> Result<_, ()> {
                    Ok(ProbeEndpoint {
                        inbound_port: inbound_port?,
                        inbound_path: inbound_path?,
                        path: path?,
                    })
                })();
                done(d, o, fields)
            })
        });
        let fields = (|| -> Result<_, ()> {
            Ok(Self {
                port: port?,
                endpoints: endpoints?,
            })
        })();
        done(d, o, fields)
    }
}
