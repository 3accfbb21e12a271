//! Table tests for a Mesh's `logging`, `tracing` and `metrics` rules (helpers and the valid
//! table are in `mesh_sections_tests`), with Kuma's fields and reasons row for row.

use super::mesh_sections_tests::refused;

#[test]
fn backends_that_are_not_objects_have_no_name_to_repeat() {
    refused(
        "logging: {backends: [1, 2]}",
        &[
            ("logging.backends[0]", "must be an object, not a number"),
            ("logging.backends[1]", "must be an object, not a number"),
        ],
    );
}

#[test]
fn logging_rules() {
    refused(
        "logging: {backends: [{type: file, conf: {path: /x}}]}",
        &[("logging.backends[0].name", "cannot be empty")],
    );
    refused(
        r#"
        logging:
          backends:
          - {name: backend-1, type: file, conf: {path: /x}}
          - {name: backend-1, type: tcp, conf: {address: "kibana:1234"}}
        "#,
        &[(
            "logging.backends[1].name",
            "\"backend-1\" name is already used for another backend",
        )],
    );
    refused(
        "logging: {backends: [{name: t, type: tcp, conf: {address: ''}}, {name: u, type: tcp}]}",
        &[
            ("logging.backends[0].config.address", "cannot be empty"),
            ("logging.backends[1].config.address", "cannot be empty"),
        ],
    );
    for bad in [
        "wrong-format:234:234",
        "kibana",
        "kibana:",
        ":1234",
        "[::1]",
    ] {
        refused(
            &format!("logging: {{backends: [{{name: t, type: tcp, conf: {{address: '{bad}'}}}}]}}"),
            &[(
                "logging.backends[0].config.address",
                "has to be in format of HOST:PORT",
            )],
        );
    }
    refused(
        "logging: {backends: [{name: f, type: file, conf: {}}]}",
        &[("logging.backends[0].config.path", "cannot be empty")],
    );
    refused(
        "logging: {defaultBackend: nope, backends: [{name: f, type: file, conf: {path: /x}}]}",
        &[(
            "logging.defaultBackend",
            "has to be set to one of the logging backend in mesh",
        )],
    );
    refused(
        "logging: {backends: [{name: f, type: syslog}, {name: g}]}",
        &[
            (
                "logging.backends[0].type",
                "unknown backend type. Available backends: \"tcp\", \"file\"",
            ),
            (
                "logging.backends[1].type",
                "unknown backend type. Available backends: \"tcp\", \"file\"",
            ),
        ],
    );
}

#[test]
fn tracing_rules() {
    refused(
        "tracing: {backends: [{type: zipkin, conf: {url: 'http://z:9411'}}]}",
        &[("tracing.backends[0].name", "cannot be empty")],
    );
    refused(
        r#"
        tracing:
          backends:
          - {name: zipkin-us, type: zipkin, conf: {url: "http://z:9411"}}
          - {name: zipkin-us, type: zipkin, conf: {url: "http://z:9411"}}
        "#,
        &[(
            "tracing.backends[1].name",
            "\"zipkin-us\" name is already used for another backend",
        )],
    );
    for bad in ["100.1", "-1", "1e3"] {
        refused(
            &format!(
                "tracing: {{backends: [{{name: z, type: zipkin, sampling: {bad}, conf: {{url: 'http://z:9411'}}}}]}}"
            ),
            &[(
                "tracing.backends[0].sampling",
                "has to be in [0.0 - 100.0] range",
            )],
        );
    }
    refused(
        "tracing: {backends: [{name: z, type: zipkin}]}",
        &[("tracing.backends[0].config.url", "cannot be empty")],
    );
    for bad in [
        "invalid-url",
        ":9411",
        "http://zip kin:9411/",
        "http://z:94x1/",
    ] {
        refused(
            &format!("tracing: {{backends: [{{name: z, type: zipkin, conf: {{url: '{bad}'}}}}]}}"),
            &[("tracing.backends[0].config.url", "invalid URL")],
        );
    }
    for bad in [
        "http://zipkin.local/v2/spans",
        "zipkin:9411",
        "/api/v2/spans",
    ] {
        refused(
            &format!("tracing: {{backends: [{{name: z, type: zipkin, conf: {{url: '{bad}'}}}}]}}"),
            &[(
                "tracing.backends[0].config.url",
                "port has to be explicitly specified",
            )],
        );
    }
    refused(
        "tracing: {backends: [{name: z, type: zipkin, conf: {url: 'http://z:9411', apiVersion: v2}}]}",
        &[(
            "tracing.backends[0].config.apiVersion",
            "has invalid value. Allowed values: httpJsonV1, httpJson, httpProto",
        )],
    );
    refused(
        "tracing: {defaultBackend: nope, backends: [{name: z, type: zipkin, conf: {url: 'http://z:9411'}}]}",
        &[(
            "tracing.defaultBackend",
            "has to be set to one of the tracing backend in mesh",
        )],
    );
    refused(
        "tracing: {backends: [{name: d, type: datadog}, {name: e, type: datadog, conf: {address: a, port: 70000}}]}",
        &[
            ("tracing.backends[0].config.address", "cannot be empty"),
            (
                "tracing.backends[0].config.port",
                "port must be in the range [1, 65535]",
            ),
            (
                "tracing.backends[1].config.port",
                "port must be in the range [1, 65535]",
            ),
        ],
    );
    refused(
        "tracing: {backends: [{name: j, type: jaeger}]}",
        &[(
            "tracing.backends[0].type",
            "unknown backend type. Available backends: \"zipkin\", \"datadog\"",
        )],
    );
}

#[test]
fn metrics_rules() {
    refused(
        "metrics: {backends: [{name: backend-1, type: prometheus}, {name: backend-1, type: prometheus}]}",
        &[(
            "metrics.backends[1].name",
            "\"backend-1\" name is already used for another backend",
        )],
    );
    refused(
        "metrics: {enabledBackend: nope, backends: [{name: p, type: prometheus}]}",
        &[(
            "metrics.enabledBackend",
            "has to be set to one of the backends in the mesh",
        )],
    );
    // Kuma's "unknown backend types", its order (logging, tracing, metrics) kept.
    refused(
        r#"
        metrics:
          backends:
          - name: backend-1
            type: xxx
        logging:
          backends:
          - name: backend-1
            type: xxx
        tracing:
          backends:
          - name: backend-1
            type: xxx
        "#,
        &[
            (
                "logging.backends[0].type",
                "unknown backend type. Available backends: \"tcp\", \"file\"",
            ),
            (
                "tracing.backends[0].type",
                "unknown backend type. Available backends: \"zipkin\", \"datadog\"",
            ),
            (
                "metrics.backends[0].type",
                "unknown backend type. Available backends: \"prometheus\"",
            ),
        ],
    );
    refused(
        r#"
        metrics:
          backends:
          - name: backend-1
            type: prometheus
            conf:
              aggregate:
              - {name: app, path: "/stats/", port: 123}
              - {name: app, path: "/stats"}
              - {name: sidecar, port: 12345}
              - {name: sidecar}
          - name: backend-2
            type: prometheus
            conf:
              aggregate:
              - {name: app, path: "/stats/", port: 123}
              - {name: app, path: "/stats"}
        "#,
        &[
            (
                "metrics.backends[0].conf.aggregate[1].name",
                "duplicate entry: app, values have to be unique",
            ),
            (
                "metrics.backends[0].conf.aggregate[3].name",
                "duplicate entry: sidecar, values have to be unique",
            ),
            (
                "metrics.backends[1].conf.aggregate[1].name",
                "duplicate entry: app, values have to be unique",
            ),
        ],
    );
    for (skip, mode) in [
        ("true", "providedTLS"),
        ("false", "providedTLS"),
        ("false", "disabled"),
        ("true", "activeMTLSBackend"),
    ] {
        refused(
            &format!(
                "metrics: {{backends: [{{name: p, type: prometheus, conf: {{skipMTLS: {skip}, tls: {{mode: {mode}}}}}}}]}}"
            ),
            &[(
                "metrics.backends[0].conf",
                "skipMTLS and tls configuration cannot be defined together",
            )],
        );
    }
    // Kuma reports Go's regexp error; Meshplane the same shape with its parser's wording.
    refused(
        "metrics: {backends: [{name: p, type: prometheus, conf: {envoy: {filterRegex: '(server'}}}]}",
        &[(
            "metrics.backends[0].conf.envoy.filterRegex",
            "provided regexp isn't correct: error parsing regexp: unclosed group: `(server`",
        )],
    );
    // Not checked by Kuma: a port no socket can use (0 still means Kuma's default, 5670).
    refused(
        "metrics: {backends: [{name: p, type: prometheus, conf: {port: 70000, aggregate: [{name: a, port: 65536}]}}]}",
        &[
            (
                "metrics.backends[0].conf.port",
                "port must be in the range [1, 65535]",
            ),
            (
                "metrics.backends[0].conf.aggregate[0].port",
                "port must be in the range [1, 65535]",
            ),
        ],
    );
    refused(
        "metrics: {backends: [{name: p, type: prometheus, conf: {tls: {mode: strict}}}]}",
        &[(
            "metrics.backends[0].conf.tls.mode",
            "has to be one of activeMTLSBackend, providedTLS, disabled",
        )],
    );
}
