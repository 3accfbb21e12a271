//! The `acmpca` backend: dataplane certificates from AWS Private CA, as Kong Mesh's `acmpca`
//! backend does. The zone makes the key and CSR (the key never leaves it), IssueCertificate signs
//! the CSR with the end-entity template for `dpCert.rotation.expiration`, and GetCertificate
//! fetches it through the SDK's waiter.
//!
//! Shape: one SDK client per mesh, backend and digest of the conf, the timeouts and the credential
//! bytes loaded for it; DataSources are re-read on every call, so a rotated Secret makes a new
//! client. The CA certificate (and from it the signing algorithm) is read once per client.
//! Submodules: `client` (SDK calls), `check` (what is checked in AWS's answers), `error`.

mod check;
mod client;
pub mod error;

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use aws_credential_types::Credentials;
use aws_sdk_acmpca::types::SigningAlgorithm;
use chrono::Utc;
use meshplane_core::{
    ValidationError,
    ca::{CaBackend, CaError, IssuedCert, LeafRequest, MeshCa, identity},
    model::{
        Backend, BackendConf, BackendType, Resource, TagSet, dataplane::SERVICE_TAG,
        mesh::AcmPcaConf, mesh::CsrConf,
    },
};
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;
use tracing::instrument;

pub use self::client::END_ENTITY_TEMPLATE;
use self::client::{Pca, Settings};
pub use self::error::AcmPcaError;
use crate::{
    csr::{self, common_name},
    pem_util,
};

/// Issuance gives up after this long unless `dpCert.requestTimeout` says otherwise.
const ISSUE_BUDGET: Duration = Duration::from_secs(30);
/// Attempts per call, the SDK's retries included.
const ISSUE_ATTEMPTS: u32 = 3;
/// Validation answers a user waiting on `apply`.
const VALIDATE_BUDGET: Duration = Duration::from_secs(10);
const VALIDATE_ATTEMPTS: u32 = 2;
/// The validation certificate only proves issuance works; it should expire soon.
const VALIDATION_TTL: Duration = Duration::from_secs(300);
/// Leaves start this far in the past so a peer whose clock lags a little still accepts them.
const BACKDATE: Duration = Duration::from_secs(10);
/// A validity further than this from what was asked is reported as a warning.
const VALIDITY_SLACK: Duration = Duration::from_secs(120);

/// The `acmpca` backend. One instance serves every mesh; clients are cached inside.
#[derive(Default)]
pub struct AcmPcaCa {
    clients: Mutex<Clients>,
}

/// Keyed by (mesh, backend).
type Clients = HashMap<(String, String), Cached>;

struct Cached {
    digest: [u8; 32],
    session: Arc<Session>,
}

/// A client and what it learnt of its CA.
struct Session {
    pca: Pca,
    algorithm: OnceCell<SigningAlgorithm>,
}

/// The credential bytes a conf names. `Debug` is not derived: it holds the secret key.
struct Loaded {
    ca_cert: Option<Vec<u8>>,
    credentials: Option<(String, String)>,
}

impl Loaded {
    /// Identifies conf + timeouts + credentials, so a changed Secret yields a new client.
    fn digest(&self, conf: &AcmPcaConf, timeout: Duration) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(serde_json::to_vec(conf).unwrap_or_default());
        h.update(timeout.as_millis().to_be_bytes());
        let (ak, sk) = self.credentials.as_ref().map_or((None, None), |(a, s)| {
            (Some(a.as_bytes()), Some(s.as_bytes()))
        });
        for part in [self.ca_cert.as_deref(), ak, sk] {
            let bytes = part.unwrap_or_default();
            h.update((bytes.len() as u64).to_be_bytes());
            h.update(bytes);
        }
        h.finalize().into()
    }

    fn sdk_credentials(&self) -> Option<Credentials> {
        self.credentials
            .as_ref()
            .map(|(a, s)| Credentials::new(a, s, None, None, "meshplane-acmpca-conf"))
    }

    /// The certificates of `caCert`, when set.
    fn trusted(&self) -> Result<Option<Vec<Vec<u8>>>, String> {
        let Some(pem) = &self.ca_cert else {
            return Ok(None);
        };
        let ders =
            pem_util::parse_certificates(pem).map_err(|e| format!("not a PEM certificate: {e}"))?;
        if ders.is_empty() {
            return Err("holds no certificate".into());
        }
        Ok(Some(ders))
    }
}

impl AcmPcaCa {
    pub fn new() -> Self {
        Self::default()
    }

    /// The cached session for this conf and credentials, or a new one replacing a stale entry.
    async fn session(
        &self,
        ca: &MeshCa<'_>,
        backend: &Backend,
        conf: &AcmPcaConf,
    ) -> Result<Arc<Session>, AcmPcaError> {
        let loaded = load(ca, conf).await.map_err(|mut problems| {
            let (field, reason) = problems.swap_remove(0);
            AcmPcaError::setup(None, format!("could not load {field}: {reason}"))
        })?;
        let timeout = backend.dp_cert_request_timeout().unwrap_or(ISSUE_BUDGET);
        let digest = loaded.digest(conf, timeout);
        let key = (ca.mesh.to_string(), backend.name.clone());
        if let Some(c) = self.lock()?.get(&key)
            && c.digest == digest
        {
            return Ok(c.session.clone());
        }
        let session = Arc::new(Session {
            pca: build(conf, &loaded, timeout, ISSUE_ATTEMPTS).await?,
            algorithm: OnceCell::new(),
        });
        self.lock()?.insert(
            key,
            Cached {
                digest,
                session: session.clone(),
            },
        );
        Ok(session)
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Clients>, AcmPcaError> {
        self.clients
            .lock()
            .map_err(|_| AcmPcaError::setup(None, "the ACM PCA client cache is poisoned"))
    }

    /// Issues a leaf with the given URI SANs from a key and CSR made here.
    async fn issue_leaf(
        &self,
        ca: &MeshCa<'_>,
        backend: &Backend,
        req: &LeafRequest,
        uri_sans: Vec<String>,
        pkcs8: bool,
    ) -> Result<IssuedCert, CaError> {
        let conf = acmpca_conf(ca.mesh, backend)?;
        let fail = |e: AcmPcaError| e.into_ca_error(ca.mesh, &backend.name);
        let cn = common_name(conf.common_name.as_ref(), &req.tags).map_err(|e| {
            CaError::config(
                ca.mesh,
                &backend.name,
                format!("dataplane {:?}: commonName: {e}", req.dataplane),
            )
        })?;
        let session = self.session(ca, backend, conf).await.map_err(fail)?;
        let algorithm = session
            .algorithm
            .get_or_try_init(|| async {
                let c = session.pca.ca_certificate().await?;
                check::signing_algorithm(&c.cert_pem).map_err(|e| AcmPcaError::Malformed {
                    op: error::Op::GetCertificateAuthorityCertificate.name(),
                    arn: session.pca.arn().into(),
                    reason: e,
                })
            })
            .await
            .map_err(fail)?
            .clone();
        let key = local_key(&uri_sans, cn.as_deref(), pkcs8)
            .await
            .map_err(fail)?;
        let now = Utc::now().timestamp();
        let issued = session
            .pca
            .issue(
                &key.csr_pem,
                algorithm,
                now - BACKDATE.as_secs() as i64,
                now + req.validity.as_secs() as i64,
            )
            .await
            .map_err(fail)?;
        let malformed = |reason: String| {
            CaError::config(
                ca.mesh,
                &backend.name,
                format!(
                    "AWS Private CA {} issued an unusable certificate: {reason}",
                    conf.arn
                ),
            )
        };
        check::uri_sans_match(&issued.cert_pem, &uri_sans).map_err(malformed)?;
        check::issued(
            &issued.cert_pem,
            issued.chain_pem.as_deref(),
            key.key_pem.clone(),
        )
        .map_err(malformed)
    }
}

async fn build(
    conf: &AcmPcaConf,
    loaded: &Loaded,
    timeout: Duration,
    attempts: u32,
) -> Result<Pca, AcmPcaError> {
    let region = conf
        .region()
        .ok_or_else(|| AcmPcaError::setup(Some("arn"), "the ARN names no region"))?;
    Ok(Pca::new(Settings {
        arn: &conf.arn,
        region,
        endpoint: conf.endpoint.as_deref(),
        credentials: loaded.sdk_credentials(),
        timeout,
        attempts,
    })
    .await)
}

fn acmpca_conf<'a>(mesh: &str, backend: &'a Backend) -> Result<&'a AcmPcaConf, CaError> {
    match &backend.conf {
        Some(BackendConf::AcmPca(c)) => Ok(c),
        _ => Err(CaError::config(
            mesh,
            &backend.name,
            "conf is not an acmpca backend's conf",
        )),
    }
}

/// Loads every DataSource the conf uses; failures come with their field path relative to `conf`.
async fn load(ca: &MeshCa<'_>, conf: &AcmPcaConf) -> Result<Loaded, Vec<(String, String)>> {
    let mut problems = Vec::new();
    let mut loaded = Loaded {
        ca_cert: None,
        credentials: None,
    };
    if let Some(ds) = &conf.ca_cert {
        match ca.loader.load(ca.mesh, ds).await {
            Ok(b) => loaded.ca_cert = Some(b),
            Err(e) => problems.push(("caCert".to_string(), e.to_string())),
        }
    }
    if let Some(auth) = &conf.auth {
        let c = &auth.aws_credentials;
        let text = |field: &str, ds| {
            let field = format!("auth.awsCredentials.{field}");
            async move {
                match ca.loader.load(ca.mesh, ds).await {
                    Err(e) => Err((field, e.to_string())),
                    Ok(b) => {
                        let t = String::from_utf8_lossy(&b).trim().to_string();
                        if t.is_empty() {
                            Err((field, "is empty".to_string()))
                        } else if !t.bytes().all(|b| b.is_ascii_graphic()) {
                            Err((
                                field,
                                "contains spaces, line breaks or non-ASCII characters".to_string(),
                            ))
                        } else {
                            Ok(t)
                        }
                    }
                }
            }
        };
        let ak = text("accessKey", &c.access_key).await;
        let sk = text("accessKeySecret", &c.access_key_secret).await;
        match (ak, sk) {
            (Ok(a), Ok(s)) => loaded.credentials = Some((a, s)),
            (a, s) => problems.extend([a.err(), s.err()].into_iter().flatten()),
        }
    }
    if problems.is_empty() {
        Ok(loaded)
    } else {
        Err(problems)
    }
}

/// An RSA-2048 key (Kuma's dataplane key) and its CSR, made on the blocking pool.
async fn local_key(
    uri_sans: &[String],
    common_name: Option<&str>,
    pkcs8: bool,
) -> Result<csr::LocalKey, AcmPcaError> {
    let uri_sans = uri_sans.to_vec();
    let common_name = common_name.map(str::to_string);
    tokio::task::spawn_blocking(move || {
        csr::generate(
            &CsrConf::default(),
            &uri_sans,
            common_name.as_deref(),
            pkcs8,
        )
    })
    .await
    .map_err(|e| AcmPcaError::setup(None, format!("key generation task failed: {e}")))?
    .map_err(|e| AcmPcaError::setup(None, e))
}

#[async_trait]
impl CaBackend for AcmPcaCa {
    fn backend_type(&self) -> BackendType {
        BackendType::AcmPca
    }

    /// Reads the CA certificate, issues a real short-lived certificate and checks its SANs, its
    /// mTLS profile and its chain to `caCert` (or the CA's own certificate), within about ten
    /// seconds. A refusal names credentials, ARN, permissions or CA state, with AWS's code.
    #[instrument(skip_all, fields(mesh = %ca.mesh, backend = %backend.name))]
    async fn validate(
        &self,
        ca: &MeshCa<'_>,
        backend: &Backend,
    ) -> Result<Vec<String>, ValidationError> {
        let conf = acmpca_conf(ca.mesh, backend)
            .map_err(|e| ValidationError::single("", e.message().to_string()))?;
        let loaded = load(ca, conf)
            .await
            .map_err(|problems| problems.into_iter().collect::<ValidationError>())?;
        let trusted = loaded
            .trusted()
            .map_err(|e| ValidationError::single("caCert", e))?;
        let static_creds = loaded.credentials.is_some();
        let to_violation =
            |e: AcmPcaError| ValidationError::single(e.field(static_creds), e.to_string());
        let pca = build(conf, &loaded, VALIDATE_BUDGET, VALIDATE_ATTEMPTS)
            .await
            .map_err(to_violation)?;
        let own = pca.ca_certificate().await.map_err(to_violation)?;
        let algorithm = check::signing_algorithm(&own.cert_pem)
            .map_err(|e| ValidationError::single("arn", e))?;
        let (roots, roots_field) = match trusted {
            Some(t) => (t, "caCert"),
            None => {
                let mut all =
                    pem_util::parse_certificates(own.cert_pem.as_bytes()).unwrap_or_default();
                if let Some(c) = &own.chain_pem {
                    all.extend(pem_util::parse_certificates(c.as_bytes()).unwrap_or_default());
                }
                (all, "")
            }
        };

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
            .map_err(|e| ValidationError::single("commonName", e))?;
        let key = local_key(&uri_sans, cn.as_deref(), false)
            .await
            .map_err(to_violation)?;
        let now = Utc::now().timestamp();
        let wanted_not_after = now + VALIDATION_TTL.as_secs() as i64;
        let issued = pca
            .issue(
                &key.csr_pem,
                algorithm,
                now - BACKDATE.as_secs() as i64,
                wanted_not_after,
            )
            .await
            .map_err(to_violation)?;
        let bad = |reason: String| {
            ValidationError::single(
                "",
                format!("the test certificate from {}: {reason}", conf.arn),
            )
        };
        check::uri_sans_match(&issued.cert_pem, &uri_sans).map_err(bad)?;
        check::mtls_profile(&issued.cert_pem).map_err(bad)?;
        let chain = issued
            .chain_pem
            .as_deref()
            .map(pem_util::split)
            .unwrap_or_default();
        check::chains_to(&issued.cert_pem, &chain, &roots).map_err(|e| {
            ValidationError::single(
                roots_field,
                format!(
                    "the test certificate from {} does not chain to it: {e}",
                    conf.arn
                ),
            )
        })?;
        let cert = check::issued(&issued.cert_pem, issued.chain_pem.as_deref(), String::new())
            .map_err(bad)?;
        tracing::info!(serial = %cert.serial_hex, "ACM PCA backend validated with a test certificate");
        let mut warnings = Vec::new();
        let drift = (cert.not_after.timestamp() - wanted_not_after).unsigned_abs();
        if drift > VALIDITY_SLACK.as_secs() {
            let w = format!(
                "AWS Private CA {} issued the test certificate valid until {} instead of the requested {}: \
                 dataplane certificates will not live for dpCert.rotation.expiration",
                conf.arn,
                cert.not_after.to_rfc3339(),
                chrono::DateTime::<Utc>::from_timestamp(wanted_not_after, 0)
                    .map(|t| t.to_rfc3339())
                    .unwrap_or_default(),
            );
            tracing::warn!(mesh = %ca.mesh, backend = %backend.name, "{w}");
            warnings.push(w);
        }
        Ok(warnings)
    }

    /// Nothing to create: the CA lives in AWS.
    async fn ensure(&self, _ca: &MeshCa<'_>, _backend: &Backend) -> Result<Vec<Resource>, CaError> {
        Ok(vec![])
    }

    /// `caCert` when set, else the CA's certificate and its chain from AWS.
    #[instrument(skip_all, fields(mesh = %ca.mesh, backend = %backend.name))]
    async fn root_certs(&self, ca: &MeshCa<'_>, backend: &Backend) -> Result<Vec<String>, CaError> {
        let conf = acmpca_conf(ca.mesh, backend)?;
        let fail = |e: AcmPcaError| e.into_ca_error(ca.mesh, &backend.name);
        if let Some(ds) = &conf.ca_cert {
            let pem = ca.loader.load(ca.mesh, ds).await.map_err(|e| {
                CaError::config(
                    ca.mesh,
                    &backend.name,
                    format!("could not load caCert: {e}"),
                )
            })?;
            let certs = pem_util::split(&String::from_utf8_lossy(&pem));
            if certs.is_empty() {
                return Err(CaError::config(
                    ca.mesh,
                    &backend.name,
                    "caCert holds no PEM certificate",
                ));
            }
            return Ok(certs);
        }
        let session = self.session(ca, backend, conf).await.map_err(fail)?;
        let own = tokio::time::timeout(
            backend.root_chain_request_timeout(),
            session.pca.ca_certificate(),
        )
        .await
        .map_err(|_| {
            CaError::transient(
                ca.mesh,
                &backend.name,
                format!(
                    "GetCertificateAuthorityCertificate on {} timed out",
                    conf.arn
                ),
            )
        })?
        .map_err(fail)?;
        let mut certs = pem_util::split(&own.cert_pem);
        certs.extend(
            own.chain_pem
                .as_deref()
                .map(pem_util::split)
                .unwrap_or_default(),
        );
        Ok(certs)
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

    fn release(&self, mesh: &str, backend: &str) {
        if let Ok(mut c) = self.clients.lock() {
            c.remove(&(mesh.to_string(), backend.to_string()));
        }
    }
}
