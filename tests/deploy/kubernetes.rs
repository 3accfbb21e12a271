//! The Kubernetes manifests render and validate; the Dockerfile ships the binaries.

use super::*;
use crate::{
    config::{config_files, dataplane_for},
    kubernetes_agent::agent_shares_its_files_with_the_workload,
};

pub(crate) fn kustomization_dirs() -> Vec<PathBuf> {
    files_under(&deploy().join("kubernetes"))
        .into_iter()
        .filter(|p| file_name(p) == "kustomization.yaml")
        .map(|p| p.parent().expect("dir").to_path_buf())
        .collect()
}

/// The strings of a kustomization list field (`resources`, `patches[].path`, generator `files`).
pub(crate) fn strings(v: &Value) -> Vec<String> {
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
pub(crate) fn containers(pod: &Value) -> Vec<(bool, &Value)> {
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
                if file_name(&path) == "dataplane.yaml" {
                    // The Dataplane an agent config registers: the config test starts the agent
                    // with both.
                    assert!(
                        tested.iter().any(|c| dataplane_for(c) == path),
                        "{}: not beside a tested agent config",
                        path.display()
                    );
                    continue;
                }
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
            // An example's application container (another image) gets the checks above; what the
            // binaries need is checked for containers of this image.
            let image_ref = c["image"].as_str().unwrap_or_default();
            if !image_ref
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .starts_with("meshplane:")
            {
                continue;
            }
            // A native sidecar (an init container that keeps running) is probed like a container.
            let sidecar = init && c["restartPolicy"] == "Always";
            // The command names a binary the image contains, whatever its ENTRYPOINT.
            let command = command_of(c);
            assert!(!command.is_empty(), "{cname}: command is set");
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
            if !init || sidecar {
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
            if sidecar {
                assert_eq!(
                    c["startupProbe"]["httpGet"]["path"],
                    json!("/readyz"),
                    "{cname}: the application starts once the certificate is on disk"
                );
            }
        }
        if kubectl {
            let first = pod["containers"][0]["command"][0]
                .as_str()
                .unwrap_or_default();
            if first.ends_with("/meshplane-global") || first.ends_with("/meshplane-zone") {
                config_paths_are_mounted(name, pod, &docs);
            } else {
                agent_shares_its_files_with_the_workload(name, pod, &docs);
            }
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
    assert!(
        deployments.iter().any(|d| {
            containers(&d["spec"]["template"]["spec"])
                .iter()
                .any(|(_, c)| c["command"][0] == "/usr/local/bin/meshplane-dp")
        }),
        "an example workload with the agent as its sidecar"
    );
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
    let config_path = arg_after(&command_of(c), "--config").expect("--config");
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
    // The database URL carries the password: every container (the migrations too) reads it from a
    // file on a Secret volume, never from an environment variable (every process in the container
    // and `kubectl describe` see those).
    let text = serde_json::to_string(pod).expect("json");
    assert!(
        !text.contains("MESHPLANE_DATABASE_URL"),
        "{name}: the database URL in an environment variable"
    );
    for (_, ctr) in containers(pod) {
        let cname = ctr["name"].as_str().unwrap_or_default();
        let file = Path::new(
            arg_after(&command_of(ctr), "--database-url-file")
                .unwrap_or_else(|| panic!("{name}/{cname}: no --database-url-file")),
        );
        let volume = ctr["volumeMounts"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|m| file.starts_with(m["mountPath"].as_str().unwrap_or("-")))
            .and_then(|m| {
                pod["volumes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|v| v["name"] == m["name"])
            })
            .unwrap_or_else(|| panic!("{name}/{cname}: {} is on no volume", file.display()));
        assert!(
            volume["secret"]["secretName"]
                .as_str()
                .is_some_and(|s| s.ends_with("-db")),
            "{name}/{cname}: the database URL file comes from the -db Secret: {volume}"
        );
    }
}
