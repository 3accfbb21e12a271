//! Command-line interface of `meshplane-dp`. Every flag also reads `MESHPLANE_<FLAG>`, and a YAML
//! file named by `--config` (keys are flag names) fills the flags that were not given.

use std::{net::SocketAddr, path::PathBuf};

use meshplane_core::runtime::config::CommonArgs;

#[derive(Debug, clap::Parser)]
#[command(name = "meshplane-dp", version, about = "Meshplane dataplane agent")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Register with the zone, keep the certificates in --cert-dir fresh, serve the Workload API.
    Run(RunArgs),
}

#[derive(Debug, clap::Args, serde::Serialize)]
pub struct RunArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// The zone's dataplane server, `https://HOST:5678`.
    #[arg(long, env = "MESHPLANE_CP_ADDRESS", value_name = "URL")]
    pub cp_address: String,
    /// PEM of the CA that signs the dataplane server's certificate (the zone logs where it wrote it).
    #[arg(long, env = "MESHPLANE_CP_CA_FILE", value_name = "FILE")]
    pub cp_ca_file: PathBuf,
    /// The Dataplane resource (Kuma universal YAML or JSON).
    #[arg(long, env = "MESHPLANE_DATAPLANE_FILE", value_name = "FILE")]
    pub dataplane_file: PathBuf,
    /// The dataplane token (`meshctl generate dataplane-token`); re-read on every reconnect.
    #[arg(long, env = "MESHPLANE_DATAPLANE_TOKEN_FILE", value_name = "FILE")]
    pub dataplane_token_file: PathBuf,
    /// Where cert.pem, key.pem (mode 0600) and bundle.pem are kept, swapped together on every rotation
    /// (they are symlinks into `..data`, which points at the current set).
    #[arg(long, env = "MESHPLANE_CERT_DIR", value_name = "DIR")]
    pub cert_dir: PathBuf,
    /// Serve the SPIFFE Workload API on this unix socket (absolute path).
    #[arg(long, env = "MESHPLANE_WORKLOAD_API_SOCKET", value_name = "PATH")]
    pub workload_api_socket: Option<PathBuf>,
    /// Serve Prometheus metrics on this address (`/metrics`).
    #[arg(long, env = "MESHPLANE_METRICS_ADDR", value_name = "HOST:PORT")]
    pub metrics_addr: Option<SocketAddr>,
}
