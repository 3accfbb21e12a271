//! Behaviour every `ResourceStore` must show, as async checks any implementation's tests can run.
//! Each check panics with a message saying what the store did wrong.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use serde_json::json;

use super::{
    ChangeOp, ListQuery, Received, ResourceStore, ResourceStoreExt, Selection, StoreError, WriteOp,
};
use crate::model::{ResourceKey, ResourceKind};

fn mesh(name: &str) -> ResourceKey {
    ResourceKey::mesh(name)
}

fn secret(m: &str, name: &str) -> ResourceKey {
    ResourceKey::in_mesh(ResourceKind::Secret, m, name)
}

fn create(key: ResourceKey, owner: Option<ResourceKey>) -> WriteOp {
    WriteOp::Create {
        key,
        spec: json!({}),
        labels: BTreeMap::new(),
        owner,
    }
}

fn secret_spec(data: &str) -> serde_json::Value {
    json!({"data": data})
}

/// Deletes the named Meshes (and what they own), so each check leaves the store as it found it.
async fn delete_meshes<'a>(store: &dyn ResourceStore, names: impl IntoIterator<Item = &'a str>) {
    for m in names {
        store
            .write_one(WriteOp::Delete {
                key: mesh(m),
                expected_version: None,
            })
            .await
            .expect("cleanup");
    }
}

/// Runs every check against the store; the store must start empty.
pub async fn run_all(store: Arc<dyn ResourceStore>) {
    create_get_update(store.as_ref()).await;
    racing_stale_updates(store.clone()).await;
    cascade_delete(store.as_ref()).await;
    atomic_batches(store.as_ref()).await;
    listing(store.as_ref()).await;
    snapshots(store.as_ref()).await;
    snapshots_never_tear_a_batch(store.clone()).await;
    upserts(store.as_ref()).await;
    batched_upserts(store.as_ref()).await;
    events(store.as_ref()).await;
}

pub async fn create_get_update(store: &dyn ResourceStore) {
    let key = mesh("cgu");
    let rec = store
        .write_one(create(key.clone(), None))
        .await
        .expect("create")
        .expect("record");
    assert_eq!(rec.version, 1, "a new record starts at version 1");
    assert_eq!(
        store.get(&key).await.expect("get"),
        Some(rec.clone()),
        "get returns what create returned"
    );
    assert!(matches!(
        store.write_one(create(key.clone(), None)).await,
        Err(StoreError::AlreadyExists(_))
    ));

    let labels = BTreeMap::from([("team".to_string(), "a".to_string())]);
    let op = WriteOp::Update {
        key: key.clone(),
        expected_version: 1,
        spec: json!({"mtls": {}}),
        labels: labels.clone(),
    };
    let rec2 = store.write_one(op).await.expect("update").expect("record");
    assert_eq!(rec2.version, 2);
    assert_eq!(rec2.spec, json!({"mtls": {}}));
    assert_eq!(rec2.labels, labels);
    assert_eq!(
        rec2.creation_time, rec.creation_time,
        "creation time survives updates"
    );
    assert!(rec2.modification_time >= rec.modification_time);

    let stale = WriteOp::Update {
        key: key.clone(),
        expected_version: 1,
        spec: json!({}),
        labels: BTreeMap::new(),
    };
    match store.write_one(stale).await {
        Err(StoreError::Conflict {
            expected: 1,
            found: 2,
            ..
        }) => {}
        other => panic!("a stale update must be a Conflict naming both versions, got {other:?}"),
    }
    assert_eq!(
        store.get(&key).await.expect("get").map(|r| r.version),
        Some(2),
        "the stale update changed nothing"
    );

    let missing = WriteOp::Update {
        key: mesh("nope"),
        expected_version: 1,
        spec: json!({}),
        labels: BTreeMap::new(),
    };
    assert!(matches!(
        store.write_one(missing).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store
            .write_one(WriteOp::Delete {
                key: mesh("nope"),
                expected_version: None
            })
            .await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store
            .write_one(WriteOp::Delete {
                key: key.clone(),
                expected_version: Some(1)
            })
            .await,
        Err(StoreError::Conflict { .. })
    ));
    store
        .write_one(WriteOp::Delete {
            key: key.clone(),
            expected_version: Some(2),
        })
        .await
        .expect("delete");
    assert_eq!(store.get(&key).await.expect("get"), None);
}

/// Many writers update the same record from the same version at once: exactly one wins.
pub async fn racing_stale_updates(store: Arc<dyn ResourceStore>) {
    let key = mesh("race");
    store
        .write_one(create(key.clone(), None))
        .await
        .expect("create");
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = store.clone();
        let key = key.clone();
        tasks.push(tokio::spawn(async move {
            let op = WriteOp::Update {
                key,
                expected_version: 1,
                spec: json!({"writer": i}),
                labels: BTreeMap::new(),
            };
            store.write_one(op).await
        }));
    }
    let mut won = Vec::new();
    let mut conflicts = 0;
    for (i, t) in tasks.into_iter().enumerate() {
        match t.await.expect("task") {
            Ok(_) => won.push(i),
            Err(StoreError::Conflict { .. }) => conflicts += 1,
            Err(e) => panic!("writer {i}: unexpected error {e}"),
        }
    }
    assert_eq!(
        won.len(),
        1,
        "exactly one racing writer must win, winners: {won:?}"
    );
    assert_eq!(conflicts, 7);
    let rec = store.get(&key).await.expect("get").expect("exists");
    assert_eq!(rec.version, 2);
    assert_eq!(
        rec.spec,
        json!({"writer": won[0]}),
        "the stored value is the winner's"
    );
    store
        .write_one(WriteOp::Delete {
            key,
            expected_version: None,
        })
        .await
        .expect("cleanup");
}

pub async fn cascade_delete(store: &dyn ResourceStore) {
    let m = mesh("cascade");
    let s1 = secret("cascade", "s1");
    let s2 = secret("cascade", "s2");
    let orphan_owner = mesh("never-created");
    match store
        .write_one(create(secret("cascade", "x"), Some(orphan_owner)))
        .await
    {
        Err(StoreError::OwnerMissing { .. }) => {}
        other => {
            panic!("creating under a missing owner must fail with OwnerMissing, got {other:?}")
        }
    }
    store
        .write(vec![
            create(m.clone(), None),
            WriteOp::Create {
                key: s1.clone(),
                spec: secret_spec("YQ=="),
                labels: BTreeMap::new(),
                owner: Some(m.clone()),
            },
            WriteOp::Create {
                key: s2.clone(),
                spec: secret_spec("Yg=="),
                labels: BTreeMap::new(),
                owner: Some(m.clone()),
            },
        ])
        .await
        .expect("batch create");
    let mut events = store.subscribe();
    store
        .write_one(WriteOp::Delete {
            key: m.clone(),
            expected_version: None,
        })
        .await
        .expect("delete mesh");
    for k in [&m, &s1, &s2] {
        assert_eq!(
            store.get(k).await.expect("get"),
            None,
            "{k} must be gone after its owner was deleted"
        );
    }
    let mut deleted = Vec::new();
    while deleted.len() < 3 {
        match tokio::time::timeout(Duration::from_secs(10), events.recv()).await {
            Ok(Received::Event(e)) if e.op == ChangeOp::Delete => deleted.push(e.key),
            Ok(Received::Event(_)) => {}
            other => panic!("expected three delete events, got {deleted:?} then {other:?}"),
        }
    }
    deleted.sort();
    let mut want = vec![m, s1, s2];
    want.sort();
    assert_eq!(deleted, want, "a cascade announces every deleted record");
}

/// A batch that fails part-way leaves nothing behind.
pub async fn atomic_batches(store: &dyn ResourceStore) {
    let a = mesh("atomic-a");
    let b = mesh("atomic-b");
    store
        .write_one(create(b.clone(), None))
        .await
        .expect("create b");
    let r = store
        .write(vec![create(a.clone(), None), create(b.clone(), None)])
        .await;
    assert!(
        matches!(r, Err(StoreError::AlreadyExists(ref k)) if *k == b),
        "got {r:?}"
    );
    assert_eq!(
        store.get(&a).await.expect("get"),
        None,
        "the first op of a failed batch must be rolled back"
    );

    let r = store
        .write(vec![
            WriteOp::Update {
                key: b.clone(),
                expected_version: 1,
                spec: json!({"x": 1}),
                labels: BTreeMap::new(),
            },
            WriteOp::Update {
                key: b.clone(),
                expected_version: 1,
                spec: json!({"x": 2}),
                labels: BTreeMap::new(),
            },
        ])
        .await;
    assert!(
        matches!(r, Err(StoreError::Conflict { .. })),
        "the second update saw version 2, got {r:?}"
    );
    let rec = store.get(&b).await.expect("get").expect("b");
    assert_eq!(
        (rec.version, rec.spec),
        (1, json!({})),
        "a failed batch must not keep its first update"
    );
    store
        .write_one(WriteOp::Delete {
            key: b,
            expected_version: None,
        })
        .await
        .expect("cleanup");
}

pub async fn listing(store: &dyn ResourceStore) {
    let mut ops = vec![create(mesh("list-1"), None), create(mesh("list-2"), None)];
    for i in 0..5 {
        ops.push(WriteOp::Create {
            key: secret("list-1", &format!("s{i}")),
            spec: secret_spec("YQ=="),
            labels: BTreeMap::new(),
            owner: Some(mesh("list-1")),
        });
    }
    ops.push(WriteOp::Create {
        key: secret("list-2", "s0"),
        spec: secret_spec("YQ=="),
        labels: BTreeMap::new(),
        owner: Some(mesh("list-2")),
    });
    store.write(ops).await.expect("seed");

    let all = store
        .list(&ListQuery::all(ResourceKind::Secret))
        .await
        .expect("list");
    assert_eq!(all.total, 6);
    let names: Vec<(String, String)> = all
        .items
        .iter()
        .map(|r| (r.key.mesh.clone(), r.key.name.clone()))
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "lists are ordered by mesh, then name");

    let page = store
        .list(&ListQuery {
            kind: ResourceKind::Secret,
            mesh: Some("list-1".into()),
            offset: 2,
            limit: Some(2),
        })
        .await
        .expect("page");
    assert_eq!(page.total, 5, "total counts every match, not the page");
    let names: Vec<&str> = page.items.iter().map(|r| r.key.name.as_str()).collect();
    assert_eq!(names, vec!["s2", "s3"]);
    let past = store
        .list(&ListQuery {
            kind: ResourceKind::Secret,
            mesh: Some("list-1".into()),
            offset: 10,
            limit: Some(2),
        })
        .await
        .expect("past the end");
    assert!(past.items.is_empty());
    assert_eq!(
        store
            .list_all(ResourceKind::Zone, None)
            .await
            .expect("zones")
            .len(),
        0
    );
    delete_meshes(store, ["list-1", "list-2"]).await;
}

pub async fn snapshots(store: &dyn ResourceStore) {
    let mut ops = vec![create(mesh("snap-1"), None), create(mesh("snap-2"), None)];
    for (m, n) in [("snap-1", "a"), ("snap-1", "b"), ("snap-2", "a")] {
        ops.push(WriteOp::Create {
            key: secret(m, n),
            spec: secret_spec("YQ=="),
            labels: BTreeMap::new(),
            owner: Some(mesh(m)),
        });
    }
    store.write(ops).await.expect("seed");
    let keys = |sel: Selection| async move {
        store
            .snapshot(&sel)
            .await
            .expect("snapshot")
            .into_iter()
            .map(|r| r.key)
            .collect::<Vec<_>>()
    };
    // A key selected twice (by kind and by key) comes back once; results are in key order.
    let got = keys(Selection {
        kinds: vec![(ResourceKind::Secret, Some("snap-1".into()))],
        keys: vec![mesh("snap-2"), secret("snap-1", "a"), mesh("snap-absent")],
        ..Default::default()
    })
    .await;
    assert_eq!(
        got,
        vec![mesh("snap-2"), secret("snap-1", "a"), secret("snap-1", "b")],
        "one mesh's secrets plus named keys, each once, in key order; absent keys are skipped"
    );
    let got = keys(Selection::kinds(&[
        ResourceKind::Secret,
        ResourceKind::Mesh,
    ]))
    .await;
    let ours: Vec<ResourceKey> = got
        .into_iter()
        .filter(|k| k.name.starts_with("snap-") || k.mesh.starts_with("snap-"))
        .collect();
    assert_eq!(
        ours,
        vec![
            mesh("snap-1"),
            mesh("snap-2"),
            secret("snap-1", "a"),
            secret("snap-1", "b"),
            secret("snap-2", "a")
        ]
    );
    // By owner: what snap-1 owns, and not snap-1 itself nor what snap-2 owns; with a key too.
    let got = keys(Selection {
        owned_by: vec![mesh("snap-1"), mesh("snap-absent")],
        keys: vec![mesh("snap-2")],
        ..Default::default()
    })
    .await;
    assert_eq!(
        got,
        vec![mesh("snap-2"), secret("snap-1", "a"), secret("snap-1", "b")],
        "records owned by the given owners, plus named keys"
    );
    assert!(keys(Selection::default()).await.is_empty());
    delete_meshes(store, ["snap-1", "snap-2"]).await;
}

/// A snapshot taken while batches commit sees each batch whole: every Mesh it holds comes with
/// both Secrets written in the Mesh's batch, and no Secret comes without its Mesh.
pub async fn snapshots_never_tear_a_batch(store: Arc<dyn ResourceStore>) {
    const BATCHES: usize = 60;
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for i in 0..BATCHES {
                let m = format!("tear-{i}");
                let mut ops = vec![create(mesh(&m), None)];
                for n in ["cert", "key"] {
                    ops.push(WriteOp::Create {
                        key: secret(&m, n),
                        spec: secret_spec("YQ=="),
                        labels: BTreeMap::new(),
                        owner: Some(mesh(&m)),
                    });
                }
                store.write(ops).await.expect("batch");
                tokio::task::yield_now().await;
            }
        })
    };
    let sel = Selection::kinds(&[ResourceKind::Mesh, ResourceKind::Secret]);
    let mut seen_whole = 0;
    loop {
        let done = writer.is_finished();
        let recs = store.snapshot(&sel).await.expect("snapshot");
        let meshes: Vec<&str> = recs
            .iter()
            .filter(|r| r.key.kind == ResourceKind::Mesh && r.key.name.starts_with("tear-"))
            .map(|r| r.key.name.as_str())
            .collect();
        let secrets: Vec<(&str, &str)> = recs
            .iter()
            .filter(|r| r.key.kind == ResourceKind::Secret && r.key.mesh.starts_with("tear-"))
            .map(|r| (r.key.mesh.as_str(), r.key.name.as_str()))
            .collect();
        for m in &meshes {
            for n in ["cert", "key"] {
                assert!(
                    secrets.contains(&(*m, n)),
                    "snapshot holds Mesh {m} without its Secret {n}: a batch was seen half-applied"
                );
            }
        }
        for (m, n) in &secrets {
            assert!(
                meshes.contains(m),
                "snapshot holds Secret {n} of mesh {m} without the Mesh"
            );
        }
        seen_whole = seen_whole.max(meshes.len());
        if done {
            break;
        }
        // Lets the writer run on a single-threaded runtime, where a memory snapshot never waits.
        tokio::task::yield_now().await;
    }
    writer.await.expect("writer");
    assert_eq!(seen_whole, BATCHES, "the last snapshot sees every batch");
    let names: Vec<String> = (0..BATCHES).map(|i| format!("tear-{i}")).collect();
    delete_meshes(store.as_ref(), names.iter().map(String::as_str)).await;
}

pub async fn upserts(store: &dyn ResourceStore) {
    let key = ResourceKey::global(ResourceKind::ZoneInsight, "upsert-zone");
    let op = |v: i64| WriteOp::Upsert {
        key: key.clone(),
        spec: json!({"n": v}),
        labels: BTreeMap::new(),
        owner: None,
    };
    assert_eq!(
        store
            .write_one(op(1))
            .await
            .expect("insert")
            .map(|r| r.version),
        Some(1)
    );
    let rec = store
        .write_one(op(2))
        .await
        .expect("replace")
        .expect("record");
    assert_eq!((rec.version, rec.spec), (2, json!({"n": 2})));
    store
        .write_one(WriteOp::Delete {
            key,
            expected_version: None,
        })
        .await
        .expect("cleanup");
}

/// A batch of many upserts (the certificate manager's persisted batches): in order, a key written
/// twice in one batch ends at its second write, a missing owner anywhere refuses the whole batch
/// naming that record, and thousands of records in one batch are all written, each announced.
pub async fn batched_upserts(store: &dyn ResourceStore) {
    let owner = mesh("batched");
    store
        .write_one(create(owner.clone(), None))
        .await
        .expect("owner");
    let key = |i: usize| secret("batched", &format!("s{i}"));
    let up = |k: ResourceKey, v: usize, owner: &ResourceKey| WriteOp::Upsert {
        key: k,
        spec: secret_spec(&format!("v{v}")),
        labels: BTreeMap::from([("n".to_string(), v.to_string())]),
        owner: Some(owner.clone()),
    };
    let mut rx = store.subscribe();
    let out = store
        .write(vec![
            up(key(0), 1, &owner),
            up(key(1), 1, &owner),
            up(key(0), 2, &owner),
            up(key(2), 1, &owner),
        ])
        .await
        .expect("a batch of upserts");
    let versions: Vec<_> = out.iter().map(|r| r.as_ref().map(|r| r.version)).collect();
    assert_eq!(versions, vec![Some(1), Some(1), Some(2), Some(1)]);
    let rec = store.get(&key(0)).await.expect("get").expect("written");
    assert_eq!(
        out[2].as_ref(),
        Some(&rec),
        "the batch returns what get reads"
    );
    assert_eq!(
        (rec.version, rec.spec, rec.labels["n"].as_str()),
        (2, secret_spec("v2"), "2"),
        "the later write of a key in one batch wins"
    );
    let mut seen = Vec::new();
    while seen.len() < 4 {
        match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
            Ok(Received::Event(e)) if e.key.mesh == "batched" => {
                seen.push((e.key.name, e.version));
            }
            Ok(Received::Event(_)) => {}
            other => panic!("expected the batch's four events, got {seen:?} then {other:?}"),
        }
    }
    let names: Vec<_> = seen.iter().map(|(n, v)| format!("{n}@{v}")).collect();
    assert_eq!(
        names,
        ["s0@1", "s1@1", "s0@2", "s2@1"],
        "announced in order"
    );

    // One record without its owner refuses the batch, named; nothing of it is written.
    let gone = mesh("batched-gone");
    let err = store
        .write(vec![
            up(key(3), 1, &owner),
            up(secret("batched-gone", "x"), 1, &gone),
            up(key(4), 1, &owner),
        ])
        .await
        .expect_err("an owner is missing");
    match err {
        StoreError::OwnerMissing { key: k, owner: o } => {
            assert_eq!((k, o), (secret("batched-gone", "x"), gone));
        }
        other => panic!("expected OwnerMissing, got {other:?}"),
    }
    assert_eq!(store.get(&key(3)).await.expect("get"), None, "rolled back");
    assert_eq!(store.get(&key(4)).await.expect("get"), None, "rolled back");

    // More records than one statement takes.
    let many: Vec<_> = (100..2600).map(|i| up(key(i), 1, &owner)).collect();
    let out = store.write(many).await.expect("2,500 upserts");
    assert_eq!(out.len(), 2500);
    assert!(
        out.iter()
            .all(|r| r.as_ref().is_some_and(|r| r.version == 1))
    );
    let again: Vec<_> = (100..2600).map(|i| up(key(i), 2, &owner)).collect();
    let out = store.write(again).await.expect("2,500 upserts again");
    assert!(
        out.iter()
            .all(|r| r.as_ref().is_some_and(|r| r.version == 2))
    );
    let rec = store.get(&key(2599)).await.expect("get").expect("written");
    assert_eq!((rec.version, rec.spec), (2, secret_spec("v2")));
    store
        .write_one(WriteOp::Delete {
            key: owner,
            expected_version: None,
        })
        .await
        .expect("cleanup");
}

pub async fn events(store: &dyn ResourceStore) {
    let mut rx = store.subscribe();
    let key = mesh("events");
    store
        .write_one(create(key.clone(), None))
        .await
        .expect("create");
    store
        .write_one(WriteOp::Update {
            key: key.clone(),
            expected_version: 1,
            spec: json!({}),
            labels: BTreeMap::new(),
        })
        .await
        .expect("update");
    store
        .write_one(WriteOp::Delete {
            key: key.clone(),
            expected_version: None,
        })
        .await
        .expect("delete");
    let mut seen = Vec::new();
    while seen.len() < 3 {
        match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
            Ok(Received::Event(e)) if e.key == key => seen.push((e.op, e.version)),
            Ok(Received::Event(_)) => {}
            other => panic!(
                "expected create, update and delete events for {key}, got {seen:?} then {other:?}"
            ),
        }
    }
    assert_eq!(
        seen,
        vec![
            (ChangeOp::Create, 1),
            (ChangeOp::Update, 2),
            (ChangeOp::Delete, 2)
        ]
    );
}
