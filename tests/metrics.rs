//! Operator metrics, scraped from real processes: global and a zone export build info, their
//! process, API requests by route and status, store and Vault call latency and errors, on the API
//! port and on `--metrics-addr`; the dataplane agent's `/metrics` speaks OpenMetrics.

use std::time::Duration;

use base64::Engine;
use meshplane_test_support::{
    openbao::OpenBao,
    process::{free_port, init_test_logging},
};
use meshplane_tests::{Agent, Global, Store, Zone, eventually, migrated_db};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Scrapes `url`: (content type, body).
async fn scrape(url: &str) -> (String, String) {
    let resp = reqwest::get(url).await.expect("scrape");
    assert_eq!(resp.status(), 200, "{url}");
    let ct = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    (ct, resp.text().await.expect("body"))
}

/// The value of the sample whose line starts with `series ` (name and labels exactly).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn assert_common(text: &str, binary: &str) {
    assert!(
        text.contains(&format!(
            "meshplane_build_info{{binary=\"{binary}\",version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        )),
        "build info of {binary}:\n{text}"
    );
    let rss = sample(text, "process_resident_memory_bytes").expect("process RSS");
    assert!(rss > 1e6, "{binary}: a real RSS, {rss}");
    assert!(sample(text, "process_cpu_seconds_total").is_some_and(|c| c > 0.0));
    assert!(sample(text, "process_open_fds").is_some_and(|n| n > 3.0));
    assert!(text.ends_with("# EOF\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_zone_and_agent_export_operator_metrics() {
    init_test_logging();
    let bao = OpenBao::start_dev().await.expect("openbao");
    let seed = bao.seed_setup("default").await.expect("seed steps 1-4");
    let db = migrated_db().await.expect("database");
    let metrics_port = free_port();
    let metrics_addr = format!("127.0.0.1:{metrics_port}");
    let g = Global::start(
        Store::Postgres(db.url.clone()),
        &["--metrics-addr", &metrics_addr],
    )
    .await
    .expect("global");

    // A Vault-backed Mesh (validated by a real test certificate), and one whose token is wrong.
    g.put_vault_token(&seed.token).await.expect("secret");
    let backend = |secret: &str| {
        json!({"name": "vault-1", "type": "vault",
            "conf": {"fromCp": {"address": bao.addr, "pki": seed.mount, "role": seed.role,
                "commonName": "{{ tag \"kuma.io/service\" }}.mesh",
                "auth": {"token": {"secret": secret}}}}})
    };
    let mesh = |secret: &str| {
        json!({"type": "Mesh", "name": "default",
            "mtls": {"enabledBackend": "vault-1", "backends": [backend(secret)]}})
    };
    let (s, b) = g
        .api
        .put("/meshes/default", &mesh("vault-token"))
        .await
        .expect("mesh");
    assert!(s == 200 || s == 201, "{s} {b}");
    let bad = base64::engine::general_purpose::STANDARD.encode("s.not-a-token");
    g.api
        .put(
            "/meshes/default/secrets/bad-token",
            &json!({"type": "Secret", "mesh": "default", "name": "bad-token", "data": bad}),
        )
        .await
        .expect("secret");
    let (s, b) = g
        .api
        .put("/meshes/default", &mesh("bad-token"))
        .await
        .expect("mesh");
    assert_eq!(s, 400, "a backend with a wrong token is refused: {b}");
    let (s, _) = g.api.get("/meshes/nope").await.expect("get");
    assert_eq!(s, 404);

    for url in [
        format!("{}/metrics", g.api.base),
        format!("http://{metrics_addr}/metrics"),
    ] {
        let (ct, text) = scrape(&url).await;
        assert_eq!(ct, OPENMETRICS, "{url}");
        assert_common(&text, "meshplane-global");
        for series in [
            r#"meshplane_api_requests_total{route="/meshes/{name}",method="PUT",status="200"}"#,
            r#"meshplane_api_requests_total{route="/meshes/{name}",method="PUT",status="400"}"#,
            r#"meshplane_api_requests_total{route="/meshes/{name}",method="GET",status="404"}"#,
            r#"meshplane_api_request_duration_seconds_count{route="/meshes/{name}",method="PUT"}"#,
            r#"meshplane_store_operation_duration_seconds_count{op="write"}"#,
            r#"meshplane_store_operation_duration_seconds_count{op="get"}"#,
            r#"meshplane_vault_request_duration_seconds_count{op="issue"}"#,
        ] {
            assert!(
                sample(&text, series).is_some_and(|v| v >= 1.0),
                "{url}: {series} missing or zero:\n{text}"
            );
        }
        // The wrong token failed some Vault call (which one depends on the order of checks).
        let vault_errors: f64 = text
            .lines()
            .filter(|l| l.starts_with("meshplane_vault_request_errors_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        assert!(
            vault_errors >= 1.0,
            "{url}: no Vault error counted:\n{text}"
        );
        assert!(
            !text.contains("s.not-a-token") && !text.contains(&seed.token),
            "no token in metrics"
        );
    }
    // The metrics listener serves metrics and nothing else.
    let resp = reqwest::get(format!("http://{metrics_addr}/meshes"))
        .await
        .expect("get");
    assert_eq!(resp.status(), 404);

    // A zone and an agent in it.
    let zone_metrics = format!("127.0.0.1:{}", free_port());
    let z = Zone::start(
        &g,
        "zone-1",
        Store::Memory,
        &["--metrics-addr", &zone_metrics],
    )
    .await
    .expect("zone");
    let token = g
        .dataplane_token("default", "web-1", Some("web"))
        .await
        .expect("dataplane token");
    let agent_metrics = format!("127.0.0.1:{}", free_port());
    let yaml = "type: Dataplane\nmesh: default\nname: web-1\nnetworking:\n  address: 127.0.0.1\n  inbound:\n    - port: 8080\n      tags:\n        kuma.io/service: web\n";
    let mut a = Agent::start_with(&z, yaml, &token, &["--metrics-addr", &agent_metrics])
        .await
        .expect("agent");
    a.wait_cert(None, WAIT).await.expect("certificate");

    let (ct, text) = scrape(&format!("http://{zone_metrics}/metrics")).await;
    assert_eq!(ct, OPENMETRICS);
    assert_common(&text, "meshplane-zone");
    let issued = eventually(WAIT, "the zone's Vault issue calls", || async {
        let (_, text) = scrape(&format!("http://{zone_metrics}/metrics")).await;
        sample(
            &text,
            r#"meshplane_vault_request_duration_seconds_count{op="issue"}"#,
        )
        .filter(|v| *v >= 1.0)
    })
    .await
    .expect("the zone issued from Vault");
    assert!(issued >= 1.0);
    assert!(
        sample(
            &text,
            r#"meshplane_store_operation_duration_seconds_count{op="write"}"#
        )
        .is_some_and(|v| v >= 1.0),
        "{text}"
    );

    let (ct, text) = scrape(&format!("http://{agent_metrics}/metrics")).await;
    assert_eq!(ct, OPENMETRICS, "the agent speaks OpenMetrics");
    assert_common(&text, "meshplane-dp");
    assert!(
        sample(&text, "meshplane_dp_certificate_rotations_total").is_some_and(|v| v >= 1.0),
        "{text}"
    );
    drop(a);
    drop(z);
}
