//! The agent's unit run as systemd would run it: its ExecStart with the example config and
//! environment files, its credential, its RuntimeDirectory as systemd creates it, and (when the
//! test runs as root) its user, group and UMask; then who can read what, checked by processes of
//! other users: a workload in the unit's group reads the key and connects to the Workload API, and
//! another user reaches nothing.

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use super::*;
use crate::systemd::{INSTANCE, Paths, service_values, unit_command, unit_entries, unit_env};

const UNIT: &str = "meshplane-dp@.service";
/// Numeric ids, as systemd hands them out: the throwaway user from DynamicUser's range and a static
/// group. No user database entry is needed for the kernel's permission checks.
const AGENT_UID: u32 = 61_999;
const GROUP_GID: u32 = 47_110;
/// A workload that joined the group, and a user that did not.
const WORKLOAD_UID: u32 = 47_111;
const OUTSIDER_UID: u32 = 47_112;

/// Mode bits, owner and group of `p` (through symlinks, as a reader opens it).
fn stat(p: &Path) -> (u32, u32, u32) {
    let m = std::fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    (m.mode() & 0o7777, m.uid(), m.gid())
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// Runs `argv` as `uid` with only `groups` (none: its own gid only); (exit code, stdout, stderr).
fn run_as(uid: u32, groups: &[u32], argv: &[&str]) -> (i32, String, String) {
    let groups_arg = if groups.is_empty() {
        "--clear-groups".to_string()
    } else {
        format!(
            "--groups={}",
            groups
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(",")
        )
    };
    let out = Command::new("setpriv")
        .arg(format!("--reuid={uid}"))
        .arg(format!("--regid={uid}"))
        .arg(groups_arg)
        .args(argv)
        .output()
        .expect("setpriv");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Connects to the Workload API socket as `uid`: curl speaks HTTP/2 to it, and the gRPC server
/// answers any request once connected. (exit code, HTTP status).
fn connect_as(uid: u32, groups: &[u32], socket: &Path) -> (i32, String) {
    let (code, out, err) = run_as(
        uid,
        groups,
        &[
            "curl",
            "-sS",
            "--max-time",
            "10",
            "--http2-prior-knowledge",
            "--unix-socket",
            socket.to_str().expect("utf8"),
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "http://localhost/",
        ],
    );
    (code, format!("{out} {err}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_unit_shares_its_files_and_socket_with_its_group_only() {
    let systemd = deploy().join("systemd");
    let e = unit_entries(&systemd.join(UNIT));
    let one = |key: &str| -> String {
        let v = service_values(&e, key);
        assert_eq!(v.len(), 1, "{UNIT}: exactly one {key}=");
        v[0].clone()
    };
    assert!(
        service_values(&e, "ExecStartPre").is_empty(),
        "{UNIT}: nothing to migrate"
    );
    // Every variable of the example environment file is a real flag's.
    let known = env_vars_of("meshplane-dp", &["run"]);
    for (k, _) in env_file(&systemd.join("dp.env.example")) {
        assert!(
            known.contains(&k),
            "dp.env.example: {k} is not a `meshplane-dp run` variable"
        );
    }
    // As root, the agent runs as systemd's user and group (and other users probe what it wrote),
    // provided that user can reach this checkout's binary, as it can /usr/local/bin.
    let agent_binary = bin("meshplane-dp");
    let root = is_root() && {
        let (code, _, _) = run_as(
            AGENT_UID,
            &[GROUP_GID],
            &["test", "-x", agent_binary.to_str().expect("utf8")],
        );
        if code != 0 {
            println!(
                "{} is not reachable by other users: the agent runs as this user and the \
                 other-user checks are skipped",
                agent_binary.display()
            );
        }
        code == 0
    };
    let curl = has_program("curl", &["--version"]);

    // A zone whose Mesh issues certificates, and a token for the example Dataplane.
    let g = Global::start(Store::Memory, &[]).await.expect("global");
    let mesh: Value = yaml(&deploy().join("examples").join("mesh-builtin.yaml"));
    let (status, body) = g.api.put("/meshes/default", &mesh).await.expect("mesh");
    assert!(status < 300, "{body}");
    let dataplane = deploy().join("examples").join("dataplane.yaml");
    let dp: Value = yaml(&dataplane);
    assert_eq!(
        dp["name"],
        json!(INSTANCE),
        "the instance is the example Dataplane"
    );
    let service = dp["networking"]["inbound"][0]["tags"]["kuma.io/service"]
        .as_str()
        .expect("service tag");
    let token = g
        .dataplane_token("default", INSTANCE, Some(service))
        .await
        .expect("dataplane token");
    let z = Zone::start(&g, "zone-1", Store::Memory, &[])
        .await
        .expect("zone");

    // The host as the install steps and systemd leave it. The test's temp dir must be traversable
    // by the agent's user, as /etc and /run are.
    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let etc = tmp.path().join("etc");
    let run = tmp.path().join("run");
    let credentials = tmp.path().join("credentials");
    std::fs::create_dir_all(etc.join("dataplanes")).expect("etc");
    std::fs::copy(deploy().join("config").join("dp.yaml"), etc.join("dp.yaml")).expect("config");
    std::fs::copy(
        &dataplane,
        etc.join("dataplanes").join(format!("{INSTANCE}.yaml")),
    )
    .expect("dataplane");
    std::fs::copy(z.dp_ca(), etc.join("dp-server-ca.pem")).expect("ca");
    std::fs::create_dir_all(&credentials).expect("credentials");
    std::fs::write(credentials.join("dataplane-token"), &token).expect("token");
    // RuntimeDirectory=: the parent root's 0755, the innermost the service's with its mode.
    let runtime = run.join(one("RuntimeDirectory").replace("%i", INSTANCE));
    std::fs::create_dir_all(&runtime).expect("runtime dir");
    std::fs::set_permissions(
        &runtime,
        std::fs::Permissions::from_mode(octal(&one("RuntimeDirectoryMode"))),
    )
    .expect("chmod");
    if root {
        // LoadCredential= hands the service its own copy; RuntimeDirectory= is the service's.
        std::os::unix::fs::chown(&credentials, Some(AGENT_UID), Some(GROUP_GID)).expect("chown");
        std::os::unix::fs::chown(credentials.join("dataplane-token"), Some(AGENT_UID), None)
            .expect("chown");
        std::fs::set_permissions(
            credentials.join("dataplane-token"),
            std::fs::Permissions::from_mode(0o400),
        )
        .expect("chmod");
        std::os::unix::fs::chown(&runtime, Some(AGENT_UID), Some(GROUP_GID)).expect("chown");
    }

    let metrics = format!("127.0.0.1:{}", free_port());
    let env = unit_env(
        &systemd.join("dp.env.example"),
        &credentials,
        &[
            ("MESHPLANE_CP_ADDRESS", z.dp_url()),
            (
                "MESHPLANE_CP_CA_FILE",
                etc.join("dp-server-ca.pem").display().to_string(),
            ),
            ("MESHPLANE_METRICS_ADDR", metrics.clone()),
        ],
    );
    let argv = unit_command(
        &one("ExecStart"),
        &Paths {
            etc: &etc,
            run: &run,
            credentials: &credentials,
        },
    );
    // systemd sets the umask, then (as root) the user and group, dropping every capability.
    let mut launcher = vec![
        "-c".to_string(),
        format!("umask {} && exec \"$@\"", one("UMask")),
        "sh".to_string(),
    ];
    if root {
        launcher.extend([
            "setpriv".to_string(),
            format!("--reuid={AGENT_UID}"),
            format!("--regid={GROUP_GID}"),
            "--clear-groups".into(),
            "--no-new-privs".into(),
            "--bounding-set=-all".into(),
            "--inh-caps=-all".into(),
        ]);
    } else {
        println!("not root: the agent runs as this user; the other-user checks are skipped");
    }
    launcher.extend(argv);
    let env_refs: Vec<(&str, String)> = env.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    let mut agent = Proc::spawn("meshplane-dp", Path::new("sh"), &launcher, &env_refs)
        .await
        .expect("ExecStart");
    wait_http_ok(&mut agent, &format!("http://{metrics}/readyz"), READY)
        .await
        .expect("the agent is ready: its certificate is on disk");

    let (key_mode, socket_mode) = agent_modes(&yaml(&etc.join("dp.yaml")), "dp.yaml");
    let certs = runtime.join("certs");
    let socket = runtime.join("workload.sock");
    let set = certs.join(std::fs::read_link(certs.join("..data")).expect("..data"));
    let (owner, group) = if root {
        (AGENT_UID, GROUP_GID)
    } else {
        let me = std::fs::metadata(tmp.path()).expect("me");
        (me.uid(), me.gid())
    };
    // What the agent made: the unit's UMask on its directories, its flags on the key and socket.
    let dir_mode = 0o777 & !octal(&one("UMask"));
    for (what, path, want) in [
        ("certs/", certs.clone(), dir_mode),
        ("the rotation's directory", set.clone(), dir_mode & 0o755),
        ("key.pem", set.join("key.pem"), key_mode),
        ("cert.pem", set.join("cert.pem"), 0o644),
        ("bundle.pem", set.join("bundle.pem"), 0o644),
        ("workload.sock", socket.clone(), socket_mode),
    ] {
        assert_eq!(
            stat(&path),
            (want, owner, group),
            "{what}: mode {want:o}, the agent's user and group"
        );
    }
    println!(
        "agent files: certs/ {dir_mode:04o}, key.pem {key_mode:04o}, workload.sock {socket_mode:04o}, \
         owner {owner}, group {group}"
    );

    if root {
        let key = std::fs::read_to_string(certs.join("key.pem")).expect("key");
        let key_path = certs.join("key.pem");
        let cert_path = certs.join("cert.pem");
        let key_arg = key_path.to_str().expect("utf8");
        let cert_arg = cert_path.to_str().expect("utf8");
        // A workload in the group reads the key and the certificate…
        let (code, out, err) = run_as(WORKLOAD_UID, &[GROUP_GID], &["cat", key_arg]);
        assert_eq!(
            (code, out.as_str()),
            (0, key.as_str()),
            "the group reads key.pem: {err}"
        );
        let (code, _, err) = run_as(WORKLOAD_UID, &[GROUP_GID], &["cat", cert_arg]);
        assert_eq!(code, 0, "the group reads cert.pem: {err}");
        // …but cannot replace what it is given.
        let evil = certs.join("key.pem.new");
        let (code, _, _) = run_as(
            WORKLOAD_UID,
            &[GROUP_GID],
            &["touch", evil.to_str().expect("utf8")],
        );
        assert_ne!(code, 0, "the group cannot write into certs/");
        assert!(!evil.exists());
        // Another user reaches nothing.
        for path in [key_arg, cert_arg] {
            let (code, _, err) = run_as(OUTSIDER_UID, &[], &["cat", path]);
            assert!(
                code != 0 && err.contains("Permission denied"),
                "another user must not read {path}: {code} {err}"
            );
        }
        if curl {
            let (code, status) = connect_as(WORKLOAD_UID, &[GROUP_GID], &socket);
            assert_eq!(
                (code, status.trim()),
                (0, "200"),
                "the group connects to the Workload API"
            );
            let (code, status) = connect_as(OUTSIDER_UID, &[], &socket);
            // curl's "couldn't connect": the runtime directory and the socket refuse the user.
            assert_eq!(code, 7, "another user must not connect: {status}");
            println!("workload in the group: reads key.pem, connects; another user: neither");
        } else {
            println!("curl not found: the socket's mode and owner are checked, connecting is not");
        }
    }

    // SIGTERM reaches the agent through the launchers' exec: it deregisters and stops cleanly.
    assert_eq!(agent.terminate(READY).await.expect("agent stops"), Some(0));
}
