//! REST API HTTPS flags shared by the global and zone binaries (Kuma's port 5682), and the
//! optional metrics-only listener.

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

#[derive(Clone, Debug, clap::Args, serde::Serialize)]
pub struct MetricsArgs {
    /// Also serve `/metrics` (and nothing else) on this address, for a scraper that should not
    /// reach the REST API (Kuma serves metrics apart from the API too). `/metrics` stays on the API.
    #[arg(long, env = "MESHPLANE_METRICS_ADDR", value_name = "HOST:PORT")]
    pub metrics_addr: Option<SocketAddr>,
}
