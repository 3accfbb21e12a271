//! The systemd units: `systemd-analyze verify` and hardening, and their commands run as systemd would.

use super::*;

/// `(section, key, value)` of a unit file, in order. Continuation lines are not used in ours.
pub(crate) fn unit_entries(p: &Path) -> Vec<(String, String, String)> {
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

pub(crate) fn service_values(entries: &[(String, String, String)], key: &str) -> Vec<String> {
    entries
        .iter()
        .filter(|(s, k, _)| s == "Service" && k == key)
        .map(|(_, _, v)| v.clone())
        .collect()
}

/// What a unit runs, for the checks that differ between the control planes and the agent.
pub(crate) enum Role {
    /// A control plane: its `deploy/config` file's work-dir is the unit's StateDirectory.
    Server { config: &'static str },
    /// The agent template: per instance, its files and socket live in its RuntimeDirectory and are
    /// shared with the unit's group, never with other users.
    Agent { config: &'static str },
}

pub(crate) struct Unit {
    pub name: &'static str,
    pub credentials: &'static [&'static str],
    pub env_example: &'static str,
    pub role: Role,
}

pub(crate) const UNITS: [Unit; 3] = [
    Unit {
        name: "meshplane-global.service",
        credentials: &["database-url", "encryption-key"],
        env_example: "global.env.example",
        role: Role::Server {
            config: "global.yaml",
        },
    },
    Unit {
        name: "meshplane-zone.service",
        credentials: &["database-url", "zone-token", "encryption-key"],
        env_example: "zone.env.example",
        role: Role::Server {
            config: "zone.yaml",
        },
    },
    Unit {
        name: "meshplane-dp@.service",
        credentials: &["dataplane-token"],
        env_example: "dp.env.example",
        role: Role::Agent { config: "dp.yaml" },
    },
];

/// The instance the agent template is verified and run as.
pub(crate) const INSTANCE: &str = "backend-1";

/// The file name systemd would load an instance of `unit` from (`meshplane-dp@backend-1.service`).
fn instance_name(unit: &str) -> String {
    unit.replace("@.", &format!("@{INSTANCE}."))
}

/// The value of `--flag` in an `ExecStart=` line.
pub(crate) fn flag_value<'a>(exec: &'a str, flag: &str) -> Option<&'a str> {
    arg_after(&exec.split_whitespace().collect::<Vec<_>>(), flag)
}

/// The agent's own checks: where its files go, who may reach them.
fn agent_shares_with_its_group_only(name: &str, e: &[(String, String, String)], config: &str) {
    let one = |key: &str| -> String {
        let v = service_values(e, key);
        assert_eq!(v.len(), 1, "{name}: exactly one {key}=, found {v:?}");
        v[0].clone()
    };
    let runtime = one("RuntimeDirectory");
    assert_eq!(
        runtime, "meshplane-dp/%i",
        "{name}: one runtime directory per instance"
    );
    let exec = one("ExecStart");
    for flag in ["--cert-dir", "--workload-api-socket"] {
        let at = flag_value(&exec, flag).unwrap_or_else(|| panic!("{name}: {flag}"));
        assert!(
            at.starts_with(&format!("/run/{runtime}/")),
            "{name}: {flag} {at} is in the RuntimeDirectory (the only writable place)"
        );
    }
    let dir_mode = octal(&one("RuntimeDirectoryMode"));
    assert_eq!(dir_mode & 0o007, 0, "{name}: other users cannot enter");
    assert_eq!(dir_mode & 0o050, 0o050, "{name}: the group can enter");
    let umask = octal(&one("UMask"));
    assert_eq!(
        umask & 0o027,
        0o027,
        "{name}: no group write, nothing for others"
    );
    assert_eq!(
        one("RuntimeDirectoryPreserve"),
        "restart",
        "{name}: a restart keeps the workload's certificate"
    );
    assert!(!one("Group").is_empty(), "{name}: the group workloads join");
    agent_modes(&yaml(&deploy().join("config").join(config)), config);
}

#[test]
fn systemd_units_verify_and_are_hardened() {
    let dir = deploy().join("systemd");
    let units: BTreeSet<String> = files_under(&dir)
        .iter()
        .map(|p| file_name(p).to_string())
        .filter(|n| n.ends_with(".service"))
        .collect();
    let expected: BTreeSet<String> = UNITS.iter().map(|u| u.name.to_string()).collect();
    assert_eq!(units, expected, "the units this test checks");

    for Unit {
        name,
        credentials,
        role,
        ..
    } in &UNITS
    {
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
        match role {
            Role::Server { config } => {
                let state = one("StateDirectory");
                let config = yaml(&deploy().join("config").join(config));
                assert_eq!(
                    config["work-dir"],
                    json!(format!("/var/lib/{state}")),
                    "{name}: the config's work-dir is the unit's StateDirectory"
                );
            }
            Role::Agent { config } => {
                let exec = one("ExecStart");
                assert_eq!(
                    flag_value(&exec, "--config"),
                    Some(format!("/etc/meshplane/{config}").as_str()),
                    "{name}: deploy/config/{config}"
                );
                agent_shares_with_its_group_only(name, &e, config);
            }
        }
        let loaded: BTreeSet<String> = service_values(&e, "LoadCredential")
            .iter()
            .map(|v| v.split(':').next().unwrap_or_default().to_string())
            .collect();
        for c in *credentials {
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
    // A template is verified as itself and as the instance systemd would load.
    let copies = tempfile::tempdir().expect("tempdir");
    let names: BTreeSet<String> = UNITS
        .iter()
        .flat_map(|u| [u.name.to_string(), instance_name(u.name)])
        .collect();
    for name in &names {
        let shipped =
            std::fs::read_to_string(dir.join(name.replace(&format!("@{INSTANCE}."), "@.")))
                .expect("read unit");
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

/// Where a unit's command finds its files in a test: this checkout's binaries for
/// `/usr/local/bin`, a test `/etc/meshplane` and `/run`, and its credentials directory for `%d`.
pub(crate) struct Paths<'a> {
    pub etc: &'a Path,
    pub run: &'a Path,
    pub credentials: &'a Path,
}

/// The argv of an `ExecStart*=` line as systemd would run it: no shell, `%d` resolved to the
/// credentials directory, `%i` to [`INSTANCE`], the install paths pointed at the test's.
pub(crate) fn unit_command(value: &str, paths: &Paths<'_>) -> Vec<String> {
    assert!(
        !value.contains(['\'', '"', '$', ';', '|']),
        "a plain command, no shell quoting or expansion: {value}"
    );
    let argv: Vec<String> = value
        .split_whitespace()
        .map(|a| {
            a.replace("%d/", &format!("{}/", paths.credentials.display()))
                .replace("%i", INSTANCE)
                .replace("/usr/local/bin/", &format!("{}/", bin_dir().display()))
                .replace("/etc/meshplane/", &format!("{}/", paths.etc.display()))
                .replace("/run/", &format!("{}/", paths.run.display()))
        })
        .collect();
    assert!(
        argv.iter().all(|a| !a.contains('%')),
        "no systemd specifier but %d and %i: {value}"
    );
    argv
}

/// The environment systemd gives the unit's commands: its EnvironmentFile (the example), its
/// credentials directory, and the test's overrides (addresses, paths), which win.
pub(crate) fn unit_env(
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
    let run = etc.join("run");
    let paths = Paths {
        etc,
        run: &run,
        credentials: &credentials,
    };
    let pre = unit_command(&pre[0], &paths);
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
    let start = unit_command(&start[0], &paths);
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
