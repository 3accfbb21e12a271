//! Harness for end-to-end tests: Meshplane's real binaries on free loopback ports, against real
//! PostgreSQL databases, with a small REST client. Each test builds its own world; tests run in
//! parallel.

use std::{path::PathBuf, time::Duration};

use anyhow::{Context, bail};
use meshplane_test_support::{
    postgres::TestDatabase,
    process::{Proc, bin, free_port, wait_http_ok},
};
use serde_json::Value;

pub use meshplane_test_support::process::eventually;

/// A database with Meshplane's schema applied by the real `meshplane-global migrate up`.
pub async fn migrated_db() -> anyhow::Result<TestDatabase> {
    let db = TestDatabase::create().await?;
    let out = tokio::process::Command::new(bin("meshplane-global"))
        .args(["migrate", "up", "--database-url", &db.url])
        .output()
        .await?;
    if !out.status.success() {
        bail!(
            "migrate up failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(db)
}

/// Where a control plane keeps its state.
#[derive(Clone, Debug)]
pub enum Store {
    Memory,
    Postgres(String),
}

impl Store {
    fn args(&self) -> Vec<String> {
        match self {
            Store::Memory => vec!["--store".into(), "memory".into()],
            Store::Postgres(url) => vec![
                "--database-url".into(),
                url.clone(),
                "--encryption-key-file".into(),
                encryption_key_file(url).display().to_string(),
            ],
        }
    }
}

/// The secrets-at-rest key for a test database: derived from its URL, so every replica and restart
/// of one database uses the same key, as a real deployment must.
pub fn encryption_key_file(url: &str) -> PathBuf {
    use base64::Engine;
    use std::hash::{Hash, Hasher};
    let mut bytes = [0u8; 32];
    for (i, chunk) in bytes.chunks_mut(8).enumerate() {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (url, i).hash(&mut h);
        chunk.copy_from_slice(&h.finish().to_le_bytes());
    }
    let dir = std::env::temp_dir().join("meshplane-test-keys");
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join(format!("{:016x}.key", {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        url.hash(&mut h);
        h.finish()
    }));
    if !path.exists() {
        let _ = std::fs::write(
            &path,
            base64::engine::general_purpose::STANDARD.encode(bytes),
        );
    }
    path
}

/// A JSON REST client for one control plane's API.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    http: reqwest::Client,
}

impl Api {
    pub fn new(base: impl Into<String>) -> Self {
        Self {
            base: base.into(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(90))
                .build()
                .expect("client"),
        }
    }

    async fn send(&self, rb: reqwest::RequestBuilder) -> anyhow::Result<(u16, Value)> {
        let r = rb.send().await?;
        let status = r.status().as_u16();
        let text = r.text().await?;
        Ok((
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        ))
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<(u16, Value)> {
        self.send(self.http.get(format!("{}{path}", self.base)))
            .await
    }

    pub async fn put(&self, path: &str, body: &Value) -> anyhow::Result<(u16, Value)> {
        self.send(self.http.put(format!("{}{path}", self.base)).json(body))
            .await
    }

    pub async fn put_raw(
        &self,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> anyhow::Result<(u16, Value)> {
        self.send(
            self.http
                .put(format!("{}{path}", self.base))
                .header("content-type", content_type)
                .body(body),
        )
        .await
    }

    pub async fn delete(&self, path: &str) -> anyhow::Result<(u16, Value)> {
        self.send(self.http.delete(format!("{}{path}", self.base)))
            .await
    }

    pub async fn post(&self, path: &str, body: &Value) -> anyhow::Result<(u16, Value)> {
        self.send(self.http.post(format!("{}{path}", self.base)).json(body))
            .await
    }

    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, format!("{}{path}", self.base))
    }

    /// A token from a `POST /tokens/...` endpoint (answered as text).
    pub async fn token(&self, path: &str, body: &Value) -> anyhow::Result<String> {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .json(body)
            .send()
            .await?;
        let status = r.status();
        let text = r.text().await?;
        if !status.is_success() {
            bail!("{path}: HTTP {status}: {text}");
        }
        Ok(text.trim().to_string())
    }
}

/// A running `meshplane-global`.
pub struct Global {
    pub proc: Proc,
    pub api: Api,
    pub api_port: u16,
    pub kds_port: u16,
    pub store: Store,
    pub work: PathBuf,
    pub extra: Vec<String>,
    _dir: tempfile::TempDir,
}

impl Global {
    pub async fn start(store: Store, extra: &[&str]) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let work = dir.path().join("work");
        let mut g = Self {
            proc: Proc::spawn("global-unstarted", &bin("meshplane-global"), &[], &[]).await?,
            api: Api::new(""),
            api_port: free_port(),
            kds_port: free_port(),
            store,
            work,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            _dir: dir,
        };
        g.proc.kill().await;
        g.launch().await?;
        Ok(g)
    }

    fn args(&self) -> Vec<String> {
        let mut a = vec![
            "run".to_string(),
            "--api-addr".into(),
            format!("127.0.0.1:{}", self.api_port),
            "--kds-addr".into(),
            format!("127.0.0.1:{}", self.kds_port),
            "--work-dir".into(),
            self.work.display().to_string(),
            "--kds-insight-flush".into(),
            "1s".into(),
            "--kds-keepalive".into(),
            "2s".into(),
        ];
        a.extend(self.store.args());
        a.extend(self.extra.iter().cloned());
        a
    }

    /// (Re)starts the process on the same ports, store and work dir; the log file is kept.
    pub async fn launch(&mut self) -> anyhow::Result<()> {
        let log = self._dir.path().join("global.log");
        self.proc = Proc::spawn_logging_to(
            "global",
            &bin("meshplane-global"),
            &self.args(),
            &[],
            log,
            None,
        )
        .await?;
        self.api = Api::new(format!("http://127.0.0.1:{}", self.api_port));
        wait_http_ok(
            &mut self.proc,
            &format!("{}/readyz", self.api.base),
            Duration::from_secs(60),
        )
        .await
    }

    pub fn kds_url(&self) -> String {
        format!("grpcs://127.0.0.1:{}", self.kds_port)
    }

    pub fn kds_ca(&self) -> PathBuf {
        self.work.join("kds-ca.pem")
    }

    pub async fn zone_token(&self, zone: &str) -> anyhow::Result<String> {
        self.api
            .token(
                "/tokens/zone",
                &serde_json::json!({"zone": zone, "validFor": "24h"}),
            )
            .await
    }

    /// Stores `token` as mesh `default`'s Secret `vault-token` (what the Vault backends name).
    pub async fn put_vault_token(&self, token: &str) -> anyhow::Result<()> {
        use base64::Engine;
        let data = base64::engine::general_purpose::STANDARD.encode(token);
        let (s, b) = self
            .api
            .put(
                "/meshes/default/secrets/vault-token",
                &serde_json::json!({"type": "Secret", "mesh": "default", "name": "vault-token", "data": data}),
            )
            .await?;
        if s != 200 && s != 201 {
            bail!("PUT Secret vault-token: HTTP {s}: {b}");
        }
        Ok(())
    }

    pub async fn dataplane_token(
        &self,
        mesh: &str,
        name: &str,
        service: Option<&str>,
    ) -> anyhow::Result<String> {
        let mut body = serde_json::json!({"mesh": mesh, "name": name, "validFor": "24h"});
        if let Some(s) = service {
            body["tags"] = serde_json::json!({"kuma.io/service": [s]});
        }
        self.api.token("/tokens/dataplane", &body).await
    }
}

/// A running `meshplane-zone` federated with a global.
pub struct Zone {
    pub name: String,
    pub proc: Proc,
    pub api: Api,
    pub api_port: u16,
    pub dp_port: u16,
    pub args: Vec<String>,
    pub work: PathBuf,
    pub dir: tempfile::TempDir,
}

impl Zone {
    pub async fn start(
        global: &Global,
        name: &str,
        store: Store,
        extra: &[&str],
    ) -> anyhow::Result<Self> {
        let token = global.zone_token(name).await?;
        let dir = tempfile::tempdir()?;
        let token_file = dir.path().join("zone.token");
        std::fs::write(&token_file, token)?;
        let (api_port, dp_port) = (free_port(), free_port());
        let work = dir.path().join("work");
        let mut args: Vec<String> = vec![
            "run".into(),
            "--zone".into(),
            name.into(),
            "--global-address".into(),
            global.kds_url(),
            "--kds-ca-file".into(),
            global.kds_ca().display().to_string(),
            "--zone-token-file".into(),
            token_file.display().to_string(),
            "--api-addr".into(),
            format!("127.0.0.1:{api_port}"),
            "--dp-server-addr".into(),
            format!("127.0.0.1:{dp_port}"),
            "--work-dir".into(),
            work.display().to_string(),
            "--kds-keepalive".into(),
            "2s".into(),
            "--kds-reconnect-base".into(),
            "100ms".into(),
            "--kds-reconnect-max".into(),
            "1s".into(),
        ];
        args.extend(store.args());
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut z = Self {
            name: name.into(),
            proc: Proc::spawn("zone-unstarted", &bin("meshplane-zone"), &[], &[]).await?,
            api: Api::new(format!("http://127.0.0.1:{api_port}")),
            api_port,
            dp_port,
            args,
            work,
            dir,
        };
        z.proc.kill().await;
        z.launch().await?;
        Ok(z)
    }

    pub async fn launch(&mut self) -> anyhow::Result<()> {
        let log = self.dir.path().join("zone.log");
        self.proc = Proc::spawn_logging_to(
            &format!("zone {}", self.name),
            &bin("meshplane-zone"),
            &self.args,
            &[],
            log,
            None,
        )
        .await?;
        wait_http_ok(
            &mut self.proc,
            &format!("{}/readyz", self.api.base),
            Duration::from_secs(60),
        )
        .await
    }

    pub fn dp_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.dp_port)
    }

    pub fn dp_ca(&self) -> PathBuf {
        self.work.join("dp-server-ca.pem")
    }
}

/// A running `meshplane-dp` agent.
pub struct Agent {
    pub proc: Proc,
    pub cert_dir: PathBuf,
    pub socket: PathBuf,
    pub dir: tempfile::TempDir,
    pub args: Vec<String>,
}

impl Agent {
    pub async fn start(zone: &Zone, dataplane_yaml: &str, token: &str) -> anyhow::Result<Self> {
        Self::start_with(zone, dataplane_yaml, token, &[]).await
    }

    /// `start` with further flags for the agent (`--metrics-addr`, …).
    pub async fn start_with(
        zone: &Zone,
        dataplane_yaml: &str,
        token: &str,
        extra: &[&str],
    ) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let dp = dir.path().join("dataplane.yaml");
        std::fs::write(&dp, dataplane_yaml)?;
        let tok = dir.path().join("token");
        std::fs::write(&tok, token)?;
        let cert_dir = dir.path().join("certs");
        let socket = dir.path().join("workload.sock");
        let mut args: Vec<String> = vec![
            "run".into(),
            "--cp-address".into(),
            zone.dp_url(),
            "--cp-ca-file".into(),
            zone.dp_ca().display().to_string(),
            "--dataplane-file".into(),
            dp.display().to_string(),
            "--dataplane-token-file".into(),
            tok.display().to_string(),
            "--cert-dir".into(),
            cert_dir.display().to_string(),
            "--workload-api-socket".into(),
            socket.display().to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let log = dir.path().join("agent.log");
        let proc =
            Proc::spawn_logging_to("agent", &bin("meshplane-dp"), &args, &[], log, None).await?;
        Ok(Self {
            proc,
            cert_dir,
            socket,
            dir,
            args,
        })
    }

    /// Waits until cert.pem exists and differs from `previous`; returns its contents.
    pub async fn wait_cert(
        &mut self,
        previous: Option<&str>,
        timeout: Duration,
    ) -> anyhow::Result<String> {
        let path = self.cert_dir.join("cert.pem");
        let start = std::time::Instant::now();
        loop {
            self.proc.check_running()?;
            if let Ok(c) = std::fs::read_to_string(&path)
                && !c.is_empty()
                && Some(c.as_str()) != previous
            {
                return Ok(c);
            }
            if start.elapsed() > timeout {
                bail!(
                    "no new certificate in {} after {timeout:?}; agent log:\n{}",
                    path.display(),
                    self.proc.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Runs `meshctl --api-url <api> <args…>`; returns (exit code, stdout, stderr).
pub async fn meshctl(
    api: &str,
    args: &[&str],
    stdin: Option<&str>,
) -> anyhow::Result<(i32, String, String)> {
    use tokio::io::AsyncWriteExt;
    let mut cmd = tokio::process::Command::new(bin("meshctl"));
    cmd.arg("--api-url")
        .arg(api)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().context("starting meshctl")?;
    if let Some(input) = stdin
        && let Some(mut s) = child.stdin.take()
    {
        s.write_all(input.as_bytes()).await?;
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().await?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// Reads one HTTP/1.1 answer to its end (the request said `Connection: close`), within 90 s, and
/// returns its status, head and the rest as sent: for tests that write requests byte for byte.
pub async fn read_answer(
    sock: &mut tokio::net::TcpStream,
) -> anyhow::Result<(u16, String, String)> {
    use tokio::io::AsyncReadExt;
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(90), sock.read_to_end(&mut answer))
        .await
        .context("no answer within 90 s")??;
    let text = String::from_utf8_lossy(&answer);
    let (head, rest) = text
        .split_once("\r\n\r\n")
        .with_context(|| format!("not an HTTP answer: {text:?}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no status in {head:?}"))?;
    Ok((status, head.to_string(), rest.to_string()))
}

/// Runs a program and returns (exit code, stdout, stderr).
pub async fn run(program: &str, args: &[&str]) -> anyhow::Result<(i32, String, String)> {
    let out = tokio::process::Command::new(program)
        .args(args)
        .output()
        .await
        .with_context(|| format!("running {program}"))?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// The repository root (for deploy/examples and friends).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}
