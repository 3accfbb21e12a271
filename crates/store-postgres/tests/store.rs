//! `PgStore` against a real PostgreSQL: the shared conformance checks, replicas sharing a database,
//! durability, an unreachable server, and losing the LISTEN connection.

mod support;

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use meshplane_core::{
    model::{ResourceKey, ResourceKind},
    store::{
        ChangeEvent, ChangeOp, ListQuery, Received, ResourceStore, ResourceStoreExt, StoreError,
        WriteOp, conformance,
    },
};
use meshplane_store_postgres::{PgOptions, PgStore};
use meshplane_test_support::postgres::listener_pids;
use serde_json::json;
use support::{WAIT, migrated, next, store};

fn create(key: ResourceKey, spec: serde_json::Value, owner: Option<ResourceKey>) -> WriteOp {
    WriteOp::Create {
        key,
        spec,
        labels: BTreeMap::new(),
        owner,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conforms() {
    let (db, _pool) = migrated().await;
    let store = store(&db).await;
    assert!(store.describe().starts_with("postgres "));
    assert!(store.describe().ends_with(&format!("/{}", db.name)));
    conformance::run_all(Arc::new(store)).await;
}

/// Two replicas on one database: a write through either is announced on both, identically.
#[tokio::test]
async fn replicas_see_each_others_writes() {
    let (db, _pool) = migrated().await;
    let a = store(&db).await;
    let b = store(&db).await;
    let mut on_a = a.subscribe();
    let mut on_b = b.subscribe();
    let m = ResourceKey::mesh("shared");
    a.write_one(create(m.clone(), json!({}), None))
        .await
        .unwrap();
    let created = ChangeEvent {
        op: ChangeOp::Create,
        key: m.clone(),
        version: 1,
    };
    assert_eq!(next(&mut on_b).await, Received::Event(created.clone()));
    assert_eq!(next(&mut on_a).await, Received::Event(created));
    b.write_one(WriteOp::Delete {
        key: m.clone(),
        expected_version: Some(1),
    })
    .await
    .unwrap();
    let deleted = Received::Event(ChangeEvent {
        op: ChangeOp::Delete,
        key: m,
        version: 1,
    });
    assert_eq!(next(&mut on_a).await, deleted);
    assert_eq!(next(&mut on_b).await, deleted);
}

/// A rolled-back batch announces nothing: the next event is the one after it.
#[tokio::test]
async fn failed_batches_announce_nothing() {
    let (db, _pool) = migrated().await;
    let store = store(&db).await;
    let mut sub = store.subscribe();
    let taken = ResourceKey::mesh("taken");
    store
        .write_one(create(taken.clone(), json!({}), None))
        .await
        .unwrap();
    // Notifications arrive after the commit returns: wait for this one so it cannot be mistaken
    // for an announcement of the failed batch.
    assert!(matches!(next(&mut sub).await, Received::Event(e) if e.key == taken));
    let r = store
        .write(vec![
            create(ResourceKey::mesh("new"), json!({}), None),
            create(taken, json!({}), None),
        ])
        .await;
    assert!(matches!(r, Err(StoreError::AlreadyExists(_))), "{r:?}");
    let marker = ResourceKey::mesh("marker");
    store
        .write_one(create(marker.clone(), json!({}), None))
        .await
        .unwrap();
    match next(&mut sub).await {
        Received::Event(e) => assert_eq!(e.key, marker, "the rolled-back create was announced"),
        other => panic!("{other:?}"),
    }
}

/// What was written survives the store (and its connections) going away.
#[tokio::test]
async fn writes_are_durable() {
    let (db, _pool) = migrated().await;
    let m = ResourceKey::mesh("durable");
    let s = ResourceKey::in_mesh(ResourceKind::Secret, "durable", "s");
    let labels = BTreeMap::from([("team".to_string(), "core".to_string())]);
    let written = {
        let store = store(&db).await;
        store
            .write(vec![
                create(m.clone(), json!({"mtls": {"enabledBackend": "ca-1"}}), None),
                create(s.clone(), json!({"data": "YQ=="}), Some(m.clone())),
            ])
            .await
            .unwrap();
        // An update keeps the owner it does not mention.
        store
            .write_one(WriteOp::Update {
                key: s.clone(),
                expected_version: 1,
                spec: json!({"data": "Yg=="}),
                labels: labels.clone(),
            })
            .await
            .unwrap()
            .unwrap()
    };
    assert_eq!(written.owner.as_ref(), Some(&m));
    let reopened = store(&db).await;
    let read = reopened.get(&s).await.unwrap().expect("still there");
    assert_eq!(read, written);
    assert_eq!(read.version, 2);
    assert_eq!(read.labels, labels);
    let meshes = reopened
        .list(&ListQuery::all(ResourceKind::Mesh))
        .await
        .unwrap();
    assert_eq!(meshes.total, 1);
    assert_eq!(
        meshes.items[0].spec,
        json!({"mtls": {"enabledBackend": "ca-1"}})
    );
}

/// Errors name keys, never spec contents: specs hold secret data.
#[tokio::test]
async fn errors_do_not_quote_specs() {
    let (db, _pool) = migrated().await;
    let store = store(&db).await;
    let key = ResourceKey::global(ResourceKind::GlobalSecret, "g");
    let op = || create(key.clone(), json!({"data": "c2VjcmV0LXZhbHVl"}), None);
    store.write_one(op()).await.unwrap();
    let dup = store.write_one(op()).await.unwrap_err();
    let orphan = store
        .write_one(create(
            ResourceKey::in_mesh(ResourceKind::Secret, "none", "s"),
            json!({"data": "c2VjcmV0LXZhbHVl"}),
            Some(ResourceKey::mesh("none")),
        ))
        .await
        .unwrap_err();
    for e in [dup, orphan] {
        assert!(!e.to_string().contains("c2VjcmV0LXZhbHVl"), "{e}");
    }
}

/// A server that does not answer makes calls fail fast with `Unavailable` (the API's 503).
#[tokio::test]
async fn unreachable_server_is_unavailable() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("postgres://postgres@127.0.0.1:{port}/nothing");
    let opts = PgOptions {
        max_connections: 2,
        acquire_timeout: Duration::from_millis(500),
    };
    let started = tokio::time::Instant::now();
    let store = PgStore::connect_lazy(&url, opts.clone()).unwrap();
    let key = ResourceKey::mesh("m");
    let results = [
        store.ping().await,
        store
            .write_one(create(key.clone(), json!({}), None))
            .await
            .map(|_| ()),
        store.get(&key).await.map(|_| ()),
        store
            .list(&ListQuery::all(ResourceKind::Mesh))
            .await
            .map(|_| ()),
    ];
    for r in results {
        assert!(matches!(r, Err(StoreError::Unavailable(_))), "{r:?}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        PgStore::connect(&url, opts).await.is_err(),
        "connect must fail on a closed port"
    );
}

/// Losing the LISTEN connection loses notifications: subscribers are told to resync once the store
/// listens again, and events flow after that.
#[tokio::test]
async fn lost_listener_means_resync() {
    let (db, pool) = migrated().await;
    let store = store(&db).await;
    let mut sub = store.subscribe();
    let pids = listener_pids(&pool).await.expect("listeners");
    assert_eq!(pids.len(), 1, "one listener per store: {pids:?}");
    sqlx::query("SELECT pg_terminate_backend($1)")
        .bind(pids[0])
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(next(&mut sub).await, Received::Resync);
    let after = listener_pids(&pool).await.expect("listeners");
    assert_eq!(after.len(), 1, "listening again: {after:?}");
    assert_ne!(after[0], pids[0]);
    let m = ResourceKey::mesh("after");
    store
        .write_one(create(m.clone(), json!({}), None))
        .await
        .unwrap();
    match next(&mut sub).await {
        Received::Event(e) => assert_eq!((e.op, e.key), (ChangeOp::Create, m)),
        other => panic!("expected the create after the resync, got {other:?}"),
    }
}

/// A lazily connected store cannot know what it missed before listening: it says so.
#[tokio::test]
async fn lazy_store_resyncs_once_listening() {
    let (db, _pool) = migrated().await;
    let store = PgStore::connect_lazy(&db.url, PgOptions::default()).unwrap();
    let mut sub = store.subscribe();
    assert_eq!(next(&mut sub).await, Received::Resync);
    let m = ResourceKey::mesh("lazy");
    store
        .write_one(create(m.clone(), json!({}), None))
        .await
        .unwrap();
    assert!(matches!(next(&mut sub).await, Received::Event(e) if e.key == m));
}

/// Dropping the store stops its listener: subscribers see the stream end.
#[tokio::test]
async fn dropping_the_store_closes_subscriptions() {
    let (db, pool) = migrated().await;
    let store = store(&db).await;
    let mut sub = store.subscribe();
    drop(store);
    assert_eq!(next(&mut sub).await, Received::Closed);
    // The LISTEN connection goes with it.
    let deadline = tokio::time::Instant::now() + WAIT;
    while !listener_pids(&pool).await.expect("listeners").is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "listener still connected"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The plan a key read runs with on `conn` after the table grew from one row to 10,000 under a
/// statement prepared (and executed often enough for PostgreSQL to settle on a plan) while it was
/// tiny, as on a fresh zone whose fleet registers before the first ANALYZE.
async fn plan_after_growth(conn: &mut sqlx::PgConnection) -> String {
    sqlx::raw_sql(
        "INSERT INTO resources (type, mesh, name, version, spec, creation_time, modification_time) \
         VALUES ('Mesh', '', 'm', 1, '{}', now(), now()); \
         PREPARE key_read(text[], text[], text[]) AS SELECT r.name FROM resources r \
         JOIN unnest($1, $2, $3) AS k(type, mesh, name) \
         ON r.type = k.type AND r.mesh = k.mesh AND r.name = k.name",
    )
    .execute(&mut *conn)
    .await
    .expect("plan probe");
    for _ in 0..8 {
        sqlx::raw_sql("EXECUTE key_read('{Mesh}', '{\"\"}', '{m}')")
            .execute(&mut *conn)
            .await
            .expect("plan probe");
    }
    sqlx::raw_sql(
        "INSERT INTO resources (type, mesh, name, version, spec, creation_time, modification_time) \
         SELECT 'Mesh', '', 'm' || g, 1, '{}', now(), now() FROM generate_series(1, 10000) g",
    )
    .execute(&mut *conn)
    .await
    .expect("plan probe");
    let rows: Vec<(String,)> =
        sqlx::query_as("EXPLAIN EXECUTE key_read('{Mesh}', '{\"\"}', '{m}')")
            .fetch_all(&mut *conn)
            .await
            .expect("plan probe");
    rows.into_iter().map(|r| r.0).collect::<Vec<_>>().join("\n")
}

/// The store's connections plan each execution with its parameters, so a key read stays an index
/// lookup however small the table was when the statement was first prepared. A plain connection
/// (PostgreSQL's default plan cache) shows the trap this guards against.
#[tokio::test]
async fn key_reads_stay_index_lookups_as_a_fresh_table_grows() {
    let (db, pool) = migrated().await;
    let mut plain = pool.acquire().await.unwrap();
    let trap = plan_after_growth(&mut plain).await;
    assert!(trap.contains("Seq Scan"), "default plan cache: {trap}");
    drop(plain);

    let (db2, _pool2) = migrated().await;
    let store = store(&db2).await;
    let mut ours = store.pool().acquire().await.unwrap();
    let plan = plan_after_growth(&mut ours).await;
    assert!(
        plan.contains("Index") && !plan.contains("Seq Scan on resources"),
        "the store's connections: {plan}"
    );
    drop(db);
}
