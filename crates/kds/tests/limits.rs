//! The message size limit on every path: a handshake whose known-versions lists are longer than
//! one message (many Meshes held by the zone; many dataplanes held by global, whether listed
//! whole or as the entries of the summary's buckets that differ) is split into parts, and the
//! zone reconnects, reconciles and keeps everything.

mod support;

use std::sync::Arc;

use meshplane_core::{
    model::{ResourceKey, ResourceKind},
    store::{ResourceStore, memory::MemoryStore},
};
use support::{Global, Zone, count, until_holds};

/// Far below the 16 MiB default, so a few hundred records overflow one message.
const LIMIT: usize = 8 * 1024;
const N: usize = 400;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_lists_longer_than_a_message_are_split_and_reconcile() {
    let g = Global::start_configured(Arc::new(MemoryStore::new()), None, |cfg| {
        cfg.max_message = LIMIT;
    })
    .await;
    for i in 0..N {
        g.put_mesh(&format!("mesh-{i:04}"), true).await;
    }
    let token = g.token("east").await;
    let zone_store: Arc<dyn ResourceStore> = Arc::new(MemoryStore::new());
    let start = |store| Zone::start_tuned(&g, "east", &token, store, |c| c.max_message = LIMIT);
    let mut zone = start(zone_store.clone()).await;
    zone.wait_synced().await;
    until_holds(&zone_store, ResourceKind::Mesh, "mesh-", N).await;
    for i in 0..N {
        zone.put_dataplane("mesh-0000", &format!("dp-{i:04}"), "web")
            .await;
    }
    until_holds(&g.store, ResourceKind::Dataplane, "east.", N).await;

    // Reconnect: the Hello lists N Meshes in several messages; the Welcome is a summary, and with
    // half the Dataplanes changed while the zone was away, global's answer to the zone's
    // KnownRequest lists most of its N Dataplanes, again in several messages.
    zone.stop().await;
    for i in (0..N).step_by(2) {
        zone.put_dataplane("mesh-0000", &format!("dp-{i:04}"), "api")
            .await;
    }
    let mut sub = g.store.subscribe();
    let mut zone = start(zone_store.clone()).await;
    zone.wait_synced().await;
    assert_eq!(zone.status.borrow().connects, 1);
    assert!(zone.status.borrow().last_error.is_none());
    let listed = zone.cfg.metrics.handshake_entries.get();
    assert!(
        listed > 100,
        "{listed} entries listed: more than one 8 KiB message"
    );
    // A change after the reconnect flows, so the stream is up past the handshake.
    zone.put_dataplane("mesh-0000", "after-reconnect", "web")
        .await;
    support::eventually_present(
        &g.store,
        &ResourceKey::in_mesh(ResourceKind::Dataplane, "mesh-0000", "east.after-reconnect"),
        true,
    )
    .await;
    assert_eq!(count(&g.store, ResourceKind::Dataplane, "").await, N + 1);
    assert_eq!(count(&zone_store, ResourceKind::Mesh, "").await, N);
    // Nothing was deleted at global by the reconcile.
    while let Some(r) = futures::FutureExt::now_or_never(sub.recv()) {
        if let meshplane_core::store::Received::Event(e) = r {
            assert_ne!(
                e.op,
                meshplane_core::store::ChangeOp::Delete,
                "{} deleted on reconnect",
                e.key
            );
        }
    }
    zone.stop().await;
}
