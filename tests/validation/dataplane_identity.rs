//! Dataplanes that are not inbound-only, end to end (issue 16): a gateway, an outbound-only and a
//! transparent-proxy-only Dataplane register through real agents with a zone, and get the identity
//! Kuma gives them (checked with openssl): the gateway its service's, an outbound-only one its
//! `kuma.io/workload` label's, and one with neither none, said in Kuma's words.

use meshplane_tests::{Agent, Zone};

use super::common::*;

const WAIT: Duration = Duration::from_secs(60);

async fn sans(cert_pem: &str) -> String {
    let dir = tempfile::tempdir().expect("dir");
    let f = dir.path().join("c.pem");
    std::fs::write(&f, cert_pem).expect("write");
    let path = f.to_str().expect("utf8");
    let (code, out, err) = run(
        "openssl",
        &["x509", "-in", path, "-noout", "-ext", "subjectAltName"],
    )
    .await
    .expect("openssl");
    assert_eq!(code, 0, "openssl: {err}");
    out
}

async fn wait_log(agent: &Agent, text: &str) {
    eventually(WAIT, text, || async {
        agent.proc.logs().contains(text).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}; agent log:\n{}", agent.proc.logs()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateways_and_outbound_only_dataplanes_get_the_identity_kuma_gives_them() {
    meshplane_test_support::process::init_test_logging();
    let g = Global::start(Store::Memory, &[]).await.expect("global");
    let (s, b) = g
        .api
        .put(
            "/meshes/default",
            &mesh(
                "default",
                "ca-1",
                vec![json!({"name": "ca-1", "type": "builtin"})],
            ),
        )
        .await
        .expect("mesh");
    assert!(s == 200 || s == 201, "{s} {b}");
    let zone = Zone::start(&g, "east", Store::Memory, &[])
        .await
        .expect("zone");

    // A builtin gateway takes its service's identity; the zone's name is stamped on its tags.
    let token = g
        .dataplane_token("default", "edge-1", Some("edge"))
        .await
        .expect("token");
    let gateway = "type: Dataplane\nmesh: default\nname: edge-1\nnetworking:\n  address: 127.0.0.1\n  gateway:\n    type: BUILTIN\n    tags:\n      kuma.io/service: edge\n";
    let mut edge = Agent::start(&zone, gateway, &token).await.expect("agent");
    let cert = edge
        .wait_cert(None, WAIT)
        .await
        .expect("gateway certificate");
    let got = sans(&cert).await;
    assert!(
        got.contains("URI:spiffe://default/edge, URI:kuma://kuma.io/service/edge, URI:kuma://kuma.io/zone/east"),
        "{got}"
    );
    let (s, stored) = zone
        .api
        .get("/meshes/default/dataplanes/edge-1")
        .await
        .expect("get");
    assert_eq!(s, 200);
    assert_eq!(
        stored["networking"]["gateway"],
        json!({"type": "BUILTIN", "tags": {"kuma.io/service": "edge", "kuma.io/zone": "east"}})
    );

    // Outbound-only, with the workload label Kuma derives the identity from.
    let token = g
        .dataplane_token("default", "batch-1", Some("batch"))
        .await
        .expect("token");
    let outbound_only = "type: Dataplane\nmesh: default\nname: batch-1\nlabels:\n  kuma.io/workload: batch\nnetworking:\n  address: 127.0.0.1\n  outbound:\n    - port: 3333\n      tags:\n        kuma.io/service: redis\n";
    let mut batch = Agent::start(&zone, outbound_only, &token)
        .await
        .expect("agent");
    let cert = batch
        .wait_cert(None, WAIT)
        .await
        .expect("workload certificate");
    let got = sans(&cert).await;
    assert!(
        got.contains("URI:spiffe://default/batch, URI:kuma://kuma.io/service/batch"),
        "{got}"
    );
    assert!(
        !got.contains("redis"),
        "an outbound is not who it is: {got}"
    );

    // Transparent proxying only, no label: registered, but without an identity, as in Kuma.
    let token = g
        .dataplane_token("default", "tp-1", None)
        .await
        .expect("token");
    let tproxy = "type: Dataplane\nmesh: default\nname: tp-1\nnetworking:\n  address: 127.0.0.1\n  transparentProxying:\n    redirectPortInbound: 15006\n    redirectPortOutbound: 15001\n";
    let tp = Agent::start(&zone, tproxy, &token).await.expect("agent");
    wait_log(
        &tp,
        "has no kuma.io/service tag and no kuma.io/workload label, cannot derive mTLS identity",
    )
    .await;
    let (s, _) = zone
        .api
        .get("/meshes/default/dataplanes/tp-1")
        .await
        .expect("get");
    assert_eq!(s, 200, "registered");
    assert!(!tp.cert_dir.join("cert.pem").exists(), "no certificate");

    // A token bound to a service cannot register a Dataplane that has none.
    let token = g
        .dataplane_token("default", "tp-2", Some("web"))
        .await
        .expect("token");
    let other = tproxy.replace("tp-1", "tp-2");
    let refused = Agent::start(&zone, &other, &token).await.expect("agent");
    wait_log(&refused, "required by the token").await;
    let (s, _) = zone
        .api
        .get("/meshes/default/dataplanes/tp-2")
        .await
        .expect("get");
    assert_eq!(s, 404, "nothing registered");
}
