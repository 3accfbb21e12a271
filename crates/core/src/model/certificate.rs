//! What a dataplane's certificate says, read from the certificate itself: subject, SANs, issuer,
//! serial, validity and the issuing chain. A zone reports it in the DataplaneInsight so that global
//! (which never holds the certificate) and the console can show it without touching a private key.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use x509_parser::{
    certificate::X509Certificate, extensions::GeneralName, prelude::FromDer, x509::X509Name,
};

/// One certificate, as parsed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CertificateSummary {
    /// `CN=…, O=…` in the order the certificate encodes it (may be empty).
    pub subject: String,
    pub issuer: String,
    /// Lowercase hex, no separators.
    pub serial: String,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
    /// Every subject alternative name, prefixed with its type (`URI:`, `DNS:`, `IP:`, `email:`).
    #[serde(default)]
    pub sans: Vec<String>,
    /// The certificates the backend returned with the leaf, leaf's issuer first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chain: Vec<ChainEntry>,
}

/// One certificate of the issuing chain.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChainEntry {
    pub subject: String,
    pub issuer: String,
    pub not_after: DateTime<Utc>,
}

/// Why a certificate could not be summarized; names the PEM block, never its bytes.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SummaryError {
    #[error("{what}: not PEM: {reason}")]
    Pem { what: String, reason: String },
    #[error("{what}: no CERTIFICATE block")]
    NoCertificate { what: String },
    #[error("{what}: not an X.509 certificate: {reason}")]
    Der { what: String, reason: String },
}

impl CertificateSummary {
    /// Reads the leaf `cert_pem` (its first certificate) and every certificate of `chain_pem`.
    pub fn from_pem(cert_pem: &str, chain_pem: &[String]) -> Result<Self, SummaryError> {
        let leaf_der = first_der(cert_pem, "the certificate")?;
        let leaf = parse(&leaf_der, "the certificate")?;
        let mut chain = Vec::new();
        for (i, pem) in chain_pem.iter().enumerate() {
            let what = format!("chain certificate {}", i + 1);
            for der in all_der(pem, &what)? {
                let c = parse(&der, &what)?;
                chain.push(ChainEntry {
                    subject: name(c.subject()),
                    issuer: name(c.issuer()),
                    not_after: time(c.validity().not_after.timestamp()),
                });
            }
        }
        Ok(Self {
            chain,
            ..Self::of(&leaf)
        })
    }

    fn of(c: &X509Certificate<'_>) -> Self {
        Self {
            subject: name(c.subject()),
            issuer: name(c.issuer()),
            serial: hex::encode(c.raw_serial()),
            not_before: time(c.validity().not_before.timestamp()),
            not_after: time(c.validity().not_after.timestamp()),
            sans: sans(c),
            chain: Vec::new(),
        }
    }

    /// The `spiffe://` URI SANs: the identities the certificate proves.
    pub fn spiffe_ids(&self) -> Vec<&str> {
        self.sans
            .iter()
            .filter_map(|s| s.strip_prefix("URI:"))
            .filter(|u| u.starts_with("spiffe://"))
            .collect()
    }
}

/// Certificate summaries of PEM roots (a trust bundle), in order; the same reading as a leaf's.
pub fn summarize_roots(pem: &str) -> Result<Vec<CertificateSummary>, SummaryError> {
    all_der(pem, "the trust bundle")?
        .iter()
        .map(|der| Ok(CertificateSummary::of(&parse(der, "the trust bundle")?)))
        .collect()
}

fn all_der(pem_text: &str, what: &str) -> Result<Vec<Vec<u8>>, SummaryError> {
    let blocks = pem::parse_many(pem_text.as_bytes()).map_err(|e| SummaryError::Pem {
        what: what.into(),
        reason: e.to_string(),
    })?;
    let ders: Vec<Vec<u8>> = blocks
        .into_iter()
        .filter(|b| b.tag() == "CERTIFICATE")
        .map(pem::Pem::into_contents)
        .collect();
    if ders.is_empty() {
        return Err(SummaryError::NoCertificate { what: what.into() });
    }
    Ok(ders)
}

fn first_der(pem_text: &str, what: &str) -> Result<Vec<u8>, SummaryError> {
    all_der(pem_text, what)?
        .into_iter()
        .next()
        .ok_or_else(|| SummaryError::NoCertificate { what: what.into() })
}

fn parse<'a>(der: &'a [u8], what: &str) -> Result<X509Certificate<'a>, SummaryError> {
    X509Certificate::from_der(der)
        .map(|(_, c)| c)
        .map_err(|e| SummaryError::Der {
            what: what.into(),
            reason: e.to_string(),
        })
}

fn name(n: &X509Name<'_>) -> String {
    n.to_string()
}

fn time(secs: i64) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp(secs, 0).unwrap_or_default()
}

fn sans(c: &X509Certificate<'_>) -> Vec<String> {
    let Ok(Some(ext)) = c.subject_alternative_name() else {
        return Vec::new();
    };
    ext.value
        .general_names
        .iter()
        .map(|g| match g {
            GeneralName::URI(u) => format!("URI:{u}"),
            GeneralName::DNSName(d) => format!("DNS:{d}"),
            GeneralName::RFC822Name(e) => format!("email:{e}"),
            GeneralName::IPAddress(ip) => match ip.len() {
                4 => format!(
                    "IP:{}",
                    std::net::Ipv4Addr::from([ip[0], ip[1], ip[2], ip[3]])
                ),
                16 => {
                    let mut b = [0u8; 16];
                    b.copy_from_slice(ip);
                    format!("IP:{}", std::net::Ipv6Addr::from(b))
                }
                _ => format!("IP:{}", hex::encode(ip)),
            },
            other => format!("{other}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};

    fn ca() -> (String, KeyPair, CertificateParams) {
        let key = KeyPair::generate().expect("key");
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
        p.distinguished_name.push(DnType::CommonName, "Test Root");
        p.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let cert = p.self_signed(&key).expect("root");
        (cert.pem(), key, p)
    }

    #[test]
    fn a_leaf_and_its_chain_read_as_openssl_would() {
        let (root_pem, root_key, root_params) = ca();
        let issuer = Issuer::new(root_params, root_key);
        let key = KeyPair::generate().expect("key");
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
        p.distinguished_name.push(DnType::CommonName, "web.mesh");
        p.subject_alt_names = vec![
            SanType::URI("spiffe://default/web".try_into().expect("uri")),
            SanType::URI("kuma://version/v1".try_into().expect("uri")),
            SanType::DnsName("web.mesh".try_into().expect("dns")),
            SanType::IpAddress([127, 0, 0, 1].into()),
        ];
        p.serial_number = Some(vec![0x0a, 0xbc].into());
        let leaf = p.signed_by(&key, &issuer).expect("leaf");
        let s = CertificateSummary::from_pem(&leaf.pem(), &[root_pem]).expect("summary");
        assert_eq!(s.subject, "CN=web.mesh");
        assert_eq!(s.issuer, "CN=Test Root");
        assert_eq!(s.serial, "0abc");
        assert_eq!(
            s.sans,
            vec![
                "URI:spiffe://default/web",
                "URI:kuma://version/v1",
                "DNS:web.mesh",
                "IP:127.0.0.1"
            ]
        );
        assert_eq!(s.spiffe_ids(), vec!["spiffe://default/web"]);
        assert!(s.not_before < s.not_after);
        assert_eq!(s.chain.len(), 1);
        assert_eq!(s.chain[0].subject, "CN=Test Root");
        assert_eq!(s.chain[0].issuer, "CN=Test Root");
        // It survives the insight's JSON.
        let back: CertificateSummary =
            serde_json::from_value(serde_json::to_value(&s).expect("json")).expect("back");
        assert_eq!(back, s);
    }

    #[test]
    fn bad_input_names_the_block_not_the_bytes() {
        let e = CertificateSummary::from_pem("hello", &[]).expect_err("not pem");
        assert_eq!(
            e,
            SummaryError::NoCertificate {
                what: "the certificate".into()
            }
        );
        let junk = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let e = CertificateSummary::from_pem(junk, &[]).expect_err("not der");
        assert!(
            matches!(&e, SummaryError::Der { what, .. } if what == "the certificate"),
            "{e}"
        );
        let (root, _, _) = ca();
        let e = CertificateSummary::from_pem(&root, &["x".into()]).expect_err("bad chain");
        assert!(e.to_string().starts_with("chain certificate 1:"), "{e}");
    }

    #[test]
    fn roots_of_a_bundle() {
        let (a, _, _) = ca();
        let (b, _, _) = ca();
        let roots = summarize_roots(&format!("{a}{b}")).expect("bundle");
        assert_eq!(roots.len(), 2);
        assert!(roots.iter().all(|r| r.subject == "CN=Test Root"));
        assert_ne!(roots[0].serial, roots[1].serial);
    }
}
