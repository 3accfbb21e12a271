//! A rendered pod with the agent as a sidecar: how it shares its files with the application.

use super::*;
use crate::kubernetes::containers;

/// The volume `path` is on in container `c` of `pod`, and whether that mount is read-only.
fn volume_at<'a>(pod: &'a Value, c: &'a Value, path: &str) -> Option<(&'a Value, bool)> {
    let m = c["volumeMounts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| Path::new(path).starts_with(m["mountPath"].as_str().unwrap_or("-")))
        .max_by_key(|m| m["mountPath"].as_str().unwrap_or_default().len())?;
    let v = pod["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|v| v["name"] == m["name"])?;
    Some((v, m["readOnly"] == json!(true)))
}

/// The agent runs as a native sidecar (it starts before the application, whose start its
/// startupProbe holds back until the certificate is on disk); its token is a file from a Secret;
/// its files and socket are on a memory volume every other container mounts read-only; the pod's
/// fsGroup, given to every container, is the agent's group, and its config lets that group read
/// the key and connect, and nobody else.
pub(crate) fn agent_shares_its_files_with_the_workload(name: &str, pod: &Value, docs: &[&Value]) {
    let all = containers(pod);
    let is_agent = |c: &Value| c["command"][0] == "/usr/local/bin/meshplane-dp";
    let (init, agent) = all
        .iter()
        .copied()
        .find(|(_, c)| is_agent(c))
        .unwrap_or_else(|| panic!("{name}: no control plane and no agent"));
    assert!(
        init && agent["restartPolicy"] == "Always",
        "{name}: the agent is a native sidecar (an init container with restartPolicy: Always)"
    );
    let apps: Vec<&Value> = all
        .iter()
        .filter(|(init, c)| !init && !is_agent(c))
        .map(|(_, c)| *c)
        .collect();
    assert!(!apps.is_empty(), "{name}: an application beside the agent");

    // Its config file, from the rendered ConfigMap.
    let config_path = arg_after(&command_of(agent), "--config").expect("--config");
    let (cm_volume, _) = volume_at(pod, agent, config_path).expect("the config is mounted");
    let cm_name = &cm_volume["configMap"]["name"];
    let cm = docs
        .iter()
        .find(|d| d["kind"] == "ConfigMap" && d["metadata"]["name"] == *cm_name)
        .unwrap_or_else(|| panic!("{name}: ConfigMap {cm_name}"));
    let key = file_name(Path::new(config_path));
    let config: Value = serde_saphyr::from_str(cm["data"][key].as_str().expect("config data"))
        .expect("config YAML");
    let path_of = |k: &str| {
        config[k]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: {k} in the agent's config"))
            .to_string()
    };

    let on = |k: &str, kinds: &[&str]| {
        let p = path_of(k);
        let (v, _) = volume_at(pod, agent, &p)
            .unwrap_or_else(|| panic!("{name}: {k} {p} is on no volume (the root is read-only)"));
        assert!(
            kinds.iter().any(|kind| v[*kind].is_object()),
            "{name}: {k} from a {kinds:?} volume: {v}"
        );
    };
    on("dataplane-token-file", &["secret"]);
    on("dataplane-file", &["configMap"]);
    on("cp-ca-file", &["configMap", "secret"]);
    let text = serde_json::to_string(agent).expect("json");
    assert!(
        !text.contains("TOKEN") && !text.contains("secretKeyRef"),
        "{name}: the dataplane token reaches the agent as a file only"
    );

    let socket = path_of("workload-api-socket");
    for p in [path_of("cert-dir"), socket.clone()] {
        let (v, ro) = volume_at(pod, agent, &p).unwrap_or_else(|| panic!("{name}: {p}"));
        assert!(!ro, "{name}: the agent writes {p}");
        assert_eq!(
            v["emptyDir"]["medium"],
            json!("Memory"),
            "{name}: {p} in memory, never on the node's disk"
        );
        for app in &apps {
            let (av, aro) = volume_at(pod, app, &p)
                .unwrap_or_else(|| panic!("{name}/{}: {p} is not mounted", app["name"]));
            assert!(
                av["name"] == v["name"] && aro,
                "{name}/{}: {p} on the agent's volume, read-only",
                app["name"]
            );
        }
    }
    let endpoint = format!("unix://{socket}");
    for app in &apps {
        assert!(
            app["env"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|e| e["name"] == "SPIFFE_ENDPOINT_SOCKET" && e["value"] == json!(endpoint)),
            "{name}/{}: SPIFFE_ENDPOINT_SOCKET={endpoint}",
            app["name"]
        );
    }

    // Who reads: the agent's group is the pod's fsGroup, every container's supplementary group.
    let psc = &pod["securityContext"];
    let group = agent["securityContext"]["runAsGroup"]
        .as_u64()
        .or_else(|| psc["runAsGroup"].as_u64())
        .expect("the agent's group");
    assert_eq!(
        psc["fsGroup"].as_u64(),
        Some(group),
        "{name}: fsGroup is the agent's group"
    );
    let (key_mode, socket_mode) = agent_modes(&config, name);
    println!(
        "{name}: agent sidecar shares {} (key {key_mode:04o}) and {socket} ({socket_mode:04o}) \
         with group {group}",
        path_of("cert-dir")
    );
}
