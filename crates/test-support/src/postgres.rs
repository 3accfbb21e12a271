//! Throwaway PostgreSQL databases: each test gets a fresh, uniquely named database on the server
//! `DATABASE_URL` names, so tests run in parallel, and the database is dropped with the fixture.

use meshplane_core::runtime::config::redact_url;
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
        let admin = PgConnectOptions::from_str(&base).with_context(|| {
            format!(
                "DATABASE_URL {:?} is not a PostgreSQL URL",
                redact_url(&base)
            )
        })?;
        let name = format!("mp_test_{}", uuid::Uuid::new_v4().simple());
        let mut conn = PgConnection::connect_with(&admin).await.with_context(|| {
            format!(
                "connecting to {} to create a test database (is PostgreSQL running? start it with \
                 `pg_ctlcluster --skip-systemctl-redirect <version> main start`)",
                redact_url(&base)
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

/// The backends of the current database's LISTEN connections (a store's change-event listener),
/// for tests that kill it with `pg_terminate_backend` as a PostgreSQL restart would.
pub async fn listener_pids(pool: &sqlx::PgPool) -> anyhow::Result<Vec<i32>> {
    sqlx::query_scalar(
        "SELECT pid FROM pg_stat_activity \
         WHERE datname = current_database() AND query ILIKE 'LISTEN%' AND pid <> pg_backend_pid()",
    )
    .fetch_all(pool)
    .await
    .context("reading pg_stat_activity")
}

/// `base` with its path (the database name) replaced; query parameters such as `sslmode` stay.
fn with_database(base: &str, name: &str) -> anyhow::Result<String> {
    let mut url = url::Url::parse(base)
        .with_context(|| format!("DATABASE_URL {:?} is not a URL", redact_url(base)))?;
    url.set_path(&format!("/{name}"));
    Ok(url.to_string())
}

/// A PostgreSQL server of its own for one test, on a free loopback port, so that a test can stop
/// and start it (`stop`/`start`) without touching the machine's shared server, which other tests use
/// concurrently. Its data directory, socket and log live in a temp dir; dropping the value stops the
/// server (immediate mode) and removes everything.
///
/// The binaries come from the highest version under `/usr/lib/postgresql` (or
/// `MESHPLANE_PG_BINDIR`). PostgreSQL refuses to run as root, so as root every command runs as the
/// `postgres` user (`runuser`), which owns the temp dir.
pub struct PrivateCluster {
    /// The loopback port the server listens on.
    pub port: u16,
    bindir: std::path::PathBuf,
    dir: tempfile::TempDir,
    run_as_postgres: bool,
}

impl std::fmt::Debug for PrivateCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrivateCluster")
            .field("port", &self.port)
            .field("dir", &self.dir.path())
            .finish()
    }
}

/// How long `pg_ctl` may wait for the server to start or stop.
const PG_CTL_WAIT_SECONDS: &str = "60";

impl PrivateCluster {
    /// `initdb` (trust authentication, superuser `postgres`) and a started server.
    pub async fn create() -> anyhow::Result<Self> {
        let bindir = pg_bindir()?;
        let run_as_postgres = is_root().await;
        let dir = tempfile::tempdir()?;
        if run_as_postgres {
            run_checked("chown", &["postgres:", &dir.path().display().to_string()]).await?;
        }
        let mut cluster = Self {
            port: 0,
            bindir,
            dir,
            run_as_postgres,
        };
        let data = cluster.data_dir().display().to_string();
        cluster
            .pg(
                "initdb",
                &[
                    "-D",
                    &data,
                    "-A",
                    "trust",
                    "-U",
                    "postgres",
                    "-E",
                    "UTF8",
                    "--locale=C",
                    "--no-sync",
                ],
            )
            .await
            .context("initdb")?;
        // The free port can be taken between probing and binding; try a few.
        let mut last = None;
        for _ in 0..3 {
            cluster.port = crate::process::free_port();
            match cluster.start().await {
                Ok(()) => return Ok(cluster),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("the private PostgreSQL did not start")))
    }

    fn data_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("data")
    }

    fn log_file(&self) -> std::path::PathBuf {
        self.dir.path().join("server.log")
    }

    /// The server's log so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(self.log_file()).unwrap_or_default()
    }

    /// `postgres://postgres@127.0.0.1:<port>/<database>`.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Starts the (stopped) server on its port and waits until it accepts connections.
    pub async fn start(&self) -> anyhow::Result<()> {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.dir.path().display()
        );
        self.pg(
            "pg_ctl",
            &[
                "-D",
                &self.data_dir().display().to_string(),
                "-o",
                &opts,
                "-l",
                &self.log_file().display().to_string(),
                "-w",
                "-t",
                PG_CTL_WAIT_SECONDS,
                "start",
            ],
        )
        .await
        .with_context(|| format!("starting the private PostgreSQL; log:\n{}", self.logs()))
    }

    /// Stops the server in fast mode (open transactions are rolled back, clients disconnected, a
    /// clean checkpoint written) and waits until it is down.
    pub async fn stop(&self) -> anyhow::Result<()> {
        self.pg(
            "pg_ctl",
            &[
                "-D",
                &self.data_dir().display().to_string(),
                "-m",
                "fast",
                "-w",
                "-t",
                PG_CTL_WAIT_SECONDS,
                "stop",
            ],
        )
        .await
        .context("stopping the private PostgreSQL")
    }

    /// Creates a database and returns its URL.
    pub async fn create_database(&self, name: &str) -> anyhow::Result<String> {
        let mut conn = PgConnection::connect(&self.url("postgres")).await?;
        // Callers pass fixed identifiers; quoting is enough.
        conn.execute(format!(r#"CREATE DATABASE "{name}""#).as_str())
            .await
            .with_context(|| format!("creating database {name}"))?;
        let _ = conn.close().await;
        Ok(self.url(name))
    }

    /// Runs one of PostgreSQL's programs (as `postgres` when we are root).
    async fn pg(&self, program: &str, args: &[&str]) -> anyhow::Result<()> {
        let exe = self.bindir.join(program).display().to_string();
        if self.run_as_postgres {
            let mut all = vec!["-u", "postgres", "--", exe.as_str()];
            all.extend_from_slice(args);
            run_checked("runuser", &all).await
        } else {
            run_checked(&exe, args).await
        }
    }

    fn stop_now(&self) {
        let exe = self.bindir.join("pg_ctl").display().to_string();
        let data = self.data_dir().display().to_string();
        let args = ["-D", data.as_str(), "-m", "immediate", "-w", "stop"];
        let mut cmd = if self.run_as_postgres {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--", exe.as_str()]);
            c
        } else {
            std::process::Command::new(&exe)
        };
        let _ = cmd
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        // Stopping an already stopped server fails harmlessly; the temp dir goes afterwards.
        self.stop_now();
    }
}

/// The directory with `initdb` and `pg_ctl`: `MESHPLANE_PG_BINDIR`, else the highest version under
/// `/usr/lib/postgresql` (Debian's layout).
fn pg_bindir() -> anyhow::Result<std::path::PathBuf> {
    if let Some(dir) = std::env::var_os("MESHPLANE_PG_BINDIR") {
        return Ok(dir.into());
    }
    let root = std::path::Path::new("/usr/lib/postgresql");
    let mut versions: Vec<(u32, std::path::PathBuf)> = std::fs::read_dir(root)
        .with_context(|| format!("reading {} (is PostgreSQL installed?)", root.display()))?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .with_context(|| format!("no <version>/bin/initdb under {}", root.display()))
}

async fn is_root() -> bool {
    tokio::process::Command::new("id")
        .arg("-u")
        .output()
        .await
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Runs a command; an error with its exit status and output when it fails.
async fn run_checked(program: &str, args: &[&str]) -> anyhow::Result<()> {
    let out = tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .with_context(|| format!("running {program}"))?;
    if !out.status.success() {
        anyhow::bail!(
            "{program} {} failed ({}):\nstdout: {}\nstderr: {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
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
        assert_eq!(
            redact_url("postgres://u:p@h/db"),
            "postgres://u:REDACTED@h/db"
        );
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

#[cfg(test)]
mod private_cluster_tests {
    use super::*;

    #[tokio::test]
    async fn a_private_cluster_stops_and_starts_on_its_port() {
        let cluster = PrivateCluster::create().await.unwrap();
        let url = cluster.create_database("fixture").await.unwrap();
        let mut conn = PgConnection::connect(&url).await.unwrap();
        conn.execute("CREATE TABLE t (v int)").await.unwrap();
        conn.execute("INSERT INTO t VALUES (42)").await.unwrap();
        let _ = conn.close().await;
        cluster.stop().await.unwrap();
        assert!(
            PgConnection::connect(&url).await.is_err(),
            "a stopped server refuses connections"
        );
        cluster.start().await.unwrap();
        let mut conn = PgConnection::connect(&url).await.unwrap();
        let (v,): (i32,) = sqlx::query_as("SELECT v FROM t")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(v, 42, "committed data survives a fast stop");
        let _ = conn.close().await;
        let dir = cluster.dir.path().to_path_buf();
        drop(cluster);
        assert!(
            !dir.exists(),
            "the data directory is removed with the fixture"
        );
    }
}
