//! The embedded migrations, `migrate up`, and the start-up check that the database has exactly the
//! schema this binary was built for. Only `migrate up` changes the schema: a running control plane
//! checks and refuses to start, so that an upgrade never migrates a database other replicas (still
//! on the old binary) are serving from.

use sqlx::{
    PgConnection, PgPool,
    migrate::{Migrate, Migration, Migrator},
};

use crate::{error::PgError, store::target};

/// Every migration under `migrations/` at the repository root, embedded at build time.
pub static MIGRATOR: Migrator = sqlx::migrate!("../../migrations");

/// The binary named in "run this to migrate" advice when the caller does not name one.
pub const DEFAULT_BINARY: &str = "meshplane-global";

/// The command that migrates a database, as errors quote it.
pub fn migrate_command(binary: &str) -> String {
    format!("{binary} migrate up --database-url <URL>")
}

/// Why the database schema is not the one this binary needs.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("database is not migrated: run \"{command}\"")]
    NotMigrated { command: String },
    #[error(
        "database schema is older than this binary: migration(s) {} not applied; run \"{command}\"",
        join(missing)
    )]
    Behind { missing: Vec<i64>, command: String },
    #[error(
        "database schema version {found} is newer than this binary supports ({supported}); upgrade meshplane"
    )]
    Ahead { found: i64, supported: i64 },
    #[error(
        "migration {version} recorded in the database differs from the one this binary embeds \
         (checksum mismatch): the database was migrated by a different build of meshplane; \
         use that build's version or restore the database"
    )]
    ChecksumMismatch { version: i64 },
    #[error(
        "migration {version} failed part-way (marked unsuccessful in _sqlx_migrations): repair the \
         schema by hand, delete that row, then run \"{command}\""
    )]
    Dirty { version: i64, command: String },
    #[error("reading the schema version of PostgreSQL at {target}: {source}")]
    Query {
        target: String,
        #[source]
        source: sqlx::Error,
    },
}

fn join(versions: &[i64]) -> String {
    versions
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// One row of `_sqlx_migrations`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Applied {
    version: i64,
    checksum: Vec<u8>,
    success: bool,
}

/// The embedded migrations not yet applied, in order; an error when the applied ones do not fit.
fn pending<'m>(
    embedded: &'m [Migration],
    applied: &[Applied],
    command: &str,
) -> Result<Vec<&'m Migration>, SchemaError> {
    if let Some(a) = applied.iter().find(|a| !a.success) {
        return Err(SchemaError::Dirty {
            version: a.version,
            command: command.to_string(),
        });
    }
    let ups = || {
        embedded
            .iter()
            .filter(|m| !m.migration_type.is_down_migration())
    };
    let supported = ups().map(|m| m.version).max().unwrap_or(0);
    if let Some(found) = applied
        .iter()
        .map(|a| a.version)
        .filter(|v| !ups().any(|m| m.version == *v))
        .max()
    {
        return Err(SchemaError::Ahead {
            found: found.max(supported),
            supported,
        });
    }
    let mut todo = Vec::new();
    for m in ups() {
        match applied.iter().find(|a| a.version == m.version) {
            Some(a) if a.checksum != *m.checksum => {
                return Err(SchemaError::ChecksumMismatch { version: m.version });
            }
            Some(_) => {}
            None => todo.push(m),
        }
    }
    Ok(todo)
}

/// The rows of `_sqlx_migrations`, or `None` when the table does not exist (never migrated).
async fn read_applied(conn: &mut PgConnection) -> Result<Option<Vec<Applied>>, sqlx::Error> {
    let (exists,): (bool,) = sqlx::query_as("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
        .fetch_one(&mut *conn)
        .await?;
    if !exists {
        return Ok(None);
    }
    let rows: Vec<(i64, Vec<u8>, bool)> =
        sqlx::query_as("SELECT version, checksum, success FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&mut *conn)
            .await?;
    Ok(Some(
        rows.into_iter()
            .map(|(version, checksum, success)| Applied {
                version,
                checksum,
                success,
            })
            .collect(),
    ))
}

/// Succeeds when every embedded migration is applied and nothing else is. Errors advise running
/// `meshplane-global migrate up`; [`check_schema_for`] names another binary.
pub async fn check_schema(pool: &PgPool) -> Result<(), SchemaError> {
    check_schema_for(pool, DEFAULT_BINARY).await
}

/// [`check_schema`], advising `<binary> migrate up` when the database needs migrating.
pub async fn check_schema_for(pool: &PgPool, binary: &str) -> Result<(), SchemaError> {
    let command = migrate_command(binary);
    let query_err = |source| SchemaError::Query {
        target: target(&pool.connect_options()),
        source,
    };
    let mut conn = pool.acquire().await.map_err(query_err)?;
    let Some(applied) = read_applied(&mut conn).await.map_err(query_err)? else {
        return Err(SchemaError::NotMigrated { command });
    };
    let todo = pending(&MIGRATOR.migrations, &applied, &command)?;
    match (todo.is_empty(), applied.is_empty()) {
        (true, _) => Ok(()),
        (false, true) => Err(SchemaError::NotMigrated { command }),
        (false, false) => Err(SchemaError::Behind {
            missing: todo.iter().map(|m| m.version).collect(),
            command,
        }),
    }
}

/// Applies every embedded migration the database lacks and returns their versions (empty when it
/// was up to date). Replicas may run this at once: an advisory lock serialises them.
pub async fn migrate_up(pool: &PgPool) -> Result<Vec<i64>, PgError> {
    let target = target(&pool.connect_options());
    let mut conn = pool.acquire().await.map_err(|source| PgError::Connect {
        target: target.clone(),
        source,
    })?;
    let migrate_err = |step: &str, source| PgError::Migrate {
        step: step.to_string(),
        target: target.clone(),
        source,
    };
    conn.lock()
        .await
        .map_err(|e| migrate_err("taking the migration lock", e))?;
    let outcome = async {
        conn.ensure_migrations_table()
            .await
            .map_err(|e| migrate_err("creating _sqlx_migrations", e))?;
        let applied = read_applied(&mut conn)
            .await
            .map_err(|source| PgError::Query {
                what: "reading applied migrations",
                target: target.clone(),
                source,
            })?
            .unwrap_or_default();
        let todo = pending(
            &MIGRATOR.migrations,
            &applied,
            &migrate_command(DEFAULT_BINARY),
        )?;
        let mut done = Vec::with_capacity(todo.len());
        for m in todo {
            let took = conn.apply(m).await.map_err(|e| {
                migrate_err(
                    &format!("applying migration {} ({})", m.version, m.description),
                    e,
                )
            })?;
            tracing::info!(version = m.version, description = %m.description, ?took, "applied migration");
            done.push(m.version);
        }
        Ok(done)
    }
    .await;
    match outcome {
        Ok(done) => {
            conn.unlock()
                .await
                .map_err(|e| migrate_err("releasing the migration lock", e))?;
            Ok(done)
        }
        Err(e) => {
            // The advisory lock belongs to the session: closing the connection instead of
            // returning it to the pool releases it whatever state the failure left behind.
            conn.close_on_drop();
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use sqlx::migrate::MigrationType;

    use super::*;

    fn migration(version: i64, sql: &'static str) -> Migration {
        Migration::new(
            version,
            Cow::Borrowed("m"),
            MigrationType::Simple,
            Cow::Borrowed(sql),
            false,
        )
    }

    fn applied(m: &Migration) -> Applied {
        Applied {
            version: m.version,
            checksum: m.checksum.to_vec(),
            success: true,
        }
    }

    #[test]
    fn pending_is_what_is_not_applied() {
        let embedded = [migration(1, "a"), migration(2, "b")];
        let versions = |a: &[Applied]| -> Vec<i64> {
            pending(&embedded, a, "cmd")
                .unwrap()
                .iter()
                .map(|m| m.version)
                .collect()
        };
        assert_eq!(versions(&[]), vec![1, 2]);
        assert_eq!(versions(&[applied(&embedded[0])]), vec![2]);
        assert!(versions(&[applied(&embedded[0]), applied(&embedded[1])]).is_empty());
    }

    #[test]
    fn mismatches_are_errors() {
        let embedded = [migration(1, "a"), migration(2, "b")];
        let newer = Applied {
            version: 7,
            ..applied(&embedded[0])
        };
        match pending(&embedded, &[applied(&embedded[0]), newer], "cmd") {
            Err(
                e @ SchemaError::Ahead {
                    found: 7,
                    supported: 2,
                },
            ) => assert_eq!(
                e.to_string(),
                "database schema version 7 is newer than this binary supports (2); upgrade meshplane"
            ),
            other => panic!("{other:?}"),
        }
        let edited = Applied {
            checksum: vec![0],
            ..applied(&embedded[0])
        };
        assert!(matches!(
            pending(&embedded, &[edited], "cmd"),
            Err(SchemaError::ChecksumMismatch { version: 1 })
        ));
        let failed = Applied {
            success: false,
            ..applied(&embedded[0])
        };
        assert!(matches!(
            pending(&embedded, &[failed], "cmd"),
            Err(SchemaError::Dirty { version: 1, .. })
        ));
    }

    #[test]
    fn advice_names_the_command() {
        let e = SchemaError::NotMigrated {
            command: migrate_command("meshplane-global"),
        };
        assert_eq!(
            e.to_string(),
            r#"database is not migrated: run "meshplane-global migrate up --database-url <URL>""#
        );
        let e = SchemaError::Behind {
            missing: vec![3, 4],
            command: migrate_command("meshplane-zone"),
        };
        assert!(e.to_string().contains("3, 4 not applied"), "{e}");
    }

    #[test]
    fn the_resources_migration_is_embedded() {
        assert!(
            MIGRATOR
                .iter()
                .any(|m| m.version == 20261128000001 && m.description == "resources")
        );
    }
}
