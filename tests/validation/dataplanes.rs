//! Kuma 2.14's universal Dataplane (issue 16) through the REST API of a real zone on PostgreSQL:
//! valid Dataplanes of every kind read back exactly as applied, at the zone and at global after
//! sync; a representative subset of Kuma's refusals with Kuma's fields and reasons and nothing
//! stored; and Kuma's name rules, with and without `--strict-names`.

use meshplane_tests::Zone;

use super::common::*;

const WAIT: Duration = Duration::from_secs(60);

fn dataplane(name: &str, extra: Value) -> Value {
    let mut body = json!({"type": "Dataplane", "mesh": "default", "name": name});
    for (k, v) in extra.as_object().expect("object") {
        body[k] = v.clone();
    }
    body
}

/// One Dataplane of each kind Kuma 2.14 knows.
fn valid_dataplanes() -> Vec<Value> {
    vec![
        dataplane(
            "sidecar",
            json!({"labels": {"team": "payments"},
            "networking": {"address": "10.0.0.1", "advertisedAddress": "203.0.113.7",
                "admin": {"port": 9901},
                "inbound": [{"port": 8080, "servicePort": 80, "serviceAddress": "127.0.0.1",
                    "name": "http", "protocol": "http", "state": "Ready", "health": {"ready": true},
                    "serviceProbe": {"interval": "10s", "timeout": "1.5s", "healthyThreshold": 1,
                        "unhealthyThreshold": 3, "tcp": {}},
                    "tags": {"kuma.io/service": "web", "kuma.io/protocol": "http", "version": "v1"}}],
                "outbound": [{"port": 3333, "tags": {"kuma.io/service": "redis"}},
                    {"port": 3334, "backendRef": {"kind": "MeshService", "name": "pg", "port": 5432}}]},
            "probes": {"port": 9000, "endpoints": [{"inboundPort": 8080, "inboundPath": "/healthz", "path": "/8080/healthz"}]},
            "metrics": {"type": "prometheus", "conf": {"port": 5670, "path": "/metrics",
                "aggregate": [{"name": "app", "port": 8081, "path": "/stats"}]}}}),
        ),
        dataplane(
            "edge",
            json!({"networking": {"address": "gw.example.com",
            "gateway": {"type": "BUILTIN", "tags": {"kuma.io/service": "edge"}}}}),
        ),
        dataplane(
            "kong",
            json!({"networking": {"address": "10.0.0.2",
            "gateway": {"tags": {"kuma.io/service": "kong", "kuma.io/protocol": "tcp"}},
            "outbound": [{"port": 3333, "tags": {"kuma.io/service": "redis"}}]}}),
        ),
        dataplane(
            "client",
            json!({"labels": {"kuma.io/workload": "batch"},
            "networking": {"address": "10.0.0.3",
            "outbound": [{"port": 3333, "address": "127.0.0.1", "tags": {"kuma.io/service": "redis"}}]}}),
        ),
        dataplane(
            "tproxy",
            json!({"networking": {"address": "10.0.0.4",
            "transparentProxying": {"redirectPortInbound": 15006, "redirectPortOutbound": 15001,
                "ipFamilyMode": "IPv4", "reachableServices": ["redis"],
                "reachableBackends": {"refs": [{"kind": "MeshService", "name": "redis", "port": 6379},
                    {"kind": "MeshExternalService", "labels": {"kuma.io/display-name": "httpbin"}}]}},
            "inbound": [{"port": 8080}],
            "listeners": [{"type": "ZoneEgress", "address": "10.0.0.4", "port": 10002, "name": "egress"}]}}),
        ),
    ]
}

fn without_times(mut v: Value) -> Value {
    if let Some(o) = v.as_object_mut() {
        o.remove("creationTime");
        o.remove("modificationTime");
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_dataplane_reads_back_as_applied_at_the_zone_and_at_global() {
    let g = Global::start(Store::Memory, &[]).await.expect("global");
    let db = meshplane_tests::migrated_db().await.expect("zone database");
    let zone = Zone::start(&g, "east", Store::Postgres(db.url.clone()), &[])
        .await
        .expect("zone on PostgreSQL");
    eventually(WAIT, "mesh default at the zone", || async {
        matches!(zone.api.get("/meshes/default").await, Ok((200, _))).then_some(())
    })
    .await
    .expect("mesh synced");
    for body in valid_dataplanes() {
        let name = body["name"].as_str().expect("name").to_string();
        let path = format!("/meshes/default/dataplanes/{name}");
        let (s, b) = zone.api.put(&path, &body).await.expect("put");
        assert_eq!(s, 201, "{name}: {b}");
        let (s, got) = zone.api.get(&path).await.expect("get");
        assert_eq!(s, 200, "{got}");
        assert_eq!(without_times(got), body, "{name} reads back as applied");
        // The same spec reaches global, as `<zone>.<name>`.
        let at_global = eventually(WAIT, "the dataplane at global", || async {
            match g
                .api
                .get(&format!("/meshes/default/dataplanes/east.{name}"))
                .await
            {
                Ok((200, v)) => Some(v),
                _ => None,
            }
        })
        .await
        .expect("synced to global");
        for key in ["networking", "probes", "metrics"] {
            assert_eq!(at_global[key], body[key], "{name}.{key} at global");
        }
    }
}

/// PUTs `body` at the zone, which must refuse it with exactly `expected`, storing nothing.
async fn refused_with(api: &Api, body: &Value, expected: &[(&str, &str)]) {
    let name = body["name"].as_str().expect("name");
    let path = format!("/meshes/default/dataplanes/{name}");
    let (s, b) = api.put(&path, body).await.expect("put");
    assert_eq!(s, 400, "{name} should be refused: {b}");
    assert_eq!(field_reasons(&b), pairs(expected), "{body}");
    let (s, _) = api.get(&path).await.expect("get");
    assert_eq!(s, 404, "{name}: nothing stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kuma_refusals_name_kumas_fields_and_store_nothing() {
    let g = Global::start(Store::Memory, &[]).await.expect("global");
    let zone = Zone::start(&g, "east", Store::Memory, &[])
        .await
        .expect("zone");
    eventually(WAIT, "mesh default at the zone", || async {
        matches!(zone.api.get("/meshes/default").await, Ok((200, _))).then_some(())
    })
    .await
    .expect("mesh synced");
    let api = &zone.api;
    let web = json!([{"port": 8080, "tags": {"kuma.io/service": "web"}}]);
    refused_with(
        api,
        &dataplane(
            "a",
            json!({"networking": {"address": "0.0.0.0", "admin": {"port": 8080},
            "inbound": [{"port": 8080, "address": "127.0.0.1", "tags": {"kuma.io/service": "web", "kuma.io/protocol": "quic", "version": null}},
                {"port": 65536, "tags": {"version": "v1"}}],
            "outbound": [{"port": 3333}]}}),
        ),
        &[
            ("networking.admin.port", "must differ from inbound"),
            ("networking.address", "must not be 0.0.0.0 or ::"),
            (
                "networking.inbound[0].tags[\"kuma.io/protocol\"]",
                "tag \"kuma.io/protocol\" has an invalid value \"quic\". Allowed values: grpc, http, http2, kafka, tcp",
            ),
            (
                "networking.inbound[0].tags[\"version\"]",
                "tag value must be non-empty",
            ),
            (
                "networking.inbound[1].port",
                "port must be in the range [1, 65535]",
            ),
            (
                "networking.inbound[1].tags[\"kuma.io/service\"]",
                "tag has to exist",
            ),
            (
                "networking.outbound[0].tags",
                "mandatory tag \"kuma.io/service\" is missing",
            ),
        ],
    )
    .await;
    refused_with(
        api,
        &dataplane(
            "b",
            json!({"networking": {"address": "10.0.0.1", "inbound": web,
            "gateway": {"type": "BUILTIN", "tags": {"kuma.io/service": "gw", "kuma.io/protocol": "http"}}}}),
        ),
        &[
            (
                "networking.inbound",
                "inbound cannot be defined for builtin gateways",
            ),
            (
                "networking.gateway.tags[\"kuma.io/protocol\"]",
                "other values than tcp are not allowed, provided value \"http\"",
            ),
        ],
    )
    .await;
    refused_with(
        api,
        &dataplane(
            "c",
            json!({"networking": {"address": "10.0.0.1", "inbound": web,
            "transparentProxying": {"reachableBackends": {"refs": [{"kind": "Service", "name": "x"}]}}},
            "probes": {"port": 9000, "endpoints": [{"inboundPort": 8080, "inboundPath": "healthz", "path": "/p"}]},
            "metrics": {"type": "statsd"}}),
        ),
        &[
            (
                "networking.transparentProxing.reachableBackends.refs[0].kind",
                "invalid value. Available values are: MeshExternalService,MeshMultiZoneService,MeshService",
            ),
            (
                "probes.endpoints[0].inboundPath",
                "should be a valid URL Path",
            ),
            (
                "metrics.type",
                "unknown backend type. Available backends: \"prometheus\"",
            ),
        ],
    )
    .await;
    refused_with(
        api,
        &dataplane(
            "d",
            json!({"networking": {"address": "10.0.0.1", "inbound": [{"port": "80"}], "bogus": 1}}),
        ),
        &[
            (
                "networking.inbound[0].port",
                "must be a non-negative integer, not a string",
            ),
            ("networking.bogus", "unknown field"),
        ],
    )
    .await;
    // Kuma's name rule for every kind: no '_' in a Dataplane's name.
    let (s, b) = api
        .put(
            "/meshes/default/dataplanes/dp_1",
            &dataplane("dp_1", json!({"networking": {"address": "10.0.0.1"}})),
        )
        .await
        .expect("put");
    assert_eq!(s, 400, "{b}");
    assert_eq!(b["invalid_parameters"][0]["field"], "name", "{b}");
    assert!(
        b["invalid_parameters"][0]["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("invalid characters. A lowercase RFC 1123 subdomain")),
        "{b}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_follow_kuma_and_strict_names_refuses_what_kuma_warns_about() {
    let g = Global::start(Store::Memory, &[]).await.expect("global");
    let api = &g.api;
    // A Secret with '_' is refused, as Kuma refuses it.
    let (s, b) = api
        .put(
            "/meshes/default/secrets/vault_token",
            &json!({"type": "Secret", "mesh": "default", "name": "vault_token", "data": "YQ=="}),
        )
        .await
        .expect("put");
    assert_eq!(s, 400, "{b}");
    assert_eq!(
        b["invalid_parameters"][0],
        json!({"field": "name", "reason": "invalid characters. A lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"})
    );
    // Not an RFC 1035 label: accepted with Kuma's deprecation warning.
    let (s, b) = api
        .put("/meshes/m.1", &json!({"type": "Mesh", "name": "m.1"}))
        .await
        .expect("put");
    assert_eq!(s, 201, "{b}");
    let warning = b["warnings"][0].as_str().unwrap_or_default();
    assert!(
        warning.starts_with("Invalid Mesh resource name: 'm.1'. It does not conform to the DNS format (RFC 1035). This is deprecated."),
        "{b}"
    );
    let (s, b) = api
        .put("/zones/1east", &json!({"type": "Zone", "name": "1east"}))
        .await
        .expect("put");
    assert_eq!(s, 201, "{b}");
    assert!(
        b["warnings"][0]
            .as_str()
            .is_some_and(|w| w.starts_with("Invalid Zone resource name: '1east'")),
        "{b}"
    );

    // With --strict-names (here through its environment variable's flag), both are refused.
    let strict = Global::start(Store::Memory, &["--strict-names"])
        .await
        .expect("strict global");
    for (path, body) in [
        ("/meshes/m.1", json!({"type": "Mesh", "name": "m.1"})),
        ("/zones/1east", json!({"type": "Zone", "name": "1east"})),
    ] {
        let (s, b) = strict.api.put(path, &body).await.expect("put");
        assert_eq!(s, 400, "{path}: {b}");
        let p = &b["invalid_parameters"][0];
        assert_eq!(p["field"], "name", "{b}");
        assert!(
            p["reason"]
                .as_str()
                .is_some_and(|r| r.starts_with("a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character")),
            "{b}"
        );
        assert!(
            p["detail"]
                .as_str()
                .is_some_and(|d| d.contains("--strict-names")),
            "{b}"
        );
        let (s, _) = strict.api.get(path).await.expect("get");
        assert_eq!(s, 404, "{path}: nothing stored");
    }
    let (s, b) = strict
        .api
        .put(
            "/meshes/payments",
            &json!({"type": "Mesh", "name": "payments"}),
        )
        .await
        .expect("put");
    assert_eq!((s, b["warnings"].clone()), (201, json!([])), "{b}");
}

/// Kuma's membership rule: each inbound's (and a gateway's) tags, with the zone's `kuma.io/zone`,
/// must meet one of the Mesh's requirements and none of its restrictions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_meshs_constraints_decide_which_dataplanes_join_it() {
    let g = Global::start(Store::Memory, &[]).await.expect("global");
    let (s, b) = g
        .api
        .put(
            "/meshes/default",
            &json!({"type": "Mesh", "name": "default", "constraints": {"dataplaneProxy": {
                "requirements": [{"tags": {"kuma.io/zone": "east"}}],
                "restrictions": [{"tags": {"kuma.io/service": "legacy"}}]}}}),
        )
        .await
        .expect("mesh");
    assert!(s == 200 || s == 201, "{s} {b}");
    let zone = Zone::start(&g, "east", Store::Memory, &[])
        .await
        .expect("zone");
    eventually(WAIT, "the constraints at the zone", || async {
        match zone.api.get("/meshes/default").await {
            Ok((200, m)) if m.get("constraints").is_some() => Some(()),
            _ => None,
        }
    })
    .await
    .expect("mesh synced");
    let web = dataplane(
        "web-1",
        json!({"networking": {"address": "10.0.0.1", "inbound": [{"port": 80, "tags": {"kuma.io/service": "web"}}]}}),
    );
    let (s, b) = zone
        .api
        .put("/meshes/default/dataplanes/web-1", &web)
        .await
        .expect("put");
    assert_eq!(s, 201, "the zone's own tag meets the requirement: {b}");
    refused_with(
        &zone.api,
        &dataplane(
            "legacy-1",
            json!({"networking": {"address": "10.0.0.2", "inbound": [{"port": 80, "tags": {"kuma.io/service": "legacy"}}]}}),
        ),
        &[(
            "networking.inbound[0].tags",
            "dataplane cannot be a member of mesh \"default\" because its tags \"kuma.io/service=legacy kuma.io/zone=east\" matches restricted tags \"kuma.io/service=legacy\" defined on the Mesh",
        )],
    )
    .await;
}
