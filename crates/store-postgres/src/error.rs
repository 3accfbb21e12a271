//! This crate's errors, and how a sqlx error becomes a `StoreError`: lost connections and
//! exhausted pools are `Unavailable` (the API answers 503), everything unexpected is `Internal`.

use meshplane_core::{runtime::store_args::StoreArgsError, store::StoreError};
use sqlx::migrate::MigrateError;

use crate::schema::SchemaError;

/// Failures of setting the store up: connecting, listening, migrating, checking the schema.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// The reason only: the URL itself may carry a password.
    #[error("invalid database URL: {0}")]
    InvalidUrl(String),
    #[error("cannot connect to PostgreSQL at {target}: {source}")]
    Connect {
        target: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("cannot LISTEN for change events on PostgreSQL at {target}: {source}")]
    Listen {
        target: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("{what} on PostgreSQL at {target}: {source}")]
    Query {
        what: &'static str,
        target: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("{step} on PostgreSQL at {target}: {source}")]
    Migrate {
        /// "taking the migration lock", "applying migration 20261128000001 (resources)", …
        step: String,
        target: String,
        #[source]
        source: MigrateError,
    },
    #[error(transparent)]
    Schema(#[from] SchemaError),
    #[error(transparent)]
    Args(#[from] StoreArgsError),
}

/// SQLSTATE classes and codes that mean "the database cannot serve us right now" rather than
/// "this request is wrong": retrying later, or on another connection, may well succeed.
fn is_transient(code: &str) -> bool {
    // 08: connection exception. 53: insufficient resources (too many connections, disk full).
    code.starts_with("08")
        || code.starts_with("53")
        || matches!(
            code,
            // admin_shutdown, crash_shutdown, cannot_connect_now: a restart or a failover
            "57P01" | "57P02" | "57P03"
            // serialization_failure, deadlock_detected: the transaction lost a race; a retry may win
            | "40001" | "40P01"
            // read_only_sql_transaction: we reached a standby, typically right after a failover
            | "25006"
        )
}

/// Classifies an error from `during` (what the store was doing, for the message). Messages carry
/// the database's message, never its DETAIL (which can quote row values) and never bound values.
pub(crate) fn store_error(e: sqlx::Error, during: &str) -> StoreError {
    match e {
        sqlx::Error::PoolTimedOut => StoreError::Unavailable(format!(
            "{during}: no database connection became available within the acquire timeout"
        )),
        sqlx::Error::PoolClosed => {
            StoreError::Unavailable(format!("{during}: the connection pool is closed"))
        }
        sqlx::Error::WorkerCrashed => {
            StoreError::Unavailable(format!("{during}: the connection's worker crashed"))
        }
        sqlx::Error::Io(e) => StoreError::Unavailable(format!("{during}: {e}")),
        sqlx::Error::Tls(e) => StoreError::Unavailable(format!("{during}: TLS: {e}")),
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            let msg = format!("{during}: {} (SQLSTATE {code})", db.message());
            if is_transient(&code) {
                StoreError::Unavailable(msg)
            } else {
                StoreError::Internal(msg)
            }
        }
        other => StoreError::Internal(format!("{during}: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_problems_are_unavailable() {
        for e in [
            sqlx::Error::PoolTimedOut,
            sqlx::Error::PoolClosed,
            sqlx::Error::Io(std::io::ErrorKind::ConnectionRefused.into()),
        ] {
            assert!(
                matches!(store_error(e, "x"), StoreError::Unavailable(_)),
                "must be Unavailable"
            );
        }
        assert!(matches!(
            store_error(sqlx::Error::RowNotFound, "x"),
            StoreError::Internal(_)
        ));
    }

    #[test]
    fn transient_sqlstates() {
        for c in ["08006", "53300", "57P01", "40P01", "40001", "25006"] {
            assert!(is_transient(c), "{c}");
        }
        for c in ["23505", "23503", "42P01", "22023", ""] {
            assert!(!is_transient(c), "{c}");
        }
    }
}
