//! Start-up checks of an operator's TLS server certificate and key (`--kds-tls-cert-file`,
//! `--dp-server-tls-cert-file`, `--api-tls-cert-file`): what every rustls client (zones, agents,
//! meshctl) would refuse on each connection, in a retry loop far from the cause, is refused once at
//! start, saying what is wrong and giving an openssl command that makes a correct certificate.

use std::{fmt, net::IpAddr, path::Path};

/// Which listener a certificate is for: the flags to name and the words of the fix.
#[derive(Clone, Copy, Debug)]
pub struct CertUse {
    pub cert_flag: &'static str,
    pub key_flag: &'static str,
    /// The flag listing the names clients dial, which the certificate must cover.
    pub san_flag: Option<&'static str>,
    /// Who connects, in a sentence: "zones".
    pub clients: &'static str,
    /// Where those clients are given the CA: "--kds-ca-file".
    pub clients_ca: &'static str,
    /// The files and common name of the example command.
    pub file_stem: &'static str,
    pub common_name: &'static str,
    /// What happens without the flag, as a sentence.
    pub without: &'static str,
}

/// The REST API's HTTPS listener.
pub const API: CertUse = CertUse {
    cert_flag: "--api-tls-cert-file",
    key_flag: "--api-tls-key-file",
    san_flag: None,
    clients: "API clients (meshctl, browsers)",
    clients_ca: "meshctl --ca-cert",
    file_stem: "api",
    common_name: "meshplane-api",
    without: "Without --api-tls-cert-file the API is served over plain HTTP only.",
};

/// One thing wrong with a certificate or key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// No PEM certificate, or one that does not parse.
    CertUnreadable(String),
    /// basicConstraints CA:TRUE.
    Ca,
    NoSubjectAltName,
    NotCovered {
        missing: Vec<String>,
        present: Vec<String>,
    },
    /// An extendedKeyUsage without serverAuth.
    NotServerAuth,
    NotYetValid {
        not_before: i64,
    },
    Expired {
        not_after: i64,
    },
    KeyUnreadable(String),
    /// The key's public key is not the certificate's.
    KeyMismatch,
}

/// The certificate or key cannot serve; `Display` says why, each problem on its own line, and how
/// to make a correct one. Never carries key material.
#[derive(Debug, thiserror::Error)]
pub struct BadServerCert {
    pub cert_use: &'static CertUse,
    pub cert_path: String,
    pub key_path: String,
    pub problems: Vec<Problem>,
    /// The names the example's subjectAltName lists.
    example_names: Vec<String>,
}

fn utc(ts: i64) -> String {
    chrono::DateTime::from_timestamp(ts, 0).map_or_else(
        || ts.to_string(),
        |t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
    )
}

fn san_entry(name: &str) -> String {
    match name.parse::<IpAddr>() {
        Ok(_) => format!("IP:{name}"),
        Err(_) => format!("DNS:{name}"),
    }
}

impl Problem {
    fn describe(&self, u: &CertUse) -> String {
        match self {
            Problem::CertUnreadable(why) => format!("{}: {why}", u.cert_flag),
            Problem::Ca => format!(
                "{}: it is a CA certificate (basicConstraints CA:TRUE, which `openssl req -x509` \
                 sets unless told otherwise); TLS clients refuse a CA certificate as a server's \
                 (rustls: CaUsedAsEndEntity), so {} could not connect",
                u.cert_flag, u.clients
            ),
            Problem::NoSubjectAltName => format!(
                "{}: it has no subjectAltName; TLS clients match the name they dial only against \
                 subjectAltName, never the common name",
                u.cert_flag
            ),
            Problem::NotCovered { missing, present } => format!(
                "{}: its subjectAltName ({}) does not cover {} from {}",
                u.cert_flag,
                if present.is_empty() {
                    "empty".to_string()
                } else {
                    present.join(", ")
                },
                missing.join(", "),
                u.san_flag.unwrap_or("the configured names"),
            ),
            Problem::NotServerAuth => format!(
                "{}: its extendedKeyUsage does not include serverAuth, so TLS clients refuse it for \
                 a server",
                u.cert_flag
            ),
            Problem::NotYetValid { not_before } => format!(
                "{}: it is not valid yet (notBefore {}); check this host's clock",
                u.cert_flag,
                utc(*not_before)
            ),
            Problem::Expired { not_after } => format!(
                "{}: it expired at {} (notAfter)",
                u.cert_flag,
                utc(*not_after)
            ),
            Problem::KeyUnreadable(why) => format!("{}: {why}", u.key_flag),
            Problem::KeyMismatch => format!(
                "{}: the key does not belong to the certificate of {} (their public keys differ)",
                u.key_flag, u.cert_flag
            ),
        }
    }
}

impl fmt::Display for BadServerCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let u = self.cert_use;
        writeln!(
            f,
            "{} {} with {} {} cannot serve TLS to {}:",
            u.cert_flag, self.cert_path, u.key_flag, self.key_path, u.clients
        )?;
        for p in &self.problems {
            writeln!(f, "  - {}", p.describe(u))?;
        }
        let sans: Vec<String> = if self.example_names.is_empty() {
            vec!["DNS:NAME".into()]
        } else {
            self.example_names.iter().map(|n| san_entry(n)).collect()
        };
        let stem = u.file_stem;
        write!(
            f,
            "Make a server certificate signed by your CA (ca.pem, ca.key) with OpenSSL 3:\n  \
             openssl req -x509 -CA ca.pem -CAkey ca.key -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
             -nodes -days 365 -subj /CN={cn} -addext basicConstraints=critical,CA:FALSE \
             -addext keyUsage=critical,digitalSignature -addext extendedKeyUsage=serverAuth \
             -addext subjectAltName={sans} -keyout {stem}.key -out {stem}.crt\n\
             {names}then pass {stem}.crt as {cert} and {stem}.key as {key}, and give ca.pem to {clients} \
             ({ca}). {without}",
            cn = u.common_name,
            sans = sans.join(","),
            names = if self.example_names.is_empty() {
                format!("with NAME each name {} dial, ", u.clients)
            } else {
                String::new()
            },
            cert = u.cert_flag,
            key = u.key_flag,
            clients = u.clients,
            ca = u.clients_ca,
            without = u.without,
        )
    }
}

/// The first block of `text` whose tag ends with `tag`.
fn first_block(text: &str, tag: &str) -> Option<pem::Pem> {
    pem::parse_many(text)
        .ok()?
        .into_iter()
        .find(|b| b.tag().ends_with(tag))
}

/// Whether a subjectAltName entry covers `name` the way rustls matches it: DNS names without
/// regard to case, a wildcard only as a whole leftmost label standing for exactly one label, IP
/// addresses exactly.
fn covers(present: &[SanName], name: &str) -> bool {
    if let Ok(ip) = name.parse::<IpAddr>() {
        return present
            .iter()
            .any(|p| matches!(p, SanName::Ip(a) if *a == ip));
    }
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    present.iter().any(|p| match p {
        SanName::Dns(d) => {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            match d.strip_prefix("*.") {
                Some(parent) => name
                    .split_once('.')
                    .is_some_and(|(label, rest)| !label.is_empty() && rest == parent),
                None => d == name,
            }
        }
        SanName::Ip(_) => false,
    })
}

#[derive(Clone, Debug)]
enum SanName {
    Dns(String),
    Ip(IpAddr),
}

impl fmt::Display for SanName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SanName::Dns(d) => write!(f, "DNS:{d}"),
            SanName::Ip(ip) => write!(f, "IP:{ip}"),
        }
    }
}

fn ip_from_bytes(b: &[u8]) -> Option<IpAddr> {
    match b.len() {
        4 => <[u8; 4]>::try_from(b).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(b).ok().map(IpAddr::from),
        _ => None,
    }
}

/// What is wrong with the leaf (the first certificate of `cert_pem`), and the public key it holds.
fn leaf_problems(cert_pem: &str, names: &[String], now: i64) -> (Vec<Problem>, Option<Vec<u8>>) {
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
    let Some(block) = first_block(cert_pem, "CERTIFICATE") else {
        return (
            vec![Problem::CertUnreadable(
                "no PEM certificate (-----BEGIN CERTIFICATE-----) in the file; a DER file converts \
                 with `openssl x509 -inform der -in FILE -out FILE.pem`"
                    .into(),
            )],
            None,
        );
    };
    let cert = match X509Certificate::from_der(block.contents()) {
        Ok((_, c)) => c,
        Err(e) => {
            return (
                vec![Problem::CertUnreadable(format!(
                    "the first certificate does not parse: {e}"
                ))],
                None,
            );
        }
    };
    let mut out = Vec::new();
    if cert
        .basic_constraints()
        .ok()
        .flatten()
        .is_some_and(|bc| bc.value.ca)
    {
        out.push(Problem::Ca);
    }
    let present: Vec<SanName> = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|g| match g {
                    GeneralName::DNSName(d) => Some(SanName::Dns(d.to_string())),
                    GeneralName::IPAddress(b) => ip_from_bytes(b).map(SanName::Ip),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    if present.is_empty() {
        out.push(Problem::NoSubjectAltName);
    } else {
        let missing: Vec<String> = names
            .iter()
            .filter(|n| !n.is_empty() && !covers(&present, n))
            .cloned()
            .collect();
        if !missing.is_empty() {
            out.push(Problem::NotCovered {
                missing,
                present: present.iter().map(ToString::to_string).collect(),
            });
        }
    }
    if cert
        .extended_key_usage()
        .ok()
        .flatten()
        .is_some_and(|eku| !eku.value.server_auth)
    {
        out.push(Problem::NotServerAuth);
    }
    let validity = cert.validity();
    let (not_before, not_after) = (
        validity.not_before.timestamp(),
        validity.not_after.timestamp(),
    );
    if now < not_before {
        out.push(Problem::NotYetValid { not_before });
    }
    if now > not_after {
        out.push(Problem::Expired { not_after });
    }
    (
        out,
        Some(cert.public_key().subject_public_key.data.to_vec()),
    )
}

fn key_problem(key_pem: &str, cert_public_key: Option<&[u8]>) -> Option<Problem> {
    if first_block(key_pem, "ENCRYPTED PRIVATE KEY").is_some() {
        return Some(Problem::KeyUnreadable(
            "the key is encrypted; give it unencrypted (`openssl pkey -in FILE -out FILE.plain`, \
             then keep that file readable by this service only)"
                .into(),
        ));
    }
    let Some(block) = first_block(key_pem, "PRIVATE KEY") else {
        return Some(Problem::KeyUnreadable(
            "no PEM private key (-----BEGIN PRIVATE KEY-----, EC PRIVATE KEY or RSA PRIVATE KEY) \
             in the file"
                .into(),
        ));
    };
    // rcgen's error says which parse failed, never the key's bytes.
    let kp = match rcgen::KeyPair::try_from(block.contents()) {
        Ok(kp) => kp,
        Err(e) => {
            return Some(Problem::KeyUnreadable(format!(
                "the {} block is not a usable ECDSA, Ed25519 or RSA key: {e}",
                block.tag()
            )));
        }
    };
    match cert_public_key {
        Some(pk) if pk != kp.public_key_raw() => Some(Problem::KeyMismatch),
        _ => None,
    }
}

/// Every problem of `cert_pem` and `key_pem` as a server certificate that clients reach by
/// `names` (`names` empty: any name the certificate has), at Unix time `now`.
pub fn problems(cert_pem: &str, key_pem: &str, names: &[String], now: i64) -> Vec<Problem> {
    let (mut out, public_key) = leaf_problems(cert_pem, names, now);
    out.extend(key_problem(key_pem, public_key.as_deref()));
    out
}

/// Reads nothing: checks the given PEM texts (read from `cert_path` and `key_path`) and refuses
/// them with every problem found.
pub fn check(
    cert_use: &'static CertUse,
    (cert_path, cert_pem): (&Path, &str),
    (key_path, key_pem): (&Path, &str),
    names: &[String],
) -> Result<(), BadServerCert> {
    let now = chrono::Utc::now().timestamp();
    let problems = problems(cert_pem, key_pem, names, now);
    if problems.is_empty() {
        return Ok(());
    }
    Err(BadServerCert {
        cert_use,
        cert_path: cert_path.display().to_string(),
        key_path: key_path.display().to_string(),
        problems,
        example_names: names.iter().filter(|n| !n.is_empty()).cloned().collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, KeyPair, SanType,
    };

    const NOW: i64 = 1_800_000_000;

    fn params(sans: &[&str]) -> CertificateParams {
        let mut p = CertificateParams::default();
        p.subject_alt_names = sans
            .iter()
            .map(|s| match s.parse::<IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName((*s).try_into().expect("dns")),
            })
            .collect();
        p.is_ca = IsCa::ExplicitNoCa;
        p.not_before = time::OffsetDateTime::from_unix_timestamp(NOW - 3600).expect("t");
        p.not_after = time::OffsetDateTime::from_unix_timestamp(NOW + 3600).expect("t");
        p
    }

    fn make(p: CertificateParams) -> (String, String) {
        let kp = KeyPair::generate().expect("key");
        let cert = p.self_signed(&kp).expect("cert");
        (cert.pem(), kp.serialize_pem())
    }

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_leaf_covering_the_names_passes() {
        let mut p = params(&["global.example.com", "*.kds.example.com", "10.0.0.1"]);
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let (c, k) = make(p);
        let want = names(&["GLOBAL.example.com.", "eu.kds.example.com", "10.0.0.1"]);
        assert_eq!(problems(&c, &k, &want, NOW), vec![]);
        assert_eq!(problems(&c, &k, &[], NOW), vec![], "no names asked for");
    }

    #[test]
    fn a_ca_certificate_is_refused() {
        let mut p = params(&["localhost"]);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let (c, k) = make(p);
        assert_eq!(
            problems(&c, &k, &names(&["localhost"]), NOW),
            vec![Problem::Ca]
        );
    }

    #[test]
    fn names_must_be_covered_as_rustls_matches_them() {
        let (c, k) = make(params(&["*.example.com", "127.0.0.1"]));
        let got = problems(
            &c,
            &k,
            &names(&["a.b.example.com", "example.com", "x.example.com", "::1"]),
            NOW,
        );
        assert_eq!(
            got,
            vec![Problem::NotCovered {
                missing: names(&["a.b.example.com", "example.com", "::1"]),
                present: names(&["DNS:*.example.com", "IP:127.0.0.1"]),
            }]
        );
        let (c, k) = make(params(&[]));
        assert_eq!(problems(&c, &k, &[], NOW), vec![Problem::NoSubjectAltName]);
    }

    #[test]
    fn validity_and_purpose_are_checked() {
        let (c, k) = make(params(&["localhost"]));
        assert_eq!(
            problems(&c, &k, &[], NOW + 7200),
            vec![Problem::Expired {
                not_after: NOW + 3600
            }]
        );
        assert_eq!(
            problems(&c, &k, &[], NOW - 7200),
            vec![Problem::NotYetValid {
                not_before: NOW - 3600
            }]
        );
        let mut p = params(&["localhost"]);
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let (c, k) = make(p);
        assert_eq!(problems(&c, &k, &[], NOW), vec![Problem::NotServerAuth]);
    }

    #[test]
    fn the_key_must_be_the_certificates() {
        let (c, _) = make(params(&["localhost"]));
        let (_, other) = make(params(&["localhost"]));
        assert_eq!(problems(&c, &other, &[], NOW), vec![Problem::KeyMismatch]);
        // RSA keys compare as well as ECDSA ones.
        let rsa = KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).expect("rsa");
        let rsa_cert = params(&["localhost"]).self_signed(&rsa).expect("cert");
        assert_eq!(
            problems(&rsa_cert.pem(), &rsa.serialize_pem(), &[], NOW),
            vec![]
        );
        assert_eq!(
            problems(&rsa_cert.pem(), &other, &[], NOW),
            vec![Problem::KeyMismatch]
        );
        assert!(matches!(
            problems(&c, &c, &[], NOW)[..],
            [Problem::KeyUnreadable(_)]
        ));
        assert!(matches!(
            problems("junk", &other, &[], NOW)[..],
            [Problem::CertUnreadable(_)]
        ));
    }

    #[test]
    fn the_message_names_flags_and_the_fix_and_never_the_key() {
        let mut p = params(&["localhost"]);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let (c, _) = make(p);
        let (_, other) = make(params(&["localhost"]));
        let e = check(
            &API,
            (Path::new("/etc/api.crt"), &c),
            (Path::new("/etc/api.key"), &other),
            &names(&["cp.example.com", "10.1.2.3"]),
        )
        .expect_err("refused");
        let text = e.to_string();
        assert!(
            text.starts_with(
                "--api-tls-cert-file /etc/api.crt with --api-tls-key-file /etc/api.key"
            ),
            "{text}"
        );
        assert!(
            text.contains("CA:TRUE") && text.contains("CaUsedAsEndEntity"),
            "{text}"
        );
        assert!(
            text.contains("does not cover cp.example.com, 10.1.2.3"),
            "{text}"
        );
        assert!(
            text.contains("--api-tls-key-file: the key does not belong"),
            "{text}"
        );
        assert!(
            text.contains("subjectAltName=DNS:cp.example.com,IP:10.1.2.3"),
            "{text}"
        );
        assert!(
            text.contains("basicConstraints=critical,CA:FALSE"),
            "{text}"
        );
        assert!(!text.contains("PRIVATE KEY"), "{text}");
        let key_body: String = other.lines().filter(|l| !l.starts_with("-----")).collect();
        assert!(!text.contains(&key_body[key_body.len() - 40..]), "{text}");
    }
}
