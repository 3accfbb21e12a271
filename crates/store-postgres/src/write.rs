//! `write`: a batch of ops in one transaction, the SQL of each op, and how its failures become
//! `StoreError`s. Change events are not produced here: the table's trigger NOTIFYs at commit, and
//! every replica (this one included) learns of the change from that notification alone.

use chrono::{DateTime, Utc};
use meshplane_core::{
    model::ResourceKey,
    store::{StoreError, WriteOp, WriteResult},
};
use serde_json::Value;
use sqlx::{PgConnection, PgPool, Row, postgres::PgRow, types::Json};

use crate::{
    error::store_error,
    row::{self, key_parts, owner_parts},
    rows,
};

const INSERT: &str = "INSERT INTO resources \
     (type, mesh, name, version, spec, labels, owner_type, owner_mesh, owner_name, \
      creation_time, modification_time) \
     VALUES ($1, $2, $3, 1, $4, $5, $6, $7, $8, statement_timestamp(), statement_timestamp()) \
     RETURNING version, creation_time, modification_time";

// `greatest` keeps a row's modification time from going backwards when a statement that started
// earlier commits later (it waited for the row lock).
const UPDATE: &str = "UPDATE resources \
     SET version = version + 1, spec = $4, labels = $5, \
         modification_time = greatest(statement_timestamp(), modification_time) \
     WHERE type = $1 AND mesh = $2 AND name = $3 AND version = $6 \
     RETURNING version, owner_type, owner_mesh, owner_name, creation_time, modification_time";

const UPSERT: &str = "INSERT INTO resources AS r \
     (type, mesh, name, version, spec, labels, owner_type, owner_mesh, owner_name, \
      creation_time, modification_time) \
     VALUES ($1, $2, $3, 1, $4, $5, $6, $7, $8, statement_timestamp(), statement_timestamp()) \
     ON CONFLICT (type, mesh, name) DO UPDATE \
     SET version = r.version + 1, spec = EXCLUDED.spec, labels = EXCLUDED.labels, \
         owner_type = EXCLUDED.owner_type, owner_mesh = EXCLUDED.owner_mesh, \
         owner_name = EXCLUDED.owner_name, \
         modification_time = greatest(EXCLUDED.modification_time, r.modification_time) \
     RETURNING version, creation_time, modification_time";

const DELETE: &str = "DELETE FROM resources \
     WHERE type = $1 AND mesh = $2 AND name = $3 AND ($4::bigint IS NULL OR version = $4) \
     RETURNING version";

const CURRENT_VERSION: &str =
    "SELECT version FROM resources WHERE type = $1 AND mesh = $2 AND name = $3";

/// How often an update or delete that matched no row re-reads before giving up. A second try is
/// only needed when the row was deleted and re-created at the expected version in between.
const VERSION_CHECK_ATTEMPTS: usize = 2;

/// Applies every op in one transaction: all of them, or (on the first error) none. A single op
/// runs as one autocommitted statement.
pub(crate) async fn write(
    pool: &PgPool,
    ops: Vec<WriteOp>,
) -> Result<Vec<WriteResult>, StoreError> {
    if ops.is_empty() {
        return Ok(Vec::new());
    }
    if ops.len() == 1 {
        // One statement is atomic on its own (its cascade and NOTIFYs included): no BEGIN and
        // COMMIT round trips. An update's or delete's follow-up version read only classifies a
        // miss (NotFound or Conflict), which the statement already decided.
        let mut conn = pool
            .acquire()
            .await
            .map_err(|e| store_error(e, "acquiring a connection"))?;
        let mut ops = ops;
        return Ok(vec![apply(&mut conn, ops.remove(0)).await?]);
    }
    let mut tx = pool
        .begin()
        .await
        .map_err(|e| store_error(e, "starting a transaction"))?;
    let mut out = Vec::with_capacity(ops.len());
    if let Err(e) = apply_all(&mut tx, ops, &mut out).await {
        // Dropping the transaction would roll back too, but only once the connection is next
        // used; rolling back now releases the row locks at once.
        let _ = tx.rollback().await;
        return Err(e);
    }
    tx.commit().await.map_err(|e| {
        store_error(
            e,
            "committing (if the connection was lost the outcome is unknown: re-read before retrying)",
        )
    })?;
    Ok(out)
}

/// Every op in order, runs of upserts as one statement each (rows.rs). A run whose statement
/// fails is rolled back to its savepoint and applied op by op, so the error names the op.
async fn apply_all(
    conn: &mut PgConnection,
    ops: Vec<WriteOp>,
    out: &mut Vec<WriteResult>,
) -> Result<(), StoreError> {
    let mut ops = std::collections::VecDeque::from(ops);
    while !ops.is_empty() {
        let n = rows::run_len(ops.make_contiguous());
        if n < 2 {
            if let Some(op) = ops.pop_front() {
                out.push(apply(conn, op).await?);
            }
            continue;
        }
        let run: Vec<WriteOp> = ops.drain(..n).collect();
        sqlx::query("SAVEPOINT upsert_rows")
            .execute(&mut *conn)
            .await
            .map_err(|e| store_error(e, "starting a batch of upserts"))?;
        match rows::upsert(conn, run).await {
            Ok(records) => out.extend(records.into_iter().map(Some)),
            Err(rows::RunError::Retry(e, run)) => {
                tracing::debug!(error = %e, records = run.len(), "a batch of upserts failed; applying them one by one");
                sqlx::query("ROLLBACK TO SAVEPOINT upsert_rows")
                    .execute(&mut *conn)
                    .await
                    .map_err(|_| rows::RunError::Retry(e, Vec::new()).into_store_error())?;
                for op in run {
                    out.push(apply(conn, op).await?);
                }
            }
            Err(e @ rows::RunError::Fatal(_)) => return Err(e.into_store_error()),
        }
    }
    Ok(())
}

async fn apply(conn: &mut PgConnection, op: WriteOp) -> Result<WriteResult, StoreError> {
    match op {
        WriteOp::Create {
            key,
            spec,
            labels,
            owner,
        } => {
            let (t, m, n) = key_parts(&key);
            let (ot, om, on) = owner_parts(owner.as_ref());
            let row = sqlx::query(INSERT)
                .bind(t)
                .bind(m)
                .bind(n)
                .bind(spec_text(&key, &spec)?)
                .bind(Json(&labels))
                .bind(ot)
                .bind(om)
                .bind(on)
                .fetch_one(&mut *conn)
                .await
                .map_err(|e| insert_error(e, &key, owner.as_ref()))?;
            Ok(Some(row::written(key, spec, labels, owner, stamps(&row)?)))
        }
        WriteOp::Update {
            key,
            expected_version,
            spec,
            labels,
        } => {
            let text = spec_text(&key, &spec)?;
            let (t, m, n) = key_parts(&key);
            for _ in 0..VERSION_CHECK_ATTEMPTS {
                let row = sqlx::query(UPDATE)
                    .bind(t)
                    .bind(m)
                    .bind(n)
                    .bind(&text)
                    .bind(Json(&labels))
                    .bind(expected_version)
                    .fetch_optional(&mut *conn)
                    .await
                    .map_err(|e| store_error(e, &format!("updating {key}")))?;
                if let Some(row) = row {
                    let owner = row::owner(&row, &key)?;
                    return Ok(Some(row::written(key, spec, labels, owner, stamps(&row)?)));
                }
                match current_version(conn, &key).await? {
                    None => return Err(StoreError::NotFound(key)),
                    Some(found) if found != expected_version => {
                        return Err(StoreError::Conflict {
                            key,
                            expected: expected_version,
                            found,
                        });
                    }
                    Some(_) => {}
                }
            }
            Err(StoreError::Internal(format!(
                "updating {key}: the version kept changing under the update"
            )))
        }
        WriteOp::Upsert {
            key,
            spec,
            labels,
            owner,
        } => {
            let (t, m, n) = key_parts(&key);
            let (ot, om, on) = owner_parts(owner.as_ref());
            let row = sqlx::query(UPSERT)
                .bind(t)
                .bind(m)
                .bind(n)
                .bind(spec_text(&key, &spec)?)
                .bind(Json(&labels))
                .bind(ot)
                .bind(om)
                .bind(on)
                .fetch_one(&mut *conn)
                .await
                .map_err(|e| insert_error(e, &key, owner.as_ref()))?;
            Ok(Some(row::written(key, spec, labels, owner, stamps(&row)?)))
        }
        WriteOp::Delete {
            key,
            expected_version,
        } => {
            let (t, m, n) = key_parts(&key);
            for _ in 0..VERSION_CHECK_ATTEMPTS {
                // Owned rows go with it (ON DELETE CASCADE), each announcing its own delete.
                let deleted = sqlx::query(DELETE)
                    .bind(t)
                    .bind(m)
                    .bind(n)
                    .bind(expected_version)
                    .fetch_optional(&mut *conn)
                    .await
                    .map_err(|e| store_error(e, &format!("deleting {key}")))?;
                if deleted.is_some() {
                    return Ok(None);
                }
                match (current_version(conn, &key).await?, expected_version) {
                    (None, _) => return Err(StoreError::NotFound(key)),
                    (Some(found), Some(expected)) if found != expected => {
                        return Err(StoreError::Conflict {
                            key,
                            expected,
                            found,
                        });
                    }
                    _ => {}
                }
            }
            Err(StoreError::Internal(format!(
                "deleting {key}: the record kept changing under the delete"
            )))
        }
    }
}

/// The stored version, read after a conditional write matched nothing, to tell NotFound from
/// Conflict. Inside the batch's transaction, so it sees the batch's own earlier writes.
async fn current_version(
    conn: &mut PgConnection,
    key: &ResourceKey,
) -> Result<Option<i64>, StoreError> {
    let (t, m, n) = key_parts(key);
    let row: Option<(i64,)> = sqlx::query_as(CURRENT_VERSION)
        .bind(t)
        .bind(m)
        .bind(n)
        .fetch_optional(&mut *conn)
        .await
        .map_err(|e| store_error(e, &format!("reading the version of {key}")))?;
    Ok(row.map(|(v,)| v))
}

fn spec_text(key: &ResourceKey, spec: &Value) -> Result<String, StoreError> {
    serde_json::to_string(spec)
        .map_err(|e| StoreError::Internal(format!("encoding the spec of {key}: {e}")))
}

/// version, creation_time, modification_time of a `RETURNING` row.
fn stamps(row: &PgRow) -> Result<(i64, DateTime<Utc>, DateTime<Utc>), StoreError> {
    let get = |e: sqlx::Error| StoreError::Internal(format!("reading a written row: {e}"));
    Ok((
        row.try_get("version").map_err(get)?,
        row.try_get("creation_time").map_err(get)?,
        row.try_get("modification_time").map_err(get)?,
    ))
}

/// An insert's constraint violations are the caller's mistakes, with their own errors.
fn insert_error(e: sqlx::Error, key: &ResourceKey, owner: Option<&ResourceKey>) -> StoreError {
    if let sqlx::Error::Database(db) = &e {
        if db.is_unique_violation() {
            return StoreError::AlreadyExists(key.clone());
        }
        if db.is_foreign_key_violation()
            && let Some(owner) = owner
        {
            return StoreError::OwnerMissing {
                key: key.clone(),
                owner: owner.clone(),
            };
        }
    }
    store_error(e, &format!("writing {key}"))
}
