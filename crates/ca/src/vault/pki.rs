//! The PKI calls: `<pki>/issue/<role>` (Vault makes the key), `<pki>/sign/<role>` with a CSR whose
//! key is made here and never leaves the process (CSR mode), and the mount's CA chain.
//!
//! CSR mode needs the Vault policy to grant create/update on `<pki>/sign/<role>`; the Kong Mesh
//! page's step 3 grants only `issue`. Which identity Vault signs depends on the role:
//! `use_csr_common_name` and `use_csr_sans` are role fields (true by default, and OpenBao 2.7
//! ignores them on the sign request with an "unrecognized parameters" warning). So the CSR carries
//! the same identity as the request fields (CN only when the template gives one, the URI SANs),
//! and the leaf is the same whichever way the role is set.

use std::time::Duration;

use chrono::{DateTime, Utc};
use meshplane_core::{ca::IssuedCert, model::mesh::CsrConf};
use reqwest::Method;
use serde_json::{Value, json};

use super::{
    client::Endpoint,
    error::{Op, VaultError},
    token::Session,
};
pub(crate) use crate::csr::LocalKey;
use crate::{csr, leaf, pem_util};

/// What to ask Vault for.
pub(crate) struct LeafSpec<'a> {
    pub mount: &'a str,
    pub role: &'a str,
    pub uri_sans: &'a [String],
    pub common_name: Option<&'a str>,
    pub ttl: Duration,
    /// Ask for a PKCS#8 key (the SPIFFE Workload API's encoding) instead of Vault's default.
    pub pkcs8_key: bool,
}

/// Generates the key and a CSR for `spec`'s identity (see `crate::csr`). RSA generation is
/// CPU-heavy: call it off the runtime.
pub(crate) fn generate_key(
    conf: &CsrConf,
    uri_sans: &[String],
    common_name: Option<&str>,
    pkcs8: bool,
) -> Result<LocalKey, VaultError> {
    csr::generate(conf, uri_sans, common_name, pkcs8).map_err(|e| VaultError::setup(Some("csr"), e))
}

/// One issue (or sign, with `local`) call; the leaf and Vault's warnings.
pub(crate) async fn issue(
    session: &Session,
    spec: &LeafSpec<'_>,
    local: Option<&LocalKey>,
    timeout: Duration,
) -> Result<(IssuedCert, Vec<String>), VaultError> {
    let token = session.token(timeout).await?;
    let mut body = json!({
        "uri_sans": spec.uri_sans.join(","),
        "ttl": format!("{}s", spec.ttl.as_secs().max(1)),
        "exclude_cn_from_sans": true,
    });
    if let Some(cn) = spec.common_name {
        body["common_name"] = json!(cn);
    }
    if spec.pkcs8_key && local.is_none() {
        body["private_key_format"] = json!("pkcs8");
    }
    let verb = match local {
        None => "issue",
        Some(k) => {
            body["csr"] = json!(k.csr_pem);
            "sign"
        }
    };
    let path = format!("{}/{verb}/{}", spec.mount, spec.role);
    let ep = session.endpoint();
    let r = ep
        .call(
            Method::POST,
            &path,
            token.as_ref(),
            Some(&body),
            Op::Issue {
                mount: spec.mount,
                role: spec.role,
                common_name: spec.common_name,
            },
            timeout,
        )
        .await?;
    let cert = parse_issued(ep, &path, &r.body["data"], local)?;
    Ok((cert, r.warnings))
}

fn parse_issued(
    ep: &Endpoint,
    path: &str,
    data: &Value,
    local: Option<&LocalKey>,
) -> Result<IssuedCert, VaultError> {
    let malformed = |reason: String| VaultError::Malformed {
        addr: ep.addr().into(),
        path: path.into(),
        reason,
    };
    let certificate = data["certificate"]
        .as_str()
        .ok_or_else(|| malformed("no data.certificate".into()))?;
    // The leaf alone, even if a bundle format put the issuer after it.
    let leaf_der = pem_util::parse_certificates(certificate.as_bytes())
        .map_err(|e| malformed(format!("data.certificate: {e}")))?
        .into_iter()
        .next()
        .ok_or_else(|| malformed("data.certificate is empty".into()))?;
    let (_, x509) = x509_parser::parse_x509_certificate(&leaf_der)
        .map_err(|e| malformed(format!("data.certificate does not parse: {e}")))?;
    let time = |t: i64| {
        DateTime::<Utc>::from_timestamp(t, 0)
            .ok_or_else(|| malformed("certificate validity out of range".into()))
    };
    let not_before = time(x509.validity().not_before.timestamp())?;
    let not_after = time(x509.validity().not_after.timestamp())?;
    let serial_hex = leaf::serial_hex(x509.raw_serial());

    let mut chain_pem: Vec<String> = data["ca_chain"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .flat_map(pem_util::split)
                .collect()
        })
        .unwrap_or_default();
    if chain_pem.is_empty()
        && let Some(issuer) = data["issuing_ca"].as_str()
    {
        chain_pem = pem_util::split(issuer);
    }
    let key_pem = match local {
        Some(k) => k.key_pem.clone(),
        None => data["private_key"]
            .as_str()
            .filter(|k| !k.is_empty())
            .ok_or_else(|| malformed("no data.private_key".into()))?
            .to_string(),
    };
    Ok(IssuedCert {
        cert_pem: pem_util::encode(pem_util::CERTIFICATE, &leaf_der),
        key_pem,
        chain_pem,
        not_before,
        not_after,
        serial_hex,
    })
}

/// The mount's CA chain: `<pki>/ca_chain`, else `<pki>/ca/pem`. Both are unauthenticated reads,
/// so no token is sent (a dead token must not hide the trust bundle).
pub(crate) async fn ca_chain(
    ep: &Endpoint,
    mount: &str,
    timeout: Duration,
) -> Result<Vec<String>, VaultError> {
    let op = Op::CaChain { mount };
    let chain = ep
        .get_text(&format!("{mount}/ca_chain"), None, op, timeout)
        .await?;
    let mut certs = pem_util::split(&chain);
    if certs.is_empty() {
        let ca = ep
            .get_text(&format!("{mount}/ca/pem"), None, op, timeout)
            .await?;
        certs = pem_util::split(&ca);
    }
    if certs.is_empty() {
        return Err(VaultError::Malformed {
            addr: ep.addr().into(),
            path: format!("{mount}/ca_chain"),
            reason: "the mount has no CA certificate (was root/generate or set-signed run?)".into(),
        });
    }
    Ok(certs)
}
