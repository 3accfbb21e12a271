//! The example config files start the real binaries.

use super::*;

/// Every `global.yaml`, `zone.yaml` and `dp.yaml` under `deploy/`: the config files the binaries
/// load.
pub(crate) fn config_files() -> Vec<PathBuf> {
    files_under(&deploy())
        .into_iter()
        .filter(|p| !p.starts_with(deploy().join("examples")))
        .filter(|p| matches!(file_name(p), "global.yaml" | "zone.yaml" | "dp.yaml"))
        .collect()
}

/// The Dataplane an agent config is shipped with: a `dataplane.yaml` beside it (the Kubernetes
/// example mounts both from one ConfigMap), else the resource example a VM install starts from.
pub(crate) fn dataplane_for(config: &Path) -> PathBuf {
    let beside = config.with_file_name("dataplane.yaml");
    if beside.exists() {
        beside
    } else {
        deploy().join("examples").join("dataplane.yaml")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_config_file_starts_the_real_binary() {
    let files = config_files();
    let count = |n: &str| files.iter().filter(|p| file_name(p) == n).count();
    assert!(
        count("global.yaml") >= 3 && count("zone.yaml") >= 3 && count("dp.yaml") >= 2,
        "VM, base and overlay configs, the agent's for a VM and a sidecar: {files:?}"
    );
    // Zones federate with this global; it runs on the in-memory store. Its default Mesh issues
    // certificates, for the agents.
    let g = Global::start(Store::Memory, &[]).await.expect("global");
    let mesh = yaml(&deploy().join("examples").join("mesh-builtin.yaml"));
    let (status, body) = g.api.put("/meshes/default", &mesh).await.expect("mesh");
    assert!(status < 300, "{body}");
    let agents_zone = Zone::start(&g, "agents", Store::Memory, &[])
        .await
        .expect("zone");
    for f in &files {
        let path = f.display().to_string();
        // The file's own addresses, paths and peers are for a real host; the harness overrides
        // them with flags (which win over the file), so the rest of the file is what is tested:
        // every key must be known and every value accepted, or the binary exits.
        if file_name(f) == "dp.yaml" {
            agent_starts_with(f, &g, &agents_zone).await;
            println!("{path}: accepted by the real agent, ready");
            continue;
        }
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

/// Starts the real agent with `config` (its zone, CA, token and paths overridden by flags) and its
/// Dataplane, until it is ready: registered, its certificate written with the file's key mode.
async fn agent_starts_with(config: &Path, g: &Global, z: &Zone) {
    use std::os::unix::fs::PermissionsExt;
    let path = config.display().to_string();
    let dataplane = read(&dataplane_for(config));
    let dp: Value = serde_saphyr::from_str(&dataplane).expect("Dataplane YAML");
    let (mesh, name) = (
        dp["mesh"].as_str().expect("mesh"),
        dp["name"].as_str().expect("name"),
    );
    let service = dp["networking"]["inbound"][0]["tags"]["kuma.io/service"].as_str();
    let token = g
        .dataplane_token(mesh, name, service)
        .await
        .unwrap_or_else(|e| panic!("{path}: token: {e:#}"));
    let metrics = format!("127.0.0.1:{}", free_port());
    let mut a = meshplane_tests::Agent::start_with(
        z,
        &dataplane,
        &token,
        &["--config", &path, "--metrics-addr", &metrics],
    )
    .await
    .unwrap_or_else(|e| panic!("{path}: {e:#}"));
    wait_http_ok(&mut a.proc, &format!("http://{metrics}/readyz"), READY)
        .await
        .unwrap_or_else(|e| panic!("{path}: {e:#}"));
    let want = yaml(config)["key-file-mode"].as_str().map_or(0o600, octal);
    let mode = std::fs::metadata(a.cert_dir.join("key.pem"))
        .expect("key.pem")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, want, "{path}: key.pem has the file's key-file-mode");
    a.proc.terminate(READY).await.expect("stop");
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
