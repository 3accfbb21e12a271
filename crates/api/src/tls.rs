//! HTTPS for the REST API (Kuma's port 5682): a TLS listener that completes handshakes off the
//! accept path, so one slow or silent client never holds up everyone else's connections.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use tokio::{net::TcpListener, task::JoinSet};
use tokio_rustls::{TlsAcceptor, server::TlsStream};

/// A client gets this long to finish its handshake before the connection is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the API's certificate could not be loaded; names the flag the operator set.
#[derive(Debug, thiserror::Error)]
pub enum ApiTlsError {
    #[error("{flag}: {reason}")]
    Pem { flag: &'static str, reason: String },
    #[error("{flag} {path}: {reason}")]
    Read {
        flag: &'static str,
        path: String,
        reason: String,
    },
    #[error("--api-https-addr {addr}: cannot listen: {reason}")]
    Bind { addr: SocketAddr, reason: String },
    #[error(
        "--api-tls-cert-file / --api-tls-key-file: the certificate and key do not form a usable pair: {0}"
    )]
    Config(String),
    #[error(transparent)]
    Refused(#[from] meshplane_core::runtime::server_cert::BadServerCert),
}

/// The HTTPS configuration when the operator gave a certificate (`None`: HTTPS is off). Loaded
/// before anything else starts: what clients would refuse on every connection (a CA certificate,
/// expired, another key) stops the start, saying how to make a correct one.
pub fn load(
    args: &meshplane_core::runtime::api_args::ApiTlsArgs,
) -> Result<Option<Arc<rustls::ServerConfig>>, ApiTlsError> {
    let (Some(cert), Some(key)) = (&args.api_tls_cert_file, &args.api_tls_key_file) else {
        return Ok(None);
    };
    let read = |flag: &'static str, p: &std::path::Path| {
        std::fs::read_to_string(p).map_err(|e| ApiTlsError::Read {
            flag,
            path: p.display().to_string(),
            reason: e.to_string(),
        })
    };
    let (cert_pem, key_pem) = (
        read("--api-tls-cert-file", cert)?,
        read("--api-tls-key-file", key)?,
    );
    meshplane_core::runtime::server_cert::check(
        &meshplane_core::runtime::server_cert::API,
        (cert, &cert_pem),
        (key, &key_pem),
        &[],
    )?;
    server_config(&cert_pem, &key_pem).map(Some)
}

/// Binds the HTTPS listener for a configuration from [`load`].
pub async fn bind(
    args: &meshplane_core::runtime::api_args::ApiTlsArgs,
    config: Option<Arc<rustls::ServerConfig>>,
) -> Result<Option<(TcpListener, Arc<rustls::ServerConfig>)>, ApiTlsError> {
    let Some(config) = config else {
        return Ok(None);
    };
    let listener = TcpListener::bind(args.api_https_addr)
        .await
        .map_err(|e| ApiTlsError::Bind {
            addr: args.api_https_addr,
            reason: e.to_string(),
        })?;
    Ok(Some((listener, config)))
}

/// Builds the server configuration from a PEM chain and key, advertising HTTP/2 and HTTP/1.1.
pub fn server_config(
    cert_pem: &str,
    key_pem: &str,
) -> Result<Arc<rustls::ServerConfig>, ApiTlsError> {
    let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ApiTlsError::Pem {
            flag: "--api-tls-cert-file",
            reason: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(ApiTlsError::Pem {
            flag: "--api-tls-cert-file",
            reason: "no PEM certificate found".into(),
        });
    }
    // The key parser's error names the PEM section, never the key bytes.
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| ApiTlsError::Pem {
        flag: "--api-tls-key-file",
        reason: format!("no usable private key: {e}"),
    })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ApiTlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| ApiTlsError::Config(e.to_string()))?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// Accepts TCP connections and yields them once their TLS handshake is done.
pub struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    handshakes: JoinSet<Option<(TlsStream<tokio::net::TcpStream>, SocketAddr)>>,
}

impl TlsListener {
    pub fn new(tcp: TcpListener, config: Arc<rustls::ServerConfig>) -> Self {
        Self {
            tcp,
            acceptor: TlsAcceptor::from(config),
            handshakes: JoinSet::new(),
        }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    // Cancel safe: axum drops this future on shutdown; TcpListener::accept is cancel safe and
    // handshakes in flight stay in `self.handshakes`.
    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            tokio::select! {
                accepted = self.tcp.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let acceptor = self.acceptor.clone();
                        self.handshakes.spawn(async move {
                            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                                Ok(Ok(tls)) => Some((tls, peer)),
                                Ok(Err(e)) => {
                                    tracing::debug!(%peer, error = %e, "API TLS handshake failed");
                                    None
                                }
                                Err(_) => {
                                    tracing::debug!(%peer, "API TLS handshake timed out");
                                    None
                                }
                            }
                        });
                    }
                    // Out of file descriptors and the like: back off instead of spinning, as
                    // axum's own TcpListener does.
                    Err(e) => {
                        tracing::warn!(error = %e, "API HTTPS accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                Some(done) = self.handshakes.join_next(), if !self.handshakes.is_empty() => {
                    if let Ok(Some(conn)) = done {
                        return conn;
                    }
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (String, String) {
        let kp = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
            .unwrap()
            .self_signed(&kp)
            .unwrap();
        (cert.pem(), kp.serialize_pem())
    }

    #[test]
    fn loads_a_certificate_and_key() {
        let (c, k) = pair();
        let cfg = server_config(&c, &k).unwrap();
        assert_eq!(cfg.alpn_protocols[0], b"h2");
    }

    #[test]
    fn errors_name_the_flag_and_keep_the_key_out() {
        let (c, k) = pair();
        let e = server_config("not a pem", &k).unwrap_err().to_string();
        assert!(e.starts_with("--api-tls-cert-file"), "{e}");
        let e = server_config(&c, "junk").unwrap_err().to_string();
        assert!(e.starts_with("--api-tls-key-file"), "{e}");
        // A key that does not match the certificate.
        let (_, other) = pair();
        let e = server_config(&c, &other).unwrap_err().to_string();
        assert!(e.contains("do not form a usable pair"), "{e}");
        assert!(!e.contains("PRIVATE KEY"), "{e}");
    }
}
