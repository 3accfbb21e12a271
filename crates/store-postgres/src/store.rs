//! `PgStore`: the `ResourceStore` on PostgreSQL. Reads go straight to the pool, writes through
//! `write.rs`, and change events come only from the LISTEN connection in `listen.rs`, so that
//! every replica sharing the database sees the same stream.

use std::{str::FromStr, sync::Arc, time::Duration};

use async_trait::async_trait;
use meshplane_core::{
    model::ResourceKey,
    store::{
        EventHub, ListQuery, ListResult, Record, ResourceStore, Selection, StoreError,
        Subscription, WriteOp, WriteResult,
    },
};
use sqlx::{
    PgPool, Row,
    postgres::{PgConnectOptions, PgPoolOptions},
};

use crate::{
    error::{PgError, store_error},
    listen::{self, ListenerTask},
    row::{self, key_parts},
    write,
};

/// Connection pool settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PgOptions {
    /// Most connections the store opens, besides its one LISTEN connection.
    pub max_connections: u32,
    /// How long a query waits for a connection (including connecting) before the store answers
    /// `Unavailable`.
    pub acquire_timeout: Duration,
}

impl Default for PgOptions {
    fn default() -> Self {
        Self {
            max_connections: 20,
            acquire_timeout: Duration::from_secs(5),
        }
    }
}

impl PgOptions {
    fn pool(&self) -> PgPoolOptions {
        PgPoolOptions::new()
            .max_connections(self.max_connections)
            .acquire_timeout(self.acquire_timeout)
    }
}

/// The PostgreSQL `ResourceStore`. Its change events come from NOTIFY, after the commit: an event
/// for a write may reach subscribers after `write` has returned, and a subscription taken right
/// after a write may still receive that write's event. Subscribers that read state after
/// subscribing and re-read on each event (as they must with any shared store) are unaffected.
pub struct PgStore {
    pool: PgPool,
    events: Arc<EventHub>,
    target: String,
    _listener: ListenerTask,
}

/// `host:port/database` of a connection: what logs and errors name, never with the password.
pub(crate) fn target(opts: &PgConnectOptions) -> String {
    format!(
        "{}:{}/{}",
        opts.get_host(),
        opts.get_port(),
        opts.get_database().unwrap_or("")
    )
}

fn parse_url(url: &str) -> Result<PgConnectOptions, PgError> {
    // sqlx reads any scheme as PostgreSQL; a `mysql://` URL is far more likely a mistake.
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(PgError::InvalidUrl(
            "it must start with postgres:// or postgresql://".into(),
        ));
    }
    let opts = PgConnectOptions::from_str(url).map_err(|e| PgError::InvalidUrl(e.to_string()))?;
    // Plan every execution with its parameters. A prepared statement's generic plan is made once
    // per connection and kept until the table is analyzed; made on a fresh, near-empty table it
    // is a sequential scan, which a zone whose fleet registers within its first minute (before
    // autovacuum's first ANALYZE) then ran for every key it read: quadratic in the fleet
    // (measured: 8,580 sequential scans reading 52 M rows while 10,000 dataplanes registered).
    Ok(opts.options([("plan_cache_mode", "force_custom_plan")]))
}

/// A pool with one connection already open (so a wrong URL or a down server fails here).
pub async fn connect_pool(url: &str, opts: &PgOptions) -> Result<PgPool, PgError> {
    let connect = parse_url(url)?;
    opts.pool()
        .connect_with(connect.clone())
        .await
        .map_err(|source| PgError::Connect {
            target: target(&connect),
            source,
        })
}

impl PgStore {
    /// Connects, and is listening for change events when it returns. Does not check the schema:
    /// see [`crate::check_schema`].
    pub async fn connect(url: &str, opts: PgOptions) -> Result<PgStore, PgError> {
        Self::from_pool(connect_pool(url, &opts).await?).await
    }

    /// A store over an existing pool; listening for change events when it returns.
    pub async fn from_pool(pool: PgPool) -> Result<PgStore, PgError> {
        let connect = (*pool.connect_options()).clone();
        let acquire_timeout = pool.options().get_acquire_timeout();
        let target = target(&connect);
        let first = listen::open(&connect, acquire_timeout)
            .await
            .map_err(|source| PgError::Listen {
                target: target.clone(),
                source,
            })?;
        Ok(Self::start(
            pool,
            connect,
            acquire_timeout,
            target,
            Some(first),
        ))
    }

    /// A store that connects on first use, so it can be created while the database is down (calls
    /// answer `Unavailable` until it is back). Must be called inside a Tokio runtime. Because
    /// writes may happen before the listener is up, subscribers get a `Resync` once it is.
    pub fn connect_lazy(url: &str, opts: PgOptions) -> Result<PgStore, PgError> {
        let connect = parse_url(url)?;
        let pool = opts.pool().connect_lazy_with(connect.clone());
        let target = target(&connect);
        Ok(Self::start(
            pool,
            connect,
            opts.acquire_timeout,
            target,
            None,
        ))
    }

    fn start(
        pool: PgPool,
        connect: PgConnectOptions,
        acquire_timeout: Duration,
        target: String,
        first: Option<sqlx::postgres::PgListener>,
    ) -> PgStore {
        let events = Arc::new(EventHub::new());
        let listener = listen::spawn(
            connect,
            acquire_timeout,
            events.clone(),
            first,
            target.clone(),
        );
        PgStore {
            pool,
            events,
            target,
            _listener: listener,
        }
    }

    /// The pool, for schema checks and migrations on the same connection settings.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

const GET: &str = "SELECT type, mesh, name, version, spec, labels, owner_type, owner_mesh, \
     owner_name, creation_time, modification_time \
     FROM resources WHERE type = $1 AND mesh = $2 AND name = $3";

// One statement, so the total and the page come from the same snapshot. The count reads only the
// primary key; the LEFT JOIN yields one all-NULL page row when the page is empty, which still
// carries the total.
const LIST: &str = "SELECT t.total, p.* FROM \
     (SELECT count(*) AS total FROM resources \
      WHERE type = $1 AND ($2::text IS NULL OR mesh = $2)) t \
     LEFT JOIN LATERAL \
     (SELECT type, mesh, name, version, spec, labels, owner_type, owner_mesh, owner_name, \
             creation_time, modification_time \
      FROM resources WHERE type = $1 AND ($2::text IS NULL OR mesh = $2) \
      ORDER BY mesh, name OFFSET $3 LIMIT $4) p ON true";

// One statement, so one snapshot: a batch committed while it runs is in the result whole or not
// at all. UNION ALL keeps each arm an index scan (the primary key, or the owner index for the last arm);
// a row two arms match comes back twice and is folded in `snapshot`.
const SNAPSHOT: &str = "SELECT type, mesh, name, version, spec, labels, owner_type, owner_mesh, \
     owner_name, creation_time, modification_time FROM resources \
     WHERE type = ANY($1::text[]) \
     UNION ALL \
     SELECT r.type, r.mesh, r.name, r.version, r.spec, r.labels, r.owner_type, r.owner_mesh, \
            r.owner_name, r.creation_time, r.modification_time \
     FROM resources r JOIN unnest($2::text[], $3::text[]) AS s(type, mesh) \
       ON r.type = s.type AND r.mesh = s.mesh \
     UNION ALL \
     SELECT r.type, r.mesh, r.name, r.version, r.spec, r.labels, r.owner_type, r.owner_mesh, \
            r.owner_name, r.creation_time, r.modification_time \
     FROM resources r JOIN unnest($4::text[], $5::text[], $6::text[]) AS k(type, mesh, name) \
       ON r.type = k.type AND r.mesh = k.mesh AND r.name = k.name \
     UNION ALL \
     SELECT r.type, r.mesh, r.name, r.version, r.spec, r.labels, r.owner_type, r.owner_mesh, \
            r.owner_name, r.creation_time, r.modification_time \
     FROM resources r JOIN unnest($7::text[], $8::text[], $9::text[]) AS o(type, mesh, name) \
       ON r.owner_type = o.type AND r.owner_mesh = o.mesh AND r.owner_name = o.name";

#[async_trait]
impl ResourceStore for PgStore {
    async fn get(&self, key: &ResourceKey) -> Result<Option<Record>, StoreError> {
        let (t, m, n) = key_parts(key);
        let row = sqlx::query(GET)
            .bind(t)
            .bind(m)
            .bind(n)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| store_error(e, &format!("reading {key}")))?;
        row.as_ref().map(row::record).transpose()
    }

    async fn list(&self, q: &ListQuery) -> Result<ListResult, StoreError> {
        let during = || format!("listing {}", q.kind);
        let offset = i64::try_from(q.offset).unwrap_or(i64::MAX);
        let limit = q.limit.map(|l| i64::try_from(l).unwrap_or(i64::MAX));
        let rows = sqlx::query(LIST)
            .bind(q.kind.name())
            .bind(q.mesh.as_deref())
            .bind(offset)
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| store_error(e, &during()))?;
        let mut total = 0;
        let mut items = Vec::with_capacity(rows.len());
        for r in &rows {
            let t: i64 = r
                .try_get("total")
                .map_err(|e| StoreError::Internal(format!("{}: {e}", during())))?;
            total = usize::try_from(t).unwrap_or(usize::MAX);
            let name: Option<String> = r
                .try_get("name")
                .map_err(|e| StoreError::Internal(format!("{}: {e}", during())))?;
            if name.is_some() {
                items.push(row::record(r)?);
            }
        }
        Ok(ListResult { items, total })
    }

    async fn snapshot(&self, sel: &Selection) -> Result<Vec<Record>, StoreError> {
        if sel.is_empty() {
            return Ok(Vec::new());
        }
        let mut all_of = Vec::new();
        let (mut in_type, mut in_mesh) = (Vec::new(), Vec::new());
        for (kind, mesh) in &sel.kinds {
            match mesh {
                None => all_of.push(kind.name()),
                Some(m) => {
                    in_type.push(kind.name());
                    in_mesh.push(m.as_str());
                }
            }
        }
        let (kt, km, kn) = row::key_columns(&sel.keys);
        let (ot, om, on) = row::key_columns(&sel.owned_by);
        let rows = sqlx::query(SNAPSHOT)
            .bind(&all_of)
            .bind(&in_type)
            .bind(&in_mesh)
            .bind(&kt)
            .bind(&km)
            .bind(&kn)
            .bind(&ot)
            .bind(&om)
            .bind(&on)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| store_error(e, "reading a snapshot"))?;
        let mut out = std::collections::BTreeMap::new();
        for r in &rows {
            let rec = row::record(r)?;
            out.insert(rec.key.clone(), rec);
        }
        Ok(out.into_values().collect())
    }

    async fn write(&self, ops: Vec<WriteOp>) -> Result<Vec<WriteResult>, StoreError> {
        write::write(&self.pool, ops).await
    }

    fn subscribe(&self) -> Subscription {
        self.events.subscribe()
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(|e| store_error(e, "ping"))?;
        Ok(())
    }

    fn describe(&self) -> String {
        format!("postgres {}", self.target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_hides_credentials() {
        let opts = parse_url("postgres://u:hunter2@db.example:6543/mesh?sslmode=require").unwrap();
        assert_eq!(target(&opts), "db.example:6543/mesh");
    }

    #[test]
    fn invalid_urls_are_reported() {
        for url in ["mysql://nope", "postgres://h:notaport/db"] {
            assert!(
                matches!(parse_url(url), Err(PgError::InvalidUrl(_))),
                "{url}"
            );
        }
    }
}
