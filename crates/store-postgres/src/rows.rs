//! Many upserts in one statement: the certificate manager's persisted batches (certificates, keys,
//! insights of many dataplanes) are runs of upserts, and one `INSERT … SELECT FROM unnest(…)` per
//! run costs PostgreSQL one parse, plan and execution instead of one per record.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use meshplane_core::store::{Record, StoreError, WriteOp};
use sqlx::{PgConnection, Row};

use crate::{
    error::store_error,
    row::{self, key_parts, owner_parts},
};

/// A written row's version, creation and modification times.
type Stamps = (i64, DateTime<Utc>, DateTime<Utc>);

/// Most rows in one statement: a run is cut here so a statement's parameters stay modest.
pub(crate) const MAX_ROWS: usize = 1000;

// The same upsert as write.rs's UPSERT, for every row of the arrays; WITH ORDINALITY keeps the
// rows in the order of the batch, so a row's trigger NOTIFYs in that order too.
const UPSERT_ROWS: &str = "INSERT INTO resources AS r \
     (type, mesh, name, version, spec, labels, owner_type, owner_mesh, owner_name, \
      creation_time, modification_time) \
     SELECT u.t, u.m, u.n, 1, u.s, u.l::jsonb, u.ot, u.om, u.on_, \
            statement_timestamp(), statement_timestamp() \
     FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], \
                 $6::text[], $7::text[], $8::text[]) \
          WITH ORDINALITY AS u(t, m, n, s, l, ot, om, on_, i) \
     ORDER BY u.i \
     ON CONFLICT (type, mesh, name) DO UPDATE \
     SET version = r.version + 1, spec = EXCLUDED.spec, labels = EXCLUDED.labels, \
         owner_type = EXCLUDED.owner_type, owner_mesh = EXCLUDED.owner_mesh, \
         owner_name = EXCLUDED.owner_name, \
         modification_time = greatest(EXCLUDED.modification_time, r.modification_time) \
     RETURNING type, mesh, name, version, creation_time, modification_time";

/// How many of the ops at the front of `ops` one statement can upsert: consecutive upserts of
/// distinct keys (PostgreSQL refuses to change one row twice in a statement), at most MAX_ROWS.
pub(crate) fn run_len(ops: &[WriteOp]) -> usize {
    let mut seen = std::collections::HashSet::new();
    ops.iter()
        .take(MAX_ROWS)
        .take_while(|op| matches!(op, WriteOp::Upsert { .. }) && seen.insert(op.key()))
        .count()
}

/// Upserts every op of `run` (all `WriteOp::Upsert`, distinct keys) in one statement and returns
/// their records in order. On an error nothing of the run is written and the caller applies the
/// ops one by one, whose errors name the op that failed.
pub(crate) async fn upsert(
    conn: &mut PgConnection,
    run: Vec<WriteOp>,
) -> Result<Vec<Record>, RunError> {
    let n = run.len();
    let mut cols: [Vec<Option<String>>; 8] = Default::default();
    for op in &run {
        let WriteOp::Upsert {
            key,
            spec,
            labels,
            owner,
        } = op
        else {
            continue;
        };
        let (t, m, nm) = key_parts(key);
        let (ot, om, on) = owner_parts(owner.as_ref());
        // Serializing a Value or a string map cannot fail; were it to, the NOT NULL column
        // refuses the row and the caller's one-by-one retry reports it for the op.
        let values = [
            Some(t.to_string()),
            Some(m.to_string()),
            Some(nm.to_string()),
            serde_json::to_string(spec).ok(),
            serde_json::to_string(labels).ok(),
            ot.map(str::to_string),
            om.map(str::to_string),
            on.map(str::to_string),
        ];
        for (col, v) in cols.iter_mut().zip(values) {
            col.push(v);
        }
    }
    let [t, m, nm, s, l, ot, om, on] = cols;
    let rows = match sqlx::query(UPSERT_ROWS)
        .bind(t)
        .bind(m)
        .bind(nm)
        .bind(s)
        .bind(l)
        .bind(ot)
        .bind(om)
        .bind(on)
        .fetch_all(&mut *conn)
        .await
    {
        Ok(rows) => rows,
        Err(e) => return Err(RunError::Retry(e, run)),
    };
    let mut stamps: HashMap<(String, String, String), Stamps> = HashMap::with_capacity(n);
    for row in &rows {
        let read = || -> Result<_, sqlx::Error> {
            Ok((
                (
                    row.try_get("type")?,
                    row.try_get("mesh")?,
                    row.try_get("name")?,
                ),
                (
                    row.try_get("version")?,
                    row.try_get("creation_time")?,
                    row.try_get("modification_time")?,
                ),
            ))
        };
        match read() {
            Ok((k, v)) => {
                stamps.insert(k, v);
            }
            Err(e) => return Err(RunError::Retry(e, run)),
        }
    }
    let mut out = Vec::with_capacity(n);
    let mut missing = None;
    for op in run {
        let WriteOp::Upsert {
            key,
            spec,
            labels,
            owner,
        } = op
        else {
            continue;
        };
        let (t, m, nm) = key_parts(&key);
        match stamps.get(&(t.to_string(), m.to_string(), nm.to_string())) {
            Some(&stamps) => out.push(row::written(key, spec, labels, owner, stamps)),
            None => {
                missing.get_or_insert(key);
            }
        }
    }
    if let Some(key) = missing {
        // Every row of an INSERT … ON CONFLICT DO UPDATE returns; a missing one is a bug, and the
        // batch's transaction is rolled back by the caller.
        return Err(RunError::Fatal(StoreError::Internal(format!(
            "upserting a batch: no row returned for {key}"
        ))));
    }
    Ok(out)
}

pub(crate) enum RunError {
    /// The statement failed: apply these ops one by one to find and name the one that fails.
    Retry(sqlx::Error, Vec<WriteOp>),
    Fatal(StoreError),
}

impl RunError {
    /// For a caller that cannot retry (the savepoint could not be rolled back to).
    pub(crate) fn into_store_error(self) -> StoreError {
        match self {
            Self::Retry(e, _) => store_error(e, "upserting a batch of records"),
            Self::Fatal(e) => e,
        }
    }
}
