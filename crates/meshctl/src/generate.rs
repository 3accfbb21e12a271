//! `meshctl generate zone-token | dataplane-token | user-token` and `meshctl revoke …`.

use clap::Subcommand;
use serde_json::{Value, json};

use crate::client::{CliError, Client};

#[derive(Debug, Subcommand)]
pub enum Generate {
    /// A token a zone control plane uses to connect to global.
    ZoneToken {
        #[arg(long)]
        zone: String,
        /// How long the token is valid (Kuma's grammar: 720h, 30d).
        #[arg(long, default_value = "720h")]
        valid_for: String,
        #[arg(long = "scope", default_value = "cp")]
        scope: Vec<String>,
    },
    /// A token one dataplane uses to register with its zone.
    DataplaneToken {
        #[arg(short = 'm', long = "mesh", default_value = "default")]
        mesh: String,
        #[arg(long)]
        name: String,
        /// A tag the dataplane must carry, such as kuma.io/service=backend (repeatable).
        #[arg(long = "tag")]
        tags: Vec<String>,
        #[arg(long, default_value = "24h")]
        valid_for: String,
    },
    /// A new signing key for a token family; new tokens use it, older ones verify until their
    /// key's GlobalSecret (`<type>-token-signing-key-<n>`) is deleted.
    SigningKey {
        /// zone, dataplane or user.
        #[arg(long = "type")]
        token_type: String,
    },
    /// A token for the REST API (sent by meshctl as --auth-token).
    UserToken {
        #[arg(long)]
        name: String,
        #[arg(long = "group")]
        groups: Vec<String>,
        #[arg(long, default_value = "24h")]
        valid_for: String,
    },
}

#[derive(Debug, Subcommand)]
#[allow(
    clippy::enum_variant_names,
    reason = "clap names the subcommands after the variants: `revoke zone-token`, as kumactl spells them"
)]
pub enum Revoke {
    ZoneToken(RevokeArgs),
    DataplaneToken(RevokeArgs),
    UserToken(RevokeArgs),
}

#[derive(Debug, clap::Args)]
pub struct RevokeArgs {
    /// The token's id (its `jti`).
    #[arg(long, conflicts_with_all = ["token", "token_file"])]
    id: Option<String>,
    /// The token itself.
    #[arg(long, conflicts_with = "token_file")]
    token: Option<String>,
    /// A file holding the token.
    #[arg(long)]
    token_file: Option<std::path::PathBuf>,
}

pub async fn generate(client: &Client, g: Generate) -> Result<(), CliError> {
    let (path, body) = match g {
        Generate::ZoneToken {
            zone,
            valid_for,
            scope,
        } => (
            "/tokens/zone",
            json!({"zone": zone, "scope": scope, "validFor": valid_for}),
        ),
        Generate::DataplaneToken {
            mesh,
            name,
            tags,
            valid_for,
        } => {
            let mut t = serde_json::Map::new();
            for pair in tags {
                let (k, v) = pair
                    .split_once('=')
                    .ok_or_else(|| CliError::Usage(format!("--tag {pair:?} must be NAME=VALUE")))?;
                t.insert(k.to_string(), json!([v]));
            }
            (
                "/tokens/dataplane",
                json!({"mesh": mesh, "name": name, "tags": Value::Object(t), "validFor": valid_for}),
            )
        }
        Generate::UserToken {
            name,
            groups,
            valid_for,
        } => (
            "/tokens/user",
            json!({"name": name, "groups": groups, "validFor": valid_for}),
        ),
        Generate::SigningKey { token_type } => {
            ("/tokens/signing-keys", json!({"type": token_type}))
        }
    };
    if path == "/tokens/signing-keys" {
        let out = client.post_json(path, &body).await?;
        println!(
            "added signing key {} ({})",
            out.get("kid").map(Value::to_string).unwrap_or_default(),
            out.get("secret").and_then(Value::as_str).unwrap_or("")
        );
        return Ok(());
    }
    let token = client.post_text(path, &body).await?;
    println!("{}", token.trim());
    Ok(())
}

pub async fn revoke(client: &Client, r: Revoke) -> Result<(), CliError> {
    let (kind, a) = match r {
        Revoke::ZoneToken(a) => ("zone", a),
        Revoke::DataplaneToken(a) => ("dataplane", a),
        Revoke::UserToken(a) => ("user", a),
    };
    let body = match (a.id, a.token, a.token_file) {
        (Some(id), _, _) => json!({"type": kind, "id": id}),
        (None, Some(t), _) => json!({"type": kind, "token": t}),
        (None, None, Some(f)) => {
            let t = std::fs::read_to_string(&f)
                .map_err(|e| CliError::Io(format!("{}: {e}", f.display())))?;
            json!({"type": kind, "token": t.trim()})
        }
        (None, None, None) => {
            return Err(CliError::Usage("give --id, --token or --token-file".into()));
        }
    };
    let out = client.post_json("/tokens/revocations", &body).await?;
    println!(
        "revoked {kind} token {}",
        out.get("revoked").and_then(Value::as_str).unwrap_or("?")
    );
    Ok(())
}
