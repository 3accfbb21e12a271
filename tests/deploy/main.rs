//! The deployment files under `deploy/` hold against the real binaries and tools:
//! - the systemd units pass `systemd-analyze verify` (where installed) and carry the hardening keys,
//!   and their `ExecStartPre=`/`ExecStart=` commands, run as systemd would with the example config
//!   and environment files, migrate a fresh database and bring up global and a federated zone; the
//!   agent's, run with its user, group and umask, shares its key and socket with its group and with
//!   no other user;
//! - every config file (`global.yaml`, `zone.yaml`, `dp.yaml`) under `deploy/` starts the real
//!   binary, so its keys and values pass the binary's own config parser;
//! - every kustomization renders (`kubectl kustomize`, or the plain files without kubectl) and every
//!   document validates against the Kubernetes schemas (`kubernetes-validate --strict`), with the
//!   security context, probes, commands and variables the binaries and the image need, and the
//!   agent's sidecar shares its files with the application through a memory volume and fsGroup;
//! - the Dockerfile builds and copies the four binaries and runs as a non-root user;
//! - every file under `deploy/` (but the resource examples) is one of these.

mod config;
mod inventory;
mod kubernetes;
mod kubernetes_agent;
mod systemd;
mod systemd_dp;

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use meshplane_test_support::{
    postgres::TestDatabase,
    process::{Proc, bin, bin_dir, free_port, wait_http_ok},
};
use meshplane_tests::{Api, Global, Store, Zone, encryption_key_file, migrated_db, repo_root};
use serde_json::{Value, json};

const READY: Duration = Duration::from_secs(60);
const BINARIES: [&str; 4] = [
    "meshplane-global",
    "meshplane-zone",
    "meshplane-dp",
    "meshctl",
];

fn deploy() -> PathBuf {
    repo_root().join("deploy")
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn yaml(p: &Path) -> Value {
    serde_saphyr::from_str(&read(p)).unwrap_or_else(|e| panic!("{}: not YAML: {e}", p.display()))
}

fn yaml_docs(text: &str, what: &str) -> Vec<Value> {
    let docs: Vec<Value> =
        serde_saphyr::from_multiple(text).unwrap_or_else(|e| panic!("{what}: not YAML: {e}"));
    docs.into_iter().filter(|d| !d.is_null()).collect()
}

/// Every file under `dir`, recursively, sorted.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let p = e.expect("dir entry").path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn file_name(p: &Path) -> &str {
    p.file_name().and_then(|n| n.to_str()).unwrap_or("")
}

fn has_program(name: &str, args: &[&str]) -> bool {
    Command::new(name)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The `MESHPLANE_*` variables a binary's (sub)command reads, from its own `--help`.
fn env_vars_of(binary: &str, subcommand: &[&str]) -> BTreeSet<String> {
    let out = Command::new(bin(binary))
        .args(subcommand)
        .arg("--help")
        .output()
        .expect("run --help");
    assert!(
        out.status.success(),
        "{binary} {subcommand:?} --help failed"
    );
    let help = String::from_utf8_lossy(&out.stdout).into_owned();
    help.split("[env: ")
        .skip(1)
        .map(|rest| {
            rest.split(['=', ']'])
                .next()
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

/// `KEY=VALUE` lines of an `EnvironmentFile=`, without comments and blank lines.
fn env_file(p: &Path) -> Vec<(String, String)> {
    read(p)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l
                .split_once('=')
                .unwrap_or_else(|| panic!("{}: not KEY=VALUE: {l}", p.display()));
            (k.trim().to_string(), v.trim().to_string())
        })
        .collect()
}

/// A container's `command`, as strings (empty when unset).
fn command_of(c: &Value) -> Vec<&str> {
    c["command"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect()
}

/// The argument after `flag` in `argv`.
fn arg_after<'a>(argv: &[&'a str], flag: &str) -> Option<&'a str> {
    argv.iter()
        .position(|a| *a == flag)
        .and_then(|i| argv.get(i + 1).copied())
}

/// An octal mode of a unit setting or a config file (`0750`, `"0640"`).
fn octal(v: &str) -> u32 {
    u32::from_str_radix(v.trim_matches('"'), 8).unwrap_or_else(|_| panic!("not octal: {v}"))
}

/// The key and socket modes of an agent config, checked against what the deployment files promise:
/// the agent's group reads key.pem and may connect to the socket, other users get nothing.
fn agent_modes(config: &Value, what: &str) -> (u32, u32) {
    let mode = |k: &str| {
        octal(
            config[k]
                .as_str()
                .unwrap_or_else(|| panic!("{what}: {k}, quoted")),
        )
    };
    let (key, socket) = (mode("key-file-mode"), mode("workload-api-socket-mode"));
    assert_eq!(key & 0o040, 0o040, "{what}: the group reads key.pem");
    assert_eq!(socket & 0o020, 0o020, "{what}: the group may connect");
    assert_eq!((key | socket) & 0o007, 0, "{what}: nothing for others");
    (key, socket)
}
