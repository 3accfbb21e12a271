//! The Mesh sections besides `mtls` (issue 16) through the REST API of a real global: valid ones
//! read back from PostgreSQL exactly as applied, Kuma's refusals with Kuma's fields and reasons and
//! nothing stored, and Kuma's rule against changing the enabled CA with the CA rotation kept.

use super::common::*;

/// The table's valid Meshes, one per shape: every section, Kuma's own passing example.
fn valid_meshes() -> Vec<Value> {
    vec![
        json!({"type": "Mesh", "name": "everything", "labels": {"team": "obs"},
            "mtls": {"enabledBackend": "ca-1", "backends": [{"name": "ca-1", "type": "builtin"}]},
            "logging": {"defaultBackend": "tcp-1", "backends": [
                {"name": "file-1", "type": "file", "conf": {"path": "/var/log/access.log"}},
                {"name": "tcp-1", "type": "tcp", "format": "%START_TIME% %KUMA_SOURCE_SERVICE%",
                    "conf": {"address": "kibana:1234", "kept": {"as": ["applied"]}}}]},
            "tracing": {"defaultBackend": "zipkin-us", "backends": [
                {"name": "zipkin-us", "sampling": 80, "type": "zipkin", "conf": {
                    "url": "http://zipkin.local:9411/v2/spans", "traceId128bit": true,
                    "apiVersion": "httpProto", "sharedSpanContext": true}},
                {"name": "dd", "sampling": 12.5, "type": "datadog", "conf": {
                    "address": "127.0.0.1", "port": 8126, "splitService": false}}]},
            "metrics": {"enabledBackend": "prom-1", "backends": [{"name": "prom-1", "type": "prometheus",
                "conf": {"port": 5670, "path": "/metrics", "skipMTLS": false,
                    "tags": {"kuma.io/service": "dataplane-metrics"},
                    "envoy": {"filterRegex": "^server[0-9]+", "usedOnly": true},
                    "aggregate": [{"name": "app", "port": 1234, "path": "/stats", "enabled": true}]}}]},
            "networking": {"outbound": {"passthrough": false}},
            "routing": {"localityAwareLoadBalancing": true, "zoneEgress": true,
                "defaultForbidMeshExternalServiceAccess": false},
            "constraints": {"dataplaneProxy": {
                "requirements": [{"tags": {"kuma.io/zone": "east"}}],
                "restrictions": [{"tags": {"k8s.kuma.io/namespace": "*"}}]}},
            "meshServices": {"mode": "Exclusive"},
            "skipCreatingInitialPolicies": ["*"]}),
        json!({"type": "Mesh", "name": "few", "metrics": {"backends": [{"type": "prometheus"}]},
            "meshServices": {"mode": "ReachableBackends"},
            "skipCreatingInitialPolicies": ["mesh-timeout-all", "mesh-retry-all"],
            "logging": {}, "tracing": {"backends": []}}),
    ]
}

fn without_times(mut v: Value) -> Value {
    if let Some(o) = v.as_object_mut() {
        o.remove("creationTime");
        o.remove("modificationTime");
    }
    v
}

/// PUTs `body`, which must be refused with exactly `expected` (field, reason), storing nothing.
async fn refused_with(api: &Api, body: &Value, expected: &[(&str, &str)]) {
    let name = body["name"].as_str().expect("name");
    let path = format!("/meshes/{name}");
    let before = get_with_version(api, &path).await;
    let (s, b) = api.put(&path, body).await.expect("put");
    assert_eq!(s, 400, "{name} should be refused: {b}");
    assert_eq!(b["title"], "Could not process a resource", "{b}");
    assert_eq!(field_reasons(&b), pairs(expected), "{body}");
    assert_eq!(get_with_version(api, &path).await, before, "nothing stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_sections_read_back_from_postgres_as_applied() {
    let db = meshplane_tests::migrated_db().await.expect("database");
    let g = Global::start(Store::Postgres(db.url.clone()), &[])
        .await
        .expect("global on PostgreSQL");
    for body in valid_meshes() {
        let name = body["name"].as_str().expect("name").to_string();
        assert_eq!(accepted(&g.api, &body).await, Vec::<String>::new());
        let (s, got) = g.api.get(&format!("/meshes/{name}")).await.expect("get");
        assert_eq!(s, 200, "{got}");
        assert_eq!(without_times(got), body, "{name} reads back as applied");
        // Applying what was read changes nothing either.
        assert_eq!(accepted(&g.api, &body).await, Vec::<String>::new());
    }
    // In the listing too.
    let (_, list) = g.api.get("/meshes").await.expect("list");
    let listed = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|m| m["name"] == "everything")
        .cloned()
        .expect("listed");
    assert_eq!(without_times(listed), valid_meshes()[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kuma_refusals_name_kumas_fields_and_store_nothing() {
    let g = Global::start(Store::Memory, &[]).await.expect("global");
    let api = &g.api;
    let m = |extra: Value| {
        let mut body = json!({"type": "Mesh", "name": "refused"});
        for (k, v) in extra.as_object().expect("object") {
            body[k] = v.clone();
        }
        body
    };
    refused_with(
        api,
        &m(json!({"logging": 5, "tracing": "x", "metrics": [1]})),
        &[
            ("logging", "must be an object, not a number"),
            ("tracing", "must be an object, not a string"),
            ("metrics", "must be an object, not a list"),
        ],
    )
    .await;
    refused_with(
        api,
        &m(
            json!({"logging": {"backends": [{"name": "t", "type": "tcp", "conf": {"address": "wrong-format:234:234"}}]}}),
        ),
        &[(
            "logging.backends[0].config.address",
            "has to be in format of HOST:PORT",
        )],
    )
    .await;
    refused_with(
        api,
        &m(json!({"tracing": {"backends": [
            {"name": "z", "type": "zipkin", "sampling": 100.1, "conf": {"url": "invalid-url"}},
            {"name": "z", "type": "zipkin", "conf": {"url": "http://zipkin/v2"}}]}})),
        &[
            (
                "tracing.backends[0].sampling",
                "has to be in [0.0 - 100.0] range",
            ),
            ("tracing.backends[0].config.url", "invalid URL"),
            (
                "tracing.backends[1].config.url",
                "port has to be explicitly specified",
            ),
            (
                "tracing.backends[1].name",
                "\"z\" name is already used for another backend",
            ),
        ],
    )
    .await;
    refused_with(
        api,
        &m(json!({"routing": {"zoneEgress": true}})),
        &[("mtls", "has to be set when zoneEgress enabled")],
    )
    .await;
    refused_with(
        api,
        &m(json!({"metrics": {"enabledBackend": "nope", "backends": [
            {"name": "p", "type": "prometheus", "conf": {"skipMTLS": true, "tls": {"mode": "activeMTLSBackend"}}},
            {"name": "q", "type": "statsd"}]}})),
        &[
            (
                "metrics.backends[0].conf",
                "skipMTLS and tls configuration cannot be defined together",
            ),
            (
                "metrics.backends[1].type",
                "unknown backend type. Available backends: \"prometheus\"",
            ),
            (
                "metrics.enabledBackend",
                "has to be set to one of the backends in the mesh",
            ),
        ],
    )
    .await;
    refused_with(
        api,
        &m(json!({"meshServices": {"mode": "Sometimes"},
            "constraints": {"dataplaneProxy": {"requirements": [{}]}}})),
        &[
            (
                "constraints.dataplaneProxy.requirements[0].tags",
                "must have at least one tag",
            ),
            (
                "meshServices.mode",
                "has to be one of Disabled, Everywhere, ReachableBackends, Exclusive",
            ),
        ],
    )
    .await;
    assert_eq!(api.get("/meshes/refused").await.expect("get").0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_to_a_new_ca_is_refused_but_the_rotation_works() {
    let g = Global::start(Store::Memory, &[]).await.expect("global");
    let api = &g.api;
    let builtin = |n: &str| json!({"name": n, "type": "builtin"});
    accepted(api, &mesh("rot", "ca-1", vec![builtin("ca-1")])).await;

    // Kuma's rule: the enabled CA is not replaced while mTLS is on, also when the new backend
    // comes in the same update as the switch (no dataplane trusts its root yet).
    let reason =
        "Changing CA when mTLS is enabled is forbidden. Disable mTLS first and then change the CA";
    refused(
        api,
        &mesh("rot", "ca-2", vec![builtin("ca-2")]),
        "mtls.enabledBackend",
        &[reason],
    )
    .await;
    refused(
        api,
        &mesh("rot", "ca-2", vec![builtin("ca-1"), builtin("ca-2")]),
        "mtls.enabledBackend",
        &[reason],
    )
    .await;

    // Kong Mesh's rotation (docs/operations.md): add, switch, remove — each step accepted.
    accepted(
        api,
        &mesh("rot", "ca-1", vec![builtin("ca-1"), builtin("ca-2")]),
    )
    .await;
    accepted(
        api,
        &mesh("rot", "ca-2", vec![builtin("ca-1"), builtin("ca-2")]),
    )
    .await;
    accepted(api, &mesh("rot", "ca-2", vec![builtin("ca-2")])).await;

    // Kuma's way out: mTLS off, then on with another CA.
    accepted(
        api,
        &json!({"type": "Mesh", "name": "rot", "mtls": {"backends": [builtin("ca-3")]}}),
    )
    .await;
    accepted(api, &mesh("rot", "ca-3", vec![builtin("ca-3")])).await;
    let (_, got) = api.get("/meshes/rot").await.expect("get");
    assert_eq!(got["mtls"]["enabledBackend"], "ca-3");
}
