//! DataSources that cannot be read (missing Secrets, unreadable files, invalid PEM) and huge Secrets.

use super::*;

/// A CA certificate and its key (P-256) that pass the provided backend's rules, as PEM.
fn good_ca() -> (String, String) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let key = KeyPair::generate().expect("key");
    let mut p = CertificateParams::default();
    p.distinguished_name
        .push(DnType::CommonName, "bad input CA");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let cert = p.self_signed(&key).expect("self-signed");
    (cert.pem(), key.serialize_pem())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datasources_pointing_at_missing_secrets_unreadable_files_and_invalid_pem() {
    let (cert, key) = good_ca();
    // Files are read only under --datasource-file-dir.
    let dir = tempfile::tempdir().expect("tmp");
    let allowed = dir.path().canonicalize().expect("canonical");
    std::fs::write(allowed.join("cert.pem"), &cert).expect("write");
    std::fs::write(allowed.join("key.pem"), &key).expect("write");
    std::fs::write(allowed.join("big"), vec![b'A'; 1024 * 1024 + 1]).expect("write");
    std::fs::create_dir(allowed.join("sub")).expect("mkdir");
    std::os::unix::fs::symlink("/etc/hostname", allowed.join("escape")).expect("symlink");
    let allowed = allowed.to_str().expect("utf-8").to_string();
    let mut w = World::start_with(&["--datasource-file-dir", &allowed]).await;
    let (s, b) = w
        .api()
        .put("/meshes/prov", &json!({"type": "Mesh", "name": "prov"}))
        .await
        .expect("mesh");
    assert_eq!(s, 201, "{b}");
    let secrets: Vec<(&str, Vec<u8>)> = vec![
        ("good-cert", cert.clone().into_bytes()),
        ("good-key", key.clone().into_bytes()),
        ("not-pem", b"not a pem at all".to_vec()),
        (
            "bad-body",
            b"-----BEGIN CERTIFICATE-----\n!!!! not base64 !!!!\n-----END CERTIFICATE-----\n"
                .to_vec(),
        ),
        (
            "not-der",
            format!(
                "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
                b64(b"definitely not DER")
            )
            .into_bytes(),
        ),
        (
            "no-end",
            cert.lines()
                .take(3)
                .collect::<Vec<_>>()
                .join("\n")
                .into_bytes(),
        ),
        ("binary", vec![0, 159, 146, 150, 255, 0, 1]),
    ];
    for (name, data) in &secrets {
        let (s, b) = w
            .api()
            .put(
                &format!("/meshes/prov/secrets/{name}"),
                &json!({"type": "Secret", "mesh": "prov", "name": name, "data": b64(data)}),
            )
            .await
            .expect("secret");
        assert_eq!(s, 201, "{name}: {b}");
    }
    let provided = |cert: Value, key: Value| {
        builtin_mesh(
            "prov",
            json!({"name": "ca-1", "type": "provided", "conf": {"cert": cert, "key": key}}),
        )
    };
    let c = "mtls.backends[0].conf.cert";
    let k = "mtls.backends[0].conf.key";
    let good_cert = json!({"secret": "good-cert"});
    let good_key = json!({"secret": "good-key"});
    // (what, cert, key, field, reason)
    let cases: Vec<(&str, Value, Value, &str, &str)> = vec![
        (
            "a missing Secret",
            json!({"secret": "nope"}),
            json!({"secret": "nope"}),
            c,
            "secret \"nope\" not found in mesh \"prov\"",
        ),
        (
            "a missing key Secret",
            good_cert.clone(),
            json!({"secret": "nope"}),
            k,
            "secret \"nope\" not found in mesh \"prov\"",
        ),
        (
            "a missing file in the allowed directory",
            json!({"file": format!("{allowed}/nonexistent")}),
            good_key.clone(),
            c,
            "No such file",
        ),
        (
            "a file outside the allowed directories",
            json!({"file": "/nonexistent"}),
            json!({"file": "/nonexistent"}),
            c,
            "is not allowed: outside the allowed directories (allow its directory with --datasource-file-dir)",
        ),
        (
            "a directory in the allowed directory",
            json!({"file": format!("{allowed}/sub")}),
            good_key.clone(),
            c,
            "not a regular file",
        ),
        (
            "a directory elsewhere",
            json!({"file": "/root"}),
            json!({"file": "/root"}),
            c,
            "outside the allowed directories",
        ),
        (
            "a device",
            good_cert.clone(),
            json!({"file": "/dev/zero"}),
            k,
            "outside the allowed directories",
        ),
        (
            "a file too large",
            json!({"file": format!("{allowed}/big")}),
            good_key.clone(),
            c,
            "larger than 1048576 bytes",
        ),
        (
            "a symlink out of the allowed directory",
            json!({"file": format!("{allowed}/escape")}),
            good_key.clone(),
            c,
            "outside the allowed directories",
        ),
        (
            "a relative traversal",
            json!({"file": "../../../../../../etc/hostname"}),
            good_key.clone(),
            c,
            "must be an absolute path",
        ),
        (
            "an absolute traversal",
            json!({"file": format!("{allowed}/../../../../etc/hostname")}),
            good_key.clone(),
            c,
            "must not contain \"..\"",
        ),
        (
            "a Secret that is not PEM",
            json!({"secret": "not-pem"}),
            good_key.clone(),
            c,
            "tls: failed to find any PEM data in certificate input",
        ),
        (
            "PEM whose body is not base64",
            json!({"secret": "bad-body"}),
            good_key.clone(),
            c,
            "tls: failed to find any PEM data in certificate input",
        ),
        (
            "PEM whose body is not DER",
            json!({"secret": "not-der"}),
            good_key.clone(),
            c,
            // Go parses the first certificate in tls.X509KeyPair; Kuma reports it on `cert`.
            "not a valid TLS key pair: x509: malformed certificate",
        ),
        (
            "PEM without its END line",
            json!({"secret": "no-end"}),
            good_key.clone(),
            c,
            "tls: failed to find any PEM data in certificate input",
        ),
        (
            "binary bytes",
            json!({"secret": "binary"}),
            good_key.clone(),
            c,
            "tls: failed to find any PEM data in certificate input",
        ),
        (
            "a key that is not PEM",
            good_cert.clone(),
            json!({"secret": "not-pem"}),
            c,
            "tls: failed to find any PEM data in key input",
        ),
        (
            "a certificate for the key",
            good_cert.clone(),
            good_cert.clone(),
            c,
            "found a certificate rather than a key",
        ),
        (
            "a key for the certificate",
            good_key.clone(),
            good_key.clone(),
            c,
            "PEM inputs may have been switched",
        ),
        (
            "an inline string that is not PEM",
            json!({"inlineString": "garbage"}),
            good_key.clone(),
            c,
            "tls: failed to find any PEM data in certificate input",
        ),
        (
            "inline bytes that are not PEM",
            json!({"inline": b64(b"garbage")}),
            good_key.clone(),
            c,
            "tls: failed to find any PEM data in certificate input",
        ),
    ];
    for (what, cert_src, key_src, field, reason) in cases {
        let (s, b) = w
            .api()
            .put("/meshes/prov", &provided(cert_src, key_src))
            .await
            .expect("put");
        assert_field(what, s, &b, field, reason);
        // Errors never quote file contents.
        assert!(!b.to_string().contains("BEGIN"), "{what}: {b}");
        w.still_serving(what).await;
    }
    // The environment of the control plane is a regular file to read, but never echoed back.
    let (s, b) = w
        .api()
        .put(
            "/meshes/prov",
            &provided(json!({"file": "/proc/self/environ"}), good_key.clone()),
        )
        .await
        .expect("put");
    assert_eq!(s, 400, "{b}");
    assert!(
        b["invalid_parameters"]
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p["field"] == c)),
        "{b}"
    );
    assert!(
        !b.to_string().contains("PATH="),
        "file contents leaked: {b}"
    );
    w.still_serving("/proc/self/environ").await;

    // The Mesh is unchanged by all of it; the good pair is accepted.
    let (s, b) = w.api().get("/meshes/prov").await.expect("get");
    assert_eq!((s, &b["mtls"]), (200, &Value::Null), "{b}");
    let (s, b) = w
        .api()
        .put("/meshes/prov", &provided(good_cert, good_key))
        .await
        .expect("put");
    assert_eq!(s, 200, "the good pair is accepted: {b}");
    let (s, b) = w
        .api()
        .put(
            "/meshes/prov",
            &provided(
                json!({"file": format!("{allowed}/cert.pem")}),
                json!({"file": format!("{allowed}/key.pem")}),
            ),
        )
        .await
        .expect("put");
    assert_eq!(s, 200, "the good pair from allowed files is accepted: {b}");

    // A control plane started without --datasource-file-dir reads no file at all.
    let mut w = World::start().await;
    let (s, b) = w
        .api()
        .put(
            "/meshes/prov",
            &provided(
                json!({"file": format!("{allowed}/cert.pem")}),
                json!({"file": format!("{allowed}/key.pem")}),
            ),
        )
        .await
        .expect("put");
    assert_field(
        "files without --datasource-file-dir",
        s,
        &b,
        c,
        "file DataSources are disabled on this control plane",
    );
    w.still_serving("files without --datasource-file-dir").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_secrets_are_refused_with_a_reason_or_413() {
    let mut w = World::start().await;
    let addr = w.addr();
    let over = b64(&vec![7u8; MAX_SECRET + 1]);
    let at = b64(&vec![7u8; MAX_SECRET]);
    let reason = format!("cannot be larger than {MAX_SECRET} bytes");
    for (what, path, body) in [
        (
            "a Secret of 1 MiB + 1",
            "/meshes/default/secrets/huge",
            json!({"type": "Secret", "mesh": "default", "name": "huge", "data": over}),
        ),
        (
            "a GlobalSecret of 1 MiB + 1",
            "/global-secrets/huge",
            json!({"type": "GlobalSecret", "name": "huge", "data": over}),
        ),
    ] {
        let (s, b) = w.api().put(path, &body).await.expect("put");
        assert_field(what, s, &b, "data", &reason);
        let (s, _) = w.api().get(path).await.expect("get");
        assert_eq!(s, 404, "{what}");
        w.still_serving(what).await;
    }
    // In YAML too, with the base64 folded over lines.
    let folded: String = over
        .as_bytes()
        .chunks(76)
        .map(|c| format!("  {}\n", String::from_utf8_lossy(c)))
        .collect();
    let (s, b) = w
        .api()
        .put_raw(
            "/meshes/default/secrets/huge",
            "application/yaml",
            format!("type: Secret\nmesh: default\nname: huge\ndata: |\n{folded}").into_bytes(),
        )
        .await
        .expect("put");
    assert_field("a folded YAML Secret of 1 MiB + 1", s, &b, "data", &reason);
    w.still_serving("a folded YAML Secret").await;

    // Exactly 1 MiB is accepted and reads back whole.
    let (s, b) = w
        .api()
        .put(
            "/meshes/default/secrets/max",
            &json!({"type": "Secret", "mesh": "default", "name": "max", "data": at}),
        )
        .await
        .expect("put");
    assert_eq!(s, 201, "{b}");
    let (s, b) = w
        .api()
        .get("/meshes/default/secrets/max")
        .await
        .expect("get");
    assert_eq!((s, b["data"].as_str()), (200, Some(at.as_str())));

    // Bodies over 2 MiB never reach the decoder.
    let huge = b64(&vec![7u8; 2 * MAX_BODY]);
    let body =
        json!({"type": "Secret", "mesh": "default", "name": "huge", "data": huge}).to_string();
    for chunked in [false, true] {
        let what = format!("a 4 MiB Secret body (chunked: {chunked})");
        let (s, b) = raw(
            &addr,
            "PUT",
            "/meshes/default/secrets/huge",
            "application/json",
            body.as_bytes(),
            chunked,
        )
        .await;
        assert_detail(&what, s, 413, &b, "larger than 2097152 bytes");
        w.still_serving(&what).await;
    }
    let (s, _) = w
        .api()
        .get("/meshes/default/secrets/huge")
        .await
        .expect("get");
    assert_eq!(s, 404);
}
