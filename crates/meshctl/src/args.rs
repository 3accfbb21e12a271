//! meshctl's commands and flags.

use clap::{Parser, Subcommand, ValueEnum};

use crate::{
    apply,
    client::{CliError, Client},
    generate, get, inspect,
};

#[derive(Debug, Parser)]
#[command(
    name = "meshctl",
    version,
    about = "Manage Meshplane through its REST API"
)]
pub struct Cli {
    /// URL of the control plane's API.
    #[arg(
        long,
        global = true,
        env = "MESHCTL_API_URL",
        default_value = "http://127.0.0.1:5681"
    )]
    pub api_url: String,
    /// PEM file with the CA that signs the API's HTTPS certificate.
    #[arg(long, global = true, env = "MESHCTL_CA_CERT")]
    pub ca_cert: Option<std::path::PathBuf>,
    /// A user token (`meshctl generate user-token`), sent as `Authorization: Bearer`.
    #[arg(
        long,
        global = true,
        env = "MESHCTL_AUTH_TOKEN",
        hide_env_values = true
    )]
    pub auth_token: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Table,
    Yaml,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create or update resources from a file (`-` for stdin); multi-document YAML or JSON.
    Apply {
        #[arg(short = 'f', long = "file")]
        file: String,
        /// Validate and print the resources without sending them.
        #[arg(long)]
        dry_run: bool,
    },
    /// Show resources.
    Get {
        #[command(subcommand)]
        what: get::GetWhat,
        #[arg(short = 'm', long = "mesh", global = true, default_value = "default")]
        mesh: String,
        #[arg(short = 'o', long = "output", global = true, value_enum, default_value_t = OutputFormat::Table)]
        output: OutputFormat,
    },
    /// Delete a resource: `meshctl delete mesh NAME`, `meshctl delete secret NAME -m MESH`.
    Delete {
        /// mesh, secret, global-secret, zone or dataplane.
        kind: String,
        name: String,
        #[arg(short = 'm', long = "mesh", default_value = "default")]
        mesh: String,
        /// Delete a Mesh even though dataplanes are attached.
        #[arg(long)]
        force: bool,
    },
    /// Show resources with their status.
    Inspect {
        #[command(subcommand)]
        what: inspect::Inspect,
        #[arg(short = 'm', long = "mesh", global = true, default_value = "default")]
        mesh: String,
        #[arg(short = 'o', long = "output", global = true, value_enum, default_value_t = OutputFormat::Table)]
        output: OutputFormat,
    },
    /// Generate tokens (at the global control plane).
    #[command(subcommand)]
    Generate(generate::Generate),
    /// Revoke a token.
    #[command(subcommand)]
    Revoke(generate::Revoke),
}

pub async fn dispatch(cli: Cli) -> Result<(), CliError> {
    let client = Client::new(&cli.api_url, cli.ca_cert.as_deref(), cli.auth_token.clone())?;
    match cli.command {
        Command::Apply { file, dry_run } => apply::run(&client, &file, dry_run).await,
        Command::Get { what, mesh, output } => get::run(&client, what, &mesh, output).await,
        Command::Delete {
            kind,
            name,
            mesh,
            force,
        } => {
            let kind = get::kind_from_cli(&kind)?;
            client.delete(kind, &mesh, &name, force).await?;
            println!("deleted {} {name:?}", kind.name());
            Ok(())
        }
        Command::Inspect { what, mesh, output } => inspect::run(&client, what, &mesh, output).await,
        Command::Generate(g) => generate::generate(&client, g).await,
        Command::Revoke(r) => generate::revoke(&client, r).await,
    }
}
