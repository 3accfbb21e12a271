//! The `builtin` backend: a self-signed RSA root per mesh and backend, generated once and kept in the
//! Secrets `<mesh>.ca-builtin-cert-<backend>` and `<mesh>.ca-builtin-key-<backend>` (Kuma §1.2).

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use meshplane_core::{
    ValidationError,
    ca::{CaBackend, CaError, IssuedCert, LeafRequest, MeshCa},
    model::{
        Backend, BackendConf, BackendType, DataSource, Meta, Resource, SecretData, SecretSpec,
        Spec,
        mesh::BuiltinConf,
        resource::{builtin_cert_secret_name, builtin_key_secret_name},
    },
};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair, KeyUsagePurpose,
    RsaKeySize, SanType, string::Ia5String,
};

use crate::{
    leaf::{self, SigningCa},
    material, pem_util,
};

/// The root starts this far in the past, as Kuma's does, to absorb small clock differences.
const BACKDATE: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Debug, Default)]
pub struct BuiltinCa;

impl BuiltinCa {
    pub fn new() -> Self {
        Self
    }

    /// The root and its key, for callers that sign other profiles (Workload API SVIDs).
    pub async fn signing_ca(
        &self,
        ca: &MeshCa<'_>,
        backend: &Backend,
    ) -> Result<SigningCa, CaError> {
        let (cert_name, key_name) = secret_names(ca.mesh, &backend.name);
        let cert = load_required(ca, backend, &cert_name).await?;
        let key = load_required(ca, backend, &key_name).await?;
        SigningCa::from_pem(&cert, &key)
            .map_err(|e| material::material_error(ca.mesh, &backend.name, &e))
    }
}

fn secret_names(mesh: &str, backend: &str) -> (String, String) {
    (
        builtin_cert_secret_name(mesh, backend),
        builtin_key_secret_name(mesh, backend),
    )
}

fn conf(mesh: &str, backend: &Backend) -> Result<BuiltinConf, CaError> {
    match &backend.conf {
        None => Ok(BuiltinConf::default()),
        Some(BackendConf::Builtin(c)) => Ok(c.clone()),
        Some(_) => Err(CaError::config(
            mesh,
            &backend.name,
            "conf is not a builtin backend's conf",
        )),
    }
}

async fn load_required(ca: &MeshCa<'_>, backend: &Backend, name: &str) -> Result<Vec<u8>, CaError> {
    material::load_optional(ca, &backend.name, &DataSource::Secret(name.to_string()))
        .await?
        .ok_or_else(|| {
            CaError::config(
                ca.mesh,
                &backend.name,
                format!(
                    "the builtin CA secret {name:?} is missing (it is created with the Mesh and never regenerated; restore it, or replace the backend)"
                ),
            )
        })
}

/// A freshly generated root, both halves PEM.
struct Root {
    cert_pem: String,
    key_pem: String,
}

fn generate_root(
    mesh: &str,
    bits: u32,
    lifetime: Duration,
    now: DateTime<Utc>,
) -> Result<Root, String> {
    let size = match bits {
        2048 => RsaKeySize::_2048,
        3072 => RsaKeySize::_3072,
        4096 => RsaKeySize::_4096,
        other => {
            return Err(format!(
                "caCert.RSAbits {other} is not one of 2048, 3072, 4096"
            ));
        }
    };
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Kuma");
    dn.push(DnType::OrganizationalUnitName, "Mesh");
    dn.push(DnType::CommonName, mesh);
    params.distinguished_name = dn;
    let trust_domain = Ia5String::try_from(format!("spiffe://{mesh}"))
        .map_err(|_| format!("mesh name {mesh:?} is not ASCII"))?;
    params.subject_alt_names = vec![SanType::URI(trust_domain)];
    // No name constraints: rustls rejects every chain whose CA carries URI constraints.
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    // Kuma writes serial 0, which RFC 5280 §4.1.2.2 forbids and some verifiers refuse; a random positive
    // serial is used instead.
    params.serial_number = Some(leaf::random_serial());
    let not_before = now - chrono::Duration::from_std(BACKDATE).unwrap_or_default();
    let not_after = chrono::Duration::from_std(lifetime)
        .ok()
        .and_then(|d| now.checked_add_signed(d));
    let range = "caCert.expiration puts the CA's end after year 9999";
    params.not_before = leaf::to_offset(not_before).ok_or_else(|| range.to_string())?;
    params.not_after = not_after
        .and_then(leaf::to_offset)
        .ok_or_else(|| range.to_string())?;

    // Dates are checked before the (slow) key generation.
    let key = KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, size)
        .map_err(|e| format!("could not generate the CA key: {e}"))?;
    let cert = params
        .self_signed(&key)
        .map_err(|e| format!("could not sign the CA certificate: {e}"))?;
    // Kuma stores the key as PKCS#1 `RSA PRIVATE KEY`; aws-lc yields PKCS#8, unwrapped here to match.
    let pkcs1 = pem_util::pkcs8_rsa_to_pkcs1(key.serialized_der()).map_err(|e| e.to_string())?;
    Ok(Root {
        cert_pem: pem_util::encode(pem_util::CERTIFICATE, cert.der()),
        key_pem: pem_util::encode(pem_util::RSA_PRIVATE_KEY, &pkcs1),
    })
}

fn secret(mesh: &str, name: String, pem: String) -> Resource {
    Resource::new(
        Meta {
            name,
            mesh: mesh.to_string(),
            ..Default::default()
        },
        Spec::Secret(SecretSpec {
            data: SecretData::new(pem.into_bytes()),
        }),
    )
}

#[async_trait]
impl CaBackend for BuiltinCa {
    fn backend_type(&self) -> BackendType {
        BackendType::Builtin
    }

    /// Kuma checks only that the conf decodes, which the model already did.
    async fn validate(
        &self,
        _ca: &MeshCa<'_>,
        _backend: &Backend,
    ) -> Result<Vec<String>, ValidationError> {
        Ok(vec![])
    }

    async fn ensure(&self, ca: &MeshCa<'_>, backend: &Backend) -> Result<Vec<Resource>, CaError> {
        let conf = conf(ca.mesh, backend)?;
        let (cert_name, key_name) = secret_names(ca.mesh, &backend.name);
        let load = |name: &str| DataSource::Secret(name.to_string());
        let cert = material::load_optional(ca, &backend.name, &load(&cert_name)).await?;
        let key = material::load_optional(ca, &backend.name, &load(&key_name)).await?;
        match (cert.is_some(), key.is_some()) {
            (true, true) => return Ok(vec![]),
            (false, false) => {}
            // Regenerating one half would not match the other; an existing CA is never replaced.
            (true, false) | (false, true) => {
                let (present, missing) = if cert.is_some() {
                    (&cert_name, &key_name)
                } else {
                    (&key_name, &cert_name)
                };
                return Err(CaError::config(
                    ca.mesh,
                    &backend.name,
                    format!(
                        "builtin CA secret {present:?} exists but {missing:?} does not; restore it, or delete {present:?} to have a new CA generated"
                    ),
                ));
            }
        }

        let mesh = ca.mesh.to_string();
        let (bits, lifetime) = (conf.rsa_bits(), conf.expiration());
        // RSA key generation takes from tens of milliseconds to seconds (4096 bits).
        let root =
            tokio::task::spawn_blocking(move || generate_root(&mesh, bits, lifetime, Utc::now()))
                .await
                .map_err(|e| {
                    CaError::transient(
                        ca.mesh,
                        &backend.name,
                        format!("BUG: CA generation task stopped: {e}"),
                    )
                })?
                .map_err(|m| CaError::config(ca.mesh, &backend.name, m))?;
        tracing::info!(mesh = ca.mesh, backend = %backend.name, bits, "generated the builtin CA");
        Ok(vec![
            secret(ca.mesh, cert_name, root.cert_pem),
            secret(ca.mesh, key_name, root.key_pem),
        ])
    }

    fn used_secrets(&self, mesh: &str, backend: &Backend) -> Vec<String> {
        let (cert, key) = secret_names(mesh, &backend.name);
        vec![cert, key]
    }

    async fn root_certs(&self, ca: &MeshCa<'_>, backend: &Backend) -> Result<Vec<String>, CaError> {
        let (cert_name, _) = secret_names(ca.mesh, &backend.name);
        let cert = load_required(ca, backend, &cert_name).await?;
        let ders = pem_util::parse_certificates(&cert).map_err(|e| {
            CaError::config(
                ca.mesh,
                &backend.name,
                format!("builtin CA secret {cert_name:?} is not a valid PEM certificate: {e}"),
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

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a panic is how a test reports failure")]
mod tests {
    use super::*;
    use x509_parser::{certificate::X509Certificate, prelude::FromDer};

    #[test]
    fn root_has_kuma_profile_and_a_positive_serial() {
        let now = Utc::now();
        let root = generate_root("default", 2048, Duration::from_secs(3600), now).unwrap();
        assert!(
            root.key_pem
                .starts_with("-----BEGIN RSA PRIVATE KEY-----\n")
        );
        let der = pem_util::parse_certificates(root.cert_pem.as_bytes()).unwrap();
        let (_, c) = X509Certificate::from_der(&der[0]).unwrap();
        assert_eq!(c.subject().to_string(), "O=Kuma, OU=Mesh, CN=default");
        assert_eq!(c.subject().as_raw(), c.issuer().as_raw());
        assert!(c.basic_constraints().unwrap().unwrap().value.ca);
        let ku = c.key_usage().unwrap().unwrap();
        assert!(ku.critical);
        assert!(ku.value.key_cert_sign() && ku.value.crl_sign());
        assert!(!ku.value.digital_signature() && !ku.value.key_agreement());
        assert!(c.name_constraints().unwrap().is_none());
        assert!(c.tbs_certificate.raw_serial().iter().any(|b| *b != 0));
        assert_eq!(c.validity().not_before.timestamp(), now.timestamp() - 10);
        assert_eq!(c.validity().not_after.timestamp(), now.timestamp() + 3600);
        let sans = c.subject_alternative_name().unwrap().unwrap();
        assert_eq!(
            format!("{:?}", sans.value.general_names),
            r#"[URI("spiffe://default")]"#
        );
        // The key round-trips and belongs to the certificate.
        assert!(SigningCa::from_pem(root.cert_pem.as_bytes(), root.key_pem.as_bytes()).is_ok());
    }

    #[test]
    fn absurd_lifetime_is_a_clear_error() {
        let err = generate_root(
            "default",
            2048,
            Duration::from_secs(20_000 * 365 * 24 * 3600),
            Utc::now(),
        )
        .err()
        .unwrap();
        assert!(err.contains("after year 9999"), "{err}");
    }
}
