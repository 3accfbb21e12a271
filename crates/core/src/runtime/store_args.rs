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
    /// A file holding the PostgreSQL URL (keeps a password off the command line and out of the
    /// environment; systemd's `LoadCredential=` and Kubernetes Secret volumes provide such files).
    #[arg(
        long,
        env = "MESHPLANE_DATABASE_URL_FILE",
        value_name = "FILE",
        conflicts_with = "database_url"
    )]
    pub database_url_file: Option<std::path::PathBuf>,
    /// Largest number of PostgreSQL connections this process opens.
    #[arg(long, env = "MESHPLANE_DATABASE_MAX_CONNECTIONS", default_value_t = 20)]
    pub database_max_connections: u32,
    /// File with the key that encrypts Secrets and issued private keys at rest: base64 of 32 bytes
    /// (`openssl rand -base64 32`). Every replica sharing a database needs the same key.
    #[arg(long, env = "MESHPLANE_ENCRYPTION_KEY_FILE", value_name = "FILE")]
    pub encryption_key_file: Option<std::path::PathBuf>,
    /// The same key given directly (for environments that inject secrets as variables).
    #[arg(
        long,
        env = "MESHPLANE_ENCRYPTION_KEY",
        hide_env_values = true,
        conflicts_with = "encryption_key_file"
    )]
    #[serde(skip)]
    pub encryption_key: Option<String>,
    /// Earlier keys, still accepted for reading while records are re-encrypted (repeatable).
    #[arg(
        long,
        env = "MESHPLANE_ENCRYPTION_OLD_KEY_FILE",
        value_name = "FILE",
        value_delimiter = ','
    )]
    pub encryption_old_key_file: Vec<std::path::PathBuf>,
    /// Store secrets unencrypted in PostgreSQL. For throwaway test setups only.
    #[arg(long, env = "MESHPLANE_ALLOW_PLAINTEXT_SECRETS")]
    pub allow_plaintext_secrets: bool,
}

/// The database flags of `migrate up`.
#[derive(Clone, Debug, clap::Args, serde::Serialize)]
pub struct MigrateDbArgs {
    /// PostgreSQL URL.
    #[arg(long, env = "MESHPLANE_DATABASE_URL", value_name = "URL")]
    #[serde(serialize_with = "redacted_url")]
    pub database_url: Option<String>,
    /// A file holding the PostgreSQL URL (systemd credentials, Kubernetes Secret volumes).
    #[arg(
        long,
        env = "MESHPLANE_DATABASE_URL_FILE",
        value_name = "FILE",
        conflicts_with = "database_url"
    )]
    pub database_url_file: Option<std::path::PathBuf>,
}

/// `migrate` subcommands, shared by the global and zone binaries.
#[derive(Debug, clap::Subcommand)]
pub enum MigrateCommand {
    /// Apply every pending migration.
    Up(MigrateArgs),
}

#[derive(Debug, clap::Args, serde::Serialize)]
pub struct MigrateArgs {
    #[command(flatten)]
    pub common: super::config::CommonArgs,
    #[command(flatten)]
    pub db: MigrateDbArgs,
}

impl MigrateDbArgs {
    /// The URL to migrate, from the flag or the file.
    pub fn url(&self) -> Result<String, StoreArgsError> {
        match (&self.database_url, &self.database_url_file) {
            (Some(u), _) => Ok(u.clone()),
            (None, Some(f)) => read_url_file(f),
            (None, None) => Err(StoreArgsError::Invalid(
                "migrate up needs --database-url or --database-url-file (or MESHPLANE_DATABASE_URL)"
                    .into(),
            )),
        }
    }
}

fn read_url_file(f: &std::path::Path) -> Result<String, StoreArgsError> {
    let url = std::fs::read_to_string(f).map_err(|e| {
        StoreArgsError::Invalid(format!("--database-url-file {}: {e}", f.display()))
    })?;
    Ok(url.trim().to_string())
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
    #[error("{0}")]
    Invalid(String),
    #[error(
        "Secrets and private keys would be stored unencrypted in PostgreSQL: set --encryption-key-file (or MESHPLANE_ENCRYPTION_KEY), or pass --allow-plaintext-secrets for a throwaway setup"
    )]
    PlaintextRefused,
}

impl StoreArgs {
    /// The keys for secrets at rest, `None` when none is configured.
    pub fn keyring(&self) -> Result<Option<crate::store::encrypted::Keyring>, StoreArgsError> {
        use crate::store::encrypted::Kek;
        let key_err = |e: crate::store::encrypted::KeyError| StoreArgsError::Invalid(e.to_string());
        let primary = match (&self.encryption_key_file, &self.encryption_key) {
            (Some(f), _) => Kek::from_file(f, "--encryption-key-file").map_err(key_err)?,
            (None, Some(k)) => Kek::parse(k, "MESHPLANE_ENCRYPTION_KEY").map_err(key_err)?,
            (None, None) if self.encryption_old_key_file.is_empty() => return Ok(None),
            (None, None) => {
                return Err(StoreArgsError::Invalid(
                    "--encryption-old-key-file needs --encryption-key-file".into(),
                ));
            }
        };
        let older = self
            .encryption_old_key_file
            .iter()
            .map(|f| Kek::from_file(f, "--encryption-old-key-file"))
            .collect::<Result<Vec<_>, _>>()
            .map_err(key_err)?;
        Ok(Some(crate::store::encrypted::Keyring::new(primary, older)))
    }

    /// Reads `--database-url-file` into `database_url` (call once, before `resolve`).
    pub fn load_url_file(&mut self) -> Result<(), StoreArgsError> {
        if let Some(f) = &self.database_url_file {
            self.database_url = Some(read_url_file(f)?);
        }
        Ok(())
    }

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
