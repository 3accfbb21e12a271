//! `meshctl get …`: single resources and lists, as tables, YAML or JSON.

use clap::Subcommand;
use meshplane_core::model::ResourceKind;
use serde_json::{Value, json};

use crate::{
    args::OutputFormat,
    client::{CliError, Client, item_path, list_path},
    output,
};

#[derive(Debug, Subcommand)]
pub enum GetWhat {
    Meshes,
    Mesh { name: String },
    Secrets,
    Secret { name: String },
    GlobalSecrets,
    GlobalSecret { name: String },
    Zones,
    Zone { name: String },
    Dataplanes,
    Dataplane { name: String },
}

pub fn kind_from_cli(s: &str) -> Result<ResourceKind, CliError> {
    match s {
        "mesh" | "meshes" => Ok(ResourceKind::Mesh),
        "secret" | "secrets" => Ok(ResourceKind::Secret),
        "global-secret" | "global-secrets" => Ok(ResourceKind::GlobalSecret),
        "zone" | "zones" => Ok(ResourceKind::Zone),
        "dataplane" | "dataplanes" => Ok(ResourceKind::Dataplane),
        other => Err(CliError::Usage(format!(
            "unknown resource type {other:?}: use mesh, secret, global-secret, zone or dataplane"
        ))),
    }
}

pub async fn run(
    client: &Client,
    what: GetWhat,
    mesh: &str,
    out: OutputFormat,
) -> Result<(), CliError> {
    use GetWhat::*;
    let (kind, name) = match what {
        Meshes => (ResourceKind::Mesh, None),
        Mesh { name } => (ResourceKind::Mesh, Some(name)),
        Secrets => (ResourceKind::Secret, None),
        Secret { name } => (ResourceKind::Secret, Some(name)),
        GlobalSecrets => (ResourceKind::GlobalSecret, None),
        GlobalSecret { name } => (ResourceKind::GlobalSecret, Some(name)),
        Zones => (ResourceKind::Zone, None),
        Zone { name } => (ResourceKind::Zone, Some(name)),
        Dataplanes => (ResourceKind::Dataplane, None),
        Dataplane { name } => (ResourceKind::Dataplane, Some(name)),
    };
    match name {
        Some(n) => {
            let v = client.get(&item_path(kind, mesh, &n)).await?;
            match out {
                OutputFormat::Json => output::print_json(&v),
                OutputFormat::Yaml => output::print_yaml(&v),
                OutputFormat::Table => output::print_table(kind, &[v]),
            }
        }
        None => {
            let items = client.list(&list_path(kind, Some(mesh))).await?;
            match out {
                OutputFormat::Json => output::print_json(
                    &json!({"total": items.len(), "items": items, "next": Value::Null}),
                ),
                OutputFormat::Yaml => output::print_yaml(
                    &json!({"total": items.len(), "items": items, "next": Value::Null}),
                ),
                OutputFormat::Table => output::print_table(kind, &items),
            }
        }
    }
    Ok(())
}
