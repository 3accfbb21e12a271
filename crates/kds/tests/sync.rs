//! Global<->zone sync over real gRPC and TLS on loopback, with in-memory stores on both ends.

mod support;

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use meshplane_core::{
    model::{ResourceKey, ResourceKind},
    store::{ChangeOp, Received, ResourceStore, WriteOp, memory::MemoryStore},
    tokens::{TokenKind, Tokens},
};
use meshplane_kds::client::{ClientError, SyncStatus};
use serde_json::json;
use support::*;
use tokio::sync::watch;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mesh_create_update_delete_reach_two_zones() {
    let g = Global::start().await;
    let mut east = Zone::start(&g, "east").await;
    let mut west = Zone::start(&g, "west").await;
    east.wait_synced().await;
    west.wait_synced().await;

    g.put_mesh("payments", false).await;
    for z in [&east, &west] {
        eventually_present(&z.store, &ResourceKey::mesh("payments"), true).await;
    }
    g.put_mesh("payments", true).await;
    for z in [&east, &west] {
        meshplane_test_support::process::eventually(
            Duration::from_secs(10),
            "update to reach the zone",
            || async {
                let rec = z
                    .store
                    .get(&ResourceKey::mesh("payments"))
                    .await
                    .expect("get")?;
                (rec.spec["mtls"]["skipValidation"] == json!(true)).then_some(())
            },
        )
        .await
        .expect("updated");
        let rec = z
            .store
            .get(&ResourceKey::mesh("payments"))
            .await
            .expect("get")
            .expect("mesh");
        assert_eq!(
            rec.labels.get("kuma.io/origin").map(String::as_str),
            Some("global")
        );
    }
    g.delete(ResourceKey::mesh("payments")).await;
    for z in [&east, &west] {
        eventually_present(&z.store, &ResourceKey::mesh("payments"), false).await;
    }
    east.stop().await;
    west.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dataplanes_flow_up_renamed_and_owned_by_the_zone() {
    let g = Global::start().await;
    g.put_mesh("default", false).await;
    let mut east = Zone::start(&g, "east").await;
    east.wait_synced().await;
    eventually_present(&east.store, &ResourceKey::mesh("default"), true).await;
    east.put_dataplane("default", "web-1", "web").await;
    let at_global = ResourceKey::in_mesh(ResourceKind::Dataplane, "default", "east.web-1");
    eventually_present(&g.store, &at_global, true).await;
    let rec = g.store.get(&at_global).await.expect("get").expect("dp");
    assert_eq!(
        rec.labels.get("kuma.io/zone").map(String::as_str),
        Some("east")
    );
    assert_eq!(
        rec.labels.get("kuma.io/display-name").map(String::as_str),
        Some("web-1")
    );
    assert_eq!(
        rec.owner,
        Some(ResourceKey::global(ResourceKind::Zone, "east"))
    );
    east.store
        .write(vec![WriteOp::Delete {
            key: ResourceKey::in_mesh(ResourceKind::Dataplane, "default", "web-1"),
            expected_version: None,
        }])
        .await
        .expect("delete");
    eventually_present(&g.store, &at_global, false).await;
    east.stop().await;
}

/// Kuma issue 9455: a reconnect must never delete and re-create what still exists, on either side.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zone_restart_resyncs_without_transient_deletes() {
    let g = Global::start().await;
    for m in ["a", "b", "c"] {
        g.put_mesh(m, false).await;
    }
    let zone_store: Arc<dyn ResourceStore> = Arc::new(MemoryStore::new());
    let token = g.token("east").await;
    let mut east = Zone::start_with(&g, "east", &token, zone_store.clone()).await;
    east.wait_synced().await;
    eventually_present(&zone_store, &ResourceKey::mesh("c"), true).await;
    east.put_dataplane("a", "dp", "svc").await;
    let dp_at_global = ResourceKey::in_mesh(ResourceKind::Dataplane, "a", "east.dp");
    eventually_present(&g.store, &dp_at_global, true).await;
    east.stop().await;

    // While the zone is away: one mesh is deleted, one changed, one added.
    g.delete(ResourceKey::mesh("b")).await;
    g.put_mesh("c", true).await;
    g.put_mesh("d", false).await;

    let mut zone_events = zone_store.subscribe();
    let mut global_events = g.store.subscribe();
    let mut east = Zone::start_with(&g, "east", &token, zone_store.clone()).await;
    east.wait_synced().await;
    eventually_present(&zone_store, &ResourceKey::mesh("d"), true).await;
    eventually_present(&zone_store, &ResourceKey::mesh("b"), false).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    east.stop().await;

    let mut zone_deletes = Vec::new();
    while let Some(Received::Event(e)) = futures::FutureExt::now_or_never(zone_events.recv()) {
        if e.op == ChangeOp::Delete {
            zone_deletes.push(e.key);
        }
    }
    assert_eq!(
        zone_deletes,
        vec![ResourceKey::mesh("b")],
        "the zone deleted only what global deleted"
    );
    while let Some(Received::Event(e)) = futures::FutureExt::now_or_never(global_events.recv()) {
        assert!(
            !(e.op == ChangeOp::Delete && e.key.kind == ResourceKind::Dataplane),
            "global deleted the zone's dataplane {} during a reconnect",
            e.key
        );
    }
    assert!(g.store.get(&dp_at_global).await.expect("get").is_some());
    assert!(
        zone_store
            .get(&ResourceKey::mesh("a"))
            .await
            .expect("get")
            .is_some(),
        "a is untouched"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_restart_zones_reconnect_by_themselves() {
    let store: Arc<dyn ResourceStore> = Arc::new(MemoryStore::new());
    let mut g = Global::start_on(store.clone(), None).await;
    let port = g.addr.port();
    let mut east = Zone::start(&g, "east").await;
    east.wait_synced().await;
    g.stop().await;
    meshplane_test_support::process::eventually(
        Duration::from_secs(10),
        "zone to notice global is gone",
        || async { (!east.status.borrow().connected).then_some(()) },
    )
    .await
    .expect("disconnected");
    // Global comes back on the same address with the same store (and so the same CA and keys).
    let g2 = Global::start_on(store.clone(), Some(port)).await;
    g2.put_mesh("after-restart", false).await;
    eventually_present(&east.store, &ResourceKey::mesh("after-restart"), true).await;
    assert!(east.status.borrow().connects >= 2);
    east.stop().await;
}

async fn refused(g: &Global, zone: &str, token: &str) -> String {
    let (cfg, _dir) = Zone::config(g, zone, token).await;
    let (tx, _rx) = watch::channel(SyncStatus::default());
    match meshplane_kds::client::connect_once(&cfg, Arc::new(MemoryStore::new()), &tx).await {
        Err(ClientError::Refused(s)) => {
            assert_eq!(s.code(), tonic::Code::Unauthenticated, "{s:?}");
            s.message().to_string()
        }
        other => panic!("expected Unauthenticated, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_expired_revoked_and_other_zone_tokens_are_refused() {
    let g = Global::start().await;
    assert!(refused(&g, "east", "not-a-jwt").await.contains("malformed"));
    let west = g.token("west").await;
    assert!(
        refused(&g, "east", &west)
            .await
            .contains("is for zone \"west\"")
    );
    let tokens = Tokens::new(g.store.clone());
    let short = tokens
        .issue(
            TokenKind::Zone,
            meshplane_core::tokens::ZoneClaims {
                zone: "east".into(),
                scope: vec![],
            },
            Duration::from_secs(1),
        )
        .await
        .expect("token");
    tokio::time::sleep(Duration::from_secs(32)).await; // past the 30s leeway
    assert!(refused(&g, "east", &short).await.contains("expired"));
    let east = g.token("east").await;
    tokens
        .revoke(
            TokenKind::Zone,
            &meshplane_core::tokens::token_id(&east).expect("jti"),
        )
        .await
        .expect("revoke");
    assert!(refused(&g, "east", &east).await.contains("revoked"));
    // A token of another family is not a zone token.
    let user = tokens
        .issue(
            TokenKind::User,
            meshplane_core::tokens::UserClaims {
                name: "u".into(),
                groups: vec![],
            },
            Duration::from_secs(60),
        )
        .await
        .expect("user token");
    // Its key id names a key of another family, so the signature cannot verify.
    let msg = refused(&g, "east", &user).await;
    assert!(
        msg.contains("signature is invalid") || msg.contains("not a zone-token"),
        "{msg}"
    );
    assert!(g.server.connected_zones().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nacked_resource_is_reported_while_the_rest_flows() {
    let g = Global::start().await;
    // A Mesh this zone cannot accept (as after a version skew), written below the manager.
    g.store
        .write(vec![WriteOp::Create {
            key: ResourceKey::mesh("broken"),
            spec: json!({"mtls": {"backends": "not-a-list"}}),
            labels: BTreeMap::new(),
            owner: None,
        }])
        .await
        .expect("raw write");
    g.put_mesh("fine", false).await;
    let mut east = Zone::start(&g, "east").await;
    east.wait_synced().await;
    eventually_present(&east.store, &ResourceKey::mesh("fine"), true).await;
    g.put_mesh("later", false).await;
    eventually_present(&east.store, &ResourceKey::mesh("later"), true).await;
    assert!(
        east.store
            .get(&ResourceKey::mesh("broken"))
            .await
            .expect("get")
            .is_none()
    );
    meshplane_test_support::process::eventually(
        Duration::from_secs(10),
        "the NACK and the other pushes' ACKs to be counted in the zone insight",
        || async {
            // Both, in one flushed insight: the NACK can be flushed before the later ACK arrives.
            let z = zone_insight(&g.store, "east").await?;
            let mesh = z.subscriptions.last()?.status.stat.get("Mesh").copied()?;
            (mesh.responses_rejected >= 1 && mesh.responses_acknowledged >= 1).then_some(mesh)
        },
    )
    .await
    .expect("rejected and acknowledged counted");
    east.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zone_online_offline_and_stale_duplicate_streams() {
    let g = Global::start().await;
    let mut first = Zone::start(&g, "east").await;
    first.wait_synced().await;
    meshplane_test_support::process::eventually(Duration::from_secs(10), "east online", || async {
        zone_insight(&g.store, "east")
            .await
            .filter(|z| z.is_online())
            .map(|_| ())
    })
    .await
    .expect("online");
    // A second stream of the same zone replaces the first.
    let token = g.token("east").await;
    let mut second = Zone::start_with(&g, "east", &token, Arc::new(MemoryStore::new())).await;
    second.wait_synced().await;
    meshplane_test_support::process::eventually(
        Duration::from_secs(10),
        "the first stream to be closed",
        || async {
            let st = first.status.borrow().clone();
            (st.last_error
                .as_deref()
                .is_some_and(|e| e.contains("newer stream")))
            .then_some(())
        },
    )
    .await
    .expect("first closed");
    assert_eq!(g.server.connected_zones(), vec!["east".to_string()]);
    first.stop().await;
    second.stop().await;
    meshplane_test_support::process::eventually(
        Duration::from_secs(10),
        "east offline",
        || async {
            zone_insight(&g.store, "east")
                .await
                .filter(|z| !z.is_online())
                .map(|_| ())
        },
    )
    .await
    .expect("offline");
    let z = zone_insight(&g.store, "east").await.expect("insight");
    assert!(z.subscriptions.len() >= 2);
    assert!(z.subscriptions.iter().all(|s| s.disconnect_time.is_some()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_signing_keys_never_reach_zones() {
    let g = Global::start().await;
    let tokens = Tokens::new(g.store.clone());
    tokens
        .signing_key(TokenKind::Dataplane)
        .await
        .expect("dp key");
    tokens.signing_key(TokenKind::Zone).await.expect("zone key");
    let mut east = Zone::start(&g, "east").await;
    east.wait_synced().await;
    let public = ResourceKey::global(
        ResourceKind::GlobalSecret,
        TokenKind::Dataplane.public_key_name(1),
    );
    eventually_present(&east.store, &public, true).await;
    let all = east
        .store
        .list(&meshplane_core::store::ListQuery::all(
            ResourceKind::GlobalSecret,
        ))
        .await
        .expect("list");
    let names: Vec<&str> = all.items.iter().map(|r| r.key.name.as_str()).collect();
    assert_eq!(
        names,
        vec!["dataplane-token-signing-public-key-1"],
        "only the dataplane public key is synced"
    );
    for r in &all.items {
        let text = serde_json::to_string(&r.spec).expect("json");
        assert!(!text.contains("PRIVATE"));
    }
    east.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_connected_zones_token_closes_its_stream() {
    let g = Global::start().await;
    let token = g.token("east").await;
    let mut east = Zone::start_with(&g, "east", &token, Arc::new(MemoryStore::new())).await;
    east.wait_synced().await;
    Tokens::new(g.store.clone())
        .revoke(
            TokenKind::Zone,
            &meshplane_core::tokens::token_id(&token).expect("jti"),
        )
        .await
        .expect("revoke");
    meshplane_test_support::process::eventually(
        Duration::from_secs(10),
        "the open stream to be closed as revoked",
        || async {
            let st = east.status.borrow().clone();
            (!st.connected
                && st
                    .last_error
                    .as_deref()
                    .is_some_and(|e| e.contains("revoked")))
            .then_some(())
        },
    )
    .await
    .expect("closed");
    assert!(g.server.connected_zones().is_empty());
    east.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zone_is_reported_online_and_synced_without_waiting_for_a_flush() {
    // No periodic flush within the test: whatever the insight shows comes from the stream's start.
    let g = Global::start_flushing(
        Arc::new(MemoryStore::new()),
        None,
        Duration::from_secs(3600),
    )
    .await;
    g.put_mesh("default", true).await;
    let mut east = Zone::start(&g, "east").await;
    east.wait_synced().await;
    let z = meshplane_test_support::process::eventually(
        Duration::from_secs(10),
        "the insight to count global's initial push as acknowledged",
        || async {
            let z = zone_insight(&g.store, "east").await?;
            let sub = z.subscriptions.last()?;
            (sub.status.total.responses_acknowledged > 0).then_some(z)
        },
    )
    .await
    .expect("insight");
    assert!(
        z.is_online_at(
            chrono::Utc::now(),
            meshplane_core::model::ZONE_INSIGHT_MAX_AGE
        ),
        "{z:?}"
    );
    let sub = z.subscriptions.last().expect("subscription");
    assert!(sub.status.total.responses_sent >= sub.status.total.responses_acknowledged);
    assert!(
        sub.status.stat.contains_key("Mesh"),
        "{:?}",
        sub.status.stat
    );
    assert!(sub.status.last_update_time.is_some());
    east.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_streams_are_listed_until_the_zone_connects() {
    let g = Global::start().await;
    let east = g.token("east").await;
    Tokens::new(g.store.clone())
        .revoke(
            TokenKind::Zone,
            &meshplane_core::tokens::token_id(&east).expect("jti"),
        )
        .await
        .expect("revoke");
    refused(&g, "east", &east).await;
    refused(&g, "east", &east).await;
    refused(&g, "west", "not-a-jwt").await;
    let list = g.server.refusals();
    assert_eq!(list.len(), 2, "{list:?}");
    assert_eq!(list[0].zone, "west", "newest first");
    let e = list.iter().find(|r| r.zone == "east").expect("east");
    assert!(e.reason.contains("revoked"), "{}", e.reason);
    assert_eq!(e.count, 2, "the same refusal again only counts");
    assert!(!e.reason.contains(&east), "never the token");

    // With a good token the zone connects, and its refusal is history.
    let mut z = Zone::start(&g, "east").await;
    z.wait_synced().await;
    let list = g.server.refusals();
    assert!(list.iter().all(|r| r.zone != "east"), "{list:?}");
    assert_eq!(list.len(), 1);
    z.stop().await;
}
