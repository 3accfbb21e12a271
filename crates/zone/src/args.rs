//! Command-line interface of `meshplane-zone`. Every flag also reads `MESHPLANE_<FLAG>` and `--config`.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use meshplane_core::runtime::{
    config::CommonArgs,
    critical::{parse_duration, ser_duration},
    store_args::{MigrateCommand, StoreArgs},
};

#[derive(Debug, clap::Parser)]
#[command(
    name = "meshplane-zone",
    version,
    about = "Meshplane zone control plane"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Run the zone control plane.
    Run(Box<RunArgs>),
    /// Manage the zone's PostgreSQL schema.
    #[command(subcommand)]
    Migrate(MigrateCommand),
}

#[derive(Debug, clap::Args, serde::Serialize)]
pub struct RunArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub store: StoreArgs,
    /// This zone's name; required with --global-address.
    #[arg(long, env = "MESHPLANE_ZONE")]
    pub zone: Option<String>,
    /// Global's sync address, `grpcs://HOST:5685`. Without it the zone runs standalone and owns its Meshes.
    #[arg(long, env = "MESHPLANE_GLOBAL_ADDRESS", value_name = "URL")]
    pub global_address: Option<String>,
    /// PEM file of the CA that signs global's sync certificate (global logs where it wrote its own).
    #[arg(long, env = "MESHPLANE_KDS_CA_FILE", value_name = "FILE")]
    pub kds_ca_file: Option<PathBuf>,
    /// File holding this zone's token (`meshctl generate zone-token`); re-read on every reconnect.
    #[arg(long, env = "MESHPLANE_ZONE_TOKEN_FILE", value_name = "FILE")]
    pub zone_token_file: Option<PathBuf>,
    /// Address of the zone's REST API.
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
    /// Address of the dataplane server (Kuma's port 5678).
    #[arg(
        long,
        env = "MESHPLANE_DP_SERVER_ADDR",
        default_value = "0.0.0.0:5678",
        value_name = "HOST:PORT"
    )]
    pub dp_server_addr: SocketAddr,
    /// Certificate (PEM) for the dataplane server: a leaf (not a CA), valid now, for the
    /// --dp-server-tls-san names, checked at start. Without it, Meshplane generates a CA kept in the
    /// zone's store and writes it to `<work-dir>/dp-server-ca.pem` for agents (`--cp-ca-file`).
    #[arg(
        long,
        env = "MESHPLANE_DP_SERVER_TLS_CERT_FILE",
        value_name = "FILE",
        requires = "dp_server_tls_key_file"
    )]
    pub dp_server_tls_cert_file: Option<PathBuf>,
    #[arg(
        long,
        env = "MESHPLANE_DP_SERVER_TLS_KEY_FILE",
        value_name = "FILE",
        requires = "dp_server_tls_cert_file"
    )]
    #[serde(skip)]
    pub dp_server_tls_key_file: Option<PathBuf>,
    /// DNS names or IPs agents dial (comma separated): added to the generated dataplane server
    /// certificate, or, with --dp-server-tls-cert-file, checked at start to be covered by it.
    #[arg(long, env = "MESHPLANE_DP_SERVER_TLS_SAN", value_delimiter = ',')]
    pub dp_server_tls_san: Vec<String>,
    /// Directory for generated files (the dataplane server CA). Defaults to `$HOME/.meshplane`.
    #[arg(long, env = "MESHPLANE_WORK_DIR", value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
    /// Most certificate issuances in flight at once towards the CA backends.
    #[arg(long, env = "MESHPLANE_ISSUANCE_CONCURRENCY", default_value_t = 16)]
    pub issuance_concurrency: usize,
    /// First retry delay after a failed issuance; doubles with jitter per dataplane.
    #[arg(long, env = "MESHPLANE_CERT_BACKOFF_BASE", default_value = "1s", value_parser = parse_duration)]
    #[serde(serialize_with = "ser_duration")]
    pub cert_backoff_base: Duration,
    #[arg(long, env = "MESHPLANE_CERT_BACKOFF_MAX", default_value = "5m", value_parser = parse_duration)]
    #[serde(serialize_with = "ser_duration")]
    pub cert_backoff_max: Duration,
    /// Distinct failing dataplanes that open a CA backend's circuit breaker.
    #[arg(
        long,
        env = "MESHPLANE_CERT_BREAKER_MIN_FAILURES",
        default_value_t = 10
    )]
    pub cert_breaker_min_failures: usize,
    /// Treat direct local API clients as admins, as Kuma does: loopback peer and Host, no proxy
    /// headers, no cross-site Origin or Sec-Fetch-Site. Set to false behind a reverse proxy on the
    /// same host that adds no proxy headers: then every write and Secret read needs a user token.
    #[arg(long, env = "MESHPLANE_API_LOCALHOST_IS_ADMIN", default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub api_localhost_is_admin: bool,
    /// This instance's id. Defaults to `<zone>-<hostname>-<random>`.
    #[arg(long, env = "MESHPLANE_INSTANCE_ID")]
    pub instance_id: Option<String>,
    /// Standalone only: do not create the `default` Mesh at start.
    #[arg(long, env = "MESHPLANE_SKIP_DEFAULT_MESH")]
    pub skip_default_mesh: bool,
    /// HTTP/2 keepalive towards global; a dead link is noticed after about twice this.
    #[arg(long, env = "MESHPLANE_KDS_KEEPALIVE", default_value = "15s", value_parser = parse_duration)]
    #[serde(serialize_with = "ser_duration")]
    pub kds_keepalive: Duration,
    /// Largest sync message, in bytes.
    #[arg(long, env = "MESHPLANE_KDS_MAX_MESSAGE_SIZE", default_value_t = 16 * 1024 * 1024)]
    pub kds_max_message_size: usize,
    /// First reconnect delay towards global; doubles with jitter up to --kds-reconnect-max.
    #[arg(long, env = "MESHPLANE_KDS_RECONNECT_BASE", default_value = "500ms", value_parser = parse_duration)]
    #[serde(serialize_with = "ser_duration")]
    pub kds_reconnect_base: Duration,
    #[arg(long, env = "MESHPLANE_KDS_RECONNECT_MAX", default_value = "30s", value_parser = parse_duration)]
    #[serde(serialize_with = "ser_duration")]
    pub kds_reconnect_max: Duration,
    /// How long in-flight work gets to finish after SIGTERM.
    #[arg(long, env = "MESHPLANE_SHUTDOWN_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    #[serde(serialize_with = "ser_duration")]
    pub shutdown_timeout: Duration,
}
