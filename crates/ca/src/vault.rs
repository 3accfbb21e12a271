//! The `vault` backend: dataplane certificates from a HashiCorp Vault / OpenBao PKI mount, as Kong
//! Mesh's `vault` backend does (conf `fromCp`), plus Meshplane's opt-in CSR mode.
//!
//! Shape: one long-lived `Session` (pooled HTTP client + token + renewal task) per mesh, backend and
//! digest of the conf and the credential bytes loaded for it. DataSources are re-read on every call,
//! so a rotated Secret produces a new session and the old one (and its renewal task) is dropped.
//! Submodules: `client` (HTTP), `tls` (rustls), `auth`/`token` (tokens, logins, renewal), `aws`,
//! `aws_creds`, `pki` (issue/sign/CA chain), `retry`, `error`.

mod auth;
pub mod aws;
pub mod aws_creds;
mod client;
pub mod error;
pub mod metrics;
mod pki;
mod retry;
mod tls;
mod token;

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use meshplane_core::{
    ValidationError,
    ca::{CaBackend, CaError, IssuedCert, LeafRequest, MeshCa, identity},
    model::{
        Backend, BackendConf, BackendType, Resource, TagSet,
        dataplane::SERVICE_TAG,
        mesh::{VaultAuth, VaultFromCp},
    },
};
use sha2::{Digest, Sha256};

use crate::csr::common_name;
use tracing::instrument;

use self::{
    auth::Method,
    client::Endpoint,
    pki::{LeafSpec, LocalKey},
    retry::Budget,
    tls::TlsSettings,
    token::Session,
};
pub use self::{
    aws_creds::{Env, ProcessEnv},
    error::VaultError,
    token::Secret,
};

/// Issue and sign give up after this long unless `dpCert.requestTimeout` says otherwise.
const ISSUE_BUDGET: Duration = Duration::from_secs(30);
const ISSUE_ATTEMPTS: u32 = 5;
/// Validation answers a user waiting on `apply`: a few quick attempts at most.
const VALIDATE_BUDGET: Duration = Duration::from_secs(10);
const VALIDATE_ATTEMPTS: u32 = 3;
const ROOT_ATTEMPTS: u32 = 3;
/// The validation certificate only proves issuance works; it should expire soon.
const VALIDATION_TTL: Duration = Duration::from_secs(300);

/// The `vault` backend. One instance serves every mesh; sessions are cached inside.
pub struct VaultCa {
    sessions: Mutex<HashMap<(String, String), CachedSession>>,
    env: Arc<dyn Env>,
    /// The client nonce for EC2 auth, stable for this process.
    ec2_nonce: String,
}

/// Sessions are not dropped for being idle: a renewable token must stay renewed while its mesh
/// exists, even without traffic. A changed conf or Secret replaces the entry; `forget` removes it.
struct CachedSession {
    digest: [u8; 32],
    session: Arc<Session>,
}

impl Default for VaultCa {
    fn default() -> Self {
        Self::new()
    }
}

impl VaultCa {
    /// AWS credentials come from the process environment.
    pub fn new() -> Self {
        Self::with_env(Arc::new(ProcessEnv))
    }

    /// AWS credentials come from `env` (tests use a map).
    pub fn with_env(env: Arc<dyn Env>) -> Self {
        Self {
            sessions: Mutex::new(HashMap::new()),
            env,
            ec2_nonce: hex::encode(rand::random::<[u8; 16]>()),
        }
    }

    /// Time until the backend's current Vault token expires, for metrics; `None` before the first
    /// request, through an agent, or for a token that never expires.
    pub fn token_time_to_expiry(&self, mesh: &str, backend: &str) -> Option<Duration> {
        let sessions = self.sessions.lock().ok()?;
        sessions
            .get(&(mesh.to_string(), backend.to_string()))
            .and_then(|c| c.session.time_to_expiry())
    }

    /// The cached session for this conf and credentials, or a new one replacing a stale entry.
    async fn session(
        &self,
        ca: &MeshCa<'_>,
        backend: &Backend,
        conf: &VaultFromCp,
    ) -> Result<Arc<Session>, VaultError> {
        let loaded = load(ca, conf).await.map_err(|mut problems| {
            let (field, reason) = problems.swap_remove(0);
            VaultError::setup(None, format!("could not load {field}: {reason}"))
        })?;
        let digest = loaded.digest(conf);
        let key = (ca.mesh.to_string(), backend.name.clone());
        let mut sessions = self
            .sessions
            .lock()
            .map_err(|_| VaultError::setup(None, "the Vault session cache is poisoned"))?;
        if let Some(c) = sessions.get(&key)
            && c.digest == digest
        {
            return Ok(c.session.clone());
        }
        let session = Arc::new(self.build(ca.mesh, &backend.name, conf, &loaded, true)?);
        sessions.insert(
            key,
            CachedSession {
                digest,
                session: session.clone(),
            },
        );
        Ok(session)
    }

    /// Drops the session of a mesh's backend (its renewal task stops), e.g. when the mesh or the
    /// backend is deleted. The next request builds a new one.
    pub fn forget(&self, mesh: &str, backend: &str) {
        if let Ok(mut s) = self.sessions.lock() {
            s.remove(&(mesh.to_string(), backend.to_string()));
        }
    }

    fn build(
        &self,
        mesh: &str,
        backend: &str,
        conf: &VaultFromCp,
        loaded: &Loaded,
        renew: bool,
    ) -> Result<Session, VaultError> {
        let tls_conf = conf.tls.clone().unwrap_or_default();
        let skip_verify = tls_conf.skip_verify.unwrap_or(false);
        if skip_verify {
            tracing::warn!(
                mesh,
                backend,
                "tls.skipVerify is set: Vault's certificate is not checked, so anyone on the path \
                 can impersonate Vault and capture the credentials"
            );
        }
        let agent = conf.uses_agent();
        let address = match (&conf.agent_address, agent) {
            (Some(a), true) => a.as_str(),
            _ => conf.address.as_str(),
        };
        let identity = match (&loaded.client_cert, &loaded.client_key) {
            (Some(c), Some(k)) if !agent => Some((c.as_slice(), k.as_slice())),
            _ => None,
        };
        let (http, url) = tls::http_client(
            address,
            &TlsSettings {
                ca_cert: loaded.ca_cert.as_deref(),
                skip_verify,
                server_name: tls_conf.server_name.as_deref(),
                identity,
            },
        )?;
        let method = match (&conf.auth, agent) {
            (_, true) | (None, false) => Method::Agent,
            (Some(VaultAuth::Token(_)), false) => {
                Method::Token(loaded.token.clone().ok_or_else(|| {
                    VaultError::setup(Some("fromCp.auth.token"), "no token loaded")
                })?)
            }
            (Some(VaultAuth::Tls(_)), false) => Method::Cert,
            (Some(VaultAuth::Aws(a)), false) => Method::Aws(Box::new(aws::AwsLogin::new(
                a.clone(),
                self.env.clone(),
                self.ec2_nonce.clone(),
            )?)),
        };
        let ep = Endpoint::new(http, url, address, conf.namespace.as_deref());
        Ok(Session::new(ep, method, renew))
    }

    /// Issues once per session; when the token turns out dead, re-reads the DataSources,
    /// authenticates again and tries once more (vault.md §3.1).
    async fn issue_with_reauth(
        &self,
        ca: &MeshCa<'_>,
        backend: &Backend,
        conf: &VaultFromCp,
        spec: &LeafSpec<'_>,
        local: Option<&LocalKey>,
        budget: Budget,
    ) -> Result<(IssuedCert, Vec<String>), VaultError> {
        let session = self.session(ca, backend, conf).await?;
        match issue_on(&session, spec, local, budget).await {
            Err(VaultError::TokenRejected { .. }) => {
                tracing::info!(
                    "the Vault token is no longer valid; re-reading it and authenticating again"
                );
                self.forget(ca.mesh, &backend.name);
                let session = self.session(ca, backend, conf).await?;
                issue_on(&session, spec, local, budget).await
            }
            other => other,
        }
    }
}

/// Issue with retries; a 403 is looked into with `lookup-self`: `TokenRejected` when the token is
/// dead, the original denial when the token is fine and its policy is not.
async fn issue_on(
    session: &Session,
    spec: &LeafSpec<'_>,
    local: Option<&LocalKey>,
    budget: Budget,
) -> Result<(IssuedCert, Vec<String>), VaultError> {
    match retry::run(budget, |t| pki::issue(session, spec, local, t)).await {
        Err(denied @ VaultError::Forbidden { .. }) => {
            match session.lookup_self(budget.remaining()).await {
                Ok(()) => Err(denied),
                Err(e) => Err(e),
            }
        }
        other => other,
    }
}

fn vault_conf<'a>(mesh: &str, backend: &'a Backend) -> Result<&'a VaultFromCp, CaError> {
    match &backend.conf {
        Some(BackendConf::Vault(v)) => Ok(&v.from_cp),
        _ => Err(CaError::config(
            mesh,
            &backend.name,
            "conf is not a vault backend's conf",
        )),
    }
}

/// The credential bytes a conf names. `Debug` is not derived: it holds the token and key.
struct Loaded {
    token: Option<Secret>,
    ca_cert: Option<Vec<u8>>,
    client_cert: Option<Vec<u8>>,
    client_key: Option<Vec<u8>>,
}

impl Loaded {
    /// Identifies conf + credentials, so a changed Secret yields a new session.
    fn digest(&self, conf: &VaultFromCp) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(serde_json::to_vec(conf).unwrap_or_default());
        let token = self.token.as_ref().map(|t| t.expose().as_bytes());
        for part in [
            token,
            self.ca_cert.as_deref(),
            self.client_cert.as_deref(),
            self.client_key.as_deref(),
        ] {
            let bytes = part.unwrap_or_default();
            h.update((bytes.len() as u64).to_be_bytes());
            h.update(bytes);
        }
        h.finalize().into()
    }
}

/// Loads every DataSource the conf uses; failures come with their field path relative to `conf`.
async fn load(ca: &MeshCa<'_>, conf: &VaultFromCp) -> Result<Loaded, Vec<(String, String)>> {
    let mut problems = Vec::new();
    let mut keep = |field: &str, r: Result<Vec<u8>, _>| match r {
        Ok(b) => Some(b),
        Err(e) => {
            let e: meshplane_core::datasource::LoadError = e;
            problems.push((field.to_string(), e.to_string()));
            None
        }
    };
    let mut loaded = Loaded {
        token: None,
        ca_cert: None,
        client_cert: None,
        client_key: None,
    };
    if let Some(ds) = conf.tls.as_ref().and_then(|t| t.ca_cert.as_ref()) {
        loaded.ca_cert = keep("fromCp.tls.caCert", ca.loader.load(ca.mesh, ds).await);
    }
    if !conf.uses_agent() {
        match &conf.auth {
            Some(VaultAuth::Token(ds)) => {
                let field = "fromCp.auth.token";
                if let Some(b) = keep(field, ca.loader.load(ca.mesh, ds).await) {
                    let t = String::from_utf8_lossy(&b).trim().to_string();
                    if t.is_empty() {
                        problems.push((field.into(), "the token is empty".into()));
                    } else if !t.bytes().all(|b| b.is_ascii_graphic()) {
                        problems.push((
                            field.into(),
                            "the token contains spaces, line breaks or non-ASCII characters, \
                             which cannot be sent in an HTTP header"
                                .into(),
                        ));
                    } else {
                        loaded.token = Some(Secret::new(&t));
                    }
                }
            }
            Some(VaultAuth::Tls(t)) => {
                loaded.client_key = keep(
                    "fromCp.auth.tls.clientKey",
                    ca.loader.load(ca.mesh, &t.client_key).await,
                );
                loaded.client_cert = keep(
                    "fromCp.auth.tls.clientCert",
                    ca.loader.load(ca.mesh, &t.client_cert).await,
                );
            }
            Some(VaultAuth::Aws(_)) | None => {}
        }
    }
    if problems.is_empty() {
        Ok(loaded)
    } else {
        Err(problems)
    }
}

async fn local_key(
    conf: &VaultFromCp,
    uri_sans: &[String],
    common_name: Option<&str>,
    pkcs8: bool,
) -> Result<Option<LocalKey>, VaultError> {
    let Some(csr) = conf.csr.clone() else {
        return Ok(None);
    };
    let uri_sans = uri_sans.to_vec();
    let common_name = common_name.map(str::to_string);
    tokio::task::spawn_blocking(move || {
        pki::generate_key(&csr, &uri_sans, common_name.as_deref(), pkcs8)
    })
    .await
    .map_err(|e| VaultError::setup(Some("csr"), format!("key generation task failed: {e}")))?
    .map(Some)
}

fn log_warnings(mesh: &str, backend: &str, warnings: &[String]) {
    for w in warnings {
        if w.contains("TTL") && (w.contains("longer than") || w.contains("capped")) {
            tracing::warn!(
                mesh,
                backend,
                warning = %w,
                "Vault capped the certificate's TTL; it will expire sooner than dpCert.rotation.expiration \
                 (raise the role's max_ttl or lower the expiration)"
            );
        } else {
            tracing::debug!(mesh, backend, warning = %w, "Vault returned a warning");
        }
    }
}

#[async_trait]
impl CaBackend for VaultCa {
    fn backend_type(&self) -> BackendType {
        BackendType::Vault
    }

    /// Authenticates, issues a real short-lived certificate through the configured role (issue or
    /// CSR mode), then reads the CA chain, within about ten seconds.
    #[instrument(skip_all, fields(mesh = %ca.mesh, backend = %backend.name))]
    async fn validate(
        &self,
        ca: &MeshCa<'_>,
        backend: &Backend,
    ) -> Result<Vec<String>, ValidationError> {
        let conf = vault_conf(ca.mesh, backend)
            .map_err(|e| ValidationError::single("", e.message().to_string()))?;
        let loaded = load(ca, conf)
            .await
            .map_err(|problems| problems.into_iter().collect::<ValidationError>())?;
        let to_violation = |e: VaultError| match e {
            VaultError::Setup {
                field: Some(f),
                message,
            } => ValidationError::single(f, message),
            other => ValidationError::single("", other.to_string()),
        };
        let session = self
            .build(ca.mesh, &backend.name, conf, &loaded, false)
            .map_err(to_violation)?;

        let suffix = hex::encode(rand::random::<[u8; 4]>());
        let service = format!("meshplane-validation-{suffix}");
        let tags: TagSet = BTreeMap::from([(SERVICE_TAG.to_string(), BTreeSet::from([service]))]);
        let uri_sans = identity::uri_sans(ca.mesh, &tags);
        // Every tag the template reads gets the same plain value, so any template renders.
        let cn_tags: TagSet = conf
            .common_name
            .iter()
            .flat_map(|t| t.tags())
            .map(|t| {
                (
                    t.to_string(),
                    BTreeSet::from(["meshplane-validation".to_string()]),
                )
            })
            .collect();
        let cn = common_name(conf.common_name.as_ref(), &cn_tags)
            .map_err(|e| ValidationError::single("fromCp.commonName", e))?;
        let local = local_key(conf, &uri_sans, cn.as_deref(), false)
            .await
            .map_err(to_violation)?;
        let spec = LeafSpec {
            mount: &conf.pki,
            role: &conf.role,
            uri_sans: &uri_sans,
            common_name: cn.as_deref(),
            ttl: VALIDATION_TTL,
            pkcs8_key: false,
        };
        let budget = Budget::new(VALIDATE_BUDGET, VALIDATE_ATTEMPTS);
        let checked = async {
            let (cert, warnings) = issue_on(&session, &spec, local.as_ref(), budget).await?;
            log_warnings(ca.mesh, &backend.name, &warnings);
            retry::run(budget, |t| pki::ca_chain(session.endpoint(), &conf.pki, t)).await?;
            Ok::<_, VaultError>(cert)
        }
        .await;
        session.revoke_login_token(Duration::from_secs(2)).await;
        let cert = checked.map_err(to_violation)?;
        tracing::info!(serial = %cert.serial_hex, "Vault backend validated with a test certificate");
        let mut warnings = Vec::new();
        if !has_key_usage(&cert.cert_pem) {
            let w = format!(
                "Vault at {} issued the test certificate without a KeyUsage extension. The role's key_usage \
                 values were probably written with the 'KeyUsage' prefix (KeyUsageDigitalSignature), which \
                 Vault and OpenBao ignore. Envoy accepts such certificates, but SPIFFE clients reject them as \
                 X.509-SVIDs: write key_usage=\"DigitalSignature,KeyAgreement,KeyEncipherment\" on role {:?}",
                conf.address, conf.role
            );
            tracing::warn!(mesh = %ca.mesh, backend = %backend.name, "{w}");
            warnings.push(w);
        }
        Ok(warnings)
    }

    /// Nothing to create: the CA lives in Vault.
    async fn ensure(&self, _ca: &MeshCa<'_>, _backend: &Backend) -> Result<Vec<Resource>, CaError> {
        Ok(vec![])
    }

    #[instrument(skip_all, fields(mesh = %ca.mesh, backend = %backend.name))]
    async fn root_certs(&self, ca: &MeshCa<'_>, backend: &Backend) -> Result<Vec<String>, CaError> {
        let conf = vault_conf(ca.mesh, backend)?;
        let fail = |e: VaultError| e.into_ca_error(ca.mesh, &backend.name);
        let session = self.session(ca, backend, conf).await.map_err(fail)?;
        let budget = Budget::new(backend.root_chain_request_timeout(), ROOT_ATTEMPTS);
        retry::run(budget, |t| pki::ca_chain(session.endpoint(), &conf.pki, t))
            .await
            .map_err(fail)
    }

    #[instrument(skip_all, fields(mesh = %ca.mesh, backend = %backend.name))]
    async fn issue(
        &self,
        ca: &MeshCa<'_>,
        backend: &Backend,
        req: &LeafRequest,
    ) -> Result<IssuedCert, CaError> {
        let uri_sans = identity::uri_sans(ca.mesh, &req.tags);
        self.issue_leaf(ca, backend, req, uri_sans, false).await
    }

    #[instrument(skip_all, fields(mesh = %ca.mesh, backend = %backend.name, service))]
    async fn issue_svid(
        &self,
        ca: &MeshCa<'_>,
        backend: &Backend,
        req: &LeafRequest,
        service: &str,
    ) -> Result<IssuedCert, CaError> {
        let uri_sans = vec![identity::spiffe_id(ca.mesh, service)];
        self.issue_leaf(ca, backend, req, uri_sans, true).await
    }

    fn credential_expiries(&self) -> Vec<meshplane_core::ca::CredentialExpiry> {
        let Ok(sessions) = self.sessions.lock() else {
            return Vec::new();
        };
        sessions
            .iter()
            .filter_map(|((mesh, backend), c)| {
                c.session
                    .time_to_expiry()
                    .map(|d| meshplane_core::ca::CredentialExpiry {
                        mesh: mesh.clone(),
                        backend: backend.clone(),
                        seconds_left: d.as_secs_f64(),
                    })
            })
            .collect()
    }

    fn release(&self, mesh: &str, backend: &str) {
        self.forget(mesh, backend);
    }
}

impl VaultCa {
    /// Issues a leaf with the given URI SANs through the configured role (or signs a local CSR).
    async fn issue_leaf(
        &self,
        ca: &MeshCa<'_>,
        backend: &Backend,
        req: &LeafRequest,
        uri_sans: Vec<String>,
        pkcs8: bool,
    ) -> Result<IssuedCert, CaError> {
        let conf = vault_conf(ca.mesh, backend)?;
        let fail = |e: VaultError| e.into_ca_error(ca.mesh, &backend.name);
        let cn = common_name(conf.common_name.as_ref(), &req.tags).map_err(|e| {
            CaError::config(
                ca.mesh,
                &backend.name,
                format!("dataplane {:?}: commonName: {e}", req.dataplane),
            )
        })?;
        let local = local_key(conf, &uri_sans, cn.as_deref(), pkcs8)
            .await
            .map_err(fail)?;
        let spec = LeafSpec {
            mount: &conf.pki,
            role: &conf.role,
            uri_sans: &uri_sans,
            common_name: cn.as_deref(),
            ttl: req.validity,
            pkcs8_key: pkcs8,
        };
        let budget = Budget::new(
            backend.dp_cert_request_timeout().unwrap_or(ISSUE_BUDGET),
            ISSUE_ATTEMPTS,
        );
        let (cert, warnings) = self
            .issue_with_reauth(ca, backend, conf, &spec, local.as_ref(), budget)
            .await
            .map_err(fail)?;
        log_warnings(ca.mesh, &backend.name, &warnings);
        Ok(cert)
    }
}

/// Whether a leaf carries the KeyUsage extension (the X.509-SVID profile requires it).
fn has_key_usage(cert_pem: &str) -> bool {
    let Ok(ders) = crate::pem_util::parse_certificates(cert_pem.as_bytes()) else {
        return false;
    };
    let Some(der) = ders.first() else {
        return false;
    };
    x509_parser::parse_x509_certificate(der)
        .is_ok_and(|(_, c)| c.key_usage().ok().flatten().is_some())
}
