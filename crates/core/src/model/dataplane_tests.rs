//! Table tests for the universal Dataplane, in the shape of Kuma's `dataplane_validator_test.go`:
//! a Dataplane in YAML and the exact list of (field, reason) it gets. Every valid case must read
//! back exactly as it was applied. Rows are Kuma 2.14.3's, in its order; where a row is ours or
//! differs from Kuma's, the comment above it says why (README, "What matches Kong Mesh / Kuma").

use serde_json::Value;

use super::tests::{assert_refused, assert_round_trips, yaml_doc};

/// `type: Dataplane`, `mesh: default` and `name: dp-1` followed by `body`, whose common
/// indentation is removed.
pub(super) fn dataplane(body: &str) -> Value {
    yaml_doc("type: Dataplane\nmesh: default\nname: dp-1\n", body)
}

pub(super) fn refused(body: &str, expected: &[(&str, &str)]) {
    assert_refused(dataplane(body), body, expected);
}

/// Accepted, and read back as applied.
pub(super) fn accepted(body: &str) {
    assert_round_trips(dataplane(body), body);
}

/// Kuma's "should pass validation" table, then the valid rows of its other tables, then ours.
pub(super) const VALID: &[&str] = &[
    // dataplane with inbounds
    r#"
    networking:
      address: 192.168.0.1
      inbound:
        - port: 8080
          tags: {kuma.io/service: backend, version: "1"}
      outbound:
        - port: 3333
          tags: {kuma.io/service: redis}
    "#,
    // dataplane with full inbounds and outbounds
    r#"
    networking:
      address: 192.168.0.1
      inbound:
        - port: 8080
          servicePort: 7777
          address: 127.0.0.1
          tags: {kuma.io/service: backend, version: "1"}
      outbound:
        - port: 3333
          address: 127.0.0.1
          tags: {kuma.io/service: redis}
    "#,
    // dataplane with full inbounds and outbounds ipv6
    r#"
    networking:
      address: 0:0:0:0:0:FFFF:C0A8:0001
      inbound:
        - port: 8080
          servicePort: 7777
          address: ::1
          tags: {kuma.io/service: backend, version: "1"}
      outbound:
        - port: 3333
          address: ::1
          tags: {kuma.io/service: redis}
    "#,
    // dataplane with gateway
    r#"
    networking:
      address: 192.168.0.1
      gateway:
        tags: {kuma.io/service: backend, kuam.io/protocol: tcp, version: "1"}
      outbound:
        - port: 3333
          tags: {kuma.io/service: redis}
    "#,
    // dataplane with valid tags
    r#"
    networking:
      address: 192.168.0.1
      gateway:
        tags: {kuma.io/service: backend, version: "1", kuma.io/valid: "abc.0123-789.under_score:90"}
      outbound:
        - port: 3333
          tags: {kuma.io/service: redis}
    "#,
    // dataplane domain name in the address
    r#"
    networking:
      address: example.com
      inbound:
        - port: 8080
          tags: {kuma.io/service: backend, version: "1"}
      outbound:
        - port: 3333
          tags: {kuma.io/service: redis}
    "#,
    // dataplane with probes
    r#"
    networking:
      address: 192.168.0.1
      inbound:
        - port: 8080
          tags: {kuma.io/service: backend, version: "1"}
    probes:
      port: 9000
      endpoints:
        - inboundPort: 8088
          inboundPath: /healthz
          path: /8080/healthz
    "#,
    // dataplane with service probes
    r#"
    networking:
      address: 192.168.0.1
      inbound:
        - port: 8080
          serviceProbe:
            interval: 1s
            unhealthyThreshold: 5
            tcp: {}
          tags: {kuma.io/service: backend, version: "1"}
    "#,
    // dataplane with admin port equal to inbound and outbound but different network interfaces
    r#"
    networking:
      address: 192.168.0.1
      admin:
        port: 8080
      inbound:
        - port: 8080
          servicePort: 7777
          address: 192.168.0.1
          tags: {kuma.io/service: backend, version: "1"}
      outbound:
        - port: 3333
          address: 192.168.0.1
          tags: {kuma.io/service: redis}
    "#,
    // dataplane with metrics backend defined and unique aggregate entries
    r#"
    networking:
      address: 192.168.0.1
      inbound:
        - port: 8080
          tags: {kuma.io/service: backend}
    metrics:
      type: prometheus
      conf:
        aggregate:
          - {name: app, port: 123, path: /stats}
          - {name: sidecar, port: 999, path: /metrics}
    "#,
    // dataplane with metrics backend type defined
    r#"
    networking:
      address: 192.168.0.1
      inbound:
        - port: 8080
          tags: {kuma.io/service: backend}
    metrics:
      type: prometheus
    "#,
    // dataplane with backend ref for MeshService, MeshExternalService, and with labels
    r#"
    networking:
      address: 192.168.0.1
      inbound:
        - port: 8080
          tags: {kuma.io/service: backend}
      outbound:
        - port: 3333
          backendRef: {kind: MeshService, name: xyz, port: 80}
        - port: 3334
          backendRef: {kind: MeshExternalService, name: xyz}
        - port: 3335
          backendRef:
            kind: MeshService
            labels: {kuma.io/display-name: redis}
            port: 8080
    "#,
    // dataplane with reachableBackendRefs
    r#"
    networking:
      address: 192.168.0.1
      inbound:
        - port: 8080
          tags: {kuma.io/service: backend}
      transparentProxying:
        reachableBackends:
          refs:
            - {kind: MeshService, name: a, port: 9090}
            - {kind: MeshExternalService, name: es, namespace: es1}
            - kind: MeshService
              labels: {kuma.io/test: abc}
    "#,
    // no inbound with transparent proxy
    r#"
    networking:
      address: 192.168.0.1
      transparentProxying:
        redirectPortInbound: 15006
        redirectPortOutbound: 15001
    "#,
    // no inbound outbound-only
    r#"
    networking:
      address: 192.168.0.1
      outbound:
        - port: 3333
          tags: {kuma.io/service: redis}
    "#,
    // dataplane with a single zone-ingress listener
    r#"
    networking:
      address: 192.168.0.1
      inbound:
        - port: 8080
          name: http
          tags: {kuma.io/service: backend}
      listeners:
        - {type: ZoneIngress, address: 192.168.0.1, port: 10001, name: zi-main}
    "#,
    // a zone-egress listener only, two of one type on distinct ports, one without a name
    r#"
    networking:
      address: 192.168.0.1
      listeners:
        - {type: ZoneEgress, address: 192.168.0.1, port: 10002, name: ze-main}
        - {type: ZoneIngress, address: 192.168.0.1, port: 10001, name: zi-a}
        - {type: ZoneIngress, address: 192.168.0.1, port: 10003}
    "#,
    // inbound service address; and different inbound address and port
    r#"
    networking:
      address: 192.168.0.1
      inbound:
        - port: 10001
          serviceAddress: 192.168.0.2
          servicePort: 5050
          address: 1.1.1.1
          tags: {kuma.io/service: backend}
        - port: 10001
          address: 192.168.0.2
          serviceAddress: 192.168.0.2
          servicePort: 10002
          tags: {kuma.io/service: backend}
    "#,
    // empty inbound tags (InboundTagsDisabled): no service tag required
    r#"
    networking:
      address: 192.168.0.1
      inbound:
        - port: 8080
        - port: 8081
          tags: {}
    "#,
    // empty gateway tags (InboundTagsDisabled)
    r#"
    networking:
      address: 192.168.0.1
      gateway:
        type: DELEGATED
        tags: {}
    "#,
    // Ours: every other field of Kuma 2.14's Dataplane, read back as applied.
    r#"
    labels: {kuma.io/workload: web}
    networking:
      address: 10.0.0.1
      advertisedAddress: 203.0.113.7
      admin: {port: 9901}
      inbound:
        - port: 8080
          servicePort: 80
          serviceAddress: 127.0.0.1
          name: http
          protocol: HTTP
          state: NotReady
          health: {ready: false}
          serviceProbe:
            interval: 1m30s
            timeout: 1.5s
            healthyThreshold: 1
            unhealthyThreshold: 3
            tcp: {}
          tags: {kuma.io/service: web, kuma.io/protocol: grpc, kuma.io/zone: east, team: "a:b"}
        - port: 8081
          state: Ignored
          protocol: mysql
          tags: {kuma.io/service: web-admin, kuma.io/protocol: TLS}
      outbound:
        - port: 3333
          tags: {kuma.io/service: redis, version: v1}
        - address: 240.0.0.3
          port: 80
          backendRef: {kind: MeshMultiZoneService, name: redis, port: 6379}
      transparentProxying:
        redirectPortInbound: 15006
        redirectPortOutbound: 0
        ipFamilyMode: DualStack
        directAccessServices: ["*"]
        reachableServices: [redis, pg]
        reachableBackends: {refs: []}
      listeners:
        - {type: ZoneEgress, address: 10.0.0.1, port: 10002, state: NotReady}
    probes:
      port: 9000
      endpoints: []
    metrics:
      name: prom
      type: prometheus
      conf: {port: 5670, path: /metrics, skipMTLS: true}
    "#,
    // Ours: a builtin gateway, and a delegated gateway with probes and an admin port.
    r#"
    networking:
      address: gw.example.com
      gateway:
        type: BUILTIN
        tags: {kuma.io/service: edge, kuma.io/protocol: tcp}
    "#,
    r#"
    networking:
      address: 192.168.0.1
      admin: {port: 9902}
      gateway:
        tags: {kuma.io/service: kong}
      outbound:
        - port: 9902
          address: 192.168.0.1
          tags: {kuma.io/service: redis}
    probes:
      port: 9000
    "#,
    // Ours: negative probe durations pass Kuma's check (it refuses only zero).
    r#"
    networking:
      address: 192.168.0.1
      inbound:
        - port: 8080
          serviceProbe: {interval: -1s, timeout: 300ms}
          tags: {kuma.io/service: backend}
    "#,
];

#[test]
fn valid_dataplanes_are_accepted_and_read_back_as_applied() {
    for body in VALID {
        accepted(body);
    }
}

const INBOUND: &str = "\n  inbound:\n    - port: 8080\n      tags: {kuma.io/service: backend}";

/// `networking.address: 192.168.0.1`, one inbound, then `rest` (indented under `networking`).
fn with_inbound(rest: &str) -> String {
    format!("networking:\n  address: 192.168.0.1{INBOUND}\n{rest}")
}

#[test]
fn kuma_refusals_of_the_address() {
    for addr in ["0.0.0.0", "\"::\""] {
        refused(
            &format!("networking:\n  address: {addr}{INBOUND}"),
            &[("networking.address", "must not be 0.0.0.0 or ::")],
        );
    }
    refused("# no networking", &[("networking", "must be defined")]);
    refused(
        "networking: {}",
        &[("networking.address", "address can't be empty")],
    );
    refused(
        &format!("networking:{INBOUND}"),
        &[("networking.address", "address can't be empty")],
    );
    refused(
        &format!("networking:\n  address: ..>_<..{INBOUND}"),
        &[(
            "networking.address",
            "address has to be valid IP address or domain name",
        )],
    );
}

#[test]
fn kuma_refusals_of_gateways() {
    refused(
        r#"
        networking:
          address: 192.168.0.1
          inbound:
            - port: 8080
              servicePort: 7777
              tags: {kuma.io/service: backend, version: "1"}
          gateway:
            tags: {kuma.io/service: kong}
          outbound:
            - port: 3333
              tags: {kuma.io/service: redis}
        "#,
        &[(
            "networking.inbound",
            "inbound cannot be defined for delegated gateways",
        )],
    );
    refused(
        r#"
        networking:
          address: 192.168.0.1
          gateway:
            tags: {kuma.io/service: kong}
          listeners:
            - {type: ZoneEgress, address: 192.168.0.1, port: 10002, name: ze-port}
        "#,
        &[(
            "networking.listeners",
            "listeners cannot be defined for delegated gateways",
        )],
    );
    let builtin = "networking:\n  address: 192.168.0.1\n  gateway:\n    type: BUILTIN\n    tags: {kuma.io/service: kong}\n";
    refused(
        &format!("{builtin}  inbound:\n    - port: 3333\n      tags: {{kuma.io/service: kong}}"),
        &[(
            "networking.inbound",
            "inbound cannot be defined for builtin gateways",
        )],
    );
    refused(
        &format!("{builtin}  outbound:\n    - port: 3333\n      tags: {{kuma.io/service: kong}}"),
        &[(
            "networking.outbound",
            "outbound cannot be defined for builtin gateways",
        )],
    );
    let probes = "probes:\n  port: 0\n  endpoints:\n    - {inboundPort: 8088, inboundPath: /healthz, path: /8080/healthz}";
    // Kuma reports the builtin gateway's probes at `networking.probes`, a field that does not exist.
    refused(
        &format!("{builtin}{probes}"),
        &[(
            "networking.probes",
            "probes cannot be defined for builtin gateways",
        )],
    );
    let listeners = "  listeners:\n    - {type: ZoneEgress, address: 192.168.0.1, port: 10002, name: ze-port}\n";
    refused(
        &format!("{builtin}{listeners}"),
        &[(
            "networking.listeners",
            "listeners cannot be defined for builtin gateways",
        )],
    );
    refused(
        &format!("{builtin}{listeners}{probes}"),
        &[
            (
                "networking.listeners",
                "listeners cannot be defined for builtin gateways",
            ),
            (
                "networking.probes",
                "probes cannot be defined for builtin gateways",
            ),
        ],
    );
    refused(
        "networking:\n  address: 192.168.0.1\n  gateway:\n    type: BUILTIN\n    tags: {foo: bar}",
        &[(
            "networking.gateway.tags",
            "mandatory tag \"kuma.io/service\" is missing",
        )],
    );
    let gateway = |tags: &str| {
        format!(
            "networking:\n  address: 192.168.0.1\n  gateway:\n    tags: {tags}\n  outbound:\n    - port: 3333\n      tags: {{kuma.io/service: redis}}"
        )
    };
    refused(
        &gateway("{version: v1}"),
        &[(
            "networking.gateway.tags",
            "mandatory tag \"kuma.io/service\" is missing",
        )],
    );
    refused(
        &gateway("{kuma.io/service: backend, version: null}"),
        &[(
            "networking.gateway.tags[\"version\"]",
            "tag value must be non-empty",
        )],
    );
    refused(
        &gateway("{kuma.io/service: backend, kuma.io/protocol: http}"),
        &[(
            "networking.gateway.tags[\"kuma.io/protocol\"]",
            "other values than tcp are not allowed, provided value \"http\"",
        )],
    );
}

#[test]
fn kuma_refusals_of_inbounds() {
    refused(
        r#"
        networking:
          address: 192.168.0.1
          inbound:
            - tags: {kuma.io/service: backend, version: "1"}
            - port: 65536
              tags: {kuma.io/service: sub-backend}
        "#,
        &[
            (
                "networking.inbound[0].port",
                "port must be in the range [1, 65535]",
            ),
            (
                "networking.inbound[1].port",
                "port must be in the range [1, 65535]",
            ),
        ],
    );
    let one = |fields: &str| {
        format!("networking:\n  address: 192.168.0.1\n  inbound:\n    - port: 1234\n{fields}")
    };
    refused(
        &one("      servicePort: 65536\n      tags: {kuma.io/service: backend}"),
        &[(
            "networking.inbound[0].servicePort",
            "port must be in the range [1, 65535]",
        )],
    );
    refused(
        &one("      address: invalid-address\n      tags: {kuma.io/service: backend}"),
        &[(
            "networking.inbound[0].address",
            "address has to be valid IP address",
        )],
    );
    refused(
        &one("      tags: {version: v1}"),
        &[(
            "networking.inbound[0].tags[\"kuma.io/service\"]",
            "tag has to exist",
        )],
    );
    // A null tag value is an empty one to Kuma.
    refused(
        &one("      tags: {kuma.io/service: backend, version: null}"),
        &[(
            "networking.inbound[0].tags[\"version\"]",
            "tag value must be non-empty",
        )],
    );
    refused(
        &one("      tags: {kuma.io/service: backend, kuma.io/protocol: null}"),
        &[
            (
                "networking.inbound[0].tags[\"kuma.io/protocol\"]",
                "tag \"kuma.io/protocol\" has an invalid value \"\". Allowed values: grpc, http, http2, kafka, tcp",
            ),
            (
                "networking.inbound[0].tags[\"kuma.io/protocol\"]",
                "tag value must be non-empty",
            ),
        ],
    );
    refused(
        &one(
            "      tags: {kuma.io/service: backend, kuma.io/protocol: not-yet-supported-protocol}",
        ),
        &[(
            "networking.inbound[0].tags[\"kuma.io/protocol\"]",
            "tag \"kuma.io/protocol\" has an invalid value \"not-yet-supported-protocol\". Allowed values: grpc, http, http2, kafka, tcp",
        )],
    );
    refused(
        &one("      tags: {kuma.io/service: backend, version: v1, \"inv@lidT/gN%me\": value}"),
        &[(
            "networking.inbound[0].tags[\"inv@lidT/gN%me\"]",
            "tag name must consist of alphanumeric characters, dots, dashes, slashes and underscores",
        )],
    );
    refused(
        &one("      tags: {kuma.io/service: backend, version: v1, invalidTagValue: inv@lid+t@g}"),
        &[(
            "networking.inbound[0].tags[\"invalidTagValue\"]",
            "tag value must consist of alphanumeric characters, dots, dashes and underscores",
        )],
    );
    let service = |fields: &str| {
        format!(
            "networking:\n  address: 192.168.0.1\n  inbound:\n    - port: 10001\n{fields}      tags: {{kuma.io/service: backend}}"
        )
    };
    refused(
        &service("      serviceAddress: INVALID\n"),
        &[(
            "networking.inbound[0].serviceAddress",
            "serviceAddress has to be valid IP address",
        )],
    );
    refused(
        &service("      serviceAddress: 192.168.0.1\n"),
        &[(
            "networking.inbound[0].serviceAddress",
            "serviceAddress and servicePort has to differ from address and port",
        )],
    );
    refused(
        &service("      address: 192.168.0.2\n      serviceAddress: 192.168.0.2\n"),
        &[(
            "networking.inbound[0].serviceAddress",
            "serviceAddress and servicePort has to differ from address and port",
        )],
    );
    // Ours: both of Kuma's overlap checks fire when all three addresses are one.
    refused(
        &service(
            "      address: 192.168.0.1\n      serviceAddress: 192.168.0.1\n      servicePort: 10001\n",
        ),
        &[
            (
                "networking.inbound[0].serviceAddress",
                "serviceAddress and servicePort has to differ from address and port",
            ),
            (
                "networking.inbound[0].serviceAddress",
                "serviceAddress and servicePort has to differ from address and port",
            ),
        ],
    );
    refused(
        &one("      protocol: quic\n      tags: {kuma.io/service: backend}"),
        &[(
            "networking.inbound[0].protocol",
            "has an invalid value \"quic\". Allowed values: grpc, http, http2, kafka, tcp",
        )],
    );
    refused(
        r#"
        networking:
          address: 192.168.0.1
          inbound:
            - port: 8080
              serviceProbe:
                timeout: 1s
                interval: "0"
                healthyThreshold: 5
                unhealthyThreshold: 0
                tcp: {}
              tags: {kuma.io/service: backend, version: "1"}
        "#,
        &[
            (
                "networking.inbound[0].serviceProbe.interval",
                "must have a positive value",
            ),
            (
                "networking.inbound[0].serviceProbe.unhealthyThreshold",
                "must have a positive value",
            ),
        ],
    );
}

#[test]
fn kuma_refusals_of_outbounds() {
    refused(
        &with_inbound("  outbound:\n    - port: 3333"),
        &[(
            "networking.outbound[0].tags",
            "mandatory tag \"kuma.io/service\" is missing",
        )],
    );
    refused(
        &with_inbound("  outbound:\n    - port: 3333\n      tags: {version: v1}"),
        &[(
            "networking.outbound[0].tags",
            "mandatory tag \"kuma.io/service\" is missing",
        )],
    );
    refused(
        &with_inbound(
            "  outbound:\n    - tags: {kuma.io/service: redis}\n    - port: 65536\n      tags: {kuma.io/service: elastic}",
        ),
        &[
            (
                "networking.outbound[0].port",
                "port must be in the range [1, 65535]",
            ),
            (
                "networking.outbound[1].port",
                "port must be in the range [1, 65535]",
            ),
        ],
    );
    refused(
        &with_inbound(
            "  outbound:\n    - port: 3333\n      address: invalid\n      tags: {kuma.io/service: elastic}",
        ),
        &[(
            "networking.outbound[0].address",
            "address has to be valid IP address",
        )],
    );
    refused(
        &with_inbound("  outbound:\n    - port: 3333\n      backendRef: {}"),
        &[
            (
                "networking.outbound[0].backendRef.kind",
                "invalid value. Available values are: MeshExternalService,MeshMultiZoneService,MeshService",
            ),
            (
                "networking.outbound[0].backendRef",
                "either 'name' or 'labels' should be specified",
            ),
            (
                "networking.outbound[0].backendRef.port",
                "port must be in the range [1, 65535]",
            ),
        ],
    );
    refused(
        &with_inbound(
            "  outbound:\n    - port: 3333\n      tags: {kuma.io/service: xyz}\n      backendRef: {kind: MeshService, name: xyz, port: 8080}\n    - port: 3334\n      tags: {service: xyz}\n      backendRef: {kind: MeshService, name: xyz}",
        ),
        &[
            (
                "networking.outbound[0].backendRef",
                "both backendRef and tags/service cannot be defined",
            ),
            (
                "networking.outbound[1].backendRef.port",
                "port must be in the range [1, 65535]",
            ),
            (
                "networking.outbound[1].backendRef",
                "both backendRef and tags/service cannot be defined",
            ),
        ],
    );
}
