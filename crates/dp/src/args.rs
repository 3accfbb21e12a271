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
    /// Where cert.pem, key.pem (--key-file-mode) and bundle.pem (0644) are kept, swapped together
    /// on every rotation (they are symlinks into `..data`, which points at the current set).
    #[arg(long, env = "MESHPLANE_CERT_DIR", value_name = "DIR")]
    pub cert_dir: PathBuf,
    /// Mode of key.pem, in octal. 0640 lets the agent's group read it, for workloads that run as
    /// other users in that group (the systemd unit's Group=, a pod's fsGroup).
    #[arg(
        long,
        env = "MESHPLANE_KEY_FILE_MODE",
        value_name = "MODE",
        default_value = "0600"
    )]
    pub key_file_mode: Mode,
    /// Serve the SPIFFE Workload API on this unix socket (absolute path).
    #[arg(long, env = "MESHPLANE_WORKLOAD_API_SOCKET", value_name = "PATH")]
    pub workload_api_socket: Option<PathBuf>,
    /// Mode of the Workload API socket, in octal. Connecting needs write permission, and whoever
    /// connects receives the private key: 0600 admits the agent's user only, 0660 its group too.
    #[arg(
        long,
        env = "MESHPLANE_WORKLOAD_API_SOCKET_MODE",
        value_name = "MODE",
        default_value = "0600"
    )]
    pub workload_api_socket_mode: Mode,
    /// Serve `/metrics`, `/healthz` and `/readyz` (a certificate is on disk and valid) on this address.
    #[arg(long, env = "MESHPLANE_METRICS_ADDR", value_name = "HOST:PORT")]
    pub metrics_addr: Option<SocketAddr>,
}

/// The permission bits of a file that holds or hands out a private key: read and write for the
/// owner and its group only, the owner at least reading. Other users never get access, so that a
/// mode typo cannot publish the key to every account on the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mode(pub u32);

impl std::str::FromStr for Mode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let digits = s.trim().trim_start_matches("0o");
        let m = u32::from_str_radix(digits, 8)
            .map_err(|_| format!("{s:?} is not an octal mode such as 0600 or 0640"))?;
        if m & 0o007 != 0 {
            return Err(format!(
                "{s}: other users would get access to the private key; share it with a group \
                 instead (0640 for the key, 0660 for the socket, and the agent's group)"
            ));
        }
        if m & !0o660 != 0 {
            return Err(format!(
                "{s}: only read and write bits for the owner and the group are allowed"
            ));
        }
        if m & 0o400 == 0 {
            return Err(format!("{s}: the owner must be able to read"));
        }
        Ok(Self(m))
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04o}", self.0)
    }
}

impl serde::Serialize for Mode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::Mode;

    #[test]
    fn modes_are_octal_and_never_for_other_users() {
        for (text, want) in [
            ("0600", 0o600),
            ("640", 0o640),
            ("0o660", 0o660),
            ("0400", 0o400),
        ] {
            assert_eq!(text.parse::<Mode>(), Ok(Mode(want)), "{text}");
        }
        assert_eq!(Mode(0o640).to_string(), "0640");
        for (text, why) in [
            ("0644", "other users"),
            ("0606", "other users"),
            ("0750", "only read and write"),
            ("4600", "only read and write"),
            ("0060", "owner must be able to read"),
            ("rw-r-----", "not an octal mode"),
            ("0800", "not an octal mode"),
        ] {
            let e = text.parse::<Mode>().expect_err(text);
            assert!(e.contains(why), "{text}: {e}");
        }
    }
}
