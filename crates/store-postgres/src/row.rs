//! How a `resources` row reads back into a `Record`, and how a `ResourceKey` binds to SQL.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use meshplane_core::{
    model::{ResourceKey, ResourceKind},
    store::{Record, StoreError},
};
use sqlx::{Row, postgres::PgRow, types::Json};

/// The record a write returns: what it wrote, with the version and times the row got.
pub(crate) fn written(
    key: ResourceKey,
    spec: serde_json::Value,
    labels: BTreeMap<String, String>,
    owner: Option<ResourceKey>,
    (version, creation_time, modification_time): (i64, DateTime<Utc>, DateTime<Utc>),
) -> Record {
    Record {
        key,
        version,
        spec,
        labels,
        owner,
        creation_time,
        modification_time,
    }
}

/// The key's three columns as bound values: (type, mesh, name).
pub(crate) fn key_parts(key: &ResourceKey) -> (&'static str, &str, &str) {
    (key.kind.name(), key.mesh.as_str(), key.name.as_str())
}

/// Keys as three parallel column arrays (types, meshes, names), for `unnest` and `= ANY`.
pub(crate) fn key_columns(keys: &[ResourceKey]) -> (Vec<&'static str>, Vec<&str>, Vec<&str>) {
    let mut cols = (
        Vec::with_capacity(keys.len()),
        Vec::with_capacity(keys.len()),
        Vec::with_capacity(keys.len()),
    );
    for k in keys {
        let (t, m, n) = key_parts(k);
        cols.0.push(t);
        cols.1.push(m);
        cols.2.push(n);
    }
    cols
}

/// The owner columns, all `NULL` when there is no owner.
pub(crate) fn owner_parts(
    owner: Option<&ResourceKey>,
) -> (Option<&'static str>, Option<&str>, Option<&str>) {
    match owner {
        Some(o) => (
            Some(o.kind.name()),
            Some(o.mesh.as_str()),
            Some(o.name.as_str()),
        ),
        None => (None, None, None),
    }
}

fn column<'r, T>(row: &'r PgRow, name: &str) -> Result<T, StoreError>
where
    T: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    row.try_get(name)
        .map_err(|e| StoreError::Internal(format!("reading column {name} of resources: {e}")))
}

/// The key of a row. A type this binary does not know cannot be a key; it only comes from a newer
/// binary writing to the same database, which `check_schema` is meant to have stopped.
pub(crate) fn key(row: &PgRow) -> Result<ResourceKey, StoreError> {
    let kind: String = column(row, "type")?;
    let kind = ResourceKind::from_name(&kind).ok_or_else(|| {
        StoreError::Internal(format!("stored resource has unknown type {kind:?}"))
    })?;
    Ok(ResourceKey {
        kind,
        mesh: column(row, "mesh")?,
        name: column(row, "name")?,
    })
}

/// The owner columns of a row as a key.
pub(crate) fn owner(row: &PgRow, key: &ResourceKey) -> Result<Option<ResourceKey>, StoreError> {
    let kind: Option<String> = column(row, "owner_type")?;
    let Some(kind) = kind else {
        return Ok(None);
    };
    let kind = ResourceKind::from_name(&kind).ok_or_else(|| StoreError::Corrupt {
        key: key.clone(),
        reason: format!("its owner has unknown type {kind:?}"),
    })?;
    let mesh: Option<String> = column(row, "owner_mesh")?;
    let name: Option<String> = column(row, "owner_name")?;
    Ok(Some(ResourceKey {
        kind,
        mesh: mesh.unwrap_or_default(),
        name: name.unwrap_or_default(),
    }))
}

/// A row holding every column of `resources`, as a record.
pub(crate) fn record(row: &PgRow) -> Result<Record, StoreError> {
    let key = key(row)?;
    let spec: String = column(row, "spec")?;
    // serde_json's syntax errors give a position, never the text: spec may hold secret data.
    let spec = serde_json::from_str(&spec).map_err(|e| StoreError::Corrupt {
        key: key.clone(),
        reason: format!("spec is not JSON: {e}"),
    })?;
    let labels: Json<BTreeMap<String, String>> =
        row.try_get("labels").map_err(|e| StoreError::Corrupt {
            key: key.clone(),
            reason: format!("labels are not a map of strings: {e}"),
        })?;
    let owner = owner(row, &key)?;
    let creation_time: DateTime<Utc> = column(row, "creation_time")?;
    let modification_time: DateTime<Utc> = column(row, "modification_time")?;
    Ok(Record {
        version: column(row, "version")?,
        key,
        spec,
        labels: labels.0,
        owner,
        creation_time,
        modification_time,
    })
}
