//! REST API HTTPS flags shared by the global and zone binaries (Kuma's port 5682).

use std::{net::SocketAddr, path::PathBuf};

#[derive(Clone, Debug, clap::Args, serde::Serialize)]
pub struct ApiTlsArgs {
    /// Certificate chain (PEM) for the HTTPS API. With its key, the API is also served over HTTPS
    /// on `--api-https-addr`; the plain listener on `--api-addr` stays for local use.
    #[arg(
        long,
        env = "MESHPLANE_API_TLS_CERT_FILE",
        value_name = "FILE",
        requires = "api_tls_key_file"
    )]
    pub api_tls_cert_file: Option<PathBuf>,
    /// Private key (PEM) of `--api-tls-cert-file`.
    #[arg(
        long,
        env = "MESHPLANE_API_TLS_KEY_FILE",
        value_name = "FILE",
        requires = "api_tls_cert_file"
    )]
    pub api_tls_key_file: Option<PathBuf>,
    /// Address of the HTTPS API (Kuma's port 5682); used only with a certificate.
    #[arg(
        long,
        env = "MESHPLANE_API_HTTPS_ADDR",
        default_value = "0.0.0.0:5682",
        value_name = "HOST:PORT"
    )]
    pub api_https_addr: SocketAddr,
}
