//! A reconnect re-lists what changed while the zone was away, not its fleet: global sends a
//! summary, the zone asks for the buckets that differ, and what global ends with is exactly the
//! zone's state, nothing deleted that still exists. A zone that does not accept summaries gets
//! the whole list and reconciles the same.

mod support;

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use meshplane_core::{
    model::{ResourceKey, ResourceKind},
    store::{ChangeOp, ListQuery, Received, ResourceStore, memory::MemoryStore},
};
use support::{Global, Zone, until_holds};

const N: usize = 600;

/// Dataplane name (zone-local) -> spec, as `store` holds them under `prefix`.
async fn dataplanes(store: &Arc<dyn ResourceStore>, prefix: &str) -> BTreeMap<String, String> {
    store
        .list(&ListQuery::all(ResourceKind::Dataplane))
        .await
        .expect("list")
        .items
        .into_iter()
        .filter_map(|r| {
            let name = r.key.name.strip_prefix(prefix)?.to_string();
            Some((name, r.spec.to_string()))
        })
        .collect()
}

/// Waits until global holds exactly the zone's Dataplanes, with the same specs.
async fn until_global_mirrors(g: &Global, zone: &Arc<dyn ResourceStore>) {
    meshplane_test_support::process::eventually(
        Duration::from_secs(30),
        "global to hold exactly the zone's dataplanes",
        || async {
            (dataplanes(&g.store, "east.").await == dataplanes(zone, "").await).then_some(())
        },
    )
    .await
    .expect("global mirrors the zone");
}

async fn reconnect_after_changes(accept_summary: bool) -> u64 {
    let g = Global::start().await;
    g.put_mesh("default", true).await;
    let token = g.token("east").await;
    let zone_store: Arc<dyn ResourceStore> = Arc::new(MemoryStore::new());
    let start = |store| {
        Zone::start_tuned(&g, "east", &token, store, |c| {
            c.accept_summary = accept_summary
        })
    };
    let mut zone = start(zone_store.clone()).await;
    zone.wait_synced().await;
    for i in 0..N {
        zone.put_dataplane("default", &format!("dp-{i:04}"), "web")
            .await;
    }
    until_holds(&g.store, ResourceKind::Dataplane, "east.", N).await;
    zone.stop().await;

    // While the zone is away: three change, two go, two are new, and one is deleted at global
    // (it must come back).
    for i in [3, 300, 599] {
        zone.put_dataplane("default", &format!("dp-{i:04}"), "api")
            .await;
    }
    for i in [10, 11] {
        let key = ResourceKey::in_mesh(ResourceKind::Dataplane, "default", format!("dp-{i:04}"));
        support::delete(&zone.store, key).await;
    }
    for name in ["new-1", "new-2"] {
        zone.put_dataplane("default", name, "web").await;
    }
    g.delete(ResourceKey::in_mesh(
        ResourceKind::Dataplane,
        "default",
        "east.dp-0200",
    ))
    .await;

    let mut events = g.store.subscribe();
    let mut zone = start(zone_store.clone()).await;
    let listed_before = zone.cfg.metrics.handshake_entries.get();
    zone.wait_synced().await;
    until_global_mirrors(&g, &zone_store).await;
    let listed = zone.cfg.metrics.handshake_entries.get() - listed_before;
    zone.stop().await;

    let mut touched = Vec::new();
    while let Some(Received::Event(e)) = futures::FutureExt::now_or_never(events.recv()) {
        if e.key.kind == ResourceKind::Dataplane {
            touched.push((e.op, e.key.name.clone()));
        }
    }
    touched.sort_by(|a, b| a.1.cmp(&b.1));
    let at = |op: ChangeOp, n: &str| (op, format!("east.{n}"));
    let mut expected = vec![
        at(ChangeOp::Update, "dp-0003"),
        at(ChangeOp::Delete, "dp-0010"),
        at(ChangeOp::Delete, "dp-0011"),
        at(ChangeOp::Create, "dp-0200"),
        at(ChangeOp::Update, "dp-0300"),
        at(ChangeOp::Update, "dp-0599"),
        at(ChangeOp::Create, "new-1"),
        at(ChangeOp::Create, "new-2"),
    ];
    expected.sort_by(|a, b| a.1.cmp(&b.1));
    assert_eq!(
        touched, expected,
        "global wrote exactly what changed while the zone was away"
    );
    listed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnect_relists_the_changed_buckets_only() {
    let listed = reconnect_after_changes(true).await;
    // 600 records in 64 buckets (about 9.4 each); 8 keys differ, so at most 8 buckets are
    // listed: a fraction of the 599 entries global holds.
    assert!(
        (1..=150).contains(&listed),
        "{listed} entries listed for 8 changed keys"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zone_without_summaries_gets_the_whole_list_and_reconciles_the_same() {
    let listed = reconnect_after_changes(false).await;
    assert_eq!(listed, N as u64 - 1, "every record global held, listed");
}
