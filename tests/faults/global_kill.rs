//! (a) kill -9 of global in the middle of sync.

use super::*;
use crate::{checks::*, writer::*};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_global_in_the_middle_of_sync() {
    init_test_logging();
    let db = migrated_db().await.expect("database");
    let mut g = Global::start(Store::Postgres(db.url.clone()), &[])
        .await
        .expect("global");
    builtin_default(&g).await;
    let z1 = Zone::start(&g, "zone-1", Store::Memory, &[])
        .await
        .expect("zone-1");
    let z2 = Zone::start(&g, "zone-2", Store::Memory, &[])
        .await
        .expect("zone-2");
    let mut a1 = agent(&g, &z1, "web").await;
    let mut a2 = agent(&g, &z2, "api").await;

    let w = Writer::spawn(&g.api, "kill", plain_mesh, Duration::from_millis(5));
    w.wait_more(20, "writes before the kill").await;
    // Kill global right after the first write of a burst is acknowledged: it has committed writes
    // it has not pushed to the zones yet. Repeat (at most 5 times) until a kill caught the zones
    // behind, which is measured exactly: nothing reaches a zone after global died.
    let mut ledgers = Vec::new();
    let (mut faults, mut behind) = (0, 0);
    for round in 0..5 {
        let burst = Burst::spawn(&g.api, &format!("burst{round}"), 40);
        eventually(WAIT, "the first write of the burst", || async {
            (burst.acked.load(Ordering::SeqCst) > 0).then_some(())
        })
        .await
        .expect("burst acknowledged");
        g.proc.kill().await; // SIGKILL
        faults += 1;
        let failed = w.failed();
        let burst = burst.finish().await;
        let at_zone = meshes(&z1.api, &format!("burst{round}-"))
            .await
            .unwrap_or_default();
        behind = missing(&burst.acked, &at_zone).len();
        ledgers.push(burst);
        eventually(WAIT, "writes to fail while global is dead", || async {
            (w.failed() > failed).then_some(())
        })
        .await
        .expect("global is down");
        g.launch().await.expect("global restarts");
        w.wait_more(10, "writes after the restart").await;
        if behind > 0 {
            break;
        }
    }
    ledgers.push(w.finish().await);
    let ledger = merge(ledgers);

    let lost = converge(&g.api, &[&z1, &z2], &["kill", "burst"], &ledger).await;
    // Tokens and signing keys survived: a new dataplane registers and gets a certificate.
    let mut a3 = agent(&g, &z1, "late").await;
    let without_cert = without_valid_certificate(&mut [&mut a1, &mut a2, &mut a3]).await;
    Summary {
        test: "kill -9 of global during sync",
        faults,
        acked: ledger.acked.len(),
        lost,
        dataplanes: 3,
        without_cert,
        zeros: vec![(
            "kills that did not catch a zone behind (sync really interrupted)",
            usize::from(behind == 0),
        )],
        notes: vec![
            (
                "acknowledged writes not yet at zone-1 when global was killed",
                behind.to_string(),
            ),
            ("answers by status", format!("{:?}", ledger.statuses)),
        ],
    }
    .report_and_assert();
}
