//! A batch whose connection dies between two of its statements (PostgreSQL stopping, a failover, an
//! operator's `pg_terminate_backend`) leaves nothing behind, announces nothing, and its retry writes
//! it whole, once. The kill is placed deterministically: a second transaction holds the key of the
//! batch's second row, so the batch waits right after its first statement, and the test terminates
//! its backend there.

mod support;

use std::{collections::BTreeMap, time::Duration};

use meshplane_core::{
    model::{ResourceKey, ResourceKind},
    store::{ListQuery, Received, ResourceStore, StoreError, WriteOp},
};
use meshplane_test_support::process::eventually;
use serde_json::json;
use sqlx::{Connection, PgConnection, PgPool};
use support::{WAIT, migrated, store};

fn batch(mesh: &str) -> Vec<WriteOp> {
    let mut ops = vec![WriteOp::Create {
        key: ResourceKey::mesh(mesh),
        spec: json!({}),
        labels: BTreeMap::new(),
        owner: None,
    }];
    for k in ["cert", "key"] {
        ops.push(WriteOp::Create {
            key: secret(mesh, k),
            spec: json!({"data": "YQ=="}),
            labels: BTreeMap::new(),
            owner: Some(ResourceKey::mesh(mesh)),
        });
    }
    ops
}

fn secret(mesh: &str, k: &str) -> ResourceKey {
    ResourceKey::in_mesh(
        ResourceKind::Secret,
        mesh,
        format!("{mesh}.ca-builtin-{k}-ca-1"),
    )
}

/// Backends of this database waiting for a lock: the batch, parked on its second statement.
async fn waiting_on_a_lock(pool: &PgPool) -> Vec<i32> {
    sqlx::query_scalar(
        "SELECT pid FROM pg_stat_activity \
         WHERE datname = current_database() AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()",
    )
    .fetch_all(pool)
    .await
    .expect("pg_stat_activity")
}

async fn rows_of(pool: &PgPool, mesh: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM resources WHERE (type = 'Mesh' AND name = $1) OR mesh = $1",
    )
    .bind(mesh)
    .fetch_one(pool)
    .await
    .expect("count")
}

async fn killed_between_statements(iterations: usize) {
    let (db, pool) = migrated().await;
    let store = store(&db).await;
    let mut sub = store.subscribe();
    for i in 0..iterations {
        let mesh = format!("kill-{i}");
        // Holds the key of the batch's first Secret in an open transaction.
        let mut blocker = PgConnection::connect(&db.url).await.expect("connect");
        sqlx::query("BEGIN")
            .execute(&mut blocker)
            .await
            .expect("begin");
        sqlx::query(
            "INSERT INTO resources (type, mesh, name, version, spec, creation_time, modification_time) \
             VALUES ('Secret', $1, $2, 1, '{}', now(), now())",
        )
        .bind(&mesh)
        .bind(&secret(&mesh, "cert").name)
        .execute(&mut blocker)
        .await
        .expect("blocking insert");

        let write = {
            let ops = batch(&mesh);
            let store = &store;
            async move { store.write(ops).await }
        };
        let kill = async {
            let pid = eventually(
                WAIT,
                "the batch to wait on its second statement",
                || async { waiting_on_a_lock(&pool).await.first().copied() },
            )
            .await
            .expect("the batch never blocked");
            sqlx::query("SELECT pg_terminate_backend($1)")
                .bind(pid)
                .execute(&pool)
                .await
                .expect("terminate");
        };
        let (result, ()) = tokio::join!(write, kill);
        assert!(
            matches!(result, Err(StoreError::Unavailable(_))),
            "a batch whose connection died answers Unavailable, got {result:?}"
        );
        sqlx::query("ROLLBACK")
            .execute(&mut blocker)
            .await
            .expect("rollback");
        let _ = blocker.close().await;
        assert_eq!(
            rows_of(&pool, &mesh).await,
            0,
            "iteration {i}: the killed batch left rows behind (its Mesh committed without its Secrets)"
        );

        // The retry writes all three rows, once.
        store.write(batch(&mesh)).await.expect("retry");
        assert_eq!(rows_of(&pool, &mesh).await, 3, "iteration {i}");
        // The events announce exactly the retry's three rows: the killed batch announced nothing.
        let mut seen = Vec::new();
        while seen.len() < 3 {
            match tokio::time::timeout(WAIT, sub.recv()).await.expect("event") {
                Received::Event(e) => seen.push(e.key),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(
            seen,
            vec![
                ResourceKey::mesh(&mesh),
                secret(&mesh, "cert"),
                secret(&mesh, "key")
            ]
        );
    }
    let total = store
        .list(&ListQuery::all(ResourceKind::Secret))
        .await
        .expect("list")
        .total;
    assert_eq!(total, 2 * iterations, "no duplicate and no missing Secret");
    assert!(
        tokio::time::timeout(Duration::from_millis(200), sub.recv())
            .await
            .is_err(),
        "nothing else was announced"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_killed_between_its_statements_leaves_nothing_and_its_retry_writes_it_whole() {
    killed_between_statements(20).await;
}

/// The same, 200 times: `cargo nextest run -p meshplane-store-postgres --run-ignored only`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long: 200 iterations"]
async fn a_batch_killed_between_its_statements_200_times() {
    killed_between_statements(200).await;
}
