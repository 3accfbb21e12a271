//! Says in words why a TLS client refused its server's certificate. rustls reports the cause deep in
//! an error chain, and as a code (`Other(OtherError(CaUsedAsEndEntity))`); an operator reading a
//! zone's or an agent's retry loop needs what is wrong with the server's certificate and where to
//! fix it.

use std::error::Error as StdError;

use rustls::{CertificateError, Error as TlsError};

/// The server a client dials, and the flags that decide what it presents and what is trusted.
#[derive(Clone, Copy, Debug)]
pub struct Server<'a> {
    /// "global", "the zone's dataplane server".
    pub name: &'a str,
    /// The server's certificate flag: "--kds-tls-cert-file".
    pub cert_flag: &'a str,
    /// The server's names flag: "--kds-tls-san".
    pub san_flag: &'a str,
    /// The client's CA flag: "--kds-ca-file".
    pub ca_flag: &'a str,
    /// The client's address flag: "--global-address".
    pub address_flag: &'a str,
}

/// Every error below `e`: its `source()` chain, plus what each `io::Error` wraps. An `io::Error`'s
/// `source()` skips the error it wraps, and a connector may wrap a TLS `io::Error` in another one,
/// so a rustls error is only found by looking inside.
pub fn sources<'a>(e: &'a (dyn StdError + 'static)) -> Vec<&'a (dyn StdError + 'static)> {
    let mut out = Vec::new();
    collect(e, &mut out);
    out
}

fn collect<'a>(e: &'a (dyn StdError + 'static), out: &mut Vec<&'a (dyn StdError + 'static)>) {
    if out.len() > 32 {
        return;
    }
    out.push(e);
    if let Some(inner) = e
        .downcast_ref::<std::io::Error>()
        .and_then(|io| io.get_ref())
    {
        let inner: &(dyn StdError + 'static) = inner;
        collect(inner, out);
    }
    if let Some(s) = e.source() {
        collect(s, out);
    }
}

/// The rustls error somewhere in `e`'s chain.
pub fn find<'a>(e: &'a (dyn StdError + 'static)) -> Option<&'a TlsError> {
    sources(e)
        .into_iter()
        .find_map(|c| c.downcast_ref::<TlsError>())
}

fn utc(secs: u64) -> String {
    i64::try_from(secs)
        .ok()
        .and_then(|s| chrono::DateTime::from_timestamp(s, 0))
        .map_or_else(
            || secs.to_string(),
            |t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        )
}

/// webpki's `DnsName("a")` and `IpAddress(10.0.0.1)` as openssl writes them (`DNS:a`, `IP:10.0.0.1`).
fn openssl_style(presented: &str) -> String {
    if let Some(d) = presented
        .strip_prefix("DnsName(\"")
        .and_then(|r| r.strip_suffix("\")"))
    {
        return format!("DNS:{d}");
    }
    if let Some(ip) = presented
        .strip_prefix("IpAddress(")
        .and_then(|r| r.strip_suffix(')'))
    {
        return format!("IP:{ip}");
    }
    presented.to_string()
}

/// Why the certificate was refused, in words, when `e` is a certificate refusal the words cover.
pub fn explain(e: &(dyn StdError + 'static), s: &Server<'_>) -> Option<String> {
    let TlsError::InvalidCertificate(c) = find(e)? else {
        return None;
    };
    let n = s.name;
    Some(match c {
        CertificateError::Other(other) => match other.0.downcast_ref::<webpki::Error>()? {
            webpki::Error::CaUsedAsEndEntity => format!(
                "{n}'s certificate is a CA certificate (basicConstraints CA:TRUE), which TLS \
                 refuses as a server's: {n} must serve a leaf certificate (CA:FALSE) signed by a CA \
                 in {ca} (fix {cert}, or leave it out so that {n} generates one)",
                ca = s.ca_flag,
                cert = s.cert_flag
            ),
            webpki::Error::EndEntityUsedAsCa => format!(
                "a certificate that signs {n}'s certificate is not a CA certificate (its \
                 basicConstraints lack CA:TRUE); fix the chain in {}",
                s.cert_flag
            ),
            _ => return None,
        },
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            let (expected, presented) = match c {
                CertificateError::NotValidForNameContext {
                    expected,
                    presented,
                } => (
                    expected.to_str().into_owned(),
                    presented
                        .iter()
                        .map(|p| openssl_style(p))
                        .collect::<Vec<_>>()
                        .join(", "),
                ),
                _ => ("the host dialled".into(), "other names".into()),
            };
            format!(
                "{n}'s certificate does not name {expected} (the host of {addr}); it names \
                 {presented}: dial one of those, or add {expected} to {n}'s certificate ({san}, or \
                 the subjectAltName of {cert})",
                addr = s.address_flag,
                san = s.san_flag,
                cert = s.cert_flag
            )
        }
        CertificateError::Expired => {
            format!("{n}'s certificate has expired; renew {}", s.cert_flag)
        }
        CertificateError::ExpiredContext { not_after, .. } => format!(
            "{n}'s certificate expired at {}; renew {}",
            utc(not_after.as_secs()),
            s.cert_flag
        ),
        CertificateError::NotValidYet => {
            format!("{n}'s certificate is not valid yet; check the clocks of both hosts")
        }
        CertificateError::NotValidYetContext { not_before, .. } => format!(
            "{n}'s certificate is not valid before {}; check the clocks of both hosts",
            utc(not_before.as_secs())
        ),
        CertificateError::UnknownIssuer | CertificateError::BadSignature => format!(
            "{n}'s certificate is not signed by a CA in {}: give this side the CA that signed \
             {n}'s certificate",
            s.ca_flag
        ),
        CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
            format!(
                "{n}'s certificate is not for TLS servers (its extendedKeyUsage lacks serverAuth); \
                 fix {}",
                s.cert_flag
            )
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    const SERVER: Server<'static> = Server {
        name: "global",
        cert_flag: "--kds-tls-cert-file",
        san_flag: "--kds-tls-san",
        ca_flag: "--kds-ca-file",
        address_flag: "--global-address",
    };

    /// A rustls error wrapped as a connector wraps it: inside an io::Error inside another error.
    #[derive(Debug)]
    struct Outer(std::io::Error);
    impl std::fmt::Display for Outer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "transport error")
        }
    }
    impl StdError for Outer {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            Some(&self.0)
        }
    }

    fn wrapped(c: CertificateError) -> Outer {
        Outer(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            TlsError::InvalidCertificate(c),
        ))
    }

    #[test]
    fn a_ca_certificate_used_as_a_leaf_is_named_in_words() {
        let e = wrapped(CertificateError::Other(rustls::OtherError(Arc::new(
            webpki::Error::CaUsedAsEndEntity,
        ))));
        let words = explain(&e, &SERVER).expect("explained");
        assert!(
            words.contains("is a CA certificate (basicConstraints CA:TRUE)"),
            "{words}"
        );
        assert!(words.contains("--kds-tls-cert-file"), "{words}");
    }

    #[test]
    fn names_expiry_and_issuer_are_named() {
        let e = wrapped(CertificateError::NotValidForNameContext {
            expected: rustls::pki_types::ServerName::try_from("kds.example.com")
                .expect("name")
                .to_owned(),
            presented: vec![
                "DnsName(\"localhost\")".into(),
                "IpAddress(127.0.0.1)".into(),
            ],
        });
        let words = explain(&e, &SERVER).expect("explained");
        assert!(words.contains("does not name kds.example.com"), "{words}");
        assert!(
            words.contains("it names DNS:localhost, IP:127.0.0.1"),
            "{words}"
        );
        let e = wrapped(CertificateError::ExpiredContext {
            time: rustls::pki_types::UnixTime::since_unix_epoch(std::time::Duration::from_secs(
                1_700_000_000,
            )),
            not_after: rustls::pki_types::UnixTime::since_unix_epoch(
                std::time::Duration::from_secs(1_600_000_000),
            ),
        });
        let words = explain(&e, &SERVER).expect("explained");
        assert!(words.contains("expired at 2020-09-13T12:26:40Z"), "{words}");
        let words = explain(&wrapped(CertificateError::UnknownIssuer), &SERVER).expect("issuer");
        assert!(
            words.contains("not signed by a CA in --kds-ca-file"),
            "{words}"
        );
    }

    #[test]
    fn other_errors_are_left_to_their_own_text() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert_eq!(explain(&io, &SERVER), None);
        let e = wrapped(CertificateError::Revoked);
        assert_eq!(explain(&e, &SERVER), None);
    }
}
