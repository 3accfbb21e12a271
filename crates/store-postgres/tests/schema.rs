//! Schema versioning against a real PostgreSQL: `migrate up`, and the start-up check that refuses
//! a database that is not migrated, migrated further than this binary knows, or tampered with.

mod support;

use meshplane_core::runtime::store_args::{StoreArgs, StoreKind};
use meshplane_store_postgres::{
    MIGRATOR, PgError, SchemaError, check_schema, migrate_up, migrate_up_url, open_store,
};
use meshplane_test_support::postgres::TestDatabase;
use sqlx::PgPool;

fn latest() -> i64 {
    MIGRATOR
        .iter()
        .map(|m| m.version)
        .max()
        .expect("at least one migration")
}

#[tokio::test]
async fn fresh_database_must_be_migrated_first() {
    let db = TestDatabase::create().await.unwrap();
    let pool = PgPool::connect(&db.url).await.unwrap();
    let e = check_schema(&pool).await.unwrap_err();
    assert!(matches!(e, SchemaError::NotMigrated { .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        r#"database is not migrated: run "meshplane-global migrate up --database-url <URL>""#
    );

    let applied = migrate_up(&pool).await.unwrap();
    assert_eq!(
        applied,
        MIGRATOR.iter().map(|m| m.version).collect::<Vec<_>>()
    );
    check_schema(&pool).await.unwrap();
    assert!(
        migrate_up(&pool).await.unwrap().is_empty(),
        "nothing left to apply"
    );
}

#[tokio::test]
async fn newer_database_is_refused() {
    let (_db, pool) = support::migrated().await;
    let newer = latest() + 1;
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES ($1, 'from the future', true, '\\x00', 0)",
    )
    .bind(newer)
    .execute(&pool)
    .await
    .unwrap();
    let e = check_schema(&pool).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "database schema version {newer} is newer than this binary supports ({}); upgrade meshplane",
            latest()
        )
    );
    // migrate up must not touch it either.
    assert!(
        matches!(
            migrate_up(&pool).await,
            Err(PgError::Schema(SchemaError::Ahead { .. }))
        ),
        "migrate up on a newer database must refuse"
    );
}

#[tokio::test]
async fn tampered_migrations_are_refused() {
    let (_db, pool) = support::migrated().await;
    sqlx::query("UPDATE _sqlx_migrations SET checksum = '\\x00' WHERE version = $1")
        .bind(latest())
        .execute(&pool)
        .await
        .unwrap();
    let e = check_schema(&pool).await.unwrap_err();
    assert!(matches!(e, SchemaError::ChecksumMismatch { .. }), "{e:?}");
    assert!(e.to_string().contains("checksum mismatch"), "{e}");

    sqlx::query("UPDATE _sqlx_migrations SET success = false WHERE version = $1")
        .bind(latest())
        .execute(&pool)
        .await
        .unwrap();
    let e = check_schema(&pool).await.unwrap_err();
    assert!(matches!(e, SchemaError::Dirty { .. }), "{e:?}");
}

/// Replicas may all run `migrate up` at start: the advisory lock makes exactly one apply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_migrations_apply_once() {
    let db = TestDatabase::create().await.unwrap();
    let runs = (0..3).map(|_| {
        let url = db.url.clone();
        tokio::spawn(async move { migrate_up_url(&url).await })
    });
    let mut applied = Vec::new();
    for r in futures::future::join_all(runs).await {
        applied.extend(r.unwrap().unwrap());
    }
    assert_eq!(applied, vec![latest()]);
}

/// The flags' defaults (memory store), with secrets allowed in plaintext: this test is about the
/// schema, not encryption at rest.
fn store_args() -> StoreArgs {
    StoreArgs {
        store: None,
        database_url: None,
        database_url_file: None,
        database_max_connections: 4,
        encryption_key_file: None,
        encryption_key: None,
        encryption_old_key_file: Vec::new(),
        allow_plaintext_secrets: true,
    }
}

/// The binaries' entry point checks, and never applies, the schema.
#[tokio::test]
async fn open_store_checks_but_does_not_migrate() {
    let db = TestDatabase::create().await.unwrap();
    let args = StoreArgs {
        store: Some(StoreKind::Postgres),
        database_url: Some(db.url.clone()),
        ..store_args()
    };
    let e = open_store(&args, "meshplane-zone")
        .await
        .err()
        .expect("unmigrated");
    assert_eq!(
        e.to_string(),
        r#"database is not migrated: run "meshplane-zone migrate up --database-url <URL>""#
    );
    let pool = PgPool::connect(&db.url).await.unwrap();
    let (exists,): (bool,) = sqlx::query_as("SELECT to_regclass('resources') IS NOT NULL")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(!exists, "open_store must not create the schema");

    migrate_up_url(&db.url).await.unwrap();
    let (store, description) = open_store(&args, "meshplane-zone").await.unwrap();
    assert_eq!(description, store.describe());
    store.ping().await.unwrap();

    let memory = store_args();
    assert_eq!(
        open_store(&memory, "meshplane-zone").await.unwrap().1,
        "memory"
    );
}
