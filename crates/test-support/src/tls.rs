//! Throwaway TLS material for tests: a CA, server certificates for loopback listeners and client
//! certificates for TLS-certificate auth, all generated with rcgen (EC P-256) and handed out as PEM.

use std::net::IpAddr;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

/// A certificate and its private key, both PEM (the key is PKCS#8).
#[derive(Clone)]
pub struct CertKey {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for CertKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertKey")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// A self-signed CA that can sign server and client certificates.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl TestCa {
    /// A new root CA named `common_name`, valid for a day.
    pub fn new(common_name: &str) -> anyhow::Result<Self> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = dn(common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        validity(&mut params);
        let cert = params.self_signed(&key)?;
        Ok(Self {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    pub fn cert_pem(&self) -> &str {
        &self.pem
    }

    /// A serverAuth certificate for the given DNS names and IP addresses (CN = the first DNS name).
    pub fn server_cert(&self, dns: &[&str], ips: &[IpAddr]) -> anyhow::Result<CertKey> {
        let mut params = CertificateParams::default();
        params.distinguished_name = dn(dns.first().copied().unwrap_or("server"));
        for d in dns {
            params
                .subject_alt_names
                .push(SanType::DnsName((*d).try_into()?));
        }
        for ip in ips {
            params.subject_alt_names.push(SanType::IpAddress(*ip));
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        self.sign(params)
    }

    /// A clientAuth certificate with the given common name.
    pub fn client_cert(&self, common_name: &str) -> anyhow::Result<CertKey> {
        let mut params = CertificateParams::default();
        params.distinguished_name = dn(common_name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        self.sign(params)
    }

    fn sign(&self, mut params: CertificateParams) -> anyhow::Result<CertKey> {
        validity(&mut params);
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(CertKey {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

fn dn(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn
}

/// From an hour ago (clock skew between test processes) to a day ahead.
fn validity(params: &mut CertificateParams) {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(1);
}

/// Everything a TLS OpenBao listener with certificate auth needs: a server CA and a loopback server
/// certificate (DNS `localhost`, IP `127.0.0.1`), and a separate client CA with a client certificate
/// for CN `control-plane`.
pub struct ListenerTls {
    pub server_ca: TestCa,
    pub server: CertKey,
    pub client_ca: TestCa,
    pub client: CertKey,
}

impl ListenerTls {
    pub fn generate() -> anyhow::Result<Self> {
        let server_ca = TestCa::new("Meshplane test TLS CA")?;
        let server = server_ca.server_cert(&["localhost"], &[IpAddr::from([127, 0, 0, 1])])?;
        let client_ca = TestCa::new("Meshplane test client CA")?;
        let client = client_ca.client_cert("control-plane")?;
        Ok(Self {
            server_ca,
            server,
            client_ca,
            client,
        })
    }
}
