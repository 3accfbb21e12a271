//! The example config files start the real binaries.

use super::*;

/// Every `global.yaml` and `zone.yaml` under `deploy/`: the config files the binaries load.
pub(crate) fn config_files() -> Vec<PathBuf> {
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
