//! A leaf key pair made in this process and its CSR, for the backends whose CA signs what we send
//! (Vault's CSR mode, AWS Private CA): the key never leaves the zone; and the subject's common
//! name rendered from a backend's `commonName` template.

use std::collections::BTreeMap;

use meshplane_core::{
    model::{
        TagSet,
        mesh::{CsrConf, KeyType},
    },
    template::CnTemplate,
};
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, RsaKeySize, SanType};

use crate::pem_util;

/// A key pair made here and its CSR. `Debug` leaves the key out.
pub(crate) struct LocalKey {
    pub(crate) csr_pem: String,
    pub(crate) key_pem: String,
}

impl std::fmt::Debug for LocalKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LocalKey(<redacted>)")
    }
}

/// Generates the key and a CSR carrying `uri_sans` and, when given, `common_name` (otherwise the
/// subject is empty, as Kuma's leaves). The key is PKCS#8 when `pkcs8` (the Workload API's
/// encoding), else PKCS#1 for RSA as Kuma writes it. RSA generation is CPU-heavy: call it off
/// the runtime. The error is a reason without key material.
pub(crate) fn generate(
    conf: &CsrConf,
    uri_sans: &[String],
    common_name: Option<&str>,
    pkcs8: bool,
) -> Result<LocalKey, String> {
    let bits = conf.key_bits();
    let key = match conf.key_type() {
        KeyType::Rsa => {
            let size = match bits {
                2048 => RsaKeySize::_2048,
                3072 => RsaKeySize::_3072,
                4096 => RsaKeySize::_4096,
                other => return Err(format!("RSA keys of {other} bits are not supported")),
            };
            KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, size)
        }
        KeyType::Ec => match bits {
            256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
            384 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384),
            other => return Err(format!("EC keys of {other} bits are not supported")),
        },
    }
    .map_err(|e| format!("key generation failed: {e}"))?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    if let Some(cn) = common_name {
        params.distinguished_name.push(DnType::CommonName, cn);
    }
    for uri in uri_sans {
        let ia5 = uri
            .as_str()
            .try_into()
            .map_err(|e| format!("URI SAN {uri:?} cannot go in a CSR: {e}"))?;
        params.subject_alt_names.push(SanType::URI(ia5));
    }
    let csr = params
        .serialize_request(&key)
        .map_err(|e| format!("CSR creation failed: {e}"))?;
    let csr_pem = csr.pem().map_err(|e| format!("CSR creation failed: {e}"))?;
    let key_pem = match conf.key_type() {
        KeyType::Rsa | KeyType::Ec if pkcs8 => key.serialize_pem(),
        KeyType::Rsa => pem_util::pkcs8_rsa_to_pkcs1(key.serialized_der())
            .map(|der| pem_util::encode(pem_util::RSA_PRIVATE_KEY, &der))
            .map_err(|e| format!("key encoding failed: {e}"))?,
        KeyType::Ec => key.serialize_pem(),
    };
    Ok(LocalKey { csr_pem, key_pem })
}

/// The rendered common name, when the conf has a template.
pub(crate) fn common_name(t: Option<&CnTemplate>, tags: &TagSet) -> Result<Option<String>, String> {
    let Some(t) = t else {
        return Ok(None);
    };
    let values: BTreeMap<String, Vec<&str>> = tags
        .iter()
        .map(|(k, v)| (k.clone(), v.iter().map(String::as_str).collect()))
        .collect();
    t.render(&values).map(Some).map_err(|e| e.to_string())
}
