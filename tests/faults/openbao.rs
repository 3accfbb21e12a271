//! (c) OpenBao stopped, sealed and brought back during rotation.

use super::*;
use crate::{checks::*, writer::*};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openbao_stopped_and_sealed_during_rotation() {
    init_test_logging();
    let mut bao = OpenBao::start_dev().await.expect("openbao");
    let seed = bao.seed_setup("default").await.expect("seed");
    let g = Global::start(Store::Memory, &[]).await.expect("global");
    put_ok(
        &g.api,
        "/meshes/default/secrets/vault-token",
        &json!({"type": "Secret", "mesh": "default", "name": "vault-token",
            "data": base64::engine::general_purpose::STANDARD.encode(&seed.token)}),
    )
    .await;
    put_ok(
        &g.api,
        "/meshes/default",
        &json!({"type": "Mesh", "name": "default", "mtls": {"enabledBackend": "vault-1", "backends": [
            {"name": "vault-1", "type": "vault",
             "dpCert": {"rotation": {"expiration": "20s"}, "requestTimeout": "3s"},
             "conf": {"fromCp": {"address": bao.addr, "pki": seed.mount, "role": seed.role,
                "auth": {"token": {"secret": "vault-token"}}}}}]}}),
    )
    .await;
    let z = Zone::start(&g, "zone-1", Store::Memory, &["--cert-backoff-max", "2s"])
        .await
        .expect("zone");
    let mut a1 = agent(&g, &z, "web").await;
    let mut a2 = agent(&g, &z, "api").await;
    let w = Writer::spawn(&g.api, "bao", plain_mesh, Duration::from_millis(50));
    let failures = || count(&z.proc.logs(), "certificate issuance failed");
    let current = |a: &Agent| std::fs::read_to_string(a.cert_dir.join("cert.pem")).expect("cert");

    // Fault 1: OpenBao stops answering (SIGSTOP) until a renewal has failed against it.
    let held = [current(&a1), current(&a2)];
    let before = failures();
    bao.signal("STOP").expect("stop OpenBao");
    eventually(
        WAIT,
        "a renewal to fail while OpenBao is stopped",
        || async { (failures() > before).then_some(()) },
    )
    .await
    .expect("renewal attempted during the outage");
    let kept_1 = [current(&a1), current(&a2)] == held;
    bao.signal("CONT").expect("resume OpenBao");
    let c1 = a1
        .wait_cert(Some(&held[0]), WAIT)
        .await
        .expect("web renewed");
    let c2 = a2
        .wait_cert(Some(&held[1]), WAIT)
        .await
        .expect("api renewed");

    // Fault 2: OpenBao sealed until a renewal has failed against it, then unsealed.
    let before = failures();
    bao.seal().await.expect("seal");
    eventually(
        WAIT,
        "a renewal to fail while OpenBao is sealed",
        || async { (failures() > before).then_some(()) },
    )
    .await
    .expect("renewal attempted while sealed");
    let kept_2 = [current(&a1), current(&a2)] == [c1.clone(), c2.clone()];
    bao.unseal().await.expect("unseal");
    a1.wait_cert(Some(&c1), WAIT)
        .await
        .expect("web renewed after unseal");
    a2.wait_cert(Some(&c2), WAIT)
        .await
        .expect("api renewed after unseal");

    w.wait_more(5, "writes after the faults").await;
    let ledger = w.finish().await;
    let lost = converge(&g.api, &[&z], &["bao"], &ledger).await;
    let without_cert = without_valid_certificate(&mut [&mut a1, &mut a2]).await;
    Summary {
        test: "OpenBao stopped and sealed during rotation",
        faults: 2,
        acked: ledger.acked.len(),
        lost,
        dataplanes: 2,
        without_cert,
        zeros: vec![(
            "outages in which a held certificate was withdrawn",
            usize::from(!kept_1) + usize::from(!kept_2),
        )],
        notes: vec![(
            "issuance failures logged by the zone",
            failures().to_string(),
        )],
    }
    .report_and_assert();
}
