//! The real control-plane binaries as child processes: a standalone `meshplane-zone` and a
//! `meshplane-global`, each on PostgreSQL with secrets encrypted at rest (as deployed), logging
//! at `warn` so log output does not distort the figures, on free loopback ports.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use meshplane_test_support::process::{Proc, free_port};

use crate::env::{Api, Env, Rss, rss_of};

/// A control-plane process that can be stopped and started again on the same ports and database.
pub struct CpProc {
    pub name: String,
    pub bin: PathBuf,
    pub args: Vec<String>,
    pub api: Api,
    pub log: PathBuf,
    pub work: PathBuf,
    /// Global's sync port (0 for a zone).
    pub kds_port: u16,
    proc: Option<Proc>,
}

impl CpProc {
    /// A standalone zone on `db_url`; returns once it is ready. `extra` flags are appended.
    pub async fn zone(
        env: &Env,
        name: &str,
        db_url: &str,
        extra: &[&str],
    ) -> anyhow::Result<(Self, u16)> {
        let (api_port, dp_port) = (free_port(), free_port());
        let work = env.tmp.path().join(format!("{name}-work"));
        let key = env.encryption_key_file(name)?;
        let mut args: Vec<String> = [
            "run",
            "--database-url",
            db_url,
            "--encryption-key-file",
            &key.display().to_string(),
            "--api-addr",
            &format!("127.0.0.1:{api_port}"),
            "--dp-server-addr",
            &format!("127.0.0.1:{dp_port}"),
            "--work-dir",
            &work.display().to_string(),
            "--skip-default-mesh",
            "--log-level",
            "warn",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut p = Self::new(env, name, "meshplane-zone", args, api_port, work)?;
        p.launch().await?;
        Ok((p, dp_port))
    }

    /// A global on `db_url`; returns once it is ready.
    pub async fn global(env: &Env, name: &str, db_url: &str) -> anyhow::Result<Self> {
        let (api_port, kds_port) = (free_port(), free_port());
        let work = env.tmp.path().join(format!("{name}-work"));
        let key = env.encryption_key_file(name)?;
        let args: Vec<String> = [
            "run",
            "--database-url",
            db_url,
            "--encryption-key-file",
            &key.display().to_string(),
            "--api-addr",
            &format!("127.0.0.1:{api_port}"),
            "--kds-addr",
            &format!("127.0.0.1:{kds_port}"),
            "--work-dir",
            &work.display().to_string(),
            "--skip-default-mesh",
            "--log-level",
            "warn",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut p = Self::new(env, name, "meshplane-global", args, api_port, work)?;
        p.kds_port = kds_port;
        p.launch().await?;
        Ok(p)
    }

    /// Another replica of this global: the same database, encryption key and flags, its own ports
    /// and work directory; returns once it is ready.
    pub async fn replica(&self, env: &Env, name: &str) -> anyhow::Result<Self> {
        let (api_port, kds_port) = (free_port(), free_port());
        let work = env.tmp.path().join(format!("{name}-work"));
        let mut args = self.args.clone();
        for (flag, value) in [
            ("--api-addr", format!("127.0.0.1:{api_port}")),
            ("--kds-addr", format!("127.0.0.1:{kds_port}")),
            ("--work-dir", work.display().to_string()),
        ] {
            let at = args
                .iter()
                .position(|a| a == flag)
                .with_context(|| format!("{} has no {flag}", self.name))?;
            *args
                .get_mut(at + 1)
                .with_context(|| format!("{} has no value after {flag}", self.name))? = value;
        }
        let mut p = Self::new(env, name, "meshplane-global", args, api_port, work)?;
        p.kds_port = kds_port;
        p.launch().await?;
        Ok(p)
    }

    pub fn kds_addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.kds_port))
    }

    /// kill -9, and wait for the exit.
    pub async fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(mut p) = self.proc.take() {
            p.signal("KILL")?;
            p.wait(Duration::from_secs(10)).await?;
        }
        Ok(())
    }

    fn new(
        env: &Env,
        name: &str,
        binary: &str,
        args: Vec<String>,
        api_port: u16,
        work: PathBuf,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            name: name.to_string(),
            bin: env.bin(binary)?,
            args,
            api: Api::new(format!("http://127.0.0.1:{api_port}"))?,
            log: env.log_dir().join(format!("{name}.log")),
            work,
            kds_port: 0,
            proc: None,
        })
    }

    /// Starts the process and polls `/readyz` every 5 ms; returns when it was spawned and when it
    /// answered ready.
    pub async fn launch(&mut self) -> anyhow::Result<(Instant, Instant)> {
        let spawned = Instant::now();
        let mut proc = Proc::spawn_logging_to(
            &self.name,
            &self.bin,
            &self.args,
            &[],
            self.log.clone(),
            None,
        )
        .await?;
        let url = format!("{}/readyz", self.api.base);
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?;
        loop {
            proc.check_running()?;
            if let Ok(r) = http.get(&url).send().await
                && r.status().is_success()
            {
                break;
            }
            if spawned.elapsed() > Duration::from_secs(120) {
                bail!("{} not ready after 120 s; log:\n{}", self.name, proc.logs());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let ready = Instant::now();
        self.proc = Some(proc);
        Ok((spawned, ready))
    }

    pub fn pid(&self) -> anyhow::Result<String> {
        match self.proc.as_ref().and_then(Proc::pid) {
            Some(p) => Ok(p.to_string()),
            None => bail!("{} is not running", self.name),
        }
    }

    pub fn rss(&self) -> anyhow::Result<Rss> {
        rss_of(&self.pid()?)
    }

    /// SIGTERM and wait for the exit (the drain closes streams first).
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(mut p) = self.proc.take() {
            p.terminate(Duration::from_secs(60)).await?;
        }
        Ok(())
    }

    /// The last lines of the log, for errors.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}
