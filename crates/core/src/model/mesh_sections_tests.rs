//! Table tests for the Mesh sections besides `mtls`, in the shape of Kuma's
//! `mesh_validator_test.go`: a Mesh in YAML and the exact list of (field, reason) it gets. Every
//! valid case must read back exactly as it was applied. Where a row differs from Kuma's table the
//! comment above it says why (README, "What matches Kong Mesh / Kuma").

use serde_json::Value;

use super::{
    Resource,
    tests::{assert_refused, assert_round_trips, yaml_doc},
};

/// `type: Mesh` and `name: m` followed by `body`, whose common indentation is removed.
fn mesh(body: &str) -> Value {
    yaml_doc("type: Mesh\nname: m\n", body)
}

pub(super) fn refused(body: &str, expected: &[(&str, &str)]) {
    assert_refused(mesh(body), body, expected);
}

/// Accepted, and read back as applied.
fn accepted(body: &str) {
    assert_round_trips(mesh(body), body);
}

// Kuma's "should pass validation" table, and the shapes around its rules.
const VALID: &[&str] = &[
    r#"
    mtls:
      enabledBackend: builtin-1
      backends:
      - name: builtin-1
        type: builtin
        dpCert:
          rotation:
            expiration: 2y
    logging:
      backends:
      - name: file-1
        type: file
        conf:
          path: /path/to/file
      - name: file-2
        format: '%START_TIME% %KUMA_SOURCE_SERVICE%'
        type: file
        conf:
          path: /path/to/file2
      - name: tcp-1
        type: tcp
        conf:
          address: kibana:1234
      - name: tcp-2
        format: '%START_TIME% %KUMA_DESTINATION_SERVICE%'
        type: tcp
        conf:
          address: kibana:1234
      defaultBackend: tcp-1
    tracing:
      backends:
      - name: zipkin-us
        sampling: 80.0
        type: zipkin
        conf:
          url: http://zipkin.local:9411/v2/spans
          traceId128bit: true
          apiVersion: httpProto
          sharedSpanContext: true
      - name: zipkin-eu
        type: zipkin
        conf:
          url: http://zipkin.local:9411/v2/spans
      defaultBackend: zipkin-us
    metrics:
      enabledBackend: prom-1
      backends:
      - name: prom-1
        type: prometheus
        conf:
          port: 5670
          path: /metrics
          envoy:
            filterRegex: ^server[0-9]+
            usedOnly: true
          aggregate:
          - name: application
            port: 1234
            path: "/stats"
          - name: sidecar
            port: 12345
            path: "/stats/sidecar"
          tls:
            mode: providedTLS
    constraints:
      dataplaneProxy:
        requirements:
        - tags:
            k8s.kuma.io/namespace: ns-1
            kuma.io/zone: east
        restrictions:
        - tags:
            k8s.kuma.io/namespace: ns-1
            kuma.io/zone: west
    routing:
      zoneEgress: true
    "#,
    // Kuma's second passing case: skipMTLS: false without tls.
    r#"
    metrics:
      enabledBackend: prom-1
      backends:
      - name: prom-1
        type: prometheus
        conf:
          skipMTLS: false
          port: 5670
          path: /metrics
          tags:
            kuma.io/service: dataplane-metrics
    "#,
    // skipMTLS next to the tls mode it means.
    r#"
    metrics:
      backends:
      - name: a
        type: prometheus
        conf: {skipMTLS: false, tls: {mode: activeMTLSBackend}}
      - name: b
        type: prometheus
        conf: {skipMTLS: true, tls: {mode: disabled}}
      - name: c
        type: prometheus
        conf: {skipMTLS: false, tls: {}}
    "#,
    // Kuma requires neither a name nor a conf of a metrics backend.
    r#"
    metrics:
      backends:
      - type: prometheus
    "#,
    // Go's net.SplitHostPort accepts these; Kuma checks nothing more.
    r#"
    logging:
      backends:
      - name: v6
        type: tcp
        conf: {address: "[::1]:5000"}
      - name: named-port
        type: tcp
        conf: {address: "logstash:syslog"}
    "#,
    // Keys Kuma keeps in a logging or tracing conf without reading them read back as applied.
    r#"
    logging:
      backends:
      - name: f
        type: file
        conf: {path: /var/log/access.log, rotate: daily}
    tracing:
      backends:
      - name: dd
        type: datadog
        conf: {address: 127.0.0.1, port: 8126, splitService: true, env: prod}
    "#,
    // Sampling at both ends of its range, and written as an integer: kept as written.
    r#"
    tracing:
      defaultBackend: z
      backends:
      - name: z
        type: zipkin
        sampling: 100
        conf: {url: "http://zipkin:9411/api/v2/spans", apiVersion: httpJson}
      - name: z0
        type: zipkin
        sampling: 0
        conf: {url: "http://[::1]:9411", apiVersion: ""}
    "#,
    r#"
    networking:
      outbound:
        passthrough: false
    routing:
      localityAwareLoadBalancing: true
      zoneEgress: false
      defaultForbidMeshExternalServiceAccess: true
    meshServices:
      mode: Exclusive
    skipCreatingInitialPolicies: ["*"]
    "#,
    r#"
    meshServices: {mode: ReachableBackends}
    skipCreatingInitialPolicies: [mesh-timeout-all, mesh-retry-all]
    constraints:
      dataplaneProxy:
        requirements:
        - tags: {kuma.io/zone: "*"}
    "#,
    r#"
    meshServices: {mode: Everywhere}
    "#,
    r#"
    meshServices: {mode: Disabled}
    logging: {}
    tracing: {backends: []}
    metrics: {}
    networking: {}
    routing: {}
    constraints: {dataplaneProxy: {}}
    skipCreatingInitialPolicies: []
    "#,
];

#[test]
fn valid_sections_are_accepted_and_read_back_as_applied() {
    for body in VALID {
        accepted(body);
    }
}

#[test]
fn sampling_keeps_the_number_as_written() {
    let doc = mesh(
        "tracing: {backends: [{name: z, type: zipkin, sampling: 100, conf: {url: 'http://z:9411'}}]}",
    );
    let r = Resource::from_universal(&doc).expect("valid");
    assert_eq!(
        serde_json::to_string(&r.to_universal()["tracing"]["backends"][0]["sampling"])
            .expect("json"),
        "100"
    );
}

#[test]
fn wrong_json_types_are_named_at_their_field() {
    refused(
        r#"
        logging: 5
        tracing: "x"
        metrics: [1]
        constraints: []
        networking: true
        routing: 1
        meshServices: Exclusive
        skipCreatingInitialPolicies: "*"
        "#,
        &[
            ("logging", "must be an object, not a number"),
            ("tracing", "must be an object, not a string"),
            ("metrics", "must be an object, not a list"),
            ("constraints", "must be an object, not a list"),
            ("networking", "must be an object, not a boolean"),
            ("routing", "must be an object, not a number"),
            ("meshServices", "must be an object, not a string"),
            (
                "skipCreatingInitialPolicies",
                "must be a list, not a string",
            ),
        ],
    );
    refused(
        r#"
        logging:
          defaultBackend: 1
          backends:
          - {name: t, type: tcp, format: 2, conf: {address: 5}}
          - {name: f, type: 7}
        tracing:
          backends:
          - {name: z, type: zipkin, sampling: "50", conf: {url: "http://z:9411", traceId128bit: "yes"}}
          - {name: d, type: datadog, conf: {address: a, port: -1, splitService: 1}}
        metrics:
          backends:
          - {name: p, type: prometheus, conf: {port: "5670", tags: {a: 1}, aggregate: {}, envoy: {usedOnly: 1}}}
        networking: {outbound: {passthrough: "no"}}
        routing: {zoneEgress: "true"}
        constraints: {dataplaneProxy: {requirements: [{tags: [a]}]}}
        skipCreatingInitialPolicies: [1]
        "#,
        &[
            ("logging.defaultBackend", "must be a string, not a number"),
            (
                "logging.backends[0].format",
                "must be a string, not a number",
            ),
            (
                "logging.backends[0].config.address",
                "must be a string, not a number",
            ),
            ("logging.backends[1].type", "must be a string, not a number"),
            (
                "tracing.backends[0].sampling",
                "must be a number, not a string",
            ),
            (
                "tracing.backends[0].config.traceId128bit",
                "must be a boolean, not a string",
            ),
            (
                "tracing.backends[1].config.port",
                "must be a non-negative integer, not a number",
            ),
            (
                "tracing.backends[1].config.splitService",
                "must be a boolean, not a number",
            ),
            (
                "metrics.backends[0].conf.port",
                "must be a non-negative integer, not a string",
            ),
            (
                "metrics.backends[0].conf.tags[\"a\"]",
                "must be a string, not a number",
            ),
            (
                "metrics.backends[0].conf.aggregate",
                "must be a list, not an object",
            ),
            (
                "metrics.backends[0].conf.envoy.usedOnly",
                "must be a boolean, not a number",
            ),
            (
                "constraints.dataplaneProxy.requirements[0].tags",
                "must be a map of strings, not a list",
            ),
            (
                "networking.outbound.passthrough",
                "must be a boolean, not a string",
            ),
            ("routing.zoneEgress", "must be a boolean, not a string"),
            (
                "skipCreatingInitialPolicies[0]",
                "must be a string, not a number",
            ),
        ],
    );
}

#[test]
fn constraints_rules() {
    // Kuma's "constraints dataplaneProxy with invalid tags", row for row.
    let bad_tags = r#"
        constraints:
          dataplaneProxy:
            requirements:
            - {}
            - tags:
                '': ''
            - tags:
                '!@#$': '!@#$'
            restrictions:
            - {}
            - tags:
                '': ''
            - tags:
                '!@#$': '!@#$'
        "#;
    let mut want = Vec::new();
    for list in ["requirements", "restrictions"] {
        let p = format!("constraints.dataplaneProxy.{list}");
        want.extend([
            (format!("{p}[0].tags"), "must have at least one tag"),
            (format!("{p}[1].tags"), "tag name must be non-empty"),
            (format!("{p}[1].tags[\"\"]"), "tag value must be non-empty"),
            (
                format!("{p}[2].tags[\"!@#$\"]"),
                "tag name must consist of alphanumeric characters, dots, dashes, slashes and underscores",
            ),
            (
                format!("{p}[2].tags[\"!@#$\"]"),
                "tag value must consist of alphanumeric characters, dots, dashes, slashes and underscores or be \"*\"",
            ),
        ]);
    }
    let want: Vec<(&str, &str)> = want.iter().map(|(f, r)| (f.as_str(), *r)).collect();
    refused(bad_tags, &want);
    // A null value is an empty one to Kuma's decoder.
    refused(
        "constraints: {dataplaneProxy: {requirements: [{tags: {kuma.io/zone: null}}]}}",
        &[(
            "constraints.dataplaneProxy.requirements[0].tags[\"kuma.io/zone\"]",
            "tag value must be non-empty",
        )],
    );
}

#[test]
fn zone_egress_needs_mtls() {
    refused(
        "routing: {zoneEgress: true}",
        &[("mtls", "has to be set when zoneEgress enabled")],
    );
    refused(
        r#"
        mtls:
          backends:
          - name: backend-1
            type: builtin
        routing:
          zoneEgress: true
        "#,
        &[("mtls", "has to be set when zoneEgress enabled")],
    );
}

#[test]
fn enums_are_refused_by_name() {
    refused(
        "meshServices: {mode: Sometimes}",
        &[(
            "meshServices.mode",
            "has to be one of Disabled, Everywhere, ReachableBackends, Exclusive",
        )],
    );
    // Kuma's protobuf decoding takes an enum's number too; Meshplane only its name.
    refused(
        "meshServices: {mode: 1}",
        &[("meshServices.mode", "must be a string, not a number")],
    );
}

#[test]
fn kuma_multiple_errors_case() {
    // Kuma's "multiple errors" row; Kuma's decoder drops the unknown `path` of backends[2]
    // silently, Meshplane refuses it (it would not read back).
    refused(
        r#"
        mtls:
          enabledBackend: invalid-backend
        logging:
          backends:
          - name:
            type: file
            conf:
              path: /path
          - name: tcp-1
            type: file
            conf:
              address: invalid-address
          - name: tcp-1
            type: tcp
            path:
              address:
          defaultBackend: invalid-backend
        "#,
        &[
            (
                "mtls.enabledBackend",
                "has to be set to one of the backends in the mesh",
            ),
            ("logging.backends[0].name", "cannot be empty"),
            ("logging.backends[1].config.path", "cannot be empty"),
            ("logging.backends[2].config.address", "cannot be empty"),
            ("logging.backends[2].path", "unknown field"),
            (
                "logging.backends[2].name",
                "\"tcp-1\" name is already used for another backend",
            ),
            (
                "logging.defaultBackend",
                "has to be set to one of the logging backend in mesh",
            ),
        ],
    );
}

#[test]
fn unknown_fields_of_typed_sections_are_refused() {
    refused(
        r#"
        logging: {defaultBakend: f}
        tracing: {backends: [{name: z, type: zipkin, samplng: 1, conf: {url: "http://z:9411"}}]}
        metrics: {backends: [{name: p, type: prometheus, conf: {prt: 1, envoy: {x: 1}, tls: {x: 1}}}]}
        constraints: {dataplaneProxy: {requirement: []}}
        networking: {outbound: {passthru: true}}
        routing: {egress: true}
        meshServices: {Mode: Exclusive}
        "#,
        &[
            ("logging.defaultBakend", "unknown field"),
            ("tracing.backends[0].samplng", "unknown field"),
            ("metrics.backends[0].conf.envoy.x", "unknown field"),
            ("metrics.backends[0].conf.tls.x", "unknown field"),
            ("metrics.backends[0].conf.prt", "unknown field"),
            ("constraints.dataplaneProxy.requirement", "unknown field"),
            ("networking.outbound.passthru", "unknown field"),
            ("routing.egress", "unknown field"),
            ("meshServices.Mode", "unknown field"),
        ],
    );
}
