//! (d) a zone cut off from global, then global frozen, and both reconnected.

use super::*;
use crate::{checks::*, writer::*};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zone_cut_off_from_global_and_reconnected() {
    init_test_logging();
    let g = Global::start(Store::Memory, &[]).await.expect("global");
    builtin_default(&g).await;
    put_ok(
        &g.api,
        "/meshes/plain",
        &json!({"type": "Mesh", "name": "plain"}),
    )
    .await;
    let z1 = Zone::start(&g, "zone-1", Store::Memory, &[])
        .await
        .expect("zone-1");
    let z2 = Zone::start(&g, "zone-2", Store::Memory, &[])
        .await
        .expect("zone-2");
    let mut a1 = agent(&g, &z1, "web").await;
    let mut a2 = agent(&g, &z2, "api").await;
    let w = Writer::spawn(&g.api, "cut", plain_mesh, Duration::from_millis(20));
    w.wait_more(10, "writes before the cut").await;

    // Fault 1: zone-1 frozen until global declares it offline; writes go on meanwhile.
    let online = |zone: &'static str| {
        let api = g.api.clone();
        async move {
            let (s, v) = api.get(&format!("/zones/{zone}/_overview")).await.ok()?;
            if s != 200 {
                return None;
            }
            let last = v["zoneInsight"]["subscriptions"]
                .as_array()?
                .last()?
                .clone();
            Some(last.get("disconnectTime").is_none())
        }
    };
    z1.proc.signal("STOP").expect("freeze zone-1");
    eventually(WAIT, "global to see zone-1 offline", || async {
        (online("zone-1").await == Some(false)).then_some(())
    })
    .await
    .expect("zone-1 offline");
    w.wait_more(10, "writes while zone-1 is cut off").await;
    z1.proc.signal("CONT").expect("resume zone-1");
    eventually(WAIT, "zone-1 online again", || async {
        (online("zone-1").await == Some(true)).then_some(())
    })
    .await
    .expect("zone-1 reconnected");

    // Fault 2: global frozen until both zones noticed; the zones keep accepting their own writes.
    let disconnects = |z: &Zone| count(&z.proc.logs(), "disconnected from global");
    let (d1, d2) = (disconnects(&z1), disconnects(&z2));
    g.proc.signal("STOP").expect("freeze global");
    eventually(WAIT, "both zones to lose global", || async {
        (disconnects(&z1) > d1 && disconnects(&z2) > d2).then_some(())
    })
    .await
    .expect("zones noticed");
    let mut zone_writes = BTreeSet::new();
    for (z, n) in [(&z1, 3), (&z2, 3)] {
        for i in 0..n {
            let name = format!("offline-{i}");
            let (s, b) = z
                .api
                .put(
                    &format!("/meshes/plain/dataplanes/{name}"),
                    &json!({"type": "Dataplane", "mesh": "plain", "name": name,
                        "networking": {"address": "10.0.0.1", "inbound": [{"port": 80, "tags": {"kuma.io/service": "svc"}}]}}),
                )
                .await
                .expect("dataplane");
            assert_eq!(
                s, 201,
                "a zone accepts its own writes while global is away: {b}"
            );
            zone_writes.insert(format!("{}.{name}", z.name));
        }
    }
    g.proc.signal("CONT").expect("resume global");
    w.wait_more(10, "writes after global resumed").await;
    let ledger = w.finish().await;

    let mut lost = converge(&g.api, &[&z1, &z2], &["cut"], &ledger).await;
    // Zone → global: what the zones wrote while global was frozen reached it.
    let reported = || async {
        let items = list_all(&g.api, "/meshes/plain/dataplanes").await?;
        Some(
            items
                .iter()
                .filter_map(|d| d["name"].as_str().map(str::to_string))
                .collect::<BTreeSet<_>>(),
        )
    };
    if eventually(WAIT, "the zones' writes at global", || async {
        reported().await.filter(|r| r.is_superset(&zone_writes))
    })
    .await
    .is_err()
    {
        let r = reported().await.unwrap_or_default();
        lost += zone_writes.difference(&r).count();
    }
    let without_cert = without_valid_certificate(&mut [&mut a1, &mut a2]).await;
    Summary {
        test: "zone cut off (SIGSTOP zone, then global) and reconnected",
        faults: 2,
        acked: ledger.acked.len() + zone_writes.len(),
        lost,
        dataplanes: 2,
        without_cert,
        zeros: vec![],
        notes: vec![
            ("Mesh writes at global", ledger.acked.len().to_string()),
            (
                "Dataplane writes at the zones while global was frozen",
                zone_writes.len().to_string(),
            ),
        ],
    }
    .report_and_assert();
}
