//! Command-line interface of `meshplane-global`. Every flag also reads `MESHPLANE_<FLAG>` and the
//! `--config` YAML file.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use meshplane_core::runtime::{
    config::CommonArgs,
    critical::{parse_duration, ser_duration},
    store_args::{MigrateCommand, StoreArgs},
};

#[derive(Debug, clap::Parser)]
#[command(
    name = "meshplane-global",
    version,
    about = "Meshplane global control plane"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Run the global control plane.
    Run(RunArgs),
    /// Manage the PostgreSQL schema.
    #[command(subcommand)]
    Migrate(MigrateCommand),
}

#[derive(Debug, clap::Args, serde::Serialize)]
pub struct RunArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub store: StoreArgs,
    /// Address of the REST API (Kuma's port 5681).
    #[arg(
        long,
        env = "MESHPLANE_API_ADDR",
        default_value = "127.0.0.1:5681",
        value_name = "HOST:PORT"
    )]
    pub api_addr: SocketAddr,
    #[command(flatten)]
    pub api_tls: meshplane_core::runtime::api_args::ApiTlsArgs,
    #[command(flatten)]
    pub metrics: meshplane_core::runtime::api_args::MetricsArgs,
    #[command(flatten)]
    pub names: meshplane_core::runtime::names_args::NameArgs,
    #[command(flatten)]
    pub datasource: meshplane_core::runtime::datasource_args::DataSourceArgs,
    /// Address of the zone sync server (Kuma's KDS port 5685). Zones dial it with TLS.
    #[arg(
        long,
        env = "MESHPLANE_KDS_ADDR",
        default_value = "0.0.0.0:5685",
        value_name = "HOST:PORT"
    )]
    pub kds_addr: SocketAddr,
    /// Certificate (PEM) for the sync server: a leaf (not a CA), valid now, for the --kds-tls-san
    /// names, checked at start. Without it, Meshplane generates a CA shared by all replicas through
    /// the store and writes it to `<work-dir>/kds-ca.pem` for zones to trust.
    #[arg(
        long,
        env = "MESHPLANE_KDS_TLS_CERT_FILE",
        value_name = "FILE",
        requires = "kds_tls_key_file"
    )]
    pub kds_tls_cert_file: Option<PathBuf>,
    #[arg(
        long,
        env = "MESHPLANE_KDS_TLS_KEY_FILE",
        value_name = "FILE",
        requires = "kds_tls_cert_file"
    )]
    #[serde(skip)]
    pub kds_tls_key_file: Option<PathBuf>,
    /// DNS names or IPs zones dial (comma separated): added to the generated sync certificate, or,
    /// with --kds-tls-cert-file, checked at start to be covered by it.
    #[arg(long, env = "MESHPLANE_KDS_TLS_SAN", value_delimiter = ',')]
    pub kds_tls_san: Vec<String>,
    /// HTTP/2 keepalive on sync streams; a dead zone is noticed after about twice this.
    #[arg(long, env = "MESHPLANE_KDS_KEEPALIVE", default_value = "15s", value_parser = parse_duration)]
    #[serde(serialize_with = "ser_duration")]
    pub kds_keepalive: Duration,
    /// How often each zone stream refreshes its ZoneInsight (liveness and counters). At most 10s:
    /// every replica and meshctl count a zone offline after 30s without a refresh.
    #[arg(long, env = "MESHPLANE_KDS_INSIGHT_FLUSH", default_value = "10s", value_parser = parse_insight_flush)]
    #[serde(serialize_with = "ser_duration")]
    pub kds_insight_flush: Duration,
    /// Largest sync message, in bytes.
    #[arg(long, env = "MESHPLANE_KDS_MAX_MESSAGE_SIZE", default_value_t = 16 * 1024 * 1024)]
    pub kds_max_message_size: usize,
    /// Directory for generated files (the sync CA for zones). Defaults to `$HOME/.meshplane`.
    #[arg(long, env = "MESHPLANE_WORK_DIR", value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
    /// Treat direct local API clients as admins, as Kuma does: loopback peer and Host, no proxy
    /// headers, no cross-site Origin or Sec-Fetch-Site. Set to false behind a reverse proxy on the
    /// same host that adds no proxy headers: then every write and Secret read needs a user token.
    #[arg(long, env = "MESHPLANE_API_LOCALHOST_IS_ADMIN", default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub api_localhost_is_admin: bool,
    /// This replica's id, shown by `GET /` and in zone insights. Defaults to `<hostname>-<random>`.
    #[arg(long, env = "MESHPLANE_INSTANCE_ID")]
    pub instance_id: Option<String>,
    /// Do not create the `default` Mesh at start (Kuma creates it).
    #[arg(long, env = "MESHPLANE_SKIP_DEFAULT_MESH")]
    pub skip_default_mesh: bool,
    /// How long in-flight requests and streams get to finish after SIGTERM.
    #[arg(long, env = "MESHPLANE_SHUTDOWN_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    #[serde(serialize_with = "ser_duration")]
    pub shutdown_timeout: Duration,
}

/// The insight flush interval, held to a third of the liveness bound every reader applies
/// ([`ZONE_INSIGHT_MAX_AGE`](meshplane_core::model::ZONE_INSIGHT_MAX_AGE)), so that two late
/// refreshes never make a connected zone look offline.
fn parse_insight_flush(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    let max = meshplane_core::model::ZONE_INSIGHT_MAX_AGE / 3;
    if d.is_zero() || d > max {
        return Err(format!(
            "must be more than 0 and at most {}s (zones count as offline after {}s without a refresh)",
            max.as_secs(),
            meshplane_core::model::ZONE_INSIGHT_MAX_AGE.as_secs()
        ));
    }
    Ok(d)
}
