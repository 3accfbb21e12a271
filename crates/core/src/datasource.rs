//! Loading a DataSource's bytes: a mesh-scoped Secret from the store, a file on this host (only
//! under the directories the operator allowed), or inline.

use std::{
    path::{Component, Path, PathBuf},
    sync::Arc,
};

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
    #[error("file {path:?} is not allowed: {reason}")]
    FileNotAllowed { path: String, reason: String },
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

/// The directories of this host from which `file` DataSources may be read (`--datasource-file-dir`).
///
/// Kuma reads any path the control plane can. Here a Mesh author could otherwise make the control
/// plane send any file it can read (another service's token, its own database password) to a Vault
/// address of their choosing, so files are confined to directories the operator named, and with
/// none named `file` DataSources are refused.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileDirs {
    /// Canonical (absolute, symlinks resolved) directories.
    dirs: Vec<PathBuf>,
}

/// A directory given to [`FileDirs::new`] that cannot serve as one.
#[derive(Debug, thiserror::Error)]
#[error("{dir:?}: {reason}")]
pub struct FileDirError {
    pub dir: PathBuf,
    pub reason: String,
}

/// Where the reason for refusing a file points the operator.
const ALLOW_HINT: &str = "allow its directory with --datasource-file-dir";

impl FileDirs {
    /// Each directory must exist; it is kept in canonical form so a symlink cannot widen it later.
    pub fn new(dirs: &[PathBuf]) -> Result<Self, FileDirError> {
        let mut out = Vec::with_capacity(dirs.len());
        for dir in dirs {
            let err = |reason: String| FileDirError {
                dir: dir.clone(),
                reason,
            };
            if !dir.is_absolute() {
                return Err(err("must be an absolute path".into()));
            }
            let canonical = std::fs::canonicalize(dir).map_err(|e| err(e.to_string()))?;
            if !canonical.is_dir() {
                return Err(err("not a directory".into()));
            }
            out.push(canonical);
        }
        Ok(Self { dirs: out })
    }

    pub fn is_empty(&self) -> bool {
        self.dirs.is_empty()
    }

    fn contains(&self, path: &Path) -> bool {
        self.dirs.iter().any(|d| path.starts_with(d))
    }

    /// The path to read for `path`, or why it may not be read. Nothing outside the allowed
    /// directories is touched beyond resolving its name, and a file outside them gets the same
    /// answer whether it exists or not.
    async fn resolve(&self, path: &str) -> Result<PathBuf, LoadError> {
        let refuse = |reason: String| LoadError::FileNotAllowed {
            path: path.to_string(),
            reason,
        };
        if self.dirs.is_empty() {
            return Err(refuse(format!(
                "file DataSources are disabled on this control plane ({ALLOW_HINT})"
            )));
        }
        let p = Path::new(path);
        if !p.is_absolute() {
            return Err(refuse("must be an absolute path".into()));
        }
        if p.components().any(|c| c == Component::ParentDir) {
            return Err(refuse("must not contain \"..\"".into()));
        }
        let outside = || refuse(format!("outside the allowed directories ({ALLOW_HINT})"));
        match tokio::fs::canonicalize(p).await {
            // Symlinks resolved: a link inside an allowed directory cannot lead out of it.
            Ok(real) if self.contains(&real) => Ok(real),
            Ok(_) => Err(outside()),
            Err(_) if !self.contains(p) => Err(outside()),
            Err(e) => Err(LoadError::File {
                path: path.to_string(),
                reason: e.to_string(),
            }),
        }
    }
}

/// Loads Secrets from a `ResourceStore`, files from the allowed directories of this host.
pub struct StoreLoader {
    store: Arc<dyn ResourceStore>,
    files: FileDirs,
}

impl StoreLoader {
    /// A loader that refuses every `file` DataSource.
    pub fn new(store: Arc<dyn ResourceStore>) -> Self {
        Self::with_file_dirs(store, FileDirs::default())
    }

    pub fn with_file_dirs(store: Arc<dyn ResourceStore>, files: FileDirs) -> Self {
        Self { store, files }
    }
}

/// Files are read with a size cap: a DataSource is a certificate, key or token, never a disk image.
const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// Reads `path` if it lies under one of `dirs`.
pub async fn load_file(path: &str, dirs: &FileDirs) -> Result<Vec<u8>, LoadError> {
    let real = dirs.resolve(path).await?;
    let err = |reason: String| LoadError::File {
        path: path.to_string(),
        reason,
    };
    let meta = tokio::fs::metadata(&real)
        .await
        .map_err(|e| err(e.to_string()))?;
    if !meta.is_file() {
        return Err(err("not a regular file".into()));
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(err(format!("larger than {MAX_FILE_BYTES} bytes")));
    }
    tokio::fs::read(&real).await.map_err(|e| err(e.to_string()))
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
            DataSource::File(path) => load_file(path, &self.files).await,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn dirs(d: &Path) -> FileDirs {
        FileDirs::new(&[d.to_path_buf()]).expect("dirs")
    }

    fn not_allowed(r: Result<Vec<u8>, LoadError>) -> String {
        match r {
            Err(LoadError::FileNotAllowed { reason, .. }) => reason,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn files_are_read_only_under_the_allowed_directories() {
        let allowed = tempfile::tempdir().expect("tmp");
        let other = tempfile::tempdir().expect("tmp");
        let inside = allowed.path().join("token");
        std::fs::write(&inside, b"t0ken").expect("write");
        std::fs::write(other.path().join("secret"), b"s3cret").expect("write");
        let d = dirs(allowed.path());

        let ok = load_file(inside.to_str().expect("utf-8"), &d).await;
        assert_eq!(ok.expect("inside"), b"t0ken");

        let outside = other.path().join("secret");
        let reason = not_allowed(load_file(outside.to_str().expect("utf-8"), &d).await);
        assert!(reason.contains("--datasource-file-dir"), "{reason}");
        // A missing file outside answers the same as an existing one: no probing the host.
        let missing = other.path().join("missing");
        let same = not_allowed(load_file(missing.to_str().expect("utf-8"), &d).await);
        assert_eq!(reason, same);

        let up = format!("{}/../x/secret", allowed.path().display());
        assert!(not_allowed(load_file(&up, &d).await).contains(".."));
        assert!(not_allowed(load_file("token", &d).await).contains("absolute"));
    }

    #[tokio::test]
    async fn a_symlink_cannot_lead_out_of_an_allowed_directory() {
        let allowed = tempfile::tempdir().expect("tmp");
        let other = tempfile::tempdir().expect("tmp");
        std::fs::write(other.path().join("secret"), b"s3cret").expect("write");
        let link = allowed.path().join("link");
        std::os::unix::fs::symlink(other.path().join("secret"), &link).expect("symlink");
        let r = load_file(link.to_str().expect("utf-8"), &dirs(allowed.path())).await;
        not_allowed(r);
    }

    #[tokio::test]
    async fn without_allowed_directories_files_are_refused() {
        let r = load_file("/etc/hostname", &FileDirs::default()).await;
        assert!(not_allowed(r).contains("disabled"));
    }

    #[tokio::test]
    async fn inside_an_allowed_directory_read_errors_are_reported() {
        let allowed = tempfile::tempdir().expect("tmp");
        std::fs::create_dir(allowed.path().join("sub")).expect("mkdir");
        let d = dirs(allowed.path());
        let missing = allowed.path().join("missing");
        match load_file(missing.to_str().expect("utf-8"), &d).await {
            Err(LoadError::File { reason, .. }) => assert!(reason.contains("No such file")),
            other => panic!("{other:?}"),
        }
        let sub = allowed.path().join("sub");
        match load_file(sub.to_str().expect("utf-8"), &d).await {
            Err(LoadError::File { reason, .. }) => assert_eq!(reason, "not a regular file"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn allowed_directories_must_exist_and_be_absolute() {
        let e = FileDirs::new(&[PathBuf::from("relative")]).expect_err("relative");
        assert!(e.reason.contains("absolute"));
        let e = FileDirs::new(&[PathBuf::from("/nonexistent-meshplane-dir")]).expect_err("missing");
        assert!(e.to_string().contains("nonexistent-meshplane-dir"));
    }
}
