//! Loading a DataSource's bytes: a mesh-scoped Secret from the store, a file on this host, or inline.

use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine;

use crate::{
    model::{DataSource, ResourceKey, ResourceKind, Spec},
    store::{ResourceStore, ResourceStoreExt},
};

/// Why a DataSource could not be loaded. Never carries the data itself.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    #[error("secret {name:?} not found in mesh {mesh:?}")]
    SecretNotFound { mesh: String, name: String },
    #[error("could not read file {path:?}: {reason}")]
    File { path: String, reason: String },
    #[error("inline value is not valid base64")]
    Base64,
    #[error("could not read secret {name:?}: {reason}")]
    Store { name: String, reason: String },
}

#[async_trait]
pub trait DataSourceLoader: Send + Sync {
    /// The bytes behind `source`, where a `secret` is looked up in `mesh`.
    async fn load(&self, mesh: &str, source: &DataSource) -> Result<Vec<u8>, LoadError>;
}

/// Loads Secrets from a `ResourceStore`, files from the local filesystem.
pub struct StoreLoader {
    store: Arc<dyn ResourceStore>,
}

impl StoreLoader {
    pub fn new(store: Arc<dyn ResourceStore>) -> Self {
        Self { store }
    }
}

/// Files are read with a size cap: a DataSource is a certificate, key or token, never a disk image.
const MAX_FILE_BYTES: u64 = 1024 * 1024;

pub async fn load_file(path: &str) -> Result<Vec<u8>, LoadError> {
    let err = |reason: String| LoadError::File {
        path: path.to_string(),
        reason,
    };
    let meta = tokio::fs::metadata(path)
        .await
        .map_err(|e| err(e.to_string()))?;
    if !meta.is_file() {
        return Err(err("not a regular file".into()));
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(err(format!("larger than {MAX_FILE_BYTES} bytes")));
    }
    tokio::fs::read(path).await.map_err(|e| err(e.to_string()))
}

pub fn load_inline(source: &DataSource) -> Option<Result<Vec<u8>, LoadError>> {
    match source {
        DataSource::Inline(b64) => Some(
            base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .map_err(|_| LoadError::Base64),
        ),
        DataSource::InlineString(s) => Some(Ok(s.as_bytes().to_vec())),
        _ => None,
    }
}

#[async_trait]
impl DataSourceLoader for StoreLoader {
    async fn load(&self, mesh: &str, source: &DataSource) -> Result<Vec<u8>, LoadError> {
        if let Some(r) = load_inline(source) {
            return r;
        }
        match source {
            DataSource::File(path) => load_file(path).await,
            DataSource::Secret(name) => {
                let key = ResourceKey::in_mesh(ResourceKind::Secret, mesh, name.clone());
                let found = self
                    .store
                    .get_resource(&key)
                    .await
                    .map_err(|e| LoadError::Store {
                        name: name.clone(),
                        reason: e.to_string(),
                    })?;
                match found {
                    Some((r, _)) => match r.spec {
                        Spec::Secret(s) => Ok(s.data.bytes().to_vec()),
                        _ => Err(LoadError::SecretNotFound {
                            mesh: mesh.into(),
                            name: name.clone(),
                        }),
                    },
                    None => Err(LoadError::SecretNotFound {
                        mesh: mesh.into(),
                        name: name.clone(),
                    }),
                }
            }
            DataSource::Inline(_) | DataSource::InlineString(_) => Err(LoadError::Base64),
        }
    }
}
