//! The rest of Kuma's Dataplane refusal table (probes, admin port, metrics, transparent proxying,
//! listeners), Meshplane's own rows (JSON types, unknown fields, details), and the identity a
//! Dataplane's certificates carry.

use super::{
    Resource, Spec,
    dataplane::{DataplaneIdentity, DataplaneSpec},
    dataplane_tests::{dataplane, refused},
};

const NET: &str = "networking:\n  address: 192.168.0.1\n  inbound:\n    - port: 8080\n      servicePort: 7777\n      address: 127.0.0.1\n      tags: {kuma.io/service: backend, version: \"1\"}\n  outbound:\n    - port: 3333\n      address: 127.0.0.1\n      tags: {kuma.io/service: redis}\n";

#[test]
fn kuma_refusals_of_probes() {
    refused(
        r#"
        networking:
          address: 192.168.0.1
          inbound:
            - port: 8080
              tags: {kuma.io/service: backend}
        probes:
          port: 0
          endpoints:
            - {inboundPort: 8088, inboundPath: /healthz, path: /8080/healthz}
            - {inboundPort: 99999999, inboundPath: healthz, path: 8080/healthz}
            - {inboundPort: 1000, inboundPath: null, path: null}
        "#,
        &[
            ("probes.port", "port must be in the range [1, 65535]"),
            (
                "probes.endpoints[1].inboundPort",
                "port must be in the range [1, 65535]",
            ),
            (
                "probes.endpoints[1].inboundPath",
                "should be a valid URL Path",
            ),
            ("probes.endpoints[1].path", "should be a valid URL Path"),
            (
                "probes.endpoints[2].inboundPath",
                "should be a valid URL Path",
            ),
            ("probes.endpoints[2].path", "should be a valid URL Path"),
        ],
    );
}

#[test]
fn kuma_refusals_of_the_admin_port() {
    refused(
        &format!("{NET}  admin:\n    port: 8080"),
        &[("networking.admin.port", "must differ from inbound")],
    );
    refused(
        &format!("{NET}  admin:\n    port: 3333"),
        &[("networking.admin.port", "must differ from outbound")],
    );
    // The workload's port counts too, and a wildcard address overlaps loopback.
    refused(
        "networking:\n  address: 192.168.0.1\n  admin: {port: 7777}\n  inbound:\n    - port: 8080\n      servicePort: 7777\n      serviceAddress: 0.0.0.0\n      tags: {kuma.io/service: backend}",
        &[("networking.admin.port", "must differ from inbound")],
    );
}

#[test]
fn kuma_refusals_of_metrics() {
    refused(
        &format!(
            "{NET}metrics:\n  type: prometheus\n  conf:\n    aggregate:\n      - {{name: app, port: 123, path: /stats}}\n      - {{name: app, port: 999, path: /metrics}}\n      - {{name: duplicate-app, port: 12366, path: /duplicate}}\n      - {{name: duplicate-app, port: 12345, path: /other}}"
        ),
        &[
            (
                "metrics.conf.aggregate[1].name",
                "duplicate entry: app, values have to be unique",
            ),
            (
                "metrics.conf.aggregate[3].name",
                "duplicate entry: duplicate-app, values have to be unique",
            ),
        ],
    );
    refused(
        &format!("{NET}metrics:\n  type: custom-backend"),
        &[(
            "metrics.type",
            "unknown backend type. Available backends: \"prometheus\"",
        )],
    );
}

#[test]
fn kuma_refusals_of_reachable_backends() {
    refused(
        r#"
        networking:
          address: 192.168.0.1
          inbound:
            - port: 8080
              tags: {kuma.io/service: backend}
          transparentProxying:
            reachableBackends:
              refs:
                - kind: Something
                  name: first
                  labels: {kuma.io/test: test}
                - kind: MeshService
                  name: second
                  namespace: not-valid
                  labels: {kuma.io/test: test}
                - kind: MeshService
                  name: third
                  labels: {kuma.io/test: test}
                - {kind: MeshService, name: first$-.kuma}
                - {kind: MeshService}
                - {kind: MeshService, namespace: xyz}
        "#,
        // Kuma's path, `transparentProxing`, misspells the field; it is kept so tools that match
        // Kuma's answers keep working.
        &[
            (
                "networking.transparentProxing.reachableBackends.refs[0].kind",
                "invalid value. Available values are: MeshExternalService,MeshMultiZoneService,MeshService",
            ),
            (
                "networking.transparentProxing.reachableBackends.refs[0].labels",
                "labels cannot be defined when name is specified",
            ),
            (
                "networking.transparentProxing.reachableBackends.refs[1].labels",
                "labels cannot be defined when name is specified",
            ),
            (
                "networking.transparentProxing.reachableBackends.refs[2].labels",
                "labels cannot be defined when name is specified",
            ),
            (
                "networking.transparentProxing.reachableBackends.refs[3].name",
                "invalid characters. A lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
            ),
            (
                "networking.transparentProxing.reachableBackends.refs[4].name",
                "name or labels are required",
            ),
            (
                "networking.transparentProxing.reachableBackends.refs[5].name",
                "name is required, when namespace is defined",
            ),
        ],
    );
}

#[test]
fn kuma_refusals_of_listeners() {
    let with = |listeners: &str| {
        format!(
            "networking:\n  address: 192.168.0.1\n  inbound:\n    - port: 8080\n      name: http\n      tags: {{kuma.io/service: backend}}\n  listeners:\n{listeners}"
        )
    };
    let one = |fields: &str| with(&format!("    - {{type: ZoneIngress, {fields}}}"));
    refused(
        &one("port: 10001, name: zi-main"),
        &[("networking.listeners[0].address", "address can't be empty")],
    );
    for port in ["0", "65536"] {
        refused(
            &one(&format!(
                "address: 192.168.0.1, port: {port}, name: zi-main"
            )),
            &[(
                "networking.listeners[0].port",
                "port must be in the range [1, 65535]",
            )],
        );
    }
    refused(
        &one("address: not-valid!, port: 10001, name: zi-main"),
        &[(
            "networking.listeners[0].address",
            "address has to be valid IP address or domain name",
        )],
    );
    refused(
        &one("address: 192.168.0.1, port: 10001, name: http"),
        &[(
            "networking.listeners[0].name",
            "name \"http\" must be unique across inbounds and listeners",
        )],
    );
    refused(
        &one("address: 192.168.0.1, port: 8080, name: zi-main"),
        &[(
            "networking.listeners[0]",
            "address:port 192.168.0.1:8080 collides with an inbound listener",
        )],
    );
    let two = |a: &str, b: &str| {
        format!("networking:\n  address: 192.168.0.1\n  listeners:\n    - {{{a}}}\n    - {{{b}}}")
    };
    refused(
        &two(
            "type: ZoneIngress, address: 192.168.0.1, port: 10001, name: zi-main",
            "type: ZoneIngress, address: 192.168.0.1, port: 10002, name: zi-main",
        ),
        &[(
            "networking.listeners[1].name",
            "name \"zi-main\" must be unique across inbounds and listeners",
        )],
    );
    refused(
        &two(
            "type: ZoneIngress, address: 192.168.0.1, port: 10001, name: zi-main",
            "type: ZoneEgress, address: 192.168.0.1, port: 10001, name: ze-main",
        ),
        &[(
            "networking.listeners[1]",
            "address:port 192.168.0.1:10001 is used by listeners of different types",
        )],
    );
    refused(
        &two(
            "type: ZoneIngress, address: 192.168.0.1, port: 10001, name: zi-main",
            "type: ZoneIngress, address: 192.168.0.1, port: 10001, name: zi-secondary",
        ),
        &[(
            "networking.listeners[1]",
            "address:port 192.168.0.1:10001 is already used by another listener",
        )],
    );
    // Ours: a listener without a type; an unnamed inbound's name is its port.
    refused(
        &with("    - {address: 192.168.0.1, port: 10001, name: \"8081\"}\n  outbound: []"),
        &[(
            "networking.listeners[0].type",
            "type must be ZoneIngress or ZoneEgress",
        )],
    );
    refused(
        "networking:\n  address: 192.168.0.1\n  inbound:\n    - port: 8080\n  listeners:\n    - {type: ZoneEgress, address: 10.0.0.1, port: 1, name: \"8080\"}",
        &[(
            "networking.listeners[0].name",
            "name \"8080\" must be unique across inbounds and listeners",
        )],
    );
}

#[test]
fn kuma_reports_a_gateways_and_its_networks_violations_together() {
    refused(
        "networking:\n  address: \"::\"\n  admin: {port: 3333}\n  gateway:\n    tags: {kuma.io/service: gw, \"\": x}\n  inbound:\n    - port: 1\n  outbound:\n    - port: 3333\n      tags: {kuma.io/service: redis}\nprobes: {}",
        &[
            ("networking.admin.port", "must differ from outbound"),
            (
                "networking.inbound",
                "inbound cannot be defined for delegated gateways",
            ),
            ("networking.gateway.tags", "tag name must be non-empty"),
            ("networking.address", "must not be 0.0.0.0 or ::"),
            ("probes.port", "port must be in the range [1, 65535]"),
        ],
    );
}

#[test]
fn wrong_json_types_and_unknown_fields_are_named_at_their_field() {
    refused(
        r#"
        networking:
          address: 10
          inbound:
            - port: "8080"
              tags: {kuma.io/service: 1}
              state: Sleeping
              serviceProbe: {interval: 10}
          outbound: {}
          gateway: {type: MAGIC}
          transparentProxying: {redirectPortInbound: 70000, reachableServices: [1]}
          bogus: true
        probes: []
        "#,
        &[
            ("networking.address", "must be a string, not a number"),
            (
                "networking.inbound[0].port",
                "must be a non-negative integer, not a string",
            ),
            (
                "networking.inbound[0].tags[\"kuma.io/service\"]",
                "must be a string, not a number",
            ),
            (
                "networking.inbound[0].serviceProbe.interval",
                "must be a string, not a number",
            ),
            (
                "networking.inbound[0].state",
                "has to be one of Ready, NotReady, Ignored",
            ),
            ("networking.outbound", "must be a list, not an object"),
            (
                "networking.gateway.type",
                "has to be one of DELEGATED, BUILTIN",
            ),
            (
                "networking.transparentProxying.redirectPortInbound",
                "port must be in the range [1, 65535]",
            ),
            (
                "networking.transparentProxying.reachableServices[0]",
                "must be a string, not a number",
            ),
            ("networking.bogus", "unknown field"),
            ("probes", "must be an object, not a list"),
        ],
    );
    refused(
        "networking:\n  address: 10.0.0.1\n  inbound:\n    - port: 80\n      tags: {kuma.io/service: a}\n      serviceProbe: {tcp: {port: 1}}\nextra: 1",
        &[
            (
                "networking.inbound[0].serviceProbe.tcp.port",
                "unknown field",
            ),
            ("extra", "unknown field"),
        ],
    );
}

/// Every violation of `body` with its detail.
fn detailed(body: &str) -> Vec<(String, String, Option<String>)> {
    match Resource::from_universal(&dataplane(body)) {
        Ok(r) => panic!("expected violations, got {r:?}"),
        Err(e) => e
            .violations
            .into_iter()
            .map(|v| (v.field, v.reason, v.detail))
            .collect(),
    }
}

#[test]
fn what_kuma_does_not_say_is_in_the_detail() {
    let got = detailed(
        "networking:\n  address: 10.0.0.1\n  inbound:\n    - port: 80\n      tags: {kuma.io/service: a, \"b c\": \"x y\"}\n      serviceProbe: {interval: 5d}",
    );
    assert_eq!(
        got,
        vec![(
            "networking.inbound[0].serviceProbe.interval".into(),
            "bad Duration: time: unknown unit \"d\" in duration \"5d\"".into(),
            Some(crate::duration::GO_GRAMMAR.into()),
        ),]
    );
    let got = detailed(
        "networking:\n  address: 10.0.0.1\n  inbound:\n    - port: 80\n      tags: {kuma.io/service: a, \"b c\": \"x y\"}",
    );
    let colon = Some("':' is allowed too".to_string());
    assert_eq!(
        got,
        vec![
            (
                "networking.inbound[0].tags[\"b c\"]".into(),
                "tag name must consist of alphanumeric characters, dots, dashes, slashes and underscores".into(),
                colon.clone(),
            ),
            (
                "networking.inbound[0].tags[\"b c\"]".into(),
                "tag value must consist of alphanumeric characters, dots, dashes and underscores".into(),
                colon,
            ),
        ]
    );
}

fn spec_of(body: &str) -> (Resource, DataplaneSpec) {
    let r = Resource::from_universal(&dataplane(body)).expect("valid");
    let Spec::Dataplane(d) = r.spec.clone() else {
        panic!("a Dataplane")
    };
    (r, d)
}

fn identity(body: &str) -> DataplaneIdentity {
    let (r, d) = spec_of(body);
    DataplaneIdentity::of(&r.meta.name, &d, &r.meta.labels)
}

#[test]
fn identity_comes_from_inbounds_the_gateway_or_the_workload_label() {
    let sidecar = identity(
        "networking:\n  address: 10.0.0.1\n  inbound:\n    - port: 80\n      tags: {kuma.io/service: web, version: v1}\n    - port: 81\n      tags: {kuma.io/service: api}\n    - port: 82\n      tags: {kuma.io/service: web}",
    );
    assert_eq!(sidecar.services(), ["web", "api"]);
    let tags = sidecar.tags().expect("an identity");
    assert_eq!(tags["kuma.io/service"].len(), 2);
    assert!(tags["version"].contains("v1"));

    let gateway = identity(
        "networking:\n  address: 10.0.0.1\n  gateway:\n    type: BUILTIN\n    tags: {kuma.io/service: edge, zone-role: ingress}",
    );
    assert_eq!(gateway.services(), ["edge"]);
    assert!(gateway.tags().expect("an identity")["zone-role"].contains("ingress"));

    let workload = identity(
        "labels: {kuma.io/workload: billing}\nnetworking:\n  address: 10.0.0.1\n  outbound:\n    - port: 3333\n      tags: {kuma.io/service: redis}",
    );
    assert_eq!(workload.services(), ["billing"]);
    assert_eq!(
        workload.tags().expect("an identity")["kuma.io/service"]
            .iter()
            .collect::<Vec<_>>(),
        ["billing"]
    );

    // Outbound services are where it goes, not who it is.
    let none = identity(
        "networking:\n  address: 10.0.0.1\n  transparentProxying: {redirectPortInbound: 15006}\n  outbound:\n    - port: 3333\n      tags: {kuma.io/service: redis}",
    );
    assert!(none.services().is_empty());
    assert_eq!(
        none.tags(),
        Err(
            "dataplane \"dp-1\" has no kuma.io/service tag and no kuma.io/workload label, cannot derive mTLS identity"
        )
    );
}

#[test]
fn the_zone_stamps_its_name_where_tags_are() {
    let stamped = |body: &str| {
        let (_, mut d) = spec_of(body);
        d.stamp_zone("east");
        // What was stamped is still a valid Dataplane.
        let spec = Spec::Dataplane(d.clone());
        assert_eq!(
            Spec::from_json(crate::model::ResourceKind::Dataplane, &spec.to_json()),
            Ok(spec)
        );
        d
    };
    let d = stamped(
        "networking:\n  address: 10.0.0.1\n  inbound:\n    - port: 80\n      tags: {kuma.io/service: web}\n    - port: 81\n    - port: 82\n      tags: {}",
    );
    let inbound = d.networking.inbound.as_deref().expect("inbounds");
    assert_eq!(
        inbound[0].tags.as_ref().expect("tags")["kuma.io/zone"],
        "east"
    );
    assert_eq!(inbound[1].tags, None, "no tags stay no tags");
    assert_eq!(inbound[2].tags.as_ref().map(|t| t.len()), Some(0));
    let d =
        stamped("networking:\n  address: 10.0.0.1\n  gateway:\n    tags: {kuma.io/service: gw}");
    let gw = d.networking.gateway.as_ref().and_then(|g| g.tags.as_ref());
    assert_eq!(gw.expect("gateway tags")["kuma.io/zone"], "east");
}
