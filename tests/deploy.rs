//! The deployment files under `deploy/` hold against the real binaries and tools:
//! - the systemd units pass `systemd-analyze verify` (where installed) and carry the hardening keys,
//!   and their `ExecStartPre=`/`ExecStart=` commands, run as systemd would with the example config
//!   and environment files, migrate a fresh database and bring up global and a federated zone;
//! - every config file (`global.yaml`, `zone.yaml`) under `deploy/` starts the real binary, so its
//!   keys and values pass the binary's own config parser;
//! - every kustomization renders (`kubectl kustomize`, or the plain files without kubectl) and every
//!   document validates against the Kubernetes schemas (`kubernetes-validate --strict`), with the
//!   security context, probes, commands and variables the binaries and the image need;
//! - the Dockerfile builds and copies the four binaries and runs as a non-root user;
//! - every file under `deploy/` (but the resource examples) is one of these.

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

// ---------------------------------------------------------------------------------------------
// systemd

/// `(section, key, value)` of a unit file, in order. Continuation lines are not used in ours.
fn unit_entries(p: &Path) -> Vec<(String, String, String)> {
    let mut section = String::new();
    let mut out = Vec::new();
    for line in read(p).lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        assert!(
            !line.ends_with('\\'),
            "{}: keep each setting on one line",
            p.display()
        );
        if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = s.to_string();
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("{}: not Key=Value: {line}", p.display()));
        assert!(
            !section.is_empty(),
            "{}: a key before any section",
            p.display()
        );
        out.push((section.clone(), k.trim().to_string(), v.trim().to_string()));
    }
    out
}

fn service_values(entries: &[(String, String, String)], key: &str) -> Vec<String> {
    entries
        .iter()
        .filter(|(s, k, _)| s == "Service" && k == key)
        .map(|(_, _, v)| v.clone())
        .collect()
}

const UNITS: [(&str, &[&str]); 2] = [
    (
        "meshplane-global.service",
        &["database-url", "encryption-key"],
    ),
    (
        "meshplane-zone.service",
        &["database-url", "zone-token", "encryption-key"],
    ),
];

#[test]
fn systemd_units_verify_and_are_hardened() {
    let dir = deploy().join("systemd");
    let units: BTreeSet<String> = files_under(&dir)
        .iter()
        .map(|p| file_name(p).to_string())
        .filter(|n| n.ends_with(".service"))
        .collect();
    let expected: BTreeSet<String> = UNITS.iter().map(|(n, _)| n.to_string()).collect();
    assert_eq!(units, expected, "the units this test checks");

    for (name, credentials) in UNITS {
        let p = dir.join(name);
        let e = unit_entries(&p);
        let one = |key: &str| -> String {
            let v = service_values(&e, key);
            assert_eq!(v.len(), 1, "{name}: exactly one {key}=, found {v:?}");
            v[0].clone()
        };
        for (key, want) in [
            ("DynamicUser", "yes"),
            ("ProtectSystem", "strict"),
            ("ProtectHome", "yes"),
            ("PrivateTmp", "yes"),
            ("NoNewPrivileges", "yes"),
            ("CapabilityBoundingSet", ""),
        ] {
            assert_eq!(one(key), want, "{name}: {key}");
        }
        assert!(
            service_values(&e, "SystemCallFilter").contains(&"@system-service".to_string()),
            "{name}: SystemCallFilter=@system-service"
        );
        assert!(
            !one("RestrictAddressFamilies").is_empty(),
            "{name}: RestrictAddressFamilies"
        );
        let state = one("StateDirectory");
        let config = yaml(&deploy().join("config").join(format!(
            "{}.yaml",
            name.trim_start_matches("meshplane-").trim_end_matches(".service")
        )));
        assert_eq!(
            config["work-dir"],
            json!(format!("/var/lib/{state}")),
            "{name}: the config's work-dir is the unit's StateDirectory"
        );
        let loaded: BTreeSet<String> = service_values(&e, "LoadCredential")
            .iter()
            .map(|v| v.split(':').next().unwrap_or_default().to_string())
            .collect();
        for c in credentials {
            assert!(loaded.contains(*c), "{name}: LoadCredential={c}:…");
        }
        assert!(
            e.iter()
                .any(|(s, k, v)| s == "Install" && k == "WantedBy" && v == "multi-user.target"),
            "{name}: WantedBy=multi-user.target"
        );
    }

    if !has_program("systemd-analyze", &["--version"]) {
        println!(
            "systemd-analyze not found: skipped `systemd-analyze verify`; checked that the units \
             parse and carry the hardening keys"
        );
        return;
    }
    // verify checks that each command exists: point the install path at this checkout's binaries
    // in a copy of the unit (same name, everything else as shipped).
    let copies = tempfile::tempdir().expect("tempdir");
    for (name, _) in UNITS {
        let shipped = std::fs::read_to_string(dir.join(name)).expect("read unit");
        let p = copies.path().join(name);
        std::fs::write(
            &p,
            shipped.replace("/usr/local/bin/", &format!("{}/", bin_dir().display())),
        )
        .expect("write unit copy");
        let out = Command::new("systemd-analyze")
            .arg("verify")
            .arg(&p)
            .output()
            .expect("systemd-analyze verify");
        // verify exits 0 on unknown keys and bad values too, and only warns: any word about our unit
        // is a failure.
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let ours: Vec<&str> = text.lines().filter(|l| l.contains("meshplane")).collect();
        assert!(
            out.status.success() && ours.is_empty(),
            "systemd-analyze verify {name}:\n{text}"
        );
        println!("systemd-analyze verify {name}: clean");

        let out = Command::new("systemd-analyze")
            .args(["security", "--offline=yes"])
            .arg(&p)
            .output()
            .expect("systemd-analyze security");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        match text
            .lines()
            .find(|l| l.contains("Overall exposure level"))
            .and_then(|l| l.split(": ").nth(1))
        {
            Some(level) => {
                let score: f64 = level
                    .split_whitespace()
                    .next()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(10.0);
                assert!(score <= 2.0, "{name}: exposure {level}\n{text}");
                println!("systemd-analyze security {name}: {level}");
            }
            // Older systemd has no --offline.
            None => println!(
                "systemd-analyze security --offline unavailable: skipped ({})",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        }
    }
}

/// The argv of an `ExecStart*=` line as systemd would run it: no shell, `%d` resolved to the
/// credentials directory, the install paths pointed at this checkout's binaries and a test
/// `/etc/meshplane`.
fn unit_command(value: &str, etc: &Path, credentials: &Path) -> Vec<String> {
    assert!(
        !value.contains(['\'', '"', '$', ';', '|']),
        "a plain command, no shell quoting or expansion: {value}"
    );
    let argv: Vec<String> = value
        .split_whitespace()
        .map(|a| {
            a.replace("%d/", &format!("{}/", credentials.display()))
                .replace("/usr/local/bin/", &format!("{}/", bin_dir().display()))
                .replace("/etc/meshplane/", &format!("{}/", etc.display()))
        })
        .collect();
    assert!(
        argv.iter().all(|a| !a.contains('%')),
        "no systemd specifier but %d: {value}"
    );
    argv
}

/// The environment systemd gives the unit's commands: its EnvironmentFile (the example), its
/// credentials directory, and the test's overrides (addresses, paths), which win.
fn unit_env(
    env_example: &Path,
    credentials: &Path,
    overrides: &[(&str, String)],
) -> Vec<(String, String)> {
    let mut env = env_file(env_example);
    env.push((
        "CREDENTIALS_DIRECTORY".into(),
        credentials.display().to_string(),
    ));
    env.extend(overrides.iter().map(|(k, v)| (k.to_string(), v.clone())));
    env
}

/// Runs the unit's ExecStartPre (migrations) to completion, then starts its ExecStart.
async fn start_unit(unit: &str, etc: &Path, env: &[(String, String)]) -> Proc {
    let e = unit_entries(&deploy().join("systemd").join(unit));
    let pre = service_values(&e, "ExecStartPre");
    let start = service_values(&e, "ExecStart");
    assert_eq!(
        (pre.len(), start.len()),
        (1, 1),
        "{unit}: one ExecStartPre, one ExecStart"
    );

    let credentials = env
        .iter()
        .find(|(k, _)| k == "CREDENTIALS_DIRECTORY")
        .map(|(_, v)| std::path::PathBuf::from(v))
        .expect("the unit's environment names its credentials directory");
    let pre = unit_command(&pre[0], etc, &credentials);
    let out = tokio::process::Command::new(&pre[0])
        .args(&pre[1..])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .await
        .expect("ExecStartPre");
    assert!(
        out.status.success(),
        "{unit} ExecStartPre failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let env_refs: Vec<(&str, String)> = env.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    let start = unit_command(&start[0], etc, &credentials);
    Proc::spawn(unit, Path::new(&start[0]), &start[1..], &env_refs)
        .await
        .expect("ExecStart")
}

async fn info(api: &str) -> Value {
    Api::new(api).get("/").await.expect("GET /").1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn systemd_unit_commands_start_global_and_a_zone_from_the_example_files() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let etc = tmp.path().join("etc");
    std::fs::create_dir_all(&etc).expect("etc");
    for f in ["global.yaml", "zone.yaml"] {
        std::fs::copy(deploy().join("config").join(f), etc.join(f)).expect("copy config");
    }
    let systemd = deploy().join("systemd");

    // Every variable of the example environment files is a real flag's (an unknown one would be
    // ignored silently by the binary).
    for (file, binary) in [
        ("global.env.example", "meshplane-global"),
        ("zone.env.example", "meshplane-zone"),
    ] {
        let known = env_vars_of(binary, &["run"]);
        for (k, _) in env_file(&systemd.join(file)) {
            assert!(
                known.contains(&k),
                "{file}: {k} is not a `{binary} run` variable"
            );
        }
    }

    // Global: a fresh, unmigrated database; the unit migrates it first.
    let g_db = TestDatabase::create().await.expect("global db");
    let g_creds = tmp.path().join("global-credentials");
    std::fs::create_dir_all(&g_creds).expect("creds");
    std::fs::write(g_creds.join("database-url"), format!("{}\n", g_db.url)).expect("url");
    std::fs::copy(
        encryption_key_file(&g_db.url),
        g_creds.join("encryption-key"),
    )
    .expect("key");
    let (g_api, g_kds) = (free_port(), free_port());
    let g_work = tmp.path().join("global-work");
    let g_env = unit_env(
        &systemd.join("global.env.example"),
        &g_creds,
        &[
            ("MESHPLANE_API_ADDR", format!("127.0.0.1:{g_api}")),
            ("MESHPLANE_KDS_ADDR", format!("127.0.0.1:{g_kds}")),
            ("MESHPLANE_WORK_DIR", g_work.display().to_string()),
        ],
    );
    let mut global = start_unit("meshplane-global.service", &etc, &g_env).await;
    let g_url = format!("http://127.0.0.1:{g_api}");
    wait_http_ok(&mut global, &format!("{g_url}/readyz"), READY)
        .await
        .expect("global ready");
    let g_info = info(&g_url).await;
    assert!(
        g_info["store"]
            .as_str()
            .is_some_and(|s| s.contains("postgres")),
        "the credential's database, from store: postgres: {g_info}"
    );
    if let Some((_, id)) = env_file(&systemd.join("global.env.example"))
        .into_iter()
        .find(|(k, _)| k == "MESHPLANE_INSTANCE_ID")
    {
        assert_eq!(
            g_info["instanceId"],
            json!(id),
            "the environment file applies"
        );
    }

    // Zone: its own fresh database, its token, global's KDS CA; the config's global address and
    // CA path are placeholders, overridden through the environment (which the config yields to).
    let zone_name = yaml(&etc.join("zone.yaml"))["zone"]
        .as_str()
        .expect("zone.yaml names its zone")
        .to_string();
    let token = Api::new(g_url.as_str())
        .token(
            "/tokens/zone",
            &json!({"zone": zone_name, "validFor": "1h"}),
        )
        .await
        .expect("zone token");
    let z_db = TestDatabase::create().await.expect("zone db");
    let z_creds = tmp.path().join("zone-credentials");
    std::fs::create_dir_all(&z_creds).expect("creds");
    std::fs::write(z_creds.join("database-url"), format!("{}\n", z_db.url)).expect("url");
    std::fs::write(z_creds.join("zone-token"), token).expect("token");
    std::fs::copy(
        encryption_key_file(&z_db.url),
        z_creds.join("encryption-key"),
    )
    .expect("key");
    let (z_api, z_dp) = (free_port(), free_port());
    let z_env = unit_env(
        &systemd.join("zone.env.example"),
        &z_creds,
        &[
            (
                "MESHPLANE_GLOBAL_ADDRESS",
                format!("grpcs://127.0.0.1:{g_kds}"),
            ),
            (
                "MESHPLANE_KDS_CA_FILE",
                g_work.join("kds-ca.pem").display().to_string(),
            ),
            ("MESHPLANE_API_ADDR", format!("127.0.0.1:{z_api}")),
            ("MESHPLANE_DP_SERVER_ADDR", format!("127.0.0.1:{z_dp}")),
            (
                "MESHPLANE_WORK_DIR",
                tmp.path().join("zone-work").display().to_string(),
            ),
        ],
    );
    let mut zone = start_unit("meshplane-zone.service", &etc, &z_env).await;
    let z_url = format!("http://127.0.0.1:{z_api}");
    wait_http_ok(&mut zone, &format!("{z_url}/readyz"), READY)
        .await
        .expect("zone ready: migrated, federated, synced");
    let z_info = info(&z_url).await;
    assert_eq!(z_info["zone"], json!(zone_name), "{z_info}");
    assert!(
        z_info["store"]
            .as_str()
            .is_some_and(|s| s.contains("postgres")),
        "{z_info}"
    );

    // The shell exec'd the binary: SIGTERM reaches it and it stops cleanly, as systemd expects.
    assert_eq!(zone.terminate(READY).await.expect("zone stops"), Some(0));
    assert_eq!(
        global.terminate(READY).await.expect("global stops"),
        Some(0)
    );
}

// ---------------------------------------------------------------------------------------------
// Config files

/// Every `global.yaml` and `zone.yaml` under `deploy/`: the config files the binaries load.
fn config_files() -> Vec<PathBuf> {
    files_under(&deploy())
        .into_iter()
        .filter(|p| !p.starts_with(deploy().join("examples")))
        .filter(|p| matches!(file_name(p), "global.yaml" | "zone.yaml"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_config_file_starts_the_real_binary() {
    let files = config_files();
    let count = |n: &str| files.iter().filter(|p| file_name(p) == n).count();
    assert!(
        count("global.yaml") >= 3 && count("zone.yaml") >= 3,
        "VM, base and overlay configs: {files:?}"
    );
    // Zones federate with this global; it runs on the in-memory store.
    let g = Global::start(Store::Memory, &[]).await.expect("global");
    for f in &files {
        let path = f.display().to_string();
        // The file's own addresses, paths and peers are for a real host; the harness overrides
        // them with flags (which win over the file), so the rest of the file is what is tested:
        // every key must be known and every value accepted, or the binary exits.
        let db = migrated_db().await.expect("db");
        if file_name(f) == "global.yaml" {
            let mut p = Global::start(Store::Postgres(db.url.clone()), &["--config", &path])
                .await
                .unwrap_or_else(|e| panic!("{path}: {e:#}"));
            p.proc.terminate(READY).await.expect("stop");
        } else {
            let name = yaml(f)["zone"]
                .as_str()
                .unwrap_or_else(|| panic!("{path}: no zone name"))
                .to_string();
            let mut z = Zone::start(
                &g,
                &name,
                Store::Postgres(db.url.clone()),
                &["--config", &path],
            )
            .await
            .unwrap_or_else(|e| panic!("{path}: {e:#}"));
            z.proc.terminate(READY).await.expect("stop");
        }
        println!("{path}: accepted by the real binary, ready");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_file_with_an_unknown_key_stops_the_start() {
    // What the test above relies on: the binary refuses a key it does not know, naming it.
    let tmp = tempfile::tempdir().expect("tempdir");
    let f = tmp.path().join("global.yaml");
    std::fs::write(&f, "store: memory\napi-adress: 127.0.0.1:5681\n").expect("write");
    let out = tokio::process::Command::new(bin("meshplane-global"))
        .args(["run", "--config"])
        .arg(&f)
        .output()
        .await
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("api-adress"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Kubernetes

fn kustomization_dirs() -> Vec<PathBuf> {
    files_under(&deploy().join("kubernetes"))
        .into_iter()
        .filter(|p| file_name(p) == "kustomization.yaml")
        .map(|p| p.parent().expect("dir").to_path_buf())
        .collect()
}

/// The strings of a kustomization list field (`resources`, `patches[].path`, generator `files`).
fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|x| x.as_str().or_else(|| x["path"].as_str()).map(String::from))
        .collect()
}

/// The plain resource files of a kustomization and of the bases it includes.
fn plain_resources(dir: &Path) -> Vec<PathBuf> {
    let k = yaml(&dir.join("kustomization.yaml"));
    let mut out = Vec::new();
    for r in strings(&k["resources"]) {
        let p = dir.join(&r);
        if p.is_dir() {
            out.extend(plain_resources(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// A venv at target/venv-deploy with kubernetes-validate; `None` only when PyPI is unreachable.
fn kubernetes_validate() -> Option<PathBuf> {
    let venv = bin_dir().join("..").join("venv-deploy");
    let exe = venv.join("bin").join("kubernetes-validate");
    if has_program(exe.to_str().unwrap_or_default(), &["--version"]) {
        return Some(exe);
    }
    let _ = std::fs::remove_dir_all(&venv);
    let out = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .output()
        .expect("python3 is needed for kubernetes-validate");
    assert!(
        out.status.success(),
        "python3 -m venv: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(venv.join("bin").join("pip"))
        .args(["install", "-q", "kubernetes-validate==1.37.0"])
        .output()
        .expect("pip");
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let offline = [
            "NewConnectionError",
            "Failed to establish a new connection",
            "Temporary failure in name resolution",
            "Network is unreachable",
            "No matching distribution found",
        ]
        .iter()
        .any(|s| err.contains(s));
        assert!(offline, "pip install kubernetes-validate failed:\n{err}");
        println!("PyPI unreachable: skipped kubernetes-validate (pip said: {err})");
        return None;
    }
    Some(exe)
}

/// A pod spec's containers (init containers too), each with whether it is an init container.
fn containers(pod: &Value) -> Vec<(bool, &Value)> {
    let list = |k: &str| pod[k].as_array().into_iter().flatten();
    list("initContainers")
        .map(|c| (true, c))
        .chain(list("containers").map(|c| (false, c)))
        .collect()
}

/// What the Dockerfile promises: the binaries it copies to /usr/local/bin and its numeric user.
struct Image {
    binaries: BTreeSet<String>,
    uid: u32,
}

fn dockerfile() -> Image {
    let text = read(&deploy().join("Dockerfile"));
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .collect();
    let froms: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].starts_with("FROM "))
        .collect();
    let runtime = &lines[*froms.last().expect("a FROM")..];
    let binaries = runtime
        .iter()
        .filter(|l| l.starts_with("COPY --from=build ") && l.contains("/target/release/"))
        .filter_map(|l| l.split_whitespace().last())
        .filter_map(|dest| dest.strip_prefix("/usr/local/bin/"))
        .map(String::from)
        .collect();
    let user = runtime
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("the runtime stage sets USER");
    let uid = user
        .split(':')
        .next()
        .and_then(|u| u.trim().parse().ok())
        .unwrap_or_else(|| panic!("USER {user}: numeric, so runAsNonRoot can check it"));
    Image { binaries, uid }
}

#[test]
fn dockerfile_ships_the_four_binaries_as_a_non_root_user() {
    let text = read(&deploy().join("Dockerfile"));
    assert!(text.contains("FROM rust:1.95"), "the pinned toolchain");
    assert!(text.contains("RUN cargo build --release --locked --bins"));
    let runtime_stage = text.rsplit("\nFROM ").next().unwrap_or_default();
    assert!(
        runtime_stage.starts_with("gcr.io/distroless/"),
        "a distroless runtime: {runtime_stage}"
    );
    assert!(
        !runtime_stage.lines().any(|l| l.starts_with("RUN ")),
        "nothing runs in the runtime stage: it has no shell"
    );
    let image = dockerfile();
    let want: BTreeSet<String> = BINARIES.iter().map(|b| b.to_string()).collect();
    assert_eq!(
        image.binaries, want,
        "the four binaries, copied from target/release"
    );
    assert_ne!(image.uid, 0, "not root");
    let entrypoint = runtime_stage
        .lines()
        .find_map(|l| l.strip_prefix("ENTRYPOINT "))
        .expect("ENTRYPOINT");
    let entrypoint: Vec<String> =
        serde_json::from_str(entrypoint).expect("exec form: the image has no shell");
    assert!(
        entrypoint[0]
            .strip_prefix("/usr/local/bin/")
            .is_some_and(|b| image.binaries.contains(b)),
        "{entrypoint:?}"
    );
    // What the image copies is what this workspace builds: each binary exists and runs.
    for b in BINARIES {
        let out = Command::new(bin(b)).arg("--help").output().expect("run");
        assert!(out.status.success(), "{b} --help");
    }
    let ignore = read(&deploy().join("Dockerfile.dockerignore"));
    assert!(
        ignore.lines().any(|l| l.trim() == "target/"),
        "target/ stays out of the context"
    );
}

#[test]
fn kubernetes_manifests_render_and_validate() {
    let dirs = kustomization_dirs();
    assert!(dirs.len() >= 4, "bases and overlays: {dirs:?}");
    let tmp = tempfile::tempdir().expect("tempdir");
    let kubectl = has_program("kubectl", &["version", "--client"]);
    if !kubectl {
        println!(
            "kubectl not found: validating the plain resource files of each kustomization; \
             overlays (patches, generators) are not rendered"
        );
    }

    // Every config file a generator reads is one the config test starts.
    let tested = config_files();
    for d in &dirs {
        let k = yaml(&d.join("kustomization.yaml"));
        for g in k["configMapGenerator"].as_array().into_iter().flatten() {
            for f in strings(&g["files"]) {
                let path = d.join(f.split_once('=').map_or(f.as_str(), |(_, p)| p));
                assert!(
                    tested.contains(&path),
                    "{}: not a tested config file",
                    path.display()
                );
                let role = file_name(&path).trim_end_matches(".yaml");
                assert_eq!(
                    g["name"],
                    json!(format!("meshplane-{role}-config")),
                    "{}",
                    d.display()
                );
            }
        }
    }

    let mut rendered: Vec<(PathBuf, Vec<Value>)> = Vec::new();
    for (i, d) in dirs.iter().enumerate() {
        if kubectl {
            let out = Command::new("kubectl")
                .arg("kustomize")
                .arg(d)
                .output()
                .expect("kubectl kustomize");
            assert!(
                out.status.success(),
                "kubectl kustomize {}: {}",
                d.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let f = tmp.path().join(format!("rendered-{i}.yaml"));
            std::fs::write(&f, &text).expect("write");
            let docs = yaml_docs(&text, &d.display().to_string());
            println!(
                "kubectl kustomize {}: {} documents",
                d.display(),
                docs.len()
            );
            rendered.push((f, docs));
        } else {
            for f in plain_resources(d) {
                let docs = yaml_docs(&read(&f), &f.display().to_string());
                rendered.push((f, docs));
            }
        }
    }

    // Against the Kubernetes schemas: every document must pass (an unknown kind only warns, so the
    // passes are counted).
    match kubernetes_validate() {
        Some(exe) => {
            let out = Command::new(&exe)
                .arg("--strict")
                .args(rendered.iter().map(|(f, _)| f))
                .output()
                .expect("kubernetes-validate");
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            let passed = text
                .lines()
                .filter(|l| l.contains(" passed for resource "))
                .count();
            let total: usize = rendered.iter().map(|(_, d)| d.len()).sum();
            assert!(
                out.status.success() && passed == total && !text.contains("WARN"),
                "kubernetes-validate --strict: {passed} of {total} documents passed:\n{text}"
            );
            println!("kubernetes-validate --strict: all {total} documents valid");
        }
        None => println!("kubernetes-validate unavailable: schema validation skipped"),
    }

    // What the binaries and the image need, in every rendered Deployment.
    let image = dockerfile();
    let docs: Vec<&Value> = rendered.iter().flat_map(|(_, d)| d).collect();
    let deployments: Vec<&Value> = docs
        .iter()
        .copied()
        .filter(|d| d["kind"] == "Deployment")
        .collect();
    assert!(deployments.len() >= 4, "global and zone, base and overlay");
    for d in &deployments {
        let name = d["metadata"]["name"].as_str().unwrap_or_default();
        let pod = &d["spec"]["template"]["spec"];
        let psc = &pod["securityContext"];
        assert_eq!(psc["runAsNonRoot"], json!(true), "{name}");
        assert_eq!(
            psc["runAsUser"],
            json!(image.uid),
            "{name}: the image's user"
        );
        assert_eq!(
            psc["seccompProfile"]["type"],
            json!("RuntimeDefault"),
            "{name}"
        );
        assert_eq!(pod["automountServiceAccountToken"], json!(false), "{name}");
        for (init, c) in containers(pod) {
            let cname = format!("{name}/{}", c["name"].as_str().unwrap_or_default());
            let sc = &c["securityContext"];
            assert_eq!(sc["allowPrivilegeEscalation"], json!(false), "{cname}");
            assert_eq!(sc["readOnlyRootFilesystem"], json!(true), "{cname}");
            assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]), "{cname}");
            assert!(
                c["resources"]["requests"].is_object(),
                "{cname}: resource requests"
            );
            // The command names a binary the image contains, whatever its ENTRYPOINT.
            let command: Vec<&str> = c["command"]
                .as_array()
                .unwrap_or_else(|| panic!("{cname}: command is set"))
                .iter()
                .filter_map(Value::as_str)
                .collect();
            let binary = command[0]
                .strip_prefix("/usr/local/bin/")
                .filter(|b| image.binaries.contains(*b))
                .unwrap_or_else(|| panic!("{cname}: {} is not in the image", command[0]));
            let sub: Vec<&str> = command[1..]
                .iter()
                .copied()
                .take_while(|a| !a.starts_with('-'))
                .collect();
            // Every MESHPLANE_* variable is one the binary reads (others are silently ignored).
            let known = env_vars_of(binary, &sub);
            for e in c["env"].as_array().into_iter().flatten() {
                let var = e["name"].as_str().unwrap_or_default();
                if var.starts_with("MESHPLANE_") {
                    assert!(
                        known.contains(var),
                        "{cname}: {var} is not a `{binary} {sub:?}` variable"
                    );
                }
            }
            if !init {
                assert_eq!(
                    c["readinessProbe"]["httpGet"]["path"],
                    json!("/readyz"),
                    "{cname}"
                );
                assert_eq!(
                    c["livenessProbe"]["httpGet"]["path"],
                    json!("/healthz"),
                    "{cname}"
                );
            }
        }
        if kubectl {
            config_paths_are_mounted(name, pod, &docs);
        }
    }

    // The pieces the issue asks for.
    let global = deployments
        .iter()
        .find(|d| d["metadata"]["name"] == "meshplane-global")
        .expect("global");
    assert_eq!(global["spec"]["replicas"], json!(2));
    let has = |kind: &str, name: &str| {
        docs.iter()
            .any(|d| d["kind"] == kind && d["metadata"]["name"] == name)
    };
    assert!(has("PodDisruptionBudget", "meshplane-global"));
    assert!(has("NetworkPolicy", "meshplane-global") && has("NetworkPolicy", "meshplane-zone"));
    let ports = |name: &str| -> BTreeSet<u64> {
        docs.iter()
            .filter(|d| d["kind"] == "Service" && d["metadata"]["name"] == name)
            .flat_map(|s| s["spec"]["ports"].as_array().into_iter().flatten())
            .filter_map(|p| p["port"].as_u64())
            .collect()
    };
    assert_eq!(ports("meshplane-global"), BTreeSet::from([5681, 5685]));
    assert_eq!(ports("meshplane-zone"), BTreeSet::from([5681, 5678]));
}

/// In a rendered Deployment: the config file is where `--config` says, and every path in it that
/// the binary writes or reads (work dir, token, CA, key) is on a volume of the right kind.
fn config_paths_are_mounted(name: &str, pod: &Value, docs: &[&Value]) {
    let c = &pod["containers"][0];
    let mounts: Vec<(&str, &Value)> = c["volumeMounts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            let vol = pod["volumes"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|v| v["name"] == m["name"])
                .unwrap_or_else(|| panic!("{name}: no volume {}", m["name"]));
            (m["mountPath"].as_str().unwrap_or_default(), vol)
        })
        .collect();
    let volume_of = |path: &str| {
        mounts
            .iter()
            .find(|(at, _)| Path::new(path).starts_with(at))
            .map(|(_, v)| *v)
            .unwrap_or_else(|| panic!("{name}: {path} is on no volume (the root is read-only)"))
    };
    let command: Vec<&str> = c["command"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let at = command
        .iter()
        .position(|a| *a == "--config")
        .expect("--config");
    let config_path = command[at + 1];
    let cm_name = volume_of(config_path)["configMap"]["name"].clone();
    let cm = docs
        .iter()
        .find(|d| d["kind"] == "ConfigMap" && d["metadata"]["name"] == cm_name)
        .unwrap_or_else(|| panic!("{name}: ConfigMap {cm_name}"));
    let key = file_name(Path::new(config_path));
    let config: Value = serde_saphyr::from_str(cm["data"][key].as_str().expect("config data"))
        .expect("config YAML");
    let work = config["work-dir"].as_str().expect("work-dir");
    assert!(
        volume_of(work)["emptyDir"].is_object(),
        "{name}: work-dir on an emptyDir"
    );
    for k in ["zone-token-file", "kds-ca-file", "encryption-key-file"] {
        if let Some(p) = config[k].as_str() {
            assert!(
                volume_of(p)["secret"].is_object(),
                "{name}: {k} from a Secret"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Nothing untested

#[test]
fn every_deployment_file_is_one_these_tests_check() {
    for p in files_under(&deploy()) {
        let rel = p
            .strip_prefix(deploy())
            .expect("under deploy")
            .to_path_buf();
        let name = file_name(&p);
        let checked = match rel.components().next().and_then(|c| c.as_os_str().to_str()) {
            // Owned by the resource examples' own tests.
            Some("examples") => true,
            Some("Dockerfile" | "Dockerfile.dockerignore") => true,
            Some("config") => matches!(name, "global.yaml" | "zone.yaml"),
            Some("systemd") => {
                UNITS.iter().any(|(u, _)| *u == name)
                    || matches!(name, "global.env.example" | "zone.env.example")
            }
            Some("kubernetes") => {
                name == "kustomization.yaml"
                    || config_files().contains(&p)
                    || kustomization_dirs().iter().any(|d| {
                        let k = yaml(&d.join("kustomization.yaml"));
                        strings(&k["resources"])
                            .iter()
                            .chain(strings(&k["patches"]).iter())
                            .any(|r| d.join(r) == p)
                    })
            }
            _ => false,
        };
        assert!(
            checked,
            "deploy/{} is not covered by tests/deploy.rs",
            rel.display()
        );
    }
}
