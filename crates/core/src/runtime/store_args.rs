//! Store selection flags shared by the global and zone binaries.

/// Which `ResourceStore` to run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// In-process; everything is lost on exit. For a one-process start and tests.
    Memory,
    /// PostgreSQL at `--database-url`; shared by replicas.
    Postgres,
}

#[derive(Clone, Debug, clap::Args, serde::Serialize)]
pub struct StoreArgs {
    /// Store type. Defaults to `postgres` when `--database-url` is set, `memory` otherwise.
    #[arg(long, env = "MESHPLANE_STORE", value_enum)]
    pub store: Option<StoreKind>,
    /// PostgreSQL URL, e.g. `postgres://meshplane@db:5432/meshplane?sslmode=require`.
    #[arg(long, env = "MESHPLANE_DATABASE_URL", value_name = "URL")]
    #[serde(serialize_with = "redacted_url")]
    pub database_url: Option<String>,
    /// Largest number of PostgreSQL connections this process opens.
    #[arg(long, env = "MESHPLANE_DATABASE_MAX_CONNECTIONS", default_value_t = 20)]
    pub database_max_connections: u32,
}

fn redacted_url<S: serde::Serializer>(v: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(u) => s.serialize_some(&super::config::redact_url(u)),
        None => s.serialize_none(),
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StoreArgsError {
    #[error("--store postgres needs --database-url (or MESHPLANE_DATABASE_URL)")]
    MissingUrl,
    #[error("--database-url is set but --store is memory; drop one of them")]
    UrlWithMemory,
}

impl StoreArgs {
    /// The store to use, and its URL when it is PostgreSQL.
    pub fn resolve(&self) -> Result<(StoreKind, Option<&str>), StoreArgsError> {
        match (self.store, self.database_url.as_deref()) {
            (None, None) | (Some(StoreKind::Memory), None) => Ok((StoreKind::Memory, None)),
            (None, Some(u)) | (Some(StoreKind::Postgres), Some(u)) => {
                Ok((StoreKind::Postgres, Some(u)))
            }
            (Some(StoreKind::Postgres), None) => Err(StoreArgsError::MissingUrl),
            (Some(StoreKind::Memory), Some(_)) => Err(StoreArgsError::UrlWithMemory),
        }
    }
}
