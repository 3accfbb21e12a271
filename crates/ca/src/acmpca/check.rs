//! What the backend checks in AWS's answers: the signing algorithm the CA's key needs, that a leaf
//! carries the identity and the mTLS profile we asked for, and that it chains to the trusted roots.

use aws_sdk_acmpca::types::SigningAlgorithm;
use chrono::{DateTime, Utc};
use meshplane_core::ca::IssuedCert;
use x509_parser::{
    certificate::X509Certificate, extensions::GeneralName, prelude::FromDer, public_key::PublicKey,
};

use crate::{leaf, pem_util};

/// How deep a chain from a leaf to a trusted root may be.
const MAX_CHAIN: usize = 8;

/// IssueCertificate's SigningAlgorithm must match the CA's key; it is read from the CA certificate
/// so the IAM policy needs no DescribeCertificateAuthority.
pub(crate) fn signing_algorithm(ca_cert_pem: &str) -> Result<SigningAlgorithm, String> {
    let der = first_der(ca_cert_pem)?;
    let (_, cert) = X509Certificate::from_der(&der)
        .map_err(|e| format!("the CA certificate does not parse: {e}"))?;
    match cert.public_key().parsed() {
        Ok(PublicKey::RSA(_)) => Ok(SigningAlgorithm::Sha256Withrsa),
        // The uncompressed point's length gives the curve: 1 + 2 × the field size.
        Ok(PublicKey::EC(p)) => match p.data().len() {
            65 => Ok(SigningAlgorithm::Sha256Withecdsa),
            97 => Ok(SigningAlgorithm::Sha384Withecdsa),
            133 => Ok(SigningAlgorithm::Sha512Withecdsa),
            n => Err(format!("the CA's EC key has an unknown size ({n} bytes)")),
        },
        Ok(_) => Err(
            "the CA's key is neither RSA nor ECDSA (P-256/P-384/P-521), which Meshplane's leaves need"
                .into(),
        ),
        Err(e) => Err(format!("the CA certificate's public key does not parse: {e}")),
    }
}

/// The leaf as the identity manager stores it; `chain_pem` is what GetCertificate returned.
pub(crate) fn issued(
    cert_pem: &str,
    chain_pem: Option<&str>,
    key_pem: String,
) -> Result<IssuedCert, String> {
    let der = first_der(cert_pem)?;
    let (_, x509) = X509Certificate::from_der(&der)
        .map_err(|e| format!("the certificate does not parse: {e}"))?;
    let time = |t: i64| {
        DateTime::<Utc>::from_timestamp(t, 0).ok_or_else(|| "validity out of range".to_string())
    };
    Ok(IssuedCert {
        cert_pem: pem_util::encode(pem_util::CERTIFICATE, &der),
        key_pem,
        chain_pem: chain_pem.map(pem_util::split).unwrap_or_default(),
        not_before: time(x509.validity().not_before.timestamp())?,
        not_after: time(x509.validity().not_after.timestamp())?,
        serial_hex: leaf::serial_hex(x509.raw_serial()),
    })
}

/// The leaf's URI SANs are exactly `uri_sans`: the template passed the CSR's SANs through.
pub(crate) fn uri_sans_match(cert_pem: &str, uri_sans: &[String]) -> Result<(), String> {
    let der = first_der(cert_pem)?;
    let (_, x509) = X509Certificate::from_der(&der)
        .map_err(|e| format!("the certificate does not parse: {e}"))?;
    let mut got: Vec<String> = x509
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|s| {
            s.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::URI(u) => Some(u.to_string()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    let mut want = uri_sans.to_vec();
    got.sort();
    want.sort();
    if got == want {
        Ok(())
    } else {
        Err(format!(
            "the certificate's URI SANs are {got:?}, not the {want:?} the CSR asked for (the CA or \
             its template does not pass the CSR's SANs through)"
        ))
    }
}

/// KeyUsage with digitalSignature (the X.509-SVID profile) and ExtendedKeyUsage with serverAuth
/// and clientAuth (both ends of mTLS).
pub(crate) fn mtls_profile(cert_pem: &str) -> Result<(), String> {
    let der = first_der(cert_pem)?;
    let (_, x509) = X509Certificate::from_der(&der)
        .map_err(|e| format!("the certificate does not parse: {e}"))?;
    let ku = x509.key_usage().ok().flatten();
    if !ku.is_some_and(|k| k.value.digital_signature()) {
        return Err(
            "the certificate has no KeyUsage digitalSignature, which SPIFFE clients require".into(),
        );
    }
    let eku = x509.extended_key_usage().ok().flatten();
    if !eku.is_some_and(|e| e.value.server_auth && e.value.client_auth) {
        return Err(
            "the certificate's ExtendedKeyUsage lacks serverAuth or clientAuth, which mTLS needs"
                .into(),
        );
    }
    Ok(())
}

/// Walks from the leaf through `chain` to one of `roots`, checking every signature.
pub(crate) fn chains_to(cert_pem: &str, chain: &[String], roots: &[Vec<u8>]) -> Result<(), String> {
    let leaf = first_der(cert_pem)?;
    let mut pool: Vec<Vec<u8>> = chain
        .iter()
        .flat_map(|c| pem_util::parse_certificates(c.as_bytes()).unwrap_or_default())
        .collect();
    pool.extend(roots.iter().cloned());
    let mut current = leaf;
    for _ in 0..MAX_CHAIN {
        let (_, cert) = X509Certificate::from_der(&current)
            .map_err(|e| format!("a certificate of the chain does not parse: {e}"))?;
        let issuer = pool.iter().find(|candidate| {
            X509Certificate::from_der(candidate).is_ok_and(|(_, c)| {
                c.subject() == cert.issuer() && cert.verify_signature(Some(c.public_key())).is_ok()
            })
        });
        let Some(issuer) = issuer.cloned() else {
            return Err(format!(
                "no trusted certificate signed {:?} (issuer {:?})",
                cert.subject().to_string(),
                cert.issuer().to_string()
            ));
        };
        if roots.contains(&issuer) {
            return Ok(());
        }
        current = issuer;
    }
    Err(format!("no trusted root within {MAX_CHAIN} certificates"))
}

fn first_der(pem: &str) -> Result<Vec<u8>, String> {
    pem_util::parse_certificates(pem.as_bytes())
        .map_err(|e| format!("not a PEM certificate: {e}"))?
        .into_iter()
        .next()
        .ok_or_else(|| "no certificate in the PEM".to_string())
}
