//! Kuma 2.14's rules for a universal Dataplane (`dataplane_validator.go`), in its order, at its
//! field paths and in its words — including its `networking.transparentProxing` and
//! `networking.probes` paths, which name no field — over the typed parts `dataplane_net.rs` decoded.

use std::{
    collections::{HashMap, HashSet},
    net::{IpAddr, Ipv4Addr},
};

use serde_json::Value;

use super::{
    dataplane::{PROTOCOL_TAG, SERVICE_TAG},
    dataplane_net::{
        Gateway, GatewayType, Inbound, ListenerType, Networking, Outbound, Probes, Tags,
        TransparentProxying,
    },
    kuma_net,
    mesh_metrics::MetricsBackend,
    mesh_telemetry::PORT_RANGE,
    names,
};
use crate::{decode::Decoder, validation::FieldPath};

/// The backend kinds an outbound's `backendRef` and a reachable backend may name, sorted as Kuma
/// lists them.
const BACKEND_KINDS: [&str; 3] = ["MeshExternalService", "MeshMultiZoneService", "MeshService"];
/// Protocols Kuma parses (case-insensitively); its hint lists only `SUPPORTED_PROTOCOLS`.
const KNOWN_PROTOCOLS: [&str; 7] = ["http", "http2", "tcp", "tls", "grpc", "kafka", "mysql"];
const SUPPORTED_PROTOCOLS: &str = "Allowed values: grpc, http, http2, kafka, tcp";
const DIFFER: &str = "serviceAddress and servicePort has to differ from address and port";
/// Kuma's tag character reasons leave out `:`, which its character sets allow.
const COLON_DETAIL: &str = "':' is allowed too";

/// What `check` was given of a Dataplane: each part decoded, or `None` where its JSON types were
/// wrong (those violations are already reported, and Kuma's rules skip the part).
pub(super) struct Parts<'a> {
    pub networking: Option<&'a Networking>,
    /// `None` when absent; `Some(None)` when present but not decoded.
    pub probes: Option<Option<&'a Probes>>,
    pub metrics: Option<(&'a Value, FieldPath)>,
}

/// Kuma's `DataplaneResource.Validate`. Returns the decoded `metrics` (`Err` when refused), which
/// is judged at its place in Kuma's order.
pub(super) fn check(d: &mut Decoder, parts: Parts<'_>) -> Result<Option<MetricsBackend>, ()> {
    let net = FieldPath::root().field("networking");
    if let Some(n) = parts.networking {
        admin(d, n, &net);
    }
    let gateway = parts
        .networking
        .and_then(|n| n.gateway.as_ref().map(|g| (n, g)));
    match gateway {
        Some((n, g)) if g.gateway_type == Some(GatewayType::Builtin) => {
            refuse_present(d, &net, "inbound", n.inbound.as_deref(), "builtin");
            refuse_present(d, &net, "outbound", n.outbound.as_deref(), "builtin");
            refuse_present(d, &net, "listeners", n.listeners.as_deref(), "builtin");
            if parts.probes.is_some() {
                d.violation(
                    &net.field("probes"),
                    "probes cannot be defined for builtin gateways",
                );
            }
            gateway_tags(d, g, &net.field("gateway").field("tags"));
            networking(d, n, &net);
            // Kuma does not judge a gateway's metrics; Meshplane decodes them, so it does.
            decode_metrics(d, parts.metrics)
        }
        Some((n, g)) => {
            refuse_present(d, &net, "inbound", n.inbound.as_deref(), "delegated");
            refuse_present(d, &net, "listeners", n.listeners.as_deref(), "delegated");
            gateway_tags(d, g, &net.field("gateway").field("tags"));
            networking(d, n, &net);
            probes(d, parts.probes);
            decode_metrics(d, parts.metrics)
        }
        None => {
            if let Some(n) = parts.networking {
                networking(d, n, &net);
            }
            probes(d, parts.probes);
            let metrics = decode_metrics(d, parts.metrics);
            if let Some(n) = parts.networking {
                listeners(d, n, &net.field("listeners"));
            }
            metrics
        }
    }
}

fn refuse_present<T>(
    d: &mut Decoder,
    net: &FieldPath,
    field: &str,
    items: Option<&[T]>,
    kind: &str,
) {
    if items.is_some_and(|i| !i.is_empty()) {
        d.violation(
            &net.field(field),
            format!("{field} cannot be defined for {kind} gateways"),
        );
    }
}

fn decode_metrics(
    d: &mut Decoder,
    metrics: Option<(&Value, FieldPath)>,
) -> Result<Option<MetricsBackend>, ()> {
    match metrics {
        Some((v, p)) => MetricsBackend::decode(d, v, &p).map(Some).ok_or(()),
        None => Ok(None),
    }
}

fn port(d: &mut Decoder, p: &FieldPath, port: Option<u32>) {
    if !(1..=65535).contains(&port.unwrap_or(0)) {
        d.violation(p, PORT_RANGE);
    }
}

fn text(s: &Option<String>) -> &str {
    s.as_deref().unwrap_or_default()
}

/// Kuma's `validateAddress`, for the Dataplane's and each listener's address.
fn address(d: &mut Decoder, base: &FieldPath, address: &str) {
    let p = base.field("address");
    if address.is_empty() {
        d.violation(&p, "address can't be empty");
        return;
    }
    if address == "0.0.0.0" || address == "::" {
        d.violation(&p, "must not be 0.0.0.0 or ::");
    }
    if kuma_net::parse_ip(address).is_none() && !kuma_net::is_dns_name(address) {
        d.violation(&p, "address has to be valid IP address or domain name");
    }
}

/// Kuma's admin-port rule: Envoy's admin listens on 127.0.0.1, so its port must be free there.
fn admin(d: &mut Decoder, n: &Networking, net: &FieldPath) {
    let Some(admin) = &n.admin else { return };
    let p = net.field("admin").field("port");
    let port = admin.port.unwrap_or(0);
    let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let dp_address = text(&n.address);
    let inbound_uses = n.inbound.iter().flatten().any(|i| {
        let dp_port = i.port.unwrap_or(0);
        let dp_ip = non_empty(text(&i.address)).unwrap_or(dp_address);
        let workload_ip = non_empty(text(&i.service_address)).unwrap_or(dp_ip);
        let workload_port = i.service_port.filter(|p| *p != 0).unwrap_or(dp_port);
        (port == dp_port && overlap(lo, dp_ip))
            || (port == workload_port && overlap(lo, workload_ip))
    });
    if inbound_uses {
        d.violation(&p, "must differ from inbound");
    }
    let outbound_uses = n.outbound.iter().flatten().any(|o| {
        port == o.port.unwrap_or(0)
            && overlap(lo, non_empty(text(&o.address)).unwrap_or("127.0.0.1"))
    });
    if outbound_uses {
        d.violation(&p, "must differ from outbound");
    }
}

fn non_empty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

/// Go's `overlap`: a wildcard address overlaps everything; otherwise the same IP. An address that
/// is not an IP overlaps nothing.
fn overlap(a: IpAddr, b: &str) -> bool {
    match kuma_net::parse_ip(b) {
        Some(b) => a.is_unspecified() || b.is_unspecified() || kuma_net::same_ip(a, b),
        None => false,
    }
}

/// Kuma's `validateNetworking`: the address, every inbound, every outbound, transparent proxying.
fn networking(d: &mut Decoder, n: &Networking, net: &FieldPath) {
    let dp_address = text(&n.address);
    address(d, net, dp_address);
    for (i, inbound) in n.inbound.iter().flatten().enumerate() {
        let p = net.field("inbound").index(i);
        self::inbound(d, inbound, dp_address, &p);
        if let Some(tags) = inbound.tags.as_ref().filter(|t| !t.is_empty())
            && !tags.contains_key(SERVICE_TAG)
        {
            d.violation(&p.field("tags").key(SERVICE_TAG), "tag has to exist");
        }
    }
    for (i, outbound) in n.outbound.iter().flatten().enumerate() {
        self::outbound(d, outbound, &net.field("outbound").index(i));
    }
    if let Some(tp) = &n.transparent_proxying {
        transparent_proxying(d, tp, &net.field("transparentProxing"));
    }
}

fn protocol_known(p: &str) -> bool {
    KNOWN_PROTOCOLS.contains(&p.to_ascii_lowercase().as_str())
}

fn inbound(d: &mut Decoder, i: &Inbound, dp_address: &str, p: &FieldPath) {
    let port_ = i.port.unwrap_or(0);
    port(d, &p.field("port"), i.port);
    let service_port = i.service_port.unwrap_or(0);
    if service_port != 0 {
        port(d, &p.field("servicePort"), i.service_port);
    }
    let same_port = service_port == 0 || service_port == port_;
    let service_address = text(&i.service_address);
    if !service_address.is_empty() {
        if kuma_net::parse_ip(service_address).is_none() {
            d.violation(
                &p.field("serviceAddress"),
                "serviceAddress has to be valid IP address",
            );
        }
        if service_address == dp_address && same_port {
            d.violation(&p.field("serviceAddress"), DIFFER);
        }
    }
    let address = text(&i.address);
    if !address.is_empty() {
        if kuma_net::parse_ip(address).is_none() {
            d.violation(&p.field("address"), "address has to be valid IP address");
        }
        if address == service_address && same_port {
            d.violation(&p.field("serviceAddress"), DIFFER);
        }
    }
    let tags_path = p.field("tags");
    let empty = Tags::new();
    let tags = i.tags.as_ref().unwrap_or(&empty);
    if let Some(v) = tags.get(PROTOCOL_TAG)
        && !protocol_known(v)
    {
        d.violation(
            &tags_path.key(PROTOCOL_TAG),
            format!("tag {PROTOCOL_TAG:?} has an invalid value {v:?}. {SUPPORTED_PROTOCOLS}"),
        );
    }
    self::tags(d, &tags_path, tags, false);
    let protocol = text(&i.protocol);
    if !protocol.is_empty() && !protocol_known(protocol) {
        d.violation(
            &p.field("protocol"),
            format!("has an invalid value {protocol:?}. {SUPPORTED_PROTOCOLS}"),
        );
    }
    if let Some(probe) = &i.service_probe {
        let pp = p.field("serviceProbe");
        for (field, value) in [("interval", &probe.interval), ("timeout", &probe.timeout)] {
            if value.as_ref().is_some_and(|v| v.nanos() == 0) {
                d.violation(&pp.field(field), "must have a positive value");
            }
        }
        for (field, value) in [
            ("unhealthyThreshold", probe.unhealthy_threshold),
            ("healthyThreshold", probe.healthy_threshold),
        ] {
            if value == Some(0) {
                d.violation(&pp.field(field), "must have a positive value");
            }
        }
    }
}

/// Kuma's `ValidateTags`: each name and value in name order, then the service tag if required.
fn tags(d: &mut Decoder, p: &FieldPath, tags: &Tags, require_service: bool) {
    for (name, value) in tags {
        if name.is_empty() {
            d.violation(p, "tag name must be non-empty");
        }
        if !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-_:/".contains(&b))
        {
            d.violation_detailed(
                &p.key(name),
                "tag name must consist of alphanumeric characters, dots, dashes, slashes and underscores",
                COLON_DETAIL,
            );
        }
        if value.is_empty() {
            d.violation(&p.key(name), "tag value must be non-empty");
        }
        if !value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-_:".contains(&b))
        {
            d.violation_detailed(
                &p.key(name),
                "tag value must consist of alphanumeric characters, dots, dashes and underscores",
                COLON_DETAIL,
            );
        }
    }
    if require_service && !tags.contains_key(SERVICE_TAG) {
        d.violation(p, format!("mandatory tag {SERVICE_TAG:?} is missing"));
    }
}

fn outbound(d: &mut Decoder, o: &Outbound, p: &FieldPath) {
    port(d, &p.field("port"), o.port);
    let address = text(&o.address);
    if !address.is_empty() && kuma_net::parse_ip(address).is_none() {
        d.violation(&p.field("address"), "address has to be valid IP address");
    }
    let empty = Tags::new();
    let tags = o.tags.as_ref().unwrap_or(&empty);
    match &o.backend_ref {
        Some(r) => {
            let rp = p.field("backendRef");
            let kind = text(&r.kind);
            if !BACKEND_KINDS.contains(&kind) {
                d.violation(&rp.field("kind"), kinds_reason());
            }
            if text(&r.name).is_empty() && r.labels.as_ref().is_none_or(Tags::is_empty) {
                d.violation(&rp, "either 'name' or 'labels' should be specified");
            }
            // A MeshExternalService's port comes from its endpoints.
            if kind != "MeshExternalService" {
                port(d, &rp.field("port"), r.port);
            }
            if !tags.is_empty() {
                d.violation(&rp, "both backendRef and tags/service cannot be defined");
            }
        }
        None if tags.is_empty() => {
            d.violation(
                &p.field("tags"),
                format!("mandatory tag {SERVICE_TAG:?} is missing"),
            );
        }
        None => self::tags(d, &p.field("tags"), tags, true),
    }
}

fn kinds_reason() -> String {
    format!(
        "invalid value. Available values are: {}",
        BACKEND_KINDS.join(",")
    )
}

fn transparent_proxying(d: &mut Decoder, tp: &TransparentProxying, base: &FieldPath) {
    let refs = tp.reachable_backends.as_ref().and_then(|r| r.refs.as_ref());
    let path = base.field("reachableBackends").field("refs");
    for (i, r) in refs.into_iter().flatten().enumerate() {
        let p = path.index(i);
        if !BACKEND_KINDS.contains(&text(&r.kind)) {
            d.violation(&p.field("kind"), kinds_reason());
        }
        let (name, namespace) = (text(&r.name), text(&r.namespace));
        let labels = r.labels.as_ref().is_some_and(|l| !l.is_empty());
        if !name.is_empty()
            && let Some(reason) = names::name_violation(name, names::MAX_NAME)
        {
            d.violation(&p.field("name"), reason);
        }
        if name.is_empty() && namespace.is_empty() && !labels {
            d.violation(&p.field("name"), "name or labels are required");
        }
        if name.is_empty() && !namespace.is_empty() {
            d.violation(
                &p.field("name"),
                "name is required, when namespace is defined",
            );
        }
        if (!name.is_empty() || !namespace.is_empty()) && labels {
            d.violation(
                &p.field("labels"),
                "labels cannot be defined when name is specified",
            );
        }
    }
}

/// Kuma's `validateGateway`: tags as an inbound's, the service tag required once there are any,
/// and no protocol but tcp.
fn gateway_tags(d: &mut Decoder, g: &Gateway, p: &FieldPath) {
    let empty = Tags::new();
    let tags = g.tags.as_ref().unwrap_or(&empty);
    if let Some(v) = tags.get(PROTOCOL_TAG)
        && !v.eq_ignore_ascii_case("tcp")
    {
        d.violation(
            &p.key(PROTOCOL_TAG),
            format!("other values than tcp are not allowed, provided value {v:?}"),
        );
    }
    self::tags(d, p, tags, !tags.is_empty());
}

fn probes(d: &mut Decoder, probes: Option<Option<&Probes>>) {
    let Some(Some(probes)) = probes else { return };
    let p = FieldPath::root().field("probes");
    port(d, &p.field("port"), probes.port);
    for (i, e) in probes.endpoints.iter().flatten().enumerate() {
        let ep = p.field("endpoints").index(i);
        port(d, &ep.field("inboundPort"), e.inbound_port);
        for (field, value) in [("inboundPath", &e.inbound_path), ("path", &e.path)] {
            if kuma_net::request_uri_port(text(value)).is_none() {
                d.violation(&ep.field(field), "should be a valid URL Path");
            }
        }
    }
}

/// Kuma's `validateListeners`: each listener's type, address and port; names unique across
/// inbounds and listeners; no address:port twice, nor on an inbound's.
fn listeners(d: &mut Decoder, n: &Networking, base: &FieldPath) {
    let inbounds = n.inbound.as_deref().unwrap_or_default();
    let mut names: HashSet<String> = inbounds
        .iter()
        .map(|i| match text(&i.name) {
            "" => i.port.unwrap_or(0).to_string(),
            name => name.to_string(),
        })
        .collect();
    let mut taken: HashMap<String, ListenerType> = HashMap::new();
    let dp_address = text(&n.address);
    for (i, l) in n.listeners.iter().flatten().enumerate() {
        let p = base.index(i);
        let kind = l.listener_type.unwrap_or(ListenerType::Unspecified);
        if kind == ListenerType::Unspecified {
            d.violation(&p.field("type"), "type must be ZoneIngress or ZoneEgress");
        }
        address(d, &p, text(&l.address));
        port(d, &p.field("port"), l.port);
        let name = text(&l.name);
        if !name.is_empty() && !names.insert(name.to_string()) {
            d.violation(
                &p.field("name"),
                format!("name {name:?} must be unique across inbounds and listeners"),
            );
        }
        let key = format!("{}:{}", text(&l.address), l.port.unwrap_or(0));
        match taken.get(&key) {
            Some(t) if *t == kind => d.violation(
                &p,
                format!("address:port {key} is already used by another listener"),
            ),
            Some(_) => d.violation(
                &p,
                format!("address:port {key} is used by listeners of different types"),
            ),
            None => {
                taken.insert(key.clone(), kind);
            }
        }
        let collides = inbounds.iter().any(|i| {
            let addr = non_empty(text(&i.address)).unwrap_or(dp_address);
            format!("{addr}:{}", i.port.unwrap_or(0)) == key
        });
        if collides {
            d.violation(
                &p,
                format!("address:port {key} collides with an inbound listener"),
            );
        }
    }
}
