//! Fixtures shared by the integration tests: a fresh migrated database per test, stores on it, and
//! waiting for events with a deadline.

#![allow(dead_code)] // each test binary uses its own subset

use std::time::Duration;

use meshplane_core::store::{Received, Subscription};
use meshplane_store_postgres::{PgOptions, PgStore, migrate_up};
use meshplane_test_support::postgres::TestDatabase;
use sqlx::PgPool;

/// Long enough for a loaded CI machine, short enough that a hang fails the test.
pub const WAIT: Duration = Duration::from_secs(15);

/// A fresh database with the schema applied. Keep the `TestDatabase` alive for the whole test:
/// dropping it drops the database.
pub async fn migrated() -> (TestDatabase, PgPool) {
    let db = TestDatabase::create().await.expect("create test database");
    let pool = PgPool::connect(&db.url).await.expect("connect");
    migrate_up(&pool).await.expect("migrate up");
    (db, pool)
}

pub async fn store(db: &TestDatabase) -> PgStore {
    PgStore::connect(&db.url, PgOptions::default())
        .await
        .expect("connect store")
}

/// The next thing the subscription receives, failing the test after [`WAIT`].
pub async fn next(sub: &mut Subscription) -> Received {
    tokio::time::timeout(WAIT, sub.recv())
        .await
        .expect("nothing received in time")
}
