//! What the binaries call: open the store the flags select (checking, never migrating, the schema)
//! and `migrate up`.

use std::sync::Arc;

use meshplane_core::{
    runtime::store_args::{StoreArgs, StoreArgsError, StoreKind},
    store::{ResourceStore, encrypted::EncryptedStore, memory::MemoryStore},
};

use crate::{
    error::PgError,
    schema::{check_schema_for, migrate_up},
    store::{PgOptions, PgStore, connect_pool},
};

/// The store `args` select and its description for logs and `/`. A PostgreSQL database must
/// already carry this binary's schema: the error says to run `<binary> migrate up` otherwise.
pub async fn open_store(
    args: &StoreArgs,
    binary: &str,
) -> Result<(Arc<dyn ResourceStore>, String), PgError> {
    let mut args = args.clone();
    args.load_url_file()?;
    match args.resolve()? {
        (StoreKind::Memory, _) => {
            let store = MemoryStore::new();
            let description = store.describe();
            Ok((Arc::new(store), description))
        }
        (StoreKind::Postgres, url) => {
            let url = url.ok_or(StoreArgsError::MissingUrl)?;
            let opts = PgOptions {
                max_connections: args.database_max_connections,
                ..PgOptions::default()
            };
            let pool = connect_pool(url, &opts).await?;
            check_schema_for(&pool, binary).await?;
            let keys = args.keyring()?;
            if keys.is_none() && !args.allow_plaintext_secrets {
                return Err(StoreArgsError::PlaintextRefused.into());
            }
            let pg: Arc<dyn ResourceStore> = Arc::new(PgStore::from_pool(pool).await?);
            let store: Arc<dyn ResourceStore> = match keys {
                Some(keys) => {
                    let enc = Arc::new(EncryptedStore::new(pg, keys));
                    // Records sealed with an older key (or none) are re-encrypted in the background;
                    // every replica may do it at once, and readers never wait for it.
                    let worker = enc.clone();
                    tokio::spawn(async move {
                        match worker.rewrap().await {
                            Ok(0) => {}
                            Ok(n) => tracing::info!(
                                records = n,
                                "re-encrypted secrets with the current key"
                            ),
                            Err(e) => {
                                tracing::warn!(error = %e, "re-encrypting secrets failed; restart to retry")
                            }
                        }
                    });
                    enc
                }
                None => {
                    tracing::warn!(
                        "--allow-plaintext-secrets: Secrets and private keys are stored unencrypted"
                    );
                    pg
                }
            };
            let description = store.describe();
            tracing::info!(store = %description, "store opened");
            Ok((store, description))
        }
    }
}

/// `migrate up` against `url`: the versions applied, empty when the database was up to date.
pub async fn migrate_up_url(url: &str) -> Result<Vec<i64>, PgError> {
    let opts = PgOptions {
        max_connections: 1,
        ..PgOptions::default()
    };
    let pool = connect_pool(url, &opts).await?;
    let applied = migrate_up(&pool).await;
    pool.close().await;
    applied
}

/// `migrate up` as the binaries run it: the URL from the flags, then a report for the operator
/// (`database is up to date`, or one `applied migration N` line per version).
pub async fn migrate_up_command(
    db: &meshplane_core::runtime::store_args::MigrateDbArgs,
) -> Result<String, PgError> {
    let applied = migrate_up_url(&db.url()?).await?;
    Ok(if applied.is_empty() {
        "database is up to date".to_string()
    } else {
        applied
            .iter()
            .map(|v| format!("applied migration {v}"))
            .collect::<Vec<_>>()
            .join("\n")
    })
}
