//! The TLS side of the Vault connection, built by hand on rustls (aws-lc): which roots to trust
//! (`tls.caCert` alone, else the platform's), `skipVerify`, `serverName`, and the client identity
//! for TLS-certificate auth. Also builds the one pooled reqwest client per backend.
//!
//! `serverName` changes both the SNI and the name the certificate is checked against, as Go's
//! `tls.Config.ServerName` does for Kong Mesh. reqwest takes both from the URL host, so for a DNS
//! name the URL's host is replaced by `serverName` and a resolver sends that name to the configured
//! address's host. An IP `serverName` gets no SNI (RFC 6066) and is checked by a verifier pinned to it.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use rustls::{
    ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
    client::{
        WebPkiServerVerifier,
        danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    },
    crypto::CryptoProvider,
    pki_types::{CertificateDer, ServerName, UnixTime},
};
use url::Url;

use super::error::VaultError;
use crate::pem_util;

/// Connect timeout: a Vault that does not accept a TCP connection in this time is unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What the TLS client is built from. Byte fields are the loaded DataSources.
pub(crate) struct TlsSettings<'a> {
    pub ca_cert: Option<&'a [u8]>,
    pub skip_verify: bool,
    pub server_name: Option<&'a str>,
    /// PEM certificate chain and key for TLS-certificate auth.
    pub identity: Option<(&'a [u8], &'a [u8])>,
}

/// The reqwest client and the URL to dial for `address` under `settings`.
pub(crate) fn http_client(
    address: &str,
    settings: &TlsSettings<'_>,
) -> Result<(reqwest::Client, Url), VaultError> {
    let mut url = Url::parse(address)
        .map_err(|e| VaultError::setup(None, format!("address {address:?} is not a URL: {e}")))?;
    if !url.path().ends_with('/') {
        let p = format!("{}/", url.path());
        url.set_path(&p);
    }
    let real_host = url
        .host_str()
        .ok_or_else(|| VaultError::setup(None, format!("address {address:?} has no host")))?
        .to_string();
    let port = url.port_or_known_default().unwrap_or(443);
    let server_name = settings
        .server_name
        .map(str::trim)
        .filter(|s| !s.is_empty());
    let pinned_ip = server_name.and_then(|s| s.parse::<std::net::IpAddr>().ok());

    let mut builder = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .pool_idle_timeout(Duration::from_secs(90))
        // A redirect could carry the token to another host; Vault's standby redirects are 307s
        // to the active node, which a load balancer should hide anyway.
        .redirect(reqwest::redirect::Policy::none())
        .tls_backend_preconfigured(client_config(settings, pinned_ip)?);

    if let (Some(name), None) = (server_name, pinned_ip)
        && url.scheme() == "https"
    {
        url.set_host(Some(name)).map_err(|e| {
            VaultError::setup(
                Some("fromCp.tls.serverName"),
                format!("serverName {name:?} is not a valid host name: {e}"),
            )
        })?;
        url.set_port(Some(port))
            .map_err(|()| VaultError::setup(None, "cannot set the port of the address"))?;
        builder = builder.dns_resolver(Arc::new(FixedHost {
            host: real_host,
            port,
        }));
    }
    let client = builder
        .build()
        .map_err(|e| VaultError::setup(None, format!("cannot build the HTTP client: {e}")))?;
    Ok((client, url))
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn client_config(
    s: &TlsSettings<'_>,
    pinned_ip: Option<std::net::IpAddr>,
) -> Result<ClientConfig, VaultError> {
    let provider = provider();
    let verifier: Arc<dyn ServerCertVerifier> = if s.skip_verify {
        Arc::new(AcceptAnything(provider.clone()))
    } else if let Some(ca) = s.ca_cert {
        let mut roots = RootCertStore::empty();
        let certs = pem_util::parse_certificates(ca).map_err(|e| {
            VaultError::setup(
                Some("fromCp.tls.caCert"),
                format!("caCert is not a PEM certificate bundle: {e}"),
            )
        })?;
        for der in certs {
            roots.add(CertificateDer::from(der)).map_err(|e| {
                VaultError::setup(
                    Some("fromCp.tls.caCert"),
                    format!("caCert holds a certificate rustls cannot use: {e}"),
                )
            })?;
        }
        WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|e| {
                VaultError::setup(Some("fromCp.tls.caCert"), format!("caCert unusable: {e}"))
            })?
    } else {
        Arc::new(
            rustls_platform_verifier::Verifier::new(provider.clone()).map_err(|e| {
                VaultError::setup(
                    None,
                    format!("cannot load the platform's trusted roots: {e}"),
                )
            })?,
        )
    };
    let verifier: Arc<dyn ServerCertVerifier> = match pinned_ip {
        Some(ip) if !s.skip_verify => Arc::new(PinnedName {
            inner: verifier,
            name: ServerName::IpAddress(ip.into()),
        }),
        _ => verifier,
    };
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| VaultError::setup(None, format!("TLS setup failed: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    match s.identity {
        None => Ok(builder.with_no_client_auth()),
        Some((cert, key)) => {
            let chain: Vec<CertificateDer<'static>> = pem_util::parse_certificates(cert)
                .map_err(|e| {
                    VaultError::setup(
                        Some("fromCp.auth.tls.clientCert"),
                        format!("clientCert is not a PEM certificate: {e}"),
                    )
                })?
                .into_iter()
                .map(CertificateDer::from)
                .collect();
            let key = pem_util::parse_private_key(key).map_err(|e| {
                VaultError::setup(
                    Some("fromCp.auth.tls.clientKey"),
                    format!("clientKey is not a usable PEM private key: {e}"),
                )
            })?;
            builder.with_client_auth_cert(chain, key).map_err(|e| {
                VaultError::setup(
                    Some("fromCp.auth.tls.clientKey"),
                    format!("clientKey does not fit clientCert: {e}"),
                )
            })
        }
    }
}

/// Resolves every name to the configured address's host, so a URL rewritten to `serverName` still
/// dials the configured Vault.
struct FixedHost {
    host: String,
    port: u16,
}

impl Resolve for FixedHost {
    fn resolve(&self, _name: Name) -> Resolving {
        let host = self.host.trim_matches(['[', ']']).to_string();
        let port = self.port;
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = match host.parse::<std::net::IpAddr>() {
                Ok(ip) => vec![SocketAddr::new(ip, port)],
                Err(_) => tokio::net::lookup_host((host.as_str(), port))
                    .await?
                    .collect(),
            };
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// Checks the certificate against a fixed name instead of the URL host.
#[derive(Debug)]
struct PinnedName {
    inner: Arc<dyn ServerCertVerifier>,
    name: ServerName<'static>,
}

impl ServerCertVerifier for PinnedName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, &self.name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// `skipVerify: true`. DANGEROUS: any certificate for any name is accepted, so anyone on the path
/// can impersonate Vault and collect the token. Handshake signatures are still checked, so the
/// peer at least holds the key of the certificate it shows.
#[derive(Debug)]
struct AcceptAnything(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnything {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
