//! Throwaway PostgreSQL databases: each test gets a fresh, uniquely named database on the server
//! `DATABASE_URL` names, so tests run in parallel, and the database is dropped with the fixture.

use std::{str::FromStr, time::Duration};

use anyhow::Context;
use sqlx::{Connection, Executor, PgConnection, postgres::PgConnectOptions};

/// The server tests use when `DATABASE_URL` is unset: a local one with trust authentication.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// How long dropping a database may take before the fixture gives up on it.
const DROP_TIMEOUT: Duration = Duration::from_secs(30);

/// A database created for one test and dropped (`WITH (FORCE)`, so open connections do not keep it
/// alive) when this value is dropped.
#[derive(Debug)]
pub struct TestDatabase {
    /// URL of the new database: `DATABASE_URL` with its database name replaced.
    pub url: String,
    /// `mp_test_<uuid>`.
    pub name: String,
    /// Where `CREATE`/`DROP DATABASE` run: the database `DATABASE_URL` names.
    admin: PgConnectOptions,
}

impl TestDatabase {
    /// Creates an empty database (no migrations applied).
    pub async fn create() -> anyhow::Result<Self> {
        let base = std::env::var("DATABASE_URL")
            .ok()
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_string());
        let admin = PgConnectOptions::from_str(&base)
            .with_context(|| format!("DATABASE_URL {:?} is not a PostgreSQL URL", redact(&base)))?;
        let name = format!("mp_test_{}", uuid::Uuid::new_v4().simple());
        let mut conn = PgConnection::connect_with(&admin).await.with_context(|| {
            format!(
                "connecting to {} to create a test database (is PostgreSQL running? start it with \
                 `pg_ctlcluster --skip-systemctl-redirect <version> main start`)",
                redact(&base)
            )
        })?;
        // The name is generated from hex digits only, so quoting it is enough.
        conn.execute(format!(r#"CREATE DATABASE "{name}""#).as_str())
            .await
            .with_context(|| format!("creating database {name}"))?;
        let _ = conn.close().await;
        let url = with_database(&base, &name)?;
        Ok(Self { url, name, admin })
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let admin = self.admin.clone();
        let name = std::mem::take(&mut self.name);
        // Drop runs inside the test's runtime, which cannot be blocked on; a thread with its own
        // runtime can. Joining it makes sure the database is gone before the test process exits.
        let dropper = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                let drop_db = async {
                    let mut conn = PgConnection::connect_with(&admin).await?;
                    conn.execute(
                        format!(r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#).as_str(),
                    )
                    .await?;
                    conn.close().await
                };
                if let Ok(Err(e)) = tokio::time::timeout(DROP_TIMEOUT, drop_db).await {
                    tracing::debug!(database = %name, error = %e, "could not drop test database");
                }
            });
        });
        let _ = dropper.join();
    }
}

/// `base` with its path (the database name) replaced; query parameters such as `sslmode` stay.
fn with_database(base: &str, name: &str) -> anyhow::Result<String> {
    let mut url = url::Url::parse(base)
        .with_context(|| format!("DATABASE_URL {:?} is not a URL", redact(base)))?;
    url.set_path(&format!("/{name}"));
    Ok(url.to_string())
}

/// The URL without its password, for error messages.
fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("REDACTED"));
            u.to_string()
        }
        Ok(u) => u.to_string(),
        Err(_) => "<unparseable URL>".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_only_the_database_name() {
        assert_eq!(
            with_database("postgres://u:p@h:5432/test?sslmode=disable", "mp_test_1").unwrap(),
            "postgres://u:p@h:5432/mp_test_1?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1", "x").unwrap(),
            "postgres://postgres@127.0.0.1/x"
        );
        assert_eq!(redact("postgres://u:p@h/db"), "postgres://u:REDACTED@h/db");
    }

    #[tokio::test]
    async fn creates_and_drops_a_database() {
        let db = TestDatabase::create().await.unwrap();
        let mut conn = PgConnection::connect(&db.url).await.unwrap();
        let (current,): (String,) = sqlx::query_as("SELECT current_database()")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(current, db.name);
        let name = db.name.clone();
        let admin = db.admin.clone();
        // An open connection must not keep the database alive.
        drop(db);
        let mut admin = PgConnection::connect_with(&admin).await.unwrap();
        let (exists,): (bool,) =
            sqlx::query_as("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
                .bind(&name)
                .fetch_one(&mut admin)
                .await
                .unwrap();
        assert!(!exists, "{name} must be dropped with its fixture");
        drop(conn);
    }
}
