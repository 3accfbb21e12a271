//! The `provided` backend: a CA bundle and key the user stores in DataSources (Kuma §1.3), validated with
//! Kuma's exact reasons (§3.2) before a Mesh may use it.

use async_trait::async_trait;
use chrono::Utc;
use meshplane_core::{
    ValidationError,
    ca::{CaBackend, CaError, IssuedCert, LeafRequest, MeshCa},
    model::{Backend, BackendConf, BackendType, Resource, mesh::ProvidedConf},
};
use x509_parser::{certificate::X509Certificate, prelude::FromDer};

use crate::{
    leaf::{self, SigningCa},
    material, pem_util,
};

pub const REASON_NOT_CA: &str =
    "basic constraint 'CA' must be set to 'true' (see X509-SVID: 4.1. Basic Constraints)";
pub const REASON_NO_CERT_SIGN: &str =
    "key usage extension 'keyCertSign' must be set (see X509-SVID: 4.3. Key Usage)";
pub const REASON_KEY_AGREEMENT: &str = "key usage extension 'keyAgreement' must NOT be set (see X509-SVID: Appendix A. X.509 Field Reference)";

#[derive(Clone, Copy, Debug, Default)]
pub struct ProvidedCa;

impl ProvidedCa {
    pub fn new() -> Self {
        Self
    }

    /// The bundle and key, for callers that sign other profiles (Workload API SVIDs).
    pub async fn signing_ca(
        &self,
        ca: &MeshCa<'_>,
        backend: &Backend,
    ) -> Result<SigningCa, CaError> {
        let conf = conf(ca.mesh, backend)?;
        let key = load(ca, backend, "key", &conf.key).await?;
        let cert = load(ca, backend, "cert", &conf.cert).await?;
        SigningCa::from_pem(&cert, &key)
            .map_err(|e| material::material_error(ca.mesh, &backend.name, &e))
    }
}

fn conf<'a>(mesh: &str, backend: &'a Backend) -> Result<&'a ProvidedConf, CaError> {
    match &backend.conf {
        Some(BackendConf::Provided(c)) => Ok(c),
        None => Err(CaError::config(
            mesh,
            &backend.name,
            "conf has to be defined",
        )),
        Some(_) => Err(CaError::config(
            mesh,
            &backend.name,
            "conf is not a provided backend's conf",
        )),
    }
}

async fn load(
    ca: &MeshCa<'_>,
    backend: &Backend,
    what: &str,
    source: &meshplane_core::model::DataSource,
) -> Result<Vec<u8>, CaError> {
    ca.loader.load(ca.mesh, source).await.map_err(|e| {
        let mut err = material::load_error(ca.mesh, &backend.name, e);
        let (CaError::Config { message, .. } | CaError::Transient { message, .. }) = &mut err;
        *message = format!("CA {what}: {message}");
        err
    })
}

/// Kuma's per-certificate rules (X509-SVID §4.1, §4.3, Appendix A), plus a refusal of expired CAs,
/// which would make every issued leaf unverifiable.
fn check_bundle(ca: &SigningCa, errors: &mut ValidationError) {
    let now = Utc::now().timestamp();
    for (j, der) in ca.certs_der().iter().enumerate() {
        let field = format!("cert[{j}]");
        let cert = match X509Certificate::from_der(der) {
            Ok((_, c)) => c,
            Err(e) => {
                errors.add(&field, format!("not a valid x509 certificate: {e}"));
                return;
            }
        };
        let is_ca = match cert.basic_constraints() {
            Ok(bc) => bc.is_some_and(|b| b.value.ca),
            Err(e) => {
                errors.add(&field, format!("not a valid x509 certificate: {e}"));
                continue;
            }
        };
        let (cert_sign, key_agreement) = match cert.key_usage() {
            Ok(ku) => ku.map_or((false, false), |k| {
                (k.value.key_cert_sign(), k.value.key_agreement())
            }),
            Err(e) => {
                errors.add(&field, format!("not a valid x509 certificate: {e}"));
                continue;
            }
        };
        if !is_ca {
            errors.add(&field, REASON_NOT_CA);
        }
        if !cert_sign {
            errors.add(&field, REASON_NO_CERT_SIGN);
        }
        if key_agreement {
            errors.add(&field, REASON_KEY_AGREEMENT);
        }
        let not_after = cert.validity().not_after.timestamp();
        if not_after <= now {
            errors.add(
                &field,
                format!(
                    "certificate expired at {}",
                    leaf::asn1_to_chrono(not_after).to_rfc3339()
                ),
            );
        }
    }
}

#[async_trait]
impl CaBackend for ProvidedCa {
    fn backend_type(&self) -> BackendType {
        BackendType::Provided
    }

    async fn validate(
        &self,
        ca: &MeshCa<'_>,
        backend: &Backend,
    ) -> Result<Vec<String>, ValidationError> {
        let conf = match &backend.conf {
            Some(BackendConf::Provided(c)) => c,
            None => return Err(ValidationError::single("", "has to be defined")),
            Some(_) => {
                return Err(ValidationError::single(
                    "",
                    "is not a provided backend's conf",
                ));
            }
        };
        // Kuma loads the key, then the cert, and reports the first failure on both fields.
        let loaded = match ca.loader.load(ca.mesh, &conf.key).await {
            Ok(key) => ca.loader.load(ca.mesh, &conf.cert).await.map(|c| (c, key)),
            Err(e) => Err(e),
        };
        let (cert, key) = match loaded {
            Ok(pair) => pair,
            Err(e) => {
                let mut errors = ValidationError::new();
                errors.add("cert", e.to_string());
                errors.add("key", e.to_string());
                return Err(errors);
            }
        };
        let signing = match SigningCa::from_pem(&cert, &key) {
            Ok(s) => s,
            Err(e) => {
                let mut errors = ValidationError::new();
                match e.detail() {
                    Some(d) => errors.add_detailed(e.field(), e.to_string(), d),
                    None => errors.add(e.field(), e.to_string()),
                }
                return Err(errors);
            }
        };
        let mut errors = ValidationError::new();
        check_bundle(&signing, &mut errors);
        // A P-256 leaf costs one CA signature (milliseconds), so it runs inline.
        if errors.is_empty()
            && let Err(e) = leaf::dry_run(&signing, ca.mesh)
        {
            errors.add(
                "cert",
                format!("cannot issue certificates with this CA: {e}"),
            );
        }
        errors.into_result().map(|()| vec![])
    }

    /// The user creates the material beforehand; nothing to make.
    async fn ensure(&self, _ca: &MeshCa<'_>, _backend: &Backend) -> Result<Vec<Resource>, CaError> {
        Ok(vec![])
    }

    /// The whole bundle, one PEM per certificate: peers may present leaves of any of its CAs.
    async fn root_certs(&self, ca: &MeshCa<'_>, backend: &Backend) -> Result<Vec<String>, CaError> {
        let conf = conf(ca.mesh, backend)?;
        let cert = load(ca, backend, "cert", &conf.cert).await?;
        let ders = pem_util::parse_certificates(&cert).map_err(|e| {
            CaError::config(
                ca.mesh,
                &backend.name,
                format!("CA cert is not a valid PEM certificate: {e}"),
            )
        })?;
        Ok(ders
            .iter()
            .map(|d| pem_util::encode(pem_util::CERTIFICATE, d))
            .collect())
    }

    async fn issue(
        &self,
        ca: &MeshCa<'_>,
        backend: &Backend,
        req: &LeafRequest,
    ) -> Result<IssuedCert, CaError> {
        let signing = self.signing_ca(ca, backend).await?;
        material::sign(signing, ca, &backend.name, req, material::Profile::Mesh).await
    }

    async fn issue_svid(
        &self,
        ca: &MeshCa<'_>,
        backend: &Backend,
        req: &LeafRequest,
        service: &str,
    ) -> Result<IssuedCert, CaError> {
        let signing = self.signing_ca(ca, backend).await?;
        material::sign(
            signing,
            ca,
            &backend.name,
            req,
            material::Profile::Svid(service),
        )
        .await
    }
}
