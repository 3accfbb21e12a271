//! The CA backend boundary: one implementation per backend `type`, registered in a `CaRegistry`.
//! Both control planes use it: global to validate and ensure backends, zones to issue leaves.

pub mod identity;

use std::{collections::HashMap, sync::Arc, time::Duration};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::{
    datasource::DataSourceLoader,
    model::{Backend, BackendType, MeshSpec, Resource, TagSet},
    validation::ValidationError,
};

/// The mesh a backend works for, and how it reads the DataSources its conf names.
pub struct MeshCa<'a> {
    pub mesh: &'a str,
    pub loader: &'a dyn DataSourceLoader,
}

/// What a leaf certificate is for: one dataplane identity in one mesh.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeafRequest {
    pub mesh: String,
    /// The dataplane's name, for logs and Vault metadata; not part of the certificate.
    pub dataplane: String,
    /// Every inbound tag with its values; services come from `kuma.io/service`.
    pub tags: TagSet,
    pub validity: Duration,
}

impl LeafRequest {
    pub fn services(&self) -> Vec<&str> {
        self.tags
            .get(crate::model::dataplane::SERVICE_TAG)
            .map(|s| s.iter().map(String::as_str).collect())
            .unwrap_or_default()
    }
}

/// A leaf certificate and its key, both PEM. `Debug` leaves the key out.
#[derive(Clone, PartialEq, Eq)]
pub struct IssuedCert {
    /// The leaf alone; intermediates reach peers through the trust bundle.
    pub cert_pem: String,
    pub key_pem: String,
    /// The issuing chain Vault returned, leaf excluded (may be empty).
    pub chain_pem: Vec<String>,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
    pub serial_hex: String,
}

impl std::fmt::Debug for IssuedCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedCert")
            .field("serial_hex", &self.serial_hex)
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// Why a backend could not do what was asked. Every message names the mesh and backend.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CaError {
    /// The configuration cannot work (unknown role, missing mount, denied policy, untrusted TLS,
    /// bad key): retrying will not help until someone changes it.
    #[error("mesh {mesh:?} backend {backend:?}: {message}")]
    Config {
        mesh: String,
        backend: String,
        message: String,
    },
    /// The backend is briefly unable (5xx, sealed, rate limited, network): worth retrying.
    #[error("mesh {mesh:?} backend {backend:?}: {message}")]
    Transient {
        mesh: String,
        backend: String,
        message: String,
        retry_after: Option<Duration>,
    },
}

impl CaError {
    pub fn config(mesh: &str, backend: &str, message: impl Into<String>) -> Self {
        Self::Config {
            mesh: mesh.into(),
            backend: backend.into(),
            message: message.into(),
        }
    }

    pub fn transient(mesh: &str, backend: &str, message: impl Into<String>) -> Self {
        Self::Transient {
            mesh: mesh.into(),
            backend: backend.into(),
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Transient { .. })
    }

    /// The message without the mesh/backend prefix, for validation reasons that already sit at the backend's path.
    pub fn message(&self) -> &str {
        match self {
            Self::Config { message, .. } | Self::Transient { message, .. } => message,
        }
    }

    /// A short label of the cause for metrics.
    pub fn cause_label(&self) -> &'static str {
        match self {
            Self::Config { .. } => "config",
            Self::Transient { .. } => "transient",
        }
    }
}

/// One CA backend type. Implementations live outside core; each is registered once.
#[async_trait]
pub trait CaBackend: Send + Sync + 'static {
    fn backend_type(&self) -> BackendType;

    /// Checks that the backend really works for this mesh (loads its data, and for Vault,
    /// authenticates and issues a test certificate). Violation fields are relative to `conf`
    /// (`cert`, `fromCp.auth.token`); an empty field means the conf as a whole. `Ok` carries
    /// warnings for the user: things that work but will surprise them.
    async fn validate(
        &self,
        ca: &MeshCa<'_>,
        backend: &Backend,
    ) -> Result<Vec<String>, ValidationError>;

    /// CA material to create alongside the Mesh, owned by it. Only what does not exist yet: an
    /// existing CA is never regenerated.
    async fn ensure(&self, ca: &MeshCa<'_>, backend: &Backend) -> Result<Vec<Resource>, CaError>;

    /// Names of mesh-scoped Secrets the backend reads, protected from deletion.
    fn used_secrets(&self, mesh: &str, backend: &Backend) -> Vec<String> {
        let _ = mesh;
        backend
            .conf
            .as_ref()
            .map(|c| {
                c.data_sources()
                    .into_iter()
                    .filter_map(|(_, ds)| ds.secret_name().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The PEM certificates dataplanes must trust for this backend.
    async fn root_certs(&self, ca: &MeshCa<'_>, backend: &Backend) -> Result<Vec<String>, CaError>;

    /// Issues a leaf for one dataplane identity.
    async fn issue(
        &self,
        ca: &MeshCa<'_>,
        backend: &Backend,
        req: &LeafRequest,
    ) -> Result<IssuedCert, CaError>;

    /// Issues an X.509-SVID for one of the dataplane's services: the same leaf profile, but exactly
    /// one URI SAN, `spiffe://<mesh>/<service>` (the SPIFFE Workload API refuses more).
    async fn issue_svid(
        &self,
        ca: &MeshCa<'_>,
        backend: &Backend,
        req: &LeafRequest,
        service: &str,
    ) -> Result<IssuedCert, CaError> {
        let _ = (req, service);
        Err(CaError::config(
            ca.mesh,
            &backend.name,
            "this backend cannot issue X.509-SVIDs",
        ))
    }

    /// Credentials the backend holds and when they expire, for the `vault_token_ttl_seconds` gauge.
    fn credential_expiries(&self) -> Vec<CredentialExpiry> {
        Vec::new()
    }

    /// The mesh or this backend of it was deleted: drop cached clients and their background tasks.
    fn release(&self, mesh: &str, backend: &str) {
        let _ = (mesh, backend);
    }
}

/// One credential a backend keeps (a Vault token) and the seconds it has left.
#[derive(Clone, Debug, PartialEq)]
pub struct CredentialExpiry {
    pub mesh: String,
    pub backend: String,
    pub seconds_left: f64,
}

/// The installed backend types.
#[derive(Clone, Default)]
pub struct CaRegistry {
    backends: HashMap<BackendType, Arc<dyn CaBackend>>,
}

impl CaRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn register(&mut self, backend: Arc<dyn CaBackend>) -> &mut Self {
        self.backends.insert(backend.backend_type(), backend);
        self
    }

    pub fn get(&self, t: BackendType) -> Option<&Arc<dyn CaBackend>> {
        self.backends.get(&t)
    }

    /// Lets the backends of Mesh `mesh` that `new` no longer lists (all of them when the Mesh is
    /// gone) drop what they cache for it: a Vault session keeps renewing its token until released.
    pub fn release_removed(&self, mesh: &str, old: &MeshSpec, new: Option<&MeshSpec>) {
        let kept = |b: &Backend| new.is_some_and(|n| n.backends().iter().any(|k| k.name == b.name));
        for b in old.backends().iter().filter(|b| !kept(b)) {
            if let Some(ca) = self.get(b.backend_type) {
                ca.release(mesh, &b.name);
            }
        }
    }
}
