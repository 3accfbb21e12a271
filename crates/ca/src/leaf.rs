//! Signing leaves with a CA key pair held in memory, shared by the builtin and provided backends:
//! dataplane certificates in Kuma's format (§2.1) and single-URI-SAN X.509-SVIDs for the Workload API.

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use meshplane_core::{
    ca::{IssuedCert, identity},
    model::TagSet,
};
use rcgen::{
    CertificateParams, DistinguishedName, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PublicKeyData, RsaKeySize, SanType, SerialNumber, string::Ia5String,
};
use rustls_pki_types::CertificateDer;
use x509_parser::{certificate::X509Certificate, prelude::FromDer};

use crate::pem_util::{self, PemError};

/// Leaves start this far in the past so a peer whose clock lags a little still accepts them (Kuma does the same).
const BACKDATE: Duration = Duration::from_secs(10);

/// Why a CA bundle and key cannot be used together. `Display` is the validation reason Kuma gives
/// (Go's `tls.X509KeyPair` and `x509.ParseCertificate` words); `detail` what Meshplane's parsers
/// said beyond them.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CaMaterialError {
    #[error("not a valid TLS key pair: {reason}")]
    KeyPair {
        reason: String,
        detail: Option<String>,
    },
    /// A certificate of the bundle after the first does not parse.
    #[error("not a valid x509 certificate: {MALFORMED}")]
    CertDer { index: usize, detail: String },
}

/// Go's words for DER that is not a certificate.
const MALFORMED: &str = "x509: malformed certificate";

impl CaMaterialError {
    /// The field, relative to the backend's `conf`, that Kuma reports this at.
    pub fn field(&self) -> String {
        match self {
            Self::CertDer { index, .. } => format!("cert[{index}]"),
            Self::KeyPair { .. } => "cert".into(),
        }
    }

    pub fn detail(&self) -> Option<&str> {
        match self {
            Self::KeyPair { detail, .. } => detail.as_deref(),
            Self::CertDer { detail, .. } => Some(detail),
        }
    }

    fn key_pair(reason: impl Into<String>) -> Self {
        Self::KeyPair {
            reason: reason.into(),
            detail: None,
        }
    }

    fn pem(e: PemError, input: pem_util::PemInput) -> Self {
        Self::KeyPair {
            reason: e.go_reason(input),
            detail: e.says_more().then(|| e.to_string()),
        }
    }
}

/// Why a leaf could not be signed. Never carries key material.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LeafError {
    #[error("the CA certificate expired at {0}")]
    CaExpired(DateTime<Utc>),
    #[error("the CA certificate is not valid before {0}")]
    CaNotYetValid(DateTime<Utc>),
    #[error("{0:?} cannot be a URI SAN: only ASCII is allowed")]
    BadUri(String),
    #[error("the leaf lifetime {0:?} is out of range")]
    Validity(Duration),
    #[error("the CA certificate cannot be used as an issuer: {0}")]
    Issuer(String),
    #[error(
        "the CA certificate's subject cannot be copied as the leaf's issuer ({0}); reissue the CA with one attribute per RDN and no attribute type repeated"
    )]
    IssuerName(String),
    #[error("could not generate the leaf key: {0}")]
    KeyGen(String),
    #[error("could not sign the leaf: {0}")]
    Sign(String),
    #[error("BUG: the signing task stopped: {0}")]
    Task(String),
}

/// A CA bundle (the signing certificate first, then its parents) with the signing certificate's key.
pub struct SigningCa {
    certs: Vec<Vec<u8>>,
    key: KeyPair,
}

impl std::fmt::Debug for SigningCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningCa")
            .field("certs", &self.certs.len())
            .field("key", &"<redacted>")
            .finish()
    }
}

impl SigningCa {
    /// Parses PEM input the way Go's `tls.X509KeyPair` judges it, in its order, so failures read
    /// as in Kuma: a `CERTIFICATE` block, a private key block, the first certificate, the key
    /// (PKCS#1, PKCS#8 or SEC1) belonging to it, then every other certificate.
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Self, CaMaterialError> {
        use pem_util::PemInput;
        let certs = pem_util::parse_certificates(cert_pem)
            .map_err(|e| CaMaterialError::pem(e, PemInput::Certificate))?;
        let key_der = pem_util::parse_private_key(key_pem)
            .map_err(|e| CaMaterialError::pem(e, PemInput::Key))?;
        if let Err(e) = X509Certificate::from_der(&certs[0]) {
            return Err(CaMaterialError::KeyPair {
                reason: MALFORMED.into(),
                detail: Some(e.to_string()),
            });
        }
        let key = KeyPair::try_from(&key_der)
            .map_err(|_| CaMaterialError::key_pair("tls: failed to parse private key"))?;
        let ca = Self { certs, key };
        // Compare the raw public keys: the SPKI algorithm parameters may be encoded differently.
        let matches = ca
            .with_signer(|c| c.public_key().subject_public_key.data.as_ref() == ca.key.der_bytes())
            .unwrap_or(false);
        if !matches {
            return Err(CaMaterialError::key_pair(
                "tls: private key does not match public key",
            ));
        }
        for (index, der) in ca.certs.iter().enumerate().skip(1) {
            X509Certificate::from_der(der).map_err(|e| CaMaterialError::CertDer {
                index,
                detail: e.to_string(),
            })?;
        }
        Ok(ca)
    }

    #[cfg(test)]
    pub(crate) fn from_parts(cert_der: Vec<u8>, key: KeyPair) -> Self {
        Self {
            certs: vec![cert_der],
            key,
        }
    }

    /// The DER of every certificate, signing certificate first.
    pub fn certs_der(&self) -> &[Vec<u8>] {
        &self.certs
    }

    /// Every certificate as its own PEM, signing certificate first.
    pub fn certs_pem(&self) -> Vec<String> {
        self.certs
            .iter()
            .map(|d| pem_util::encode(pem_util::CERTIFICATE, d))
            .collect()
    }

    fn with_signer<T>(&self, f: impl FnOnce(&X509Certificate<'_>) -> T) -> Option<T> {
        let der = self.certs.first()?;
        let (_, cert) = X509Certificate::from_der(der).ok()?;
        Some(f(&cert))
    }
}

/// What to put in a leaf besides the fixed Kuma profile.
struct LeafSpec {
    uris: Vec<String>,
    validity: Duration,
    key: LeafKey,
}

#[derive(Clone, Copy)]
enum LeafKey {
    /// RSA-2048 written as PKCS#1, like Kuma's dataplane keys.
    RsaPkcs1,
    /// RSA-2048 written as PKCS#8, which the Workload API hands out as DER.
    RsaPkcs8,
    /// P-256 (PKCS#8): cheap to make, for validation dry runs only.
    EcP256,
}

/// Signs a dataplane leaf: URI SANs from `identity::uri_sans` in Kuma's order, empty subject, a fresh
/// RSA-2048 key (PKCS#1 PEM). `chain_pem` is the rest of the CA bundle.
pub async fn sign_dataplane_cert(
    ca: Arc<SigningCa>,
    mesh: &str,
    tags: &TagSet,
    validity: Duration,
) -> Result<IssuedCert, LeafError> {
    let spec = LeafSpec {
        uris: identity::uri_sans(mesh, tags),
        validity,
        key: LeafKey::RsaPkcs1,
    };
    sign_off_thread(ca, spec).await
}

/// Signs an X.509-SVID with exactly one URI SAN, `spiffe://<mesh>/<service>`, as SPIFFE clients require;
/// otherwise the same profile as a dataplane leaf. The key is PKCS#8 PEM (`PRIVATE KEY`).
pub async fn sign_svid(
    ca: Arc<SigningCa>,
    mesh: &str,
    service: &str,
    validity: Duration,
) -> Result<IssuedCert, LeafError> {
    let spec = LeafSpec {
        uris: vec![identity::spiffe_id(mesh, service)],
        validity,
        key: LeafKey::RsaPkcs8,
    };
    sign_off_thread(ca, spec).await
}

/// Signs a throwaway P-256 leaf to prove the CA can issue: the key signs and the subject can be copied.
pub(crate) fn dry_run(ca: &SigningCa, mesh: &str) -> Result<(), LeafError> {
    let spec = LeafSpec {
        uris: vec![identity::spiffe_id(mesh, "meshplane-validation")],
        validity: Duration::from_secs(60),
        key: LeafKey::EcP256,
    };
    sign_blocking(ca, &spec, Utc::now()).map(|_| ())
}

/// RSA key generation takes tens of milliseconds of CPU, so it runs on the blocking pool.
async fn sign_off_thread(ca: Arc<SigningCa>, spec: LeafSpec) -> Result<IssuedCert, LeafError> {
    tokio::task::spawn_blocking(move || sign_blocking(&ca, &spec, Utc::now()))
        .await
        .map_err(|e| LeafError::Task(e.to_string()))?
}

fn sign_blocking(
    ca: &SigningCa,
    spec: &LeafSpec,
    now: DateTime<Utc>,
) -> Result<IssuedCert, LeafError> {
    let signer_der = ca
        .certs
        .first()
        .ok_or_else(|| LeafError::Sign("the CA bundle is empty".into()))?;
    let (_, signer) =
        X509Certificate::from_der(signer_der).map_err(|e| LeafError::Sign(e.to_string()))?;

    let ca_not_before = asn1_to_chrono(signer.validity().not_before.timestamp());
    let ca_not_after = asn1_to_chrono(signer.validity().not_after.timestamp());
    if now >= ca_not_after {
        return Err(LeafError::CaExpired(ca_not_after));
    }
    if now < ca_not_before {
        return Err(LeafError::CaNotYetValid(ca_not_before));
    }
    check_copyable_subject(&signer)?;

    let not_before = now - chrono::Duration::from_std(BACKDATE).unwrap_or_default();
    let wanted_after = chrono::Duration::from_std(spec.validity)
        .ok()
        .and_then(|d| now.checked_add_signed(d))
        .ok_or(LeafError::Validity(spec.validity))?;
    // A leaf cannot outlive its issuer usefully: verifiers reject it once the CA expires.
    let not_after = wanted_after.min(ca_not_after);

    let mut params = CertificateParams::default();
    // Kuma leaves carry identity in SANs only; rcgen then marks the SAN extension critical (RFC 5280 §4.2.1.6).
    params.distinguished_name = DistinguishedName::new();
    params.subject_alt_names = spec
        .uris
        .iter()
        .map(|u| {
            Ia5String::try_from(u.clone())
                .map(SanType::URI)
                .map_err(|_| LeafError::BadUri(u.clone()))
        })
        .collect::<Result<_, _>>()?;
    params.serial_number = Some(random_serial());
    params.not_before = to_offset(not_before).ok_or(LeafError::Validity(spec.validity))?;
    params.not_after = to_offset(not_after).ok_or(LeafError::Validity(spec.validity))?;
    // The explicit CA:FALSE extension: py-spiffe rejects leaves without BasicConstraints.
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
        KeyUsagePurpose::KeyAgreement,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;

    let leaf_key = match spec.key {
        LeafKey::RsaPkcs1 | LeafKey::RsaPkcs8 => {
            KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, RsaKeySize::_2048)
        }
        LeafKey::EcP256 => KeyPair::generate(),
    }
    .map_err(|e| LeafError::KeyGen(e.to_string()))?;

    let issuer = Issuer::from_ca_cert_der(&CertificateDer::from(signer_der.as_slice()), &ca.key)
        .map_err(|e| LeafError::Issuer(e.to_string()))?;
    let cert = params
        .signed_by(&leaf_key, &issuer)
        .map_err(|e| LeafError::Sign(e.to_string()))?;

    let (_, parsed) =
        X509Certificate::from_der(cert.der()).map_err(|e| LeafError::Sign(e.to_string()))?;
    // rcgen rebuilds the issuer name from the parsed subject; verifiers match it byte for byte.
    if parsed.issuer().as_raw() != signer.subject().as_raw() {
        return Err(LeafError::IssuerName(
            "the re-encoded name differs from the original".into(),
        ));
    }

    let key_pem = match spec.key {
        LeafKey::RsaPkcs1 => {
            let pkcs1 = pem_util::pkcs8_rsa_to_pkcs1(leaf_key.serialized_der())
                .map_err(|e| LeafError::KeyGen(e.to_string()))?;
            pem_util::encode(pem_util::RSA_PRIVATE_KEY, &pkcs1)
        }
        LeafKey::RsaPkcs8 | LeafKey::EcP256 => {
            pem_util::encode(pem_util::PRIVATE_KEY, leaf_key.serialized_der())
        }
    };
    Ok(IssuedCert {
        cert_pem: pem_util::encode(pem_util::CERTIFICATE, cert.der()),
        key_pem,
        chain_pem: ca.certs_pem().into_iter().skip(1).collect(),
        not_before: asn1_to_chrono(parsed.validity().not_before.timestamp()),
        not_after: asn1_to_chrono(parsed.validity().not_after.timestamp()),
        serial_hex: serial_hex(parsed.raw_serial()),
    })
}

/// rcgen keeps one value per attribute type and rejects multi-valued RDNs (and panics on an empty one),
/// so such subjects are refused up front with a reason.
fn check_copyable_subject(cert: &X509Certificate<'_>) -> Result<(), LeafError> {
    let mut seen = Vec::new();
    for rdn in cert.subject().iter() {
        let mut attrs = rdn.iter();
        let (Some(attr), None) = (attrs.next(), attrs.next()) else {
            return Err(LeafError::IssuerName(
                "an RDN does not hold exactly one attribute".into(),
            ));
        };
        let oid = attr.attr_type().to_id_string();
        if seen.contains(&oid) {
            return Err(LeafError::IssuerName(format!(
                "attribute {oid} appears more than once"
            )));
        }
        seen.push(oid);
    }
    Ok(())
}

/// A random serial in [1, 2^128−1] (RFC 5280 allows up to 20 octets; rcgen encodes it as a positive INTEGER).
pub(crate) fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    if bytes.iter().all(|b| *b == 0) {
        bytes[15] = 1;
    }
    SerialNumber::from(bytes.to_vec())
}

/// Lower-case hex without leading zero octets (the INTEGER's sign padding is dropped).
pub fn serial_hex(raw: &[u8]) -> String {
    let start = raw.iter().position(|b| *b != 0).unwrap_or(raw.len());
    let trimmed = &raw[start..];
    if trimmed.is_empty() {
        "00".into()
    } else {
        hex::encode(trimmed)
    }
}

/// Whole seconds, as X.509 stores them; `None` past year 9999.
pub(crate) fn to_offset(t: DateTime<Utc>) -> Option<time::OffsetDateTime> {
    time::OffsetDateTime::from_unix_timestamp(t.timestamp()).ok()
}

pub(crate) fn asn1_to_chrono(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(secs, 0).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a panic is how a test reports failure")]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, DnType};

    fn ca(subject: &[(DnType, &str)], not_after_days: i64) -> SigningCa {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::default();
        p.distinguished_name = DistinguishedName::new();
        for (t, v) in subject {
            p.distinguished_name.push(t.clone(), *v);
        }
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        p.not_before = to_offset(Utc::now() - chrono::Duration::days(2)).unwrap();
        p.not_after = to_offset(Utc::now() + chrono::Duration::days(not_after_days)).unwrap();
        let cert = p.self_signed(&key).unwrap();
        SigningCa::from_parts(cert.der().to_vec(), key)
    }

    #[test]
    fn serials_are_positive_and_at_most_128_bits() {
        for _ in 0..64 {
            let s = random_serial().to_bytes();
            assert_eq!(s.len(), 16);
            assert!(s.iter().any(|b| *b != 0));
        }
        assert_eq!(serial_hex(&[0, 0x80, 0x01]), "8001");
        assert_eq!(serial_hex(&[0]), "00");
    }

    #[test]
    fn leaf_is_capped_at_the_ca_expiry() {
        let ca = ca(&[(DnType::CommonName, "default")], 1);
        let spec = LeafSpec {
            uris: vec!["spiffe://default/web".into()],
            validity: Duration::from_secs(30 * 24 * 3600),
            key: LeafKey::EcP256,
        };
        let now = Utc::now();
        let leaf = sign_blocking(&ca, &spec, now).unwrap();
        let ca_after = ca
            .with_signer(|c| c.validity().not_after.timestamp())
            .unwrap();
        assert_eq!(leaf.not_after.timestamp(), ca_after);
        assert_eq!(leaf.not_before.timestamp(), now.timestamp() - 10);
    }

    #[test]
    fn expired_or_future_ca_refuses_to_sign() {
        let ca = ca(&[(DnType::CommonName, "default")], 1);
        let spec = LeafSpec {
            uris: vec!["spiffe://default/web".into()],
            validity: Duration::from_secs(60),
            key: LeafKey::EcP256,
        };
        let later = Utc::now() + chrono::Duration::days(3);
        assert!(matches!(
            sign_blocking(&ca, &spec, later),
            Err(LeafError::CaExpired(_))
        ));
        let earlier = Utc::now() - chrono::Duration::days(3);
        assert!(matches!(
            sign_blocking(&ca, &spec, earlier),
            Err(LeafError::CaNotYetValid(_))
        ));
    }

    #[test]
    fn dry_run_signs_with_a_plain_subject() {
        // A subject rcgen cannot copy (a repeated OU) needs hand-made DER; the integration test makes
        // one with the openssl CLI.
        let ok = ca(
            &[
                (DnType::OrganizationName, "Kuma"),
                (DnType::CommonName, "default"),
            ],
            10,
        );
        assert!(dry_run(&ok, "default").is_ok());
    }

    #[test]
    fn non_ascii_uri_is_refused() {
        let ca = ca(&[(DnType::CommonName, "default")], 10);
        let spec = LeafSpec {
            uris: vec!["spiffe://default/wéb".into()],
            validity: Duration::from_secs(60),
            key: LeafKey::EcP256,
        };
        assert!(matches!(
            sign_blocking(&ca, &spec, Utc::now()),
            Err(LeafError::BadUri(_))
        ));
    }
}
