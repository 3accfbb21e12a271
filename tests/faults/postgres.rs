//! (b) PostgreSQL stopped and started under write load.

use super::*;
use crate::{checks::*, writer::*};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stopped_and_started_under_write_load() {
    init_test_logging();
    let pg = PrivateCluster::create().await.expect("private PostgreSQL");
    let url = pg.create_database("meshplane").await.expect("database");
    let (code, _, err) = run(
        &bin("meshplane-global").display().to_string(),
        &["migrate", "up", "--database-url", &url],
    )
    .await
    .expect("migrate");
    assert_eq!(code, 0, "{err}");
    let mut g = Global::start(Store::Postgres(url.clone()), &[])
        .await
        .expect("global");
    builtin_default(&g).await;
    let z = Zone::start(&g, "zone-1", Store::Memory, &[])
        .await
        .expect("zone");
    let mut a = agent(&g, &z, "web").await;
    let pid = g.proc.pid();

    let writers: Vec<Writer> = (0..3)
        .map(|i| {
            Writer::spawn(
                &g.api,
                &format!("pg{i}"),
                builtin_mesh,
                Duration::from_millis(10),
            )
        })
        .collect();
    let total = |ws: &[Writer]| ws.iter().map(Writer::acked).sum::<u64>();
    let unavailable = |ws: &[Writer]| {
        ws.iter()
            .map(|w| w.unavailable.load(Ordering::SeqCst))
            .sum::<u64>()
    };
    let before = total(&writers);
    eventually(WAIT, "writes before the outage", || async {
        (total(&writers) >= before + 9).then_some(())
    })
    .await
    .expect("writes");

    pg.stop().await.expect("stop PostgreSQL");
    // While it is down the API answers 503: writes, reads and readiness.
    let probe = json!({"type": "Mesh", "name": "probe-down"});
    let (status, body) = eventually(WAIT, "a write answered 503", || async {
        let (s, b) = g.api.put("/meshes/probe-down", &probe).await.ok()?;
        (s == 503).then_some((s, b))
    })
    .await
    .expect("503 on write");
    assert_eq!(body["title"], "Service unavailable", "{status} {body}");
    let (s, b) = g.api.get("/meshes/default").await.expect("get");
    assert_eq!(s, 503, "a read while PostgreSQL is down: {b}");
    let (s, b) = g.api.get("/readyz").await.expect("readyz");
    assert_eq!(s, 503, "readiness while PostgreSQL is down: {b}");
    let seen = unavailable(&writers);
    eventually(WAIT, "the writers to be refused with 503", || async {
        (unavailable(&writers) >= seen + 3).then_some(())
    })
    .await
    .expect("writers refused");
    let acked_while_down = total(&writers);

    pg.start().await.expect("start PostgreSQL");
    // Recovery without a restart: the same process serves again.
    eventually(WAIT, "writes to succeed again", || async {
        let (s, _) = g
            .api
            .put(
                "/meshes/probe-up",
                &json!({"type": "Mesh", "name": "probe-up"}),
            )
            .await
            .ok()?;
        (s == 201 || s == 200).then_some(())
    })
    .await
    .expect("recovered");
    let (s, b) = g.api.get("/readyz").await.expect("readyz");
    assert_eq!(s, 200, "{b}");
    g.proc.check_running().expect("global never exited");
    assert_eq!(g.proc.pid(), pid, "global was not restarted");
    let after = total(&writers);
    eventually(WAIT, "writes after the outage", || async {
        (total(&writers) >= after + 9).then_some(())
    })
    .await
    .expect("writes");
    let mut ledgers = Vec::new();
    for w in writers {
        ledgers.push(w.finish().await);
    }
    let ledger = merge(ledgers);

    let lost = converge(&g.api, &[&z], &["pg"], &ledger).await;
    // No partial write: every Mesh that exists has both CA Secrets of its batch, at global and in
    // the zone, and no CA Secret exists without its Mesh.
    let partial = |meshes: &BTreeMap<String, String>, secrets: &[Value]| {
        let names: BTreeSet<(String, String)> = secrets
            .iter()
            .filter_map(|s| {
                Some((
                    s["mesh"].as_str()?.to_string(),
                    s["name"].as_str()?.to_string(),
                ))
            })
            .collect();
        let mut bad = 0;
        for m in meshes.keys() {
            for kind in ["cert", "key"] {
                if !names.contains(&(m.clone(), format!("{m}.ca-builtin-{kind}-ca-1"))) {
                    println!("Mesh {m} lacks its CA {kind} Secret");
                    bad += 1;
                }
            }
        }
        for (mesh, name) in &names {
            if mesh.starts_with("pg") && !meshes.contains_key(mesh) {
                println!("Secret {name} exists without its Mesh {mesh}");
                bad += 1;
            }
        }
        bad
    };
    let mut partial_writes = 0;
    for api in [&g.api, &z.api] {
        let m = meshes(api, "pg").await.expect("meshes");
        let s = list_all(api, "/secrets").await.expect("secrets");
        partial_writes += partial(&m, &s);
    }
    let unsure_present = {
        let at_global = meshes(&g.api, "pg").await.expect("meshes");
        ledger
            .unsure
            .iter()
            .filter(|n| at_global.contains_key(*n))
            .count()
    };
    let unexpected = ledger
        .statuses
        .iter()
        .filter(|(s, _)| ![200, 201, 503].contains(*s))
        .map(|(_, n)| *n as usize)
        .sum();
    let without_cert = without_valid_certificate(&mut [&mut a]).await;
    Summary {
        test: "PostgreSQL stopped and started under write load",
        faults: 1,
        acked: ledger.acked.len(),
        lost,
        dataplanes: 1,
        without_cert,
        zeros: vec![
            (
                "partial writes (a Mesh without its CA Secrets or the reverse)",
                partial_writes,
            ),
            (
                "answers other than 200, 201 or 503 (no answer, 500, …)",
                unexpected,
            ),
        ],
        notes: vec![
            (
                "503 answers to the writers",
                ledger.statuses.get(&503).copied().unwrap_or(0).to_string(),
            ),
            (
                "writes acknowledged before the outage",
                acked_while_down.to_string(),
            ),
            (
                "unacknowledged writes that turned out to be applied (whole)",
                unsure_present.to_string(),
            ),
            ("answers by status", format!("{:?}", ledger.statuses)),
        ],
    }
    .report_and_assert();
}
