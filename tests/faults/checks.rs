//! Checks after a fault: acknowledged writes converged, dataplanes hold valid certificates, and the summary table.

use super::*;
use crate::writer::*;

/// Every item of a list path, following pages; `None` when the API does not answer 200.
pub(crate) async fn list_all(api: &Api, path: &str) -> Option<Vec<Value>> {
    let mut out = Vec::new();
    loop {
        let (s, v) = api
            .get(&format!("{path}?size=1000&offset={}", out.len()))
            .await
            .ok()?;
        if s != 200 {
            return None;
        }
        let items = v["items"].as_array()?.clone();
        let done = items.len() < 1000;
        out.extend(items);
        if done {
            return Some(out);
        }
    }
}

/// Meshes whose name starts with `prefix`: name → `seq` label.
pub(crate) async fn meshes(api: &Api, prefix: &str) -> Option<BTreeMap<String, String>> {
    Some(
        list_all(api, "/meshes")
            .await?
            .into_iter()
            .filter_map(|m| {
                let name = m["name"].as_str()?.to_string();
                name.starts_with(prefix).then(|| {
                    let seq = m["labels"]["seq"].as_str().unwrap_or("").to_string();
                    (name, seq)
                })
            })
            .collect(),
    )
}

/// Acknowledged writes missing (or different) at `api`.
pub(crate) fn missing(
    acked: &BTreeMap<String, String>,
    found: &BTreeMap<String, String>,
) -> Vec<String> {
    acked
        .iter()
        .filter(|(name, seq)| found.get(*name) != Some(*seq))
        .map(|(name, _)| name.clone())
        .collect()
}

/// Waits until every acknowledged Mesh is at global and in every zone, and every zone holds exactly
/// what global holds (a write whose answer was lost is everywhere or nowhere). Returns how many
/// acknowledged writes are missing somewhere when that does not happen within `WAIT`.
pub(crate) async fn converge(
    global: &Api,
    zones: &[&Zone],
    prefixes: &[&str],
    ledger: &Ledger,
) -> usize {
    let check = || async {
        let mut lost = BTreeSet::new();
        let mut differ = false;
        for prefix in prefixes {
            let acked: BTreeMap<String, String> = ledger
                .acked
                .iter()
                .filter(|(n, _)| n.starts_with(prefix))
                .map(|(n, s)| (n.clone(), s.clone()))
                .collect();
            let Some(at_global) = meshes(global, prefix).await else {
                return (usize::MAX, true);
            };
            lost.extend(missing(&acked, &at_global));
            for z in zones {
                let Some(at_zone) = meshes(&z.api, prefix).await else {
                    return (usize::MAX, true);
                };
                lost.extend(missing(&acked, &at_zone));
                differ |= at_zone != at_global;
            }
        }
        (lost.len(), differ)
    };
    match eventually(
        WAIT,
        "every acknowledged write at global and in every zone",
        || async {
            let (lost, differ) = check().await;
            (lost == 0 && !differ).then_some(())
        },
    )
    .await
    {
        Ok(()) => 0,
        Err(e) => {
            let (lost, differ) = check().await;
            println!("{e}: {lost} acknowledged writes missing; zones differ from global: {differ}");
            lost
        }
    }
}

/// The agent's certificate is valid now: it exists, notAfter is in the future, and it verifies
/// against the agent's trust bundle.
pub(crate) async fn cert_valid(a: &Agent) -> Result<(), String> {
    let cert = a.cert_dir.join("cert.pem");
    let bundle = a.cert_dir.join("bundle.pem");
    if !cert.exists() || !bundle.exists() {
        return Err("no certificate files".into());
    }
    let cert = cert.display().to_string();
    let (code, out, err) = run(
        "openssl",
        &["x509", "-in", &cert, "-noout", "-checkend", "0"],
    )
    .await
    .map_err(|e| e.to_string())?;
    if code != 0 {
        return Err(format!("expired or unreadable: {out}{err}"));
    }
    let (code, out, err) = run(
        "openssl",
        &["verify", "-CAfile", &bundle.display().to_string(), &cert],
    )
    .await
    .map_err(|e| e.to_string())?;
    if code != 0 {
        return Err(format!("does not verify: {out}{err}"));
    }
    Ok(())
}

/// How many agents do not hold a valid certificate within `WAIT` (each is given the time to get
/// one re-issued after the fault).
pub(crate) async fn without_valid_certificate(agents: &mut [&mut Agent]) -> usize {
    let mut bad = 0;
    for a in agents.iter_mut() {
        if let Err(e) = a.proc.check_running() {
            println!("an agent died: {e}");
            bad += 1;
            continue;
        }
        let a: &Agent = a;
        let r = eventually(WAIT, "a valid certificate", || async {
            cert_valid(a).await.ok()
        })
        .await;
        if r.is_err() {
            println!(
                "agent without a valid certificate ({:?}); log:\n{}",
                cert_valid(a).await,
                a.proc.logs()
            );
            bad += 1;
        }
    }
    bad
}

pub(crate) fn dataplane(mesh: &str, name: &str, service: &str) -> String {
    format!(
        "type: Dataplane\nmesh: {mesh}\nname: {name}\nnetworking:\n  address: 127.0.0.1\n  inbound:\n    - port: 8080\n      tags:\n        kuma.io/service: {service}\n"
    )
}

pub(crate) async fn agent(g: &Global, z: &Zone, name: &str) -> Agent {
    let token = g
        .dataplane_token("default", name, Some(name))
        .await
        .expect("dataplane token");
    let mut a = Agent::start(z, &dataplane("default", name, name), &token)
        .await
        .expect("agent");
    a.wait_cert(None, WAIT).await.expect("first certificate");
    a
}

pub(crate) async fn put_ok(api: &Api, path: &str, body: &Value) {
    let (s, b) = api.put(path, body).await.expect("PUT");
    assert!(s == 200 || s == 201, "PUT {path}: {s} {b}");
}

/// Mesh `default` on a builtin CA, for the agents.
pub(crate) async fn builtin_default(g: &Global) {
    put_ok(&g.api, "/meshes/default", &builtin_mesh("default", 0)).await;
}

pub(crate) fn count(log: &str, needle: &str) -> usize {
    log.matches(needle).count()
}

/// One fault test's outcome: printed as a table, appended to the report file, zeros asserted.
pub(crate) struct Summary {
    pub(crate) test: &'static str,
    pub(crate) faults: usize,
    pub(crate) acked: usize,
    pub(crate) lost: usize,
    pub(crate) dataplanes: usize,
    pub(crate) without_cert: usize,
    /// Further measures that must be zero, and notes.
    pub(crate) zeros: Vec<(&'static str, usize)>,
    pub(crate) notes: Vec<(&'static str, String)>,
}

impl Summary {
    pub(crate) fn report_and_assert(self) {
        let mut t = format!("\nfault summary: {}\n", self.test);
        t.push_str(&format!(
            "| {:>15} | {:>19} | {:>11} | {:>10} | {:>38} |\n",
            "faults injected",
            "writes acknowledged",
            "writes lost",
            "dataplanes",
            "dataplanes without a valid certificate"
        ));
        t.push_str(&format!(
            "|{:->17}|{:->21}|{:->13}|{:->12}|{:->40}|\n",
            "", "", "", "", ""
        ));
        t.push_str(&format!(
            "| {:>15} | {:>19} | {:>11} | {:>10} | {:>38} |\n",
            self.faults, self.acked, self.lost, self.dataplanes, self.without_cert
        ));
        for (k, v) in &self.zeros {
            t.push_str(&format!("  {k}: {v} (must be 0)\n"));
        }
        for (k, v) in &self.notes {
            t.push_str(&format!("  {k}: {v}\n"));
        }
        println!("{t}");
        if let Ok(path) = std::env::var("MESHPLANE_RELIABILITY_REPORT") {
            use std::io::Write;
            if let Ok(mut f) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
            {
                let _ = writeln!(
                    f,
                    "{}|{}|{}|{}|{}",
                    self.test, self.faults, self.acked, self.lost, self.without_cert
                );
            }
        }
        assert!(self.faults > 0, "no fault was injected");
        assert!(self.acked > 0, "no write was acknowledged");
        assert_eq!(self.lost, 0, "{}: acknowledged writes lost", self.test);
        assert_eq!(
            self.without_cert, 0,
            "{}: dataplanes without a valid certificate",
            self.test
        );
        for (k, v) in &self.zeros {
            assert_eq!(*v, 0, "{}: {k}", self.test);
        }
    }
}
