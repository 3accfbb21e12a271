//! Vault backends accepted when they can issue, refused with the cause when they cannot.

use super::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vault_backend_that_can_issue_is_accepted_and_each_broken_one_is_refused() {
    let (bao, seed, mut g, good) = vault_world().await;
    let api = g.api.clone();
    let conf = "mtls.backends[0].conf";
    let (stored, _) = get_with_version(&api, "/meshes/default")
        .await
        .expect("stored");
    assert_eq!(stored["mtls"], good["mtls"]);
    // Validation issued a real certificate through the role: the PKI mount counts it.
    let certs = bao
        .request(
            Method::from_bytes(b"LIST").expect("LIST"),
            &format!("{}/certs", seed.mount),
            None,
        )
        .await
        .expect("list certs");
    assert!(
        certs["data"]["keys"]
            .as_array()
            .is_some_and(|k| !k.is_empty()),
        "a test certificate was issued: {certs}"
    );

    // The seed's token may only issue through its role: a wrong role is a policy denial naming
    // the path.
    refused(
        &api,
        &tweak(good.clone(), 0, |c| {
            c.insert("role".into(), json!("no-such-role"));
        }),
        conf,
        &[
            &bao.addr,
            "kmesh-pki-default/issue/no-such-role",
            "permission denied",
        ],
    )
    .await;

    // With a token whose policy covers any kmesh mount, Vault itself says what is missing.
    bao.request(
        Method::PUT,
        "sys/policies/acl/broad",
        Some(json!({"policy": "path \"kmesh-pki-*\" {\n  capabilities = [\"create\", \"update\", \"read\"]\n}\n"})),
    )
    .await
    .expect("policy");
    let broad = bao
        .create_token(TokenSpec {
            policies: &["broad"],
            ..Default::default()
        })
        .await
        .expect("token");
    put_secret(&api, "default", "broad-token", broad.as_bytes()).await;
    let with_broad = |m: Value| {
        tweak(m, 0, |c| {
            c.insert("auth".into(), json!({"token": {"secret": "broad-token"}}));
        })
    };
    accepted(&api, &with_broad(good.clone())).await;
    let (base, _) = get_with_version(&api, "/meshes/default")
        .await
        .expect("stored");
    refused(
        &api,
        &tweak(base.clone(), 0, |c| {
            c.insert("role".into(), json!("no-such-role"));
        }),
        conf,
        &[&bao.addr, "has no role \"no-such-role\"", "unknown role"],
    )
    .await;
    // The same role with key_usage written without the prefix: accepted without any warning.
    bao.bao(&[
        "write",
        &format!("{}/roles/fixed", seed.mount),
        "allowed_uri_sans=spiffe://default/*,kuma://*",
        "key_usage=KeyEncipherment,KeyAgreement,DigitalSignature",
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
    assert_eq!(
        accepted(
            &api,
            &tweak(base.clone(), 0, |c| {
                c.insert("role".into(), json!("fixed"));
            })
        )
        .await,
        Vec::<String>::new()
    );
    refused(
        &api,
        &tweak(base.clone(), 0, |c| {
            c.insert("pki".into(), json!("kmesh-pki-missing"));
        }),
        conf,
        &[&bao.addr, "has no PKI mount \"kmesh-pki-missing\""],
    )
    .await;
    accepted(&api, &good).await;

    // A namespace that does not exist.
    refused(
        &api,
        &tweak(good.clone(), 0, |c| {
            c.insert("namespace".into(), json!("no-such-ns"));
        }),
        conf,
        &[&bao.addr, "namespace \"no-such-ns\" not found"],
    )
    .await;

    // A garbage token: rejected, and never echoed.
    let garbage = format!("s.garbage{}", unique());
    let reason = refused(
        &api,
        &tweak(good.clone(), 0, |c| {
            c.insert("auth".into(), json!({"token": {"inlineString": garbage}}));
        }),
        conf,
        &[&bao.addr, "rejected the token", "permission denied"],
    )
    .await;
    assert!(!reason.contains(&garbage));

    // A common name the role does not allow (allowed_domains=mesh).
    refused(
        &api,
        &tweak(good.clone(), 0, |c| {
            c.insert("commonName".into(), json!("x.example.com"));
        }),
        conf,
        &[&bao.addr, "common name \"x.example.com\"", "not allowed"],
    )
    .await;
    // A template the role allows is fine.
    accepted(
        &api,
        &tweak(good.clone(), 0, |c| {
            c.insert(
                "commonName".into(),
                json!("{{ tag \"kuma.io/service\" | replace \"_\" \"-\" }}.mesh"),
            );
        }),
    )
    .await;
    accepted(&api, &good).await;

    // Nothing listens on the address.
    let closed = format!("http://127.0.0.1:{}", free_port());
    refused(
        &api,
        &tweak(good.clone(), 0, |c| {
            c.insert("address".into(), json!(closed));
        }),
        conf,
        &[&format!("could not reach Vault at {closed}")],
    )
    .await;

    // The token's DataSource names a Secret that does not exist: reported at the DataSource.
    refused(
        &api,
        &tweak(good.clone(), 0, |c| {
            c.insert("auth".into(), json!({"token": {"secret": "absent"}}));
        }),
        "mtls.backends[0].conf.fromCp.auth.token",
        &["secret \"absent\" not found in mesh \"default\""],
    )
    .await;

    // Every backend is validated, not only the enabled one.
    let mut broken = vault_backend("vault-2", &bao.addr, &seed);
    broken["conf"]["fromCp"]["role"] = json!("no-such-role");
    let two = mesh(
        "default",
        "vault-1",
        vec![vault_backend("vault-1", &bao.addr, &seed), broken.clone()],
    );
    refused(
        &api,
        &two,
        "mtls.backends[1].conf",
        &["kmesh-pki-default/issue/no-such-role"],
    )
    .await;

    // A new Mesh that fails validation is not created at all.
    let fresh = tweak(
        mesh(
            "brand-new",
            "vault-1",
            vec![vault_backend("vault-1", &bao.addr, &seed)],
        ),
        0,
        |c| {
            c.insert("auth".into(), json!({"token": {"inlineString": garbage}}));
        },
    );
    refused(&api, &fresh, conf, &["rejected the token"]).await;
    assert_eq!(api.get("/meshes/brand-new").await.expect("get").0, 404);
    assert_eq!(
        api.get("/meshes/brand-new/secrets").await.expect("get").1["total"],
        0
    );

    // skipValidation stores the same broken conf, with a warning.
    let mut skipped = two.clone();
    skipped["mtls"]["skipValidation"] = json!(true);
    let warnings = accepted(&api, &skipped).await;
    assert_eq!(warnings, [SKIP_WARNING]);
    let (stored, _) = get_with_version(&api, "/meshes/default")
        .await
        .expect("stored");
    assert_eq!(stored["mtls"], skipped["mtls"]);
    accepted(&api, &fresh_skip(&fresh)).await;
    assert_eq!(api.get("/meshes/brand-new").await.expect("get").0, 200);
    assert_seed_role_warning(&accepted(&api, &good).await, 0, &bao.addr);

    // A token that expired.
    let short = bao
        .create_token(TokenSpec {
            policies: &[seed.policy.as_str()],
            ttl: "2s",
            renewable: Some(false),
            ..Default::default()
        })
        .await
        .expect("short token");
    eventually(
        Duration::from_secs(30),
        "the short token to expire",
        || async { bao.lookup_token(&short).await.is_err().then_some(()) },
    )
    .await
    .expect("expired");
    refused(
        &api,
        &tweak(good.clone(), 0, |c| {
            c.insert("auth".into(), json!({"token": {"inlineString": short}}));
        }),
        conf,
        &[&bao.addr, "rejected the token"],
    )
    .await;

    // The token Secret is in use: Kuma's refusal; once no backend uses it, it can go.
    let (s, b) = api
        .delete("/meshes/default/secrets/vault-token")
        .await
        .expect("delete");
    assert_eq!(s, 400, "{b}");
    assert_eq!(
        b["invalid_parameters"],
        json!([{"field": "name", "reason": "The secret \"vault-token\" that you are trying to remove is currently in use in Mesh \"default\" in mTLS backend \"vault-1\". Please remove the reference from the \"vault-1\" backend before removing the secret."}])
    );
    assert_eq!(
        api.get("/meshes/default/secrets/vault-token")
            .await
            .expect("get")
            .0,
        200
    );
    accepted(
        &api,
        &tweak(good.clone(), 0, |c| {
            c.insert(
                "auth".into(),
                json!({"token": {"inlineString": seed.token}}),
            );
        }),
    )
    .await;
    let (s, b) = api
        .delete("/meshes/default/secrets/vault-token")
        .await
        .expect("delete");
    assert_eq!(s, 200, "{b}");

    // Neither the garbage token nor the seed's token ever reached the log.
    assert_eq!(
        g.proc
            .terminate(Duration::from_secs(30))
            .await
            .expect("stop"),
        Some(0)
    );
    let logs = g.proc.logs();
    assert!(logs.contains("default"), "the log is not empty");
    for t in [&garbage, &seed.token, &broad, &short] {
        assert!(!logs.contains(t.as_str()), "a token is in the global's log");
    }
}

pub(crate) fn fresh_skip(m: &Value) -> Value {
    let mut m = m.clone();
    m["mtls"]["skipValidation"] = json!(true);
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_vault_is_refused_and_accepted_again_once_unsealed() {
    let (mut bao, seed, g, good) = vault_world().await;
    let api = g.api.clone();
    let mut update = good.clone();
    update["mtls"]["backends"][0]["dpCert"]["rotation"]["expiration"] = json!("2h");

    bao.seal().await.expect("seal");
    refused(
        &api,
        &update,
        "mtls.backends[0].conf",
        &[&format!("Vault at {} is sealed", bao.addr)],
    )
    .await;
    // A new Mesh against the sealed Vault is not created either.
    let mut fresh = tweak(update.clone(), 0, |c| {
        c.insert(
            "auth".into(),
            json!({"token": {"inlineString": seed.token}}),
        );
    });
    fresh["name"] = json!("sealed-new");
    refused(&api, &fresh, "mtls.backends[0].conf", &["is sealed"]).await;
    assert_eq!(api.get("/meshes/sealed-new").await.expect("get").0, 404);

    bao.unseal().await.expect("unseal");
    assert_seed_role_warning(&accepted(&api, &update).await, 0, &bao.addr);
    let (stored, _) = get_with_version(&api, "/meshes/default")
        .await
        .expect("stored");
    assert_eq!(
        stored["mtls"]["backends"][0]["dpCert"]["rotation"]["expiration"],
        "2h"
    );
}

// ---------------------------------------------------------------------------------------------
// Vault over TLS: trust, server name, client-certificate auth
// ---------------------------------------------------------------------------------------------
