//! Dataplane identity end to end: agents register with their zones, receive Vault-issued certificates,
//! prove them in openssl mutual-TLS handshakes and through py-spiffe, and keep them fresh through
//! rotation, Vault outages, zone restarts and a CA rotation.

use std::time::Duration;

use meshplane_test_support::openbao::{OpenBao, SeedPki};
use meshplane_tests::{Agent, Global, Store, Zone, eventually, migrated_db, run};

mod identity_util;
use identity_util::*;

/// Rewrites the seed's role with key_usage names OpenBao understands (no 'KeyUsage' prefix), as
/// global's validation warning advises, so leaves carry the KeyUsage extension SVIDs need.
async fn fix_key_usage(bao: &OpenBao, mount: &str) {
    bao.bao(&[
        "write",
        &format!("{mount}/roles/dataplane-proxies"),
        "allowed_uri_sans=spiffe://default/*,kuma://*",
        "key_usage=DigitalSignature,KeyAgreement,KeyEncipherment",
        "ext_key_usage=ExtKeyUsageServerAuth,ExtKeyUsageClientAuth",
        "client_flag=true",
        "require_cn=false",
        "allowed_domains=mesh",
        "allow_subdomains=true",
        "basic_constraints_valid_for_non_ca=true",
        "max_ttl=720h",
        "ttl=720h",
    ])
    .await
    .expect("role");
}

/// A global with mesh `default` on the seed's Vault PKI.
async fn vault_world(expiration: &str) -> (Global, OpenBao, SeedPki) {
    meshplane_test_support::process::init_test_logging();
    let bao = OpenBao::start_dev().await.expect("openbao");
    let seed = bao.seed_setup("default").await.expect("seed steps 1-4");
    let g = Global::start(Store::Memory, &[]).await.expect("global");
    put_token_secret(&g, &seed.token).await;
    let warnings = put_mesh(
        &g,
        "vault-1",
        vec![vault_backend(
            "vault-1",
            &bao,
            &seed.mount,
            &seed.role,
            expiration,
        )],
    )
    .await;
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("without a KeyUsage extension")),
        "the seed's role gets the KeyUsage warning: {warnings:?}"
    );
    (g, bao, seed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_zones_hold_vault_certificates_and_complete_mutual_tls() {
    let (g, _bao, seed) = vault_world("24h").await;
    let z1 = Zone::start(&g, "zone-1", Store::Memory, &[])
        .await
        .expect("zone-1");
    let z2 = Zone::start(&g, "zone-2", Store::Memory, &[])
        .await
        .expect("zone-2");
    let mut web = agent(&g, &z1, "web-1", "web").await;
    let mut backend = agent(&g, &z2, "backend-1", "my_backend").await;
    let web_cert = web.wait_cert(None, WAIT).await.expect("web cert");
    let backend_cert = backend.wait_cert(None, WAIT).await.expect("backend cert");

    let sans = x509(&web_cert, &["-ext", "subjectAltName"]).await;
    assert!(
        sans.contains("URI:spiffe://default/web, URI:kuma://kuma.io/service/web, URI:kuma://kuma.io/zone/zone-1, URI:kuma://version/v1"),
        "SANs in Kuma's order: {sans}"
    );
    assert!(
        x509(&backend_cert, &["-subject"])
            .await
            .contains("CN = my-backend.mesh"),
        "CN from the template"
    );
    let root = x509(&seed.root_pem, &["-subject"])
        .await
        .replace("subject=", "");
    assert!(
        x509(&web_cert, &["-issuer"]).await.contains(root.trim()),
        "issued by the seed's Vault root"
    );
    let ext = x509(&web_cert, &["-ext", "extendedKeyUsage"]).await;
    assert!(
        ext.contains("TLS Web Server Authentication")
            && ext.contains("TLS Web Client Authentication"),
        "{ext}"
    );
    for a in [&web, &backend] {
        let (code, out, err) = run(
            "openssl",
            &[
                "verify",
                "-CAfile",
                &a.cert_dir.join("bundle.pem").display().to_string(),
                &a.cert_dir.join("cert.pem").display().to_string(),
            ],
        )
        .await
        .expect("verify");
        assert_eq!(code, 0, "{out}{err}");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(a.cert_dir.join("key.pem"))
            .expect("key")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "key.pem must be private");
    }
    let seen = handshake(&web.cert_dir, &backend.cert_dir)
        .await
        .expect("mTLS");
    assert!(
        seen.contains("spiffe://default/my_backend"),
        "the server saw the client's identity: {seen}"
    );
    let seen = handshake(&backend.cert_dir, &web.cert_dir)
        .await
        .expect("mTLS the other way");
    assert!(seen.contains("spiffe://default/web"), "{seen}");

    // Global sees both dataplanes, their zones and certificate status.
    eventually(WAIT, "both dataplanes' insights at global", || async {
        let (_, v) = g
            .api
            .get("/meshes/default/dataplanes/_overview")
            .await
            .ok()?;
        let items = v["items"].as_array()?;
        let ok = items.len() == 2
            && items
                .iter()
                .all(|d| d["dataplaneInsight"]["mTLS"]["issuedBackend"] == "vault-1");
        ok.then_some(())
    })
    .await
    .expect("insights synced");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn py_spiffe_fetches_an_x509_svid_and_bundle_from_the_agent() {
    let python = venv_python();
    assert!(
        python.exists(),
        "{} is missing: scripts/test.sh creates it (python3 -m venv .venv && .venv/bin/pip install spiffe==0.3.2)",
        python.display()
    );
    let (g, bao, seed) = vault_world("24h").await;
    fix_key_usage(&bao, &seed.mount).await;
    // With the role fixed, validation no longer warns.
    let warnings = put_mesh(
        &g,
        "vault-1",
        vec![vault_backend(
            "vault-1",
            &bao,
            &seed.mount,
            &seed.role,
            "24h",
        )],
    )
    .await;
    assert!(
        warnings.iter().all(|w| !w.contains("KeyUsage")),
        "{warnings:?}"
    );
    let z = Zone::start(&g, "zone-1", Store::Memory, &[])
        .await
        .expect("zone");
    let mut a = agent(&g, &z, "web-1", "web").await;
    a.wait_cert(None, WAIT).await.expect("cert");
    let script = format!(
        r#"
from spiffe import WorkloadApiClient, TrustDomain
with WorkloadApiClient(socket_path="unix://{sock}", default_timeout=20) as c:
    svid = c.fetch_x509_svid()
    print("id", svid.spiffe_id)
    print("chain", len(svid.cert_chain))
    bundles = c.fetch_x509_bundles()
    b = bundles.get_bundle_for_trust_domain(TrustDomain("default"))
    print("authorities", len(b.x509_authorities))
"#,
        sock = a.socket.display()
    );
    let (code, out, err) = run(python.to_str().expect("utf8"), &["-c", &script])
        .await
        .expect("python");
    assert_eq!(
        code,
        0,
        "py-spiffe failed: {err}\nagent log:\n{}",
        a.proc.logs()
    );
    assert!(out.contains("id spiffe://default/web"), "{out}");
    assert!(out.contains("authorities 1"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_rotate_before_they_expire() {
    let (g, _bao, _seed) = vault_world("20s").await;
    let z = Zone::start(&g, "zone-1", Store::Memory, &[])
        .await
        .expect("zone");
    let mut a = agent(&g, &z, "web-1", "web").await;
    let first = a.wait_cert(None, WAIT).await.expect("first");
    let second = a
        .wait_cert(Some(&first), Duration::from_secs(40))
        .await
        .expect("rotated");
    let end = |c: String| async move { x509(&c, &["-enddate"]).await };
    let (e1, e2) = (end(first.clone()).await, end(second.clone()).await);
    assert_ne!(e1, e2, "the rotated certificate expires later");
    // Rotation happened before the first one expired: 70-80% of 20s is 14-16s.
    let serial = |c: String| async move { x509(&c, &["-serial"]).await };
    assert_ne!(serial(first).await, serial(second).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vault_outage_keeps_the_valid_certificate_and_renewal_resumes() {
    let (g, bao, _seed) = vault_world("30s").await;
    let z = Zone::start(&g, "zone-1", Store::Memory, &["--cert-backoff-max", "2s"])
        .await
        .expect("zone");
    let mut a = agent(&g, &z, "web-1", "web").await;
    let first = a.wait_cert(None, WAIT).await.expect("first");
    bao.signal("STOP").expect("stop OpenBao");
    // Past the renewal point (21-24s after issuance) but before expiry (30s): still the same, valid cert.
    tokio::time::sleep(Duration::from_secs(25)).await;
    let current = std::fs::read_to_string(a.cert_dir.join("cert.pem")).expect("cert");
    assert_eq!(
        current, first,
        "the valid certificate is still served during the outage"
    );
    let logs = z.proc.logs();
    assert!(
        logs.contains("certificate issuance failed"),
        "renewal was attempted during the outage"
    );
    bao.signal("CONT").expect("resume OpenBao");
    let renewed = a
        .wait_cert(Some(&first), Duration::from_secs(30))
        .await
        .expect("renewal resumed");
    assert_ne!(renewed, first);
}

/// `text` without terminal colour sequences (`ESC [ … m`), which log field names may carry.
fn without_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

async fn vault_cert_count(bao: &OpenBao, mount: &str) -> usize {
    bao.request(
        reqwest::Method::from_bytes(b"LIST").expect("LIST"),
        &format!("{mount}/certs"),
        None,
    )
    .await
    .expect("list certs")["data"]["keys"]
        .as_array()
        .map_or(0, Vec::len)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zone_restart_issues_nothing_that_is_still_valid() {
    let (g, bao, seed) = vault_world("24h").await;
    let db = migrated_db().await.expect("zone db");
    let mut z = Zone::start(&g, "zone-1", Store::Postgres(db.url.clone()), &[])
        .await
        .expect("zone");
    let mut a = agent(&g, &z, "web-1", "web").await;
    let cert = a.wait_cert(None, WAIT).await.expect("cert");
    // The agent serves the Workload API, so it also gets an X.509-SVID, issued on its own and
    // possibly after the mesh certificate: count Vault's certificates only once both are held.
    let log = a.dir.path().join("agent.log");
    eventually(WAIT, "the agent to hold its SVID too", || async {
        let text = std::fs::read_to_string(&log).ok()?;
        without_ansi(&text).contains("svids=1").then_some(())
    })
    .await
    .expect("SVID held");
    let before = vault_cert_count(&bao, &seed.mount).await;
    let written = std::fs::metadata(a.cert_dir.join("cert.pem"))
        .expect("meta")
        .modified()
        .expect("mtime");
    z.proc
        .terminate(Duration::from_secs(20))
        .await
        .expect("zone stops");
    let logged_before = z.proc.logs().len();
    z.launch().await.expect("zone restarts");
    // The agent reconnects, re-registers and is served again (it rewrites its files).
    eventually(
        WAIT,
        "the agent to be served by the restarted zone",
        || async {
            let m = std::fs::metadata(a.cert_dir.join("cert.pem"))
                .ok()?
                .modified()
                .ok()?;
            (m > written).then_some(())
        },
    )
    .await
    .expect("served again");
    assert_eq!(
        std::fs::read_to_string(a.cert_dir.join("cert.pem")).expect("cert"),
        cert,
        "the same certificate is served"
    );
    assert_eq!(
        vault_cert_count(&bao, &seed.mount).await,
        before,
        "no new issue call for a valid certificate"
    );
    // Its registration was answered from what the restarted zone read at start, not from a
    // store read of its own.
    let after = without_ansi(&z.proc.logs()[logged_before..]);
    assert!(
        after
            .lines()
            .any(|l| l.contains("dataplane registered (unchanged)") && l.contains("web-1")),
        "the restarted zone did not take web-1's registration as unchanged:\n{after}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dataplane_token_cannot_register_another_name_or_service() {
    let (g, _bao, _seed) = vault_world("24h").await;
    let z = Zone::start(&g, "zone-1", Store::Memory, &[])
        .await
        .expect("zone");
    for (token_for, service, expect) in [
        (
            "someone-else",
            "web",
            "for default/someone-else, not default/web-1",
        ),
        ("web-1", "admin", "for service \"admin\", not \"web\""),
    ] {
        let token = g
            .dataplane_token("default", token_for, Some(service))
            .await
            .expect("token");
        let a = Agent::start(&z, &dataplane("web-1", "web", 8080), &token)
            .await
            .expect("agent");
        eventually(WAIT, "the zone's refusal in the agent log", || async {
            let l = a.proc.logs();
            (l.contains("PermissionDenied") && l.contains(expect)).then_some(())
        })
        .await
        .unwrap_or_else(|e| panic!("{e}; agent log:\n{}", a.proc.logs()));
        assert!(
            !a.cert_dir.join("cert.pem").exists(),
            "no certificate for a refused dataplane"
        );
    }
    let (status, _) = z
        .api
        .get("/meshes/default/dataplanes/web-1")
        .await
        .expect("get");
    assert_eq!(status, 404, "nothing was registered");
}

/// A second PKI mount like the seed's, for the rotation target.
async fn second_mount(bao: &OpenBao) -> String {
    let m = "kmesh-pki-default-v2";
    bao.bao(&["secrets", "enable", &format!("-path={m}"), "pki"])
        .await
        .expect("enable");
    bao.bao(&["secrets", "tune", "-max-lease-ttl=87600h", m])
        .await
        .expect("tune");
    bao.bao(&[
        "write",
        &format!("{m}/root/generate/internal"),
        "common_name=default mesh root v2",
        "ttl=87600h",
    ])
    .await
    .expect("root");
    bao.bao(&[
        "write",
        &format!("{m}/roles/dataplane-proxies"),
        "allowed_uri_sans=spiffe://default/*,kuma://*",
        "key_usage=KeyUsageKeyEncipherment,KeyUsageKeyAgreement,KeyUsageDigitalSignature",
        "ext_key_usage=ExtKeyUsageServerAuth,ExtKeyUsageClientAuth",
        "client_flag=true",
        "require_cn=false",
        "allowed_domains=mesh",
        "allow_subdomains=true",
        "basic_constraints_valid_for_non_ca=true",
        "max_ttl=720h",
        "ttl=720h",
    ])
    .await
    .expect("role");
    m.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ca_rotation_across_two_backends_without_a_failed_handshake() {
    meshplane_test_support::process::init_test_logging();
    let bao = OpenBao::start_dev().await.expect("openbao");
    let seed = bao.seed_setup("default").await.expect("seed");
    let v2 = second_mount(&bao).await;
    let g = Global::start(Store::Memory, &[]).await.expect("global");
    // One token allowed on both mounts (root here; a real deployment grants both issue paths).
    put_token_secret(&g, &bao.root_token).await;
    let b1 = vault_backend("vault-1", &bao, &seed.mount, &seed.role, "24h");
    let b2 = vault_backend("vault-2", &bao, &v2, "dataplane-proxies", "24h");
    put_mesh(&g, "vault-1", vec![b1.clone()]).await;
    let z1 = Zone::start(&g, "zone-1", Store::Memory, &[])
        .await
        .expect("zone-1");
    let z2 = Zone::start(&g, "zone-2", Store::Memory, &[])
        .await
        .expect("zone-2");
    let mut web = agent(&g, &z1, "web-1", "web").await;
    let mut api = agent(&g, &z2, "api-1", "api").await;
    web.wait_cert(None, WAIT).await.expect("web");
    api.wait_cert(None, WAIT).await.expect("api");
    handshake(&web.cert_dir, &api.cert_dir)
        .await
        .expect("before rotation");

    // 1. Add the new backend: everyone trusts both roots; identities still come from vault-1.
    put_mesh(&g, "vault-1", vec![b1.clone(), b2.clone()]).await;
    for a in [&web, &api] {
        eventually(WAIT, "both roots in the bundle", || async {
            (bundle_roots(a) == 2).then_some(())
        })
        .await
        .expect("trust both");
    }
    handshake(&web.cert_dir, &api.cert_dir)
        .await
        .expect("after adding the backend");

    // 2. Switch the enabled backend: certificates are re-issued from vault-2, one after the other.
    let old_web = std::fs::read_to_string(web.cert_dir.join("cert.pem")).expect("cert");
    let old_api = std::fs::read_to_string(api.cert_dir.join("cert.pem")).expect("cert");
    put_mesh(&g, "vault-2", vec![b1, b2.clone()]).await;
    let new_web = web
        .wait_cert(Some(&old_web), WAIT)
        .await
        .expect("web re-issued");
    assert!(
        x509(&new_web, &["-issuer"]).await.contains("root v2"),
        "issued by the new backend"
    );
    // Mixed state or not, handshakes keep working because both roots are trusted.
    handshake(&web.cert_dir, &api.cert_dir)
        .await
        .expect("during the switch");
    api.wait_cert(Some(&old_api), WAIT)
        .await
        .expect("api re-issued");
    handshake(&api.cert_dir, &web.cert_dir)
        .await
        .expect("after the switch");

    // 3. Remove the old backend.
    put_mesh(&g, "vault-2", vec![b2]).await;
    for a in [&web, &api] {
        eventually(WAIT, "only the new root in the bundle", || async {
            (bundle_roots(a) == 1).then_some(())
        })
        .await
        .expect("old root gone");
    }
    handshake(&web.cert_dir, &api.cert_dir)
        .await
        .expect("after removing the old backend");
}

/// Envoy's SDS on the zone's dataplane server, with Envoy's own protos: the identity and CA secrets of
/// the token's dataplane, pushed on the stream; another mesh's secrets are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_sds_serves_the_dataplanes_identity_and_trust() {
    use envoy_types::pb::envoy::{
        extensions::transport_sockets::tls::v3::{Secret, secret},
        service::{
            discovery::v3::DiscoveryRequest,
            secret::v3::secret_discovery_service_client::SecretDiscoveryServiceClient,
        },
    };
    use prost::Message;
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let (g, _bao, _seed) = vault_world("24h").await;
    let z = Zone::start(&g, "zone-1", Store::Memory, &[])
        .await
        .expect("zone");
    let token = g
        .dataplane_token("default", "web-1", Some("web"))
        .await
        .expect("token");
    let mut a = Agent::start(&z, &dataplane("web-1", "web", 8080), &token)
        .await
        .expect("agent");
    let cert = a
        .wait_cert(None, WAIT)
        .await
        .expect("registered and issued");
    let ca = std::fs::read(z.dp_ca()).expect("dp server CA");
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(ca))
        .domain_name("127.0.0.1");
    let channel = tonic::transport::Endpoint::from_shared(z.dp_url())
        .expect("url")
        .tls_config(tls)
        .expect("tls")
        .connect()
        .await
        .expect("connect");
    let mut sds = SecretDiscoveryServiceClient::new(channel);
    let names = vec![
        "identity_cert:secret:default".to_string(),
        "mesh_ca:secret:default".to_string(),
    ];
    let with_token = |r: DiscoveryRequest| {
        let mut req = tonic::Request::new(r);
        req.metadata_mut().insert(
            "authorization",
            format!("Bearer {token}").parse().expect("header"),
        );
        req
    };
    let decode =
        |resp: envoy_types::pb::envoy::service::discovery::v3::DiscoveryResponse| -> Vec<Secret> {
            resp.resources
                .iter()
                .map(|a| Secret::decode(a.value.as_slice()).expect("a Secret"))
                .collect()
        };

    let resp = sds
        .fetch_secrets(with_token(DiscoveryRequest {
            resource_names: names.clone(),
            ..Default::default()
        }))
        .await
        .expect("fetch")
        .into_inner();
    assert_eq!(
        resp.type_url,
        "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
    );
    let secrets = decode(resp);
    assert_eq!(secrets.len(), 2, "{secrets:?}");
    let inline = |d: &Option<envoy_types::pb::envoy::config::core::v3::DataSource>| match d
        .as_ref()
        .and_then(|d| d.specifier.clone())
    {
        Some(envoy_types::pb::envoy::config::core::v3::data_source::Specifier::InlineBytes(b)) => {
            String::from_utf8(b).expect("utf8")
        }
        other => panic!("expected inline bytes, got {other:?}"),
    };
    match &secrets[0].r#type {
        Some(secret::Type::TlsCertificate(t)) => {
            assert!(
                cert.starts_with(&inline(&t.certificate_chain)),
                "SDS serves the certificate the agent holds"
            );
            assert!(inline(&t.private_key).contains("PRIVATE KEY"));
        }
        other => panic!("expected the identity certificate, got {other:?}"),
    }
    match &secrets[1].r#type {
        Some(secret::Type::ValidationContext(v)) => {
            assert_eq!(
                inline(&v.trusted_ca),
                std::fs::read_to_string(a.cert_dir.join("bundle.pem")).expect("bundle")
            );
        }
        other => panic!("expected the mesh CA, got {other:?}"),
    }

    // The stream answers a subscription with the same secrets.
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(DiscoveryRequest {
        resource_names: names.clone(),
        ..Default::default()
    })
    .await
    .expect("send");
    let mut req = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    req.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("header"),
    );
    let mut stream = sds.stream_secrets(req).await.expect("stream").into_inner();
    let first = tokio::time::timeout(Duration::from_secs(20), stream.message())
        .await
        .expect("in time")
        .expect("ok")
        .expect("a response");
    assert_eq!(decode(first).len(), 2);

    // Another mesh's secrets, or no token at all, are refused.
    let err = sds
        .fetch_secrets(with_token(DiscoveryRequest {
            resource_names: vec!["identity_cert:secret:other".into()],
            ..Default::default()
        }))
        .await
        .expect_err("other mesh");
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");
    let err = sds
        .fetch_secrets(tonic::Request::new(DiscoveryRequest {
            resource_names: names,
            ..Default::default()
        }))
        .await
        .expect_err("no token");
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err:?}");
}
