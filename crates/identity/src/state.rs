//! What the manager hands out: each identity's state, and each mesh's trust bundle.

use std::{fmt, sync::Arc};

use chrono::{DateTime, Utc};

/// Which certificate of a dataplane.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Profile {
    /// Kuma's mesh certificate: every service's SPIFFE ID plus the `kuma://` tags (for Envoy and files).
    Mesh,
    /// An X.509-SVID for one service: exactly one URI SAN (for the SPIFFE Workload API).
    Svid(String),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CertKey {
    pub mesh: String,
    pub dataplane: String,
    pub profile: Profile,
}

impl CertKey {
    pub fn mesh_cert(mesh: impl Into<String>, dataplane: impl Into<String>) -> Self {
        Self {
            mesh: mesh.into(),
            dataplane: dataplane.into(),
            profile: Profile::Mesh,
        }
    }

    /// The name of the zone's record of this certificate.
    pub fn record_name(&self) -> String {
        match &self.profile {
            Profile::Mesh => self.dataplane.clone(),
            Profile::Svid(service) => {
                use sha2::Digest;
                let h = hex::encode(sha2::Sha256::digest(service.as_bytes()));
                format!("{}.svid-{}", self.dataplane, &h[..16])
            }
        }
    }
}

impl fmt::Display for CertKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.profile {
            Profile::Mesh => write!(f, "{}/{}", self.mesh, self.dataplane),
            Profile::Svid(s) => write!(f, "{}/{} (SVID {s})", self.mesh, self.dataplane),
        }
    }
}

/// A certificate being served. `Debug` leaves the key out.
#[derive(Clone, PartialEq, Eq)]
pub struct Identity {
    pub key: CertKey,
    pub backend: String,
    pub cert_pem: String,
    pub key_pem: String,
    /// Shared by every identity issued under the same chain (see [`intern_chain`]).
    pub chain_pem: Arc<[String]>,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
    pub issued_at: DateTime<Utc>,
    /// Digest of what it was issued for; a different wanted digest means re-issue.
    pub fingerprint: String,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("key", &self.key)
            .field("backend", &self.backend)
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// The one shared copy of a CA chain. A backend's chain is the same for every certificate it
/// issues: kept once, not once per dataplane. Chains are few (one per CA a backend has used), so
/// the table is never pruned.
pub fn intern_chain(chain: Vec<String>) -> Arc<[String]> {
    use std::{
        collections::HashSet,
        sync::{Mutex, OnceLock, PoisonError},
    };
    static CHAINS: OnceLock<Mutex<HashSet<Arc<[String]>>>> = OnceLock::new();
    let mut set = CHAINS
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if let Some(c) = set.get(chain.as_slice()) {
        return c.clone();
    }
    let c: Arc<[String]> = chain.into();
    set.insert(c.clone());
    c
}

impl Identity {
    pub fn is_valid_at(&self, now: DateTime<Utc>) -> bool {
        self.not_before <= now && now < self.not_after
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CertState {
    /// Nothing issued yet; the first issuance is queued or running.
    Pending,
    /// The certificate to serve. During an outage this stays the last valid one.
    Ready(Arc<Identity>),
    /// No valid certificate and none can be had now (mTLS off, or issuance failing); says why.
    Unavailable(String),
}

impl CertState {
    pub fn identity(&self) -> Option<&Arc<Identity>> {
        match self {
            Self::Ready(i) => Some(i),
            _ => None,
        }
    }
}

/// What dataplanes of a mesh trust: the roots of every backend, so that a CA rotation never fails a
/// handshake (Kong Mesh's rotation).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MeshTrust {
    pub mesh: String,
    /// Every backend's roots, without repeats: what a dataplane of the mesh trusts.
    pub roots: Vec<String>,
    /// The roots by backend name.
    pub by_backend: std::collections::BTreeMap<String, Vec<String>>,
    pub backends: Vec<String>,
    pub enabled_backend: Option<String>,
}
