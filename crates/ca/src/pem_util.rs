//! PEM in and out: certificate bundles, private keys in PKCS#1, PKCS#8 or SEC1, and the PKCS#1 form Kuma writes.
//! Errors here describe the shape of the input, never its bytes.

use pem::{EncodeConfig, LineEnding, Pem};
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer};
use x509_parser::asn1_rs::{Any, FromDer, Tag};

pub const CERTIFICATE: &str = "CERTIFICATE";
pub const RSA_PRIVATE_KEY: &str = "RSA PRIVATE KEY";
pub const PRIVATE_KEY: &str = "PRIVATE KEY";
pub const EC_PRIVATE_KEY: &str = "EC PRIVATE KEY";

/// Why PEM input could not be used. `Display` is Meshplane's own account; `go_reason` is what Go's
/// `tls.X509KeyPair` (and so Kuma) says of the same input.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PemError {
    #[error("{0}")]
    Malformed(String),
    /// No `CERTIFICATE` block; `skipped` are the types of the blocks found instead.
    #[error("no CERTIFICATE block found")]
    NoCertificate { skipped: Vec<String> },
    /// No private key block; `skipped` are the types of the blocks found instead.
    #[error("no private key block found")]
    NoKey { skipped: Vec<String> },
    #[error("encrypted private keys are not supported")]
    EncryptedKey,
    #[error("found a certificate rather than a key in the PEM for the private key")]
    CertificateAsKey,
    #[error("{0} blocks are not supported")]
    UnsupportedKey(String),
    #[error("the key is not a valid PKCS#8 RSA private key")]
    NotPkcs8Rsa,
}

/// Which half of a key pair a PEM input is, for Go's words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PemInput {
    Certificate,
    Key,
}

impl PemError {
    /// Go's `tls.X509KeyPair` error for the same input, which Kuma reports after `not a valid TLS
    /// key pair: `.
    pub fn go_reason(&self, input: PemInput) -> String {
        let what = match input {
            PemInput::Certificate => "certificate",
            PemInput::Key => "key",
        };
        let types = |skipped: &[String]| format!("[{}]", skipped.join(" "));
        match self {
            Self::Malformed(_) => format!("tls: failed to find any PEM data in {what} input"),
            Self::NoCertificate { skipped } | Self::NoKey { skipped } if skipped.is_empty() => {
                format!("tls: failed to find any PEM data in {what} input")
            }
            Self::NoCertificate { skipped }
                if skipped.len() == 1 && skipped[0].ends_with("PRIVATE KEY") =>
            {
                "tls: failed to find certificate PEM data in certificate input, but did find a private key; PEM inputs may have been switched".into()
            }
            Self::NoCertificate { skipped } => format!(
                "tls: failed to find \"CERTIFICATE\" PEM block in certificate input after skipping PEM blocks of the following types: {}",
                types(skipped)
            ),
            Self::CertificateAsKey => {
                "tls: found a certificate rather than a key in the PEM for the private key".into()
            }
            Self::NoKey { skipped } => format!(
                "tls: failed to find PEM block with type ending in \"PRIVATE KEY\" in key input after skipping PEM blocks of the following types: {}",
                types(skipped)
            ),
            Self::EncryptedKey | Self::UnsupportedKey(_) | Self::NotPkcs8Rsa => {
                "tls: failed to parse private key".into()
            }
        }
    }

    /// Whether Meshplane's account says more than Go's words (and so belongs in a `detail`).
    pub fn says_more(&self) -> bool {
        matches!(
            self,
            Self::Malformed(_) | Self::EncryptedKey | Self::UnsupportedKey(_) | Self::NotPkcs8Rsa
        )
    }
}

/// PEM with `\n` line endings, as Kuma and OpenSSL write it.
pub fn encode(tag: &str, der: &[u8]) -> String {
    pem::encode_config(
        &Pem::new(tag, der),
        EncodeConfig::new().set_line_ending(LineEnding::LF),
    )
}

/// The DER of every `CERTIFICATE` block, in order. Other blocks are skipped, as Go's `tls.X509KeyPair` does.
pub fn parse_certificates(input: &[u8]) -> Result<Vec<Vec<u8>>, PemError> {
    let blocks = pem::parse_many(input).map_err(|e| PemError::Malformed(e.to_string()))?;
    let mut certs = Vec::new();
    let mut skipped = Vec::new();
    for b in blocks {
        if b.tag() == CERTIFICATE {
            certs.push(b.into_contents());
        } else {
            skipped.push(b.tag().to_string());
        }
    }
    if certs.is_empty() {
        return Err(PemError::NoCertificate { skipped });
    }
    Ok(certs)
}

/// The first private key block, typed by its label: `RSA PRIVATE KEY` (PKCS#1), `PRIVATE KEY` (PKCS#8) or
/// `EC PRIVATE KEY` (SEC1). Blocks before it such as `EC PARAMETERS` are skipped.
pub fn parse_private_key(input: &[u8]) -> Result<PrivateKeyDer<'static>, PemError> {
    let blocks = pem::parse_many(input).map_err(|e| PemError::Malformed(e.to_string()))?;
    let mut skipped = Vec::new();
    for b in blocks {
        match b.tag() {
            RSA_PRIVATE_KEY => {
                return Ok(PrivateKeyDer::Pkcs1(PrivatePkcs1KeyDer::from(
                    b.into_contents(),
                )));
            }
            PRIVATE_KEY => {
                return Ok(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
                    b.into_contents(),
                )));
            }
            EC_PRIVATE_KEY => {
                return Ok(PrivateKeyDer::Sec1(PrivateSec1KeyDer::from(
                    b.into_contents(),
                )));
            }
            "ENCRYPTED PRIVATE KEY" => return Err(PemError::EncryptedKey),
            // Go takes the first block so named as the key, and then fails to parse it.
            t if t.ends_with(" PRIVATE KEY") => return Err(PemError::UnsupportedKey(t.into())),
            t => skipped.push(t.to_string()),
        }
    }
    if skipped == [CERTIFICATE] {
        Err(PemError::CertificateAsKey)
    } else {
        Err(PemError::NoKey { skipped })
    }
}

/// The PKCS#1 `RSAPrivateKey` inside a PKCS#8 `PrivateKeyInfo` (RFC 5208 §5), so the key can be written
/// as `RSA PRIVATE KEY` like Kuma does. Walks only the three leading fields; attributes are ignored.
pub fn pkcs8_rsa_to_pkcs1(pkcs8: &[u8]) -> Result<Vec<u8>, PemError> {
    let (_, info) = Any::from_der(pkcs8).map_err(|_| PemError::NotPkcs8Rsa)?;
    if info.tag() != Tag::Sequence {
        return Err(PemError::NotPkcs8Rsa);
    }
    let (rest, version) = Any::from_der(info.data).map_err(|_| PemError::NotPkcs8Rsa)?;
    let (rest, algorithm) = Any::from_der(rest).map_err(|_| PemError::NotPkcs8Rsa)?;
    let (_, key) = Any::from_der(rest).map_err(|_| PemError::NotPkcs8Rsa)?;
    let is_rsa = algorithm.tag() == Tag::Sequence
        && Any::from_der(algorithm.data)
            .ok()
            .and_then(|(_, oid)| oid.oid().ok().map(|o| o.to_id_string()))
            .is_some_and(|id| id == "1.2.840.113549.1.1.1");
    if version.tag() != Tag::Integer || !is_rsa || key.tag() != Tag::OctetString {
        return Err(PemError::NotPkcs8Rsa);
    }
    Ok(key.data.to_vec())
}

/// Every certificate of a PEM bundle as its own PEM string.
pub fn split(bundle: &str) -> Vec<String> {
    parse_certificates(bundle.as_bytes())
        .map(|ders| ders.iter().map(|d| encode(CERTIFICATE, d)).collect())
        .unwrap_or_default()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a panic is how a test reports failure")]
mod tests {
    use super::*;

    #[test]
    fn certificates_skip_other_blocks_and_keep_order() {
        let input = format!(
            "junk\n{}{}{}",
            encode("CERTIFICATE", b"one"),
            encode("PRIVATE KEY", b"k"),
            encode("CERTIFICATE", b"two")
        );
        assert_eq!(
            parse_certificates(input.as_bytes()).unwrap(),
            vec![b"one".to_vec(), b"two".to_vec()]
        );
        assert_eq!(
            parse_certificates(b"CERT"),
            Err(PemError::NoCertificate { skipped: vec![] })
        );
    }

    #[test]
    fn go_says_what_it_skipped() {
        use PemInput::{Certificate, Key};
        let cert = |input: String| parse_certificates(input.as_bytes()).unwrap_err();
        let key = |input: String| parse_private_key(input.as_bytes()).unwrap_err();
        assert_eq!(
            cert("CERT".into()).go_reason(Certificate),
            "tls: failed to find any PEM data in certificate input"
        );
        assert_eq!(
            cert(encode("PRIVATE KEY", b"k")).go_reason(Certificate),
            "tls: failed to find certificate PEM data in certificate input, but did find a private key; PEM inputs may have been switched"
        );
        assert_eq!(
            cert(format!("{}{}", encode("A", b"a"), encode("B", b"b"))).go_reason(Certificate),
            "tls: failed to find \"CERTIFICATE\" PEM block in certificate input after skipping PEM blocks of the following types: [A B]"
        );
        assert_eq!(
            key("KEY".into()).go_reason(Key),
            "tls: failed to find any PEM data in key input"
        );
        assert_eq!(
            key(encode("CERTIFICATE", b"c")).go_reason(Key),
            "tls: found a certificate rather than a key in the PEM for the private key"
        );
        assert_eq!(
            key(encode("EC PARAMETERS", b"p")).go_reason(Key),
            "tls: failed to find PEM block with type ending in \"PRIVATE KEY\" in key input after skipping PEM blocks of the following types: [EC PARAMETERS]"
        );
        let encrypted = key(encode("ENCRYPTED PRIVATE KEY", b"x"));
        assert_eq!(encrypted.go_reason(Key), "tls: failed to parse private key");
        assert!(encrypted.says_more());
        let malformed = key("-----BEGIN PRIVATE KEY-----\n!!!\n-----END PRIVATE KEY-----\n".into());
        assert_eq!(
            malformed.go_reason(Key),
            "tls: failed to find any PEM data in key input"
        );
        assert!(malformed.says_more());
    }

    #[test]
    fn key_labels_choose_the_format() {
        let k = |tag: &str| parse_private_key(encode(tag, b"x").as_bytes());
        assert!(matches!(k("RSA PRIVATE KEY"), Ok(PrivateKeyDer::Pkcs1(_))));
        assert!(matches!(k("PRIVATE KEY"), Ok(PrivateKeyDer::Pkcs8(_))));
        assert!(matches!(k("EC PRIVATE KEY"), Ok(PrivateKeyDer::Sec1(_))));
        assert_eq!(k("ENCRYPTED PRIVATE KEY"), Err(PemError::EncryptedKey));
        assert_eq!(k("CERTIFICATE"), Err(PemError::CertificateAsKey));
        assert_eq!(
            parse_private_key(b"KEY"),
            Err(PemError::NoKey { skipped: vec![] })
        );
        assert_eq!(
            k("OPENSSH PRIVATE KEY"),
            Err(PemError::UnsupportedKey("OPENSSH PRIVATE KEY".into()))
        );
        let with_params = format!(
            "{}{}",
            encode("EC PARAMETERS", b"p"),
            encode("EC PRIVATE KEY", b"x")
        );
        assert!(matches!(
            parse_private_key(with_params.as_bytes()),
            Ok(PrivateKeyDer::Sec1(_))
        ));
    }

    #[test]
    fn pkcs8_to_pkcs1_round_trips_through_aws_lc() {
        let kp =
            rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
                .unwrap();
        let pkcs1 = pkcs8_rsa_to_pkcs1(kp.serialized_der()).unwrap();
        let again =
            rcgen::KeyPair::try_from(&PrivateKeyDer::Pkcs1(PrivatePkcs1KeyDer::from(pkcs1)))
                .unwrap();
        assert_eq!(again.public_key_raw(), kp.public_key_raw());

        let ec = rcgen::KeyPair::generate().unwrap();
        assert_eq!(
            pkcs8_rsa_to_pkcs1(ec.serialized_der()),
            Err(PemError::NotPkcs8Rsa)
        );
        assert_eq!(pkcs8_rsa_to_pkcs1(b"garbage"), Err(PemError::NotPkcs8Rsa));
    }
}
