//! Multi-zone sync with real processes over real gRPC/TLS and real PostgreSQL: propagation to several
//! zones, through either global replica, across restarts and disconnects, zone authentication, and a
//! Mesh's sections arriving as applied.

use std::time::Duration;

use meshplane_tests::{Global, Store, Zone, eventually, migrated_db};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);

async fn mesh_at(zone: &Zone, name: &str) -> Option<Value> {
    match zone.api.get(&format!("/meshes/{name}")).await {
        Ok((200, v)) => Some(v),
        _ => None,
    }
}

async fn put_mesh(g: &Global, name: &str, extra: Value) {
    let mut body = json!({"type": "Mesh", "name": name});
    if let Value::Object(m) = extra {
        body.as_object_mut().expect("object").extend(m);
    }
    let (status, resp) = g
        .api
        .put(&format!("/meshes/{name}"), &body)
        .await
        .expect("put");
    assert!(
        status == 200 || status == 201,
        "PUT /meshes/{name}: {status} {resp}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mesh_changes_reach_two_zones_and_zones_are_read_only_for_them() {
    let g = Global::start(Store::Memory, &[]).await.expect("global");
    let east = Zone::start(&g, "east", Store::Memory, &[])
        .await
        .expect("east");
    let west = Zone::start(&g, "west", Store::Memory, &[])
        .await
        .expect("west");
    put_mesh(&g, "payments", json!({})).await;
    for z in [&east, &west] {
        eventually(WAIT, "the new Mesh at the zone", || async {
            mesh_at(z, "payments").await
        })
        .await
        .expect("created");
    }
    put_mesh(&g, "payments", json!({"mtls": {"skipValidation": true}})).await;
    for z in [&east, &west] {
        eventually(WAIT, "the update at the zone", || async {
            mesh_at(z, "payments")
                .await
                .filter(|m| m["mtls"]["skipValidation"] == json!(true))
        })
        .await
        .expect("updated");
    }
    // A federated zone refuses writes to what global owns.
    let (status, body) = east
        .api
        .put(
            "/meshes/payments",
            &json!({"type": "Mesh", "name": "payments"}),
        )
        .await
        .expect("put");
    assert_eq!(status, 405, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap_or("")
            .contains("global control plane"),
        "{body}"
    );
    let (status, _) = g.api.delete("/meshes/payments").await.expect("delete");
    assert_eq!(status, 200);
    for z in [&east, &west] {
        eventually(WAIT, "the deletion at the zone", || async {
            mesh_at(z, "payments").await.is_none().then_some(())
        })
        .await
        .expect("deleted");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_through_one_replica_reaches_a_zone_on_the_other() {
    let db = migrated_db().await.expect("db");
    let a = Global::start(Store::Postgres(db.url.clone()), &[])
        .await
        .expect("replica a");
    let b = Global::start(Store::Postgres(db.url.clone()), &[])
        .await
        .expect("replica b");
    // The zone dials replica b; both replicas share the database, its generated sync CA and keys.
    let zone = Zone::start(&b, "east", Store::Memory, &[])
        .await
        .expect("zone on b");
    put_mesh(&a, "through-a", json!({})).await;
    eventually(
        WAIT,
        "a Mesh written through replica a at a zone of replica b",
        || async { mesh_at(&zone, "through-a").await },
    )
    .await
    .expect("propagated");
    // And the zone's dataplanes, reported to b, are visible through a.
    let (status, _) = zone
        .api
        .put(
            "/meshes/through-a/dataplanes/dp-1",
            &json!({"type": "Dataplane", "mesh": "through-a", "name": "dp-1", "networking": {"address": "10.0.0.1", "inbound": [{"port": 80, "tags": {"kuma.io/service": "web"}}]}}),
        )
        .await
        .expect("dp");
    assert_eq!(status, 201);
    eventually(WAIT, "the zone's dataplane through replica a", || async {
        match a.api.get("/meshes/through-a/dataplanes/east.dp-1").await {
            Ok((200, v)) => Some(v),
            _ => None,
        }
    })
    .await
    .expect("dataplane at global");
}

/// Kuma issue 9455: a reconnecting zone must not delete and re-create what still exists. The zone's
/// own database announces every row change (NOTIFY); a listener there sees no DELETE of a Mesh that
/// global still has across a zone restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zone_restart_resyncs_without_transient_deletes() {
    let g = Global::start(Store::Memory, &[]).await.expect("global");
    for m in ["keep-a", "keep-b", "goes-away"] {
        put_mesh(&g, m, json!({})).await;
    }
    let zone_db = migrated_db().await.expect("zone db");
    let mut zone = Zone::start(&g, "east", Store::Postgres(zone_db.url.clone()), &[])
        .await
        .expect("zone");
    eventually(WAIT, "the initial sync", || async {
        mesh_at(&zone, "goes-away").await
    })
    .await
    .expect("synced");

    let mut listener = sqlx::postgres::PgListener::connect(&zone_db.url)
        .await
        .expect("listen");
    listener
        .listen("meshplane_resource_events")
        .await
        .expect("listen");
    zone.proc
        .terminate(Duration::from_secs(20))
        .await
        .expect("zone stops");
    // Changes while the zone is away: one Mesh deleted, one added.
    let (status, _) = g.api.delete("/meshes/goes-away").await.expect("delete");
    assert_eq!(status, 200);
    put_mesh(&g, "added-while-away", json!({})).await;
    zone.launch().await.expect("zone restarts");
    eventually(WAIT, "the Mesh added while away", || async {
        mesh_at(&zone, "added-while-away").await
    })
    .await
    .expect("added");
    eventually(WAIT, "the Mesh deleted while away to be gone", || async {
        mesh_at(&zone, "goes-away").await.is_none().then_some(())
    })
    .await
    .expect("removed");

    let mut deleted = Vec::new();
    while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(500), listener.recv()).await {
        let v: Value = serde_json::from_str(n.payload()).expect("payload");
        if v["op"] == "DELETE" && v["type"] == "Mesh" {
            deleted.push(v["name"].as_str().unwrap_or("").to_string());
        }
    }
    assert_eq!(
        deleted,
        vec!["goes-away".to_string()],
        "the zone deleted a Mesh that still exists"
    );
    for m in ["keep-a", "keep-b"] {
        assert!(mesh_at(&zone, m).await.is_some(), "{m} is still there");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_restart_zones_reconnect_by_themselves_and_status_follows() {
    let db = migrated_db().await.expect("db");
    let mut g = Global::start(Store::Postgres(db.url.clone()), &[])
        .await
        .expect("global");
    let mut zone = Zone::start(&g, "east", Store::Memory, &[])
        .await
        .expect("zone");
    let online = |g: &Global| {
        let api = g.api.clone();
        async move {
            let (s, v) = api.get("/zones/east/_overview").await.ok()?;
            (s == 200).then_some(v)
        }
    };
    let status_of = |v: &Value| {
        let last = v["zoneInsight"]["subscriptions"]
            .as_array()
            .and_then(|s| s.last())
            .cloned()
            .unwrap_or(Value::Null);
        last.get("disconnectTime").is_none() && !last.is_null()
    };
    eventually(WAIT, "east online at global", || async {
        online(&g).await.filter(status_of)
    })
    .await
    .expect("online");

    g.proc
        .terminate(Duration::from_secs(20))
        .await
        .expect("global stops");
    g.launch().await.expect("global restarts");
    put_mesh(&g, "after-restart", json!({})).await;
    eventually(WAIT, "the zone to reconnect by itself and sync", || async {
        mesh_at(&zone, "after-restart").await
    })
    .await
    .expect("reconnected");
    let (_, list) = g.api.get("/zones/_overview").await.expect("overview list");
    assert_eq!(list["total"], 1, "{list}");

    zone.proc.kill().await;
    eventually(
        WAIT,
        "east offline at global after the zone died",
        || async { online(&g).await.filter(|v| !status_of(v)) },
    )
    .await
    .expect("offline");
    // A disconnected zone can be deleted; a connected one could not.
    let (status, body) = g.api.delete("/zones/east").await.expect("delete zone");
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connected_zone_cannot_be_deleted() {
    let g = Global::start(Store::Memory, &[]).await.expect("global");
    let _zone = Zone::start(&g, "east", Store::Memory, &[])
        .await
        .expect("zone");
    eventually(WAIT, "east online", || async {
        let (_, v) = g.api.get("/zones/east/_overview").await.ok()?;
        v["zoneInsight"]["subscriptions"]
            .as_array()
            .filter(|s| !s.is_empty())
            .map(|_| ())
    })
    .await
    .expect("online");
    let (status, body) = g.api.delete("/zones/east").await.expect("delete");
    assert_eq!(status, 400, "{body}");
    assert!(
        body.to_string().contains(
            "unable to delete Zone, Zone CP is still connected, please shut it down first"
        ),
        "{body}"
    );
}

/// Starts a zone process with the given token text and returns it without waiting for readiness.
async fn zone_with_token(
    g: &Global,
    name: &str,
    token: &str,
) -> meshplane_test_support::process::Proc {
    let dir = tempfile::tempdir().expect("dir").keep();
    let token_file = dir.join("token");
    std::fs::write(&token_file, token).expect("token");
    let args: Vec<String> = vec![
        "run".into(),
        "--zone".into(),
        name.into(),
        "--global-address".into(),
        g.kds_url(),
        "--kds-ca-file".into(),
        g.kds_ca().display().to_string(),
        "--zone-token-file".into(),
        token_file.display().to_string(),
        "--api-addr".into(),
        format!("127.0.0.1:{}", meshplane_test_support::process::free_port()),
        "--dp-server-addr".into(),
        format!("127.0.0.1:{}", meshplane_test_support::process::free_port()),
        "--work-dir".into(),
        dir.join("work").display().to_string(),
        "--store".into(),
        "memory".into(),
        "--kds-reconnect-base".into(),
        "100ms".into(),
    ];
    meshplane_test_support::process::Proc::spawn(
        name,
        &meshplane_test_support::process::bin("meshplane-zone"),
        &args,
        &[],
    )
    .await
    .expect("zone")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_revoked_and_other_zone_tokens_are_refused_without_logging_the_token() {
    let g = Global::start(Store::Memory, &[]).await.expect("global");
    let west = g.zone_token("west").await.expect("west token");
    let revoked = g.zone_token("east").await.expect("east token");
    let (status, body) = g
        .api
        .post(
            "/tokens/revocations",
            &json!({"type": "zone", "token": revoked}),
        )
        .await
        .expect("revoke");
    assert_eq!(status, 200, "{body}");
    let cases = [
        ("not-a-token", "malformed"),
        (west.as_str(), "is for zone \"west\""),
        (revoked.as_str(), "revoked"),
    ];
    for (token, why) in cases {
        let zone = zone_with_token(&g, "east", token).await;
        eventually(
            WAIT,
            &format!("the zone to log its refusal ({why})"),
            || async {
                let logs = zone.logs();
                (logs.contains("Unauthenticated") && logs.contains(why)).then_some(())
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{e}: zone log:\n{}", zone.logs()));
        assert!(!g.proc.logs().contains(token), "global logged a token");
        assert!(
            g.proc.logs().contains("zone refused"),
            "global names the refused zone in its log"
        );
    }
    let (_, zones) = g.api.get("/zones").await.expect("zones");
    assert_eq!(zones["total"], 0, "no refused zone was admitted: {zones}");
}

/// A Mesh's sections besides `mtls` reach a zone exactly as applied at global (the zone decodes
/// them with the same rules; a difference would be NACKed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mesh_sections_reach_a_zone_as_applied() {
    let g = Global::start(Store::Memory, &[]).await.expect("global");
    let zone = Zone::start(&g, "east", Store::Memory, &[])
        .await
        .expect("east");
    let sections = json!({
        "logging": {"defaultBackend": "tcp-1", "backends": [
            {"name": "tcp-1", "type": "tcp", "conf": {"address": "logstash:5000", "kept": true}}]},
        "tracing": {"backends": [{"name": "z", "type": "zipkin", "sampling": 80,
            "conf": {"url": "http://zipkin:9411/api/v2/spans"}}]},
        "metrics": {"enabledBackend": "p", "backends": [{"name": "p", "type": "prometheus",
            "conf": {"port": 5670, "tls": {"mode": "providedTLS"}}}]},
        "networking": {"outbound": {"passthrough": true}},
        "routing": {"localityAwareLoadBalancing": true},
        "constraints": {"dataplaneProxy": {"requirements": [{"tags": {"kuma.io/zone": "east"}}]}},
        "meshServices": {"mode": "Everywhere"},
        "skipCreatingInitialPolicies": ["*"]
    });
    put_mesh(&g, "observed", sections.clone()).await;
    // The zone stamps where the Mesh came from, as Kuma does; nothing else differs.
    let mut want =
        json!({"type": "Mesh", "name": "observed", "labels": {"kuma.io/origin": "global"}});
    want.as_object_mut()
        .expect("object")
        .extend(sections.as_object().expect("object").clone());
    let mut got = eventually(WAIT, "the Mesh at the zone", || async {
        mesh_at(&zone, "observed").await
    })
    .await
    .expect("synced");
    if let Some(o) = got.as_object_mut() {
        o.remove("creationTime");
        o.remove("modificationTime");
    }
    assert_eq!(got, want);
}
