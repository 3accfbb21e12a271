//! Shared pieces of the dataplane identity tests (Vault and AWS Private CA alike): Dataplane and
//! backend documents, Mesh and Secret writes, agents, `openssl` checks and mTLS handshakes, the
//! py-spiffe venv.
#![allow(dead_code, reason = "each test file uses a different subset")]

use std::{path::Path, time::Duration};

use base64::Engine;
use meshplane_test_support::openbao::OpenBao;
use meshplane_tests::{Agent, Global, Zone, eventually, run};
use serde_json::{Value, json};

pub const WAIT: Duration = Duration::from_secs(60);

pub fn dataplane(name: &str, service: &str, port: u16) -> String {
    format!(
        "type: Dataplane\nmesh: default\nname: {name}\nnetworking:\n  address: 127.0.0.1\n  inbound:\n    - port: {port}\n      tags:\n        kuma.io/service: {service}\n        version: v1\n"
    )
}

pub fn vault_backend(
    name: &str,
    bao: &OpenBao,
    mount: &str,
    role: &str,
    expiration: &str,
) -> Value {
    json!({"name": name, "type": "vault", "dpCert": {"rotation": {"expiration": expiration}, "requestTimeout": "3s"},
        "conf": {"fromCp": {"address": bao.addr, "pki": mount, "role": role,
            "commonName": "{{ tag \"kuma.io/service\" | replace \"_\" \"-\" }}.mesh",
            "auth": {"token": {"secret": "vault-token"}}}}})
}

pub async fn put_token_secret(g: &Global, token: &str) {
    put_secret(g, "vault-token", token.as_bytes()).await;
}

/// Writes mesh `default`'s Secret `name` through global's API.
pub async fn put_secret(g: &Global, name: &str, data: &[u8]) {
    let data = base64::engine::general_purpose::STANDARD.encode(data);
    let (s, b) = g
        .api
        .put(
            &format!("/meshes/default/secrets/{name}"),
            &json!({"type": "Secret", "mesh": "default", "name": name, "data": data}),
        )
        .await
        .expect("secret");
    assert!(s == 200 || s == 201, "{s} {b}");
}

/// PUTs mesh `default`; returns the API's warnings.
pub async fn put_mesh(g: &Global, enabled: &str, backends: Vec<Value>) -> Vec<String> {
    let body = json!({"type": "Mesh", "name": "default", "mtls": {"enabledBackend": enabled, "backends": backends}});
    let (s, b) = g.api.put("/meshes/default", &body).await.expect("mesh");
    assert!(s == 200 || s == 201, "{s} {b}");
    b["warnings"]
        .as_array()
        .map(|w| {
            w.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

pub async fn agent(g: &Global, z: &Zone, name: &str, service: &str) -> Agent {
    let token = g
        .dataplane_token("default", name, Some(service))
        .await
        .expect("dataplane token");
    Agent::start(z, &dataplane(name, service, 8080), &token)
        .await
        .expect("agent")
}

pub async fn x509(cert_pem: &str, args: &[&str]) -> String {
    let dir = tempfile::tempdir().expect("dir");
    let f = dir.path().join("c.pem");
    std::fs::write(&f, cert_pem).expect("write");
    let mut a = vec!["x509", "-in", f.to_str().expect("utf8"), "-noout"];
    a.extend_from_slice(args);
    let (code, out, err) = run("openssl", &a).await.expect("openssl");
    assert_eq!(code, 0, "openssl x509 {args:?}: {err}");
    out
}

/// A mutual-TLS handshake with data exchanged: openssl s_server with `server`'s files, requiring a
/// client certificate, and s_client with `client`'s. Returns the client SAN the server saw.
pub async fn handshake(server: &Path, client: &Path) -> anyhow::Result<String> {
    let port = meshplane_test_support::process::free_port();
    let p = |d: &Path, f: &str| d.join(f).display().to_string();
    let mut srv = tokio::process::Command::new("openssl")
        .args([
            "s_server",
            "-accept",
            &format!("127.0.0.1:{port}"),
            "-cert",
            &p(server, "cert.pem"),
            "-key",
            &p(server, "key.pem"),
        ])
        .args([
            "-CAfile",
            &p(server, "bundle.pem"),
            "-Verify",
            "1",
            "-verify_return_error",
            "-www",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    // Wait until the server listens (the probe fails its handshake; -www keeps serving).
    eventually(Duration::from_secs(10), "s_server to listen", || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()
            .map(|_| ())
    })
    .await?;
    let mut cli = tokio::process::Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{port}"),
            "-cert",
            &p(client, "cert.pem"),
            "-key",
            &p(client, "key.pem"),
        ])
        .args([
            "-CAfile",
            &p(client, "bundle.pem"),
            "-verify_return_error",
            "-quiet",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    {
        use tokio::io::AsyncWriteExt;
        let mut stdin = cli.stdin.take().ok_or_else(|| anyhow::anyhow!("stdin"))?;
        stdin.write_all(b"GET / HTTP/1.0\r\n\r\n").await?;
    }
    let out = tokio::time::timeout(Duration::from_secs(20), cli.wait_with_output()).await??;
    let _ = srv.kill().await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    // -www answers with the session, including the client certificate the server verified.
    let start = stdout.find("-----BEGIN CERTIFICATE-----").ok_or_else(|| {
        anyhow::anyhow!(
            "the server echoed no client certificate (handshake failed?): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    let end = stdout[start..]
        .find("-----END CERTIFICATE-----")
        .map(|e| start + e + 25)
        .unwrap_or(stdout.len());
    Ok(x509(&stdout[start..end], &["-ext", "subjectAltName"]).await)
}

pub fn venv_python() -> std::path::PathBuf {
    let p = std::env::var_os("MESHPLANE_TEST_VENV")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| meshplane_tests::repo_root().join(".venv"));
    p.join("bin/python")
}

pub fn bundle_roots(a: &Agent) -> usize {
    std::fs::read_to_string(a.cert_dir.join("bundle.pem"))
        .unwrap_or_default()
        .matches("BEGIN CERTIFICATE")
        .count()
}
