//! Running the project's own binaries in tests: locate them in the target directory, start them on
//! free loopback ports with logs captured to a file, wait until they answer, stop them cleanly.

use std::{
    net::{SocketAddr, TcpListener},
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use tokio::process::{Child, Command};

/// The directory holding the workspace's binaries (`target/debug` for tests).
pub fn bin_dir() -> PathBuf {
    // Test executables live in target/<profile>/deps; binaries one level up.
    let exe = std::env::current_exe().unwrap_or_default();
    let mut dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir
}

/// The path of one of the workspace's binaries. Builds are the test runner's job: `.ci/run` runs
/// `cargo build --workspace --bins` before the tests.
pub fn bin(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(
        p.exists(),
        "{} is missing: run `cargo build --workspace --bins` before the end-to-end tests",
        p.display()
    );
    p
}

/// A free TCP port on 127.0.0.1 (bound and released; a race with other processes is possible but
/// rare, and tests retry start-up on bind errors).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

pub fn free_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

/// A running child process whose stdout and stderr go to a log file; killed on drop.
pub struct Proc {
    pub name: String,
    pub child: Option<Child>,
    pub log: PathBuf,
    _dir: Option<tempfile::TempDir>,
}

impl Proc {
    /// Starts `program args…` with extra environment, logging to a file in a fresh temp dir.
    pub async fn spawn(
        name: &str,
        program: &Path,
        args: &[String],
        env: &[(&str, String)],
    ) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let log = dir.path().join(format!("{name}.log"));
        Self::spawn_logging_to(name, program, args, env, log, Some(dir)).await
    }

    /// Like `spawn`, appending to a given log file (to keep one log across restarts).
    pub async fn spawn_logging_to(
        name: &str,
        program: &Path,
        args: &[String],
        env: &[(&str, String)],
        log: PathBuf,
        dir: Option<tempfile::TempDir>,
    ) -> anyhow::Result<Self> {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)?;
        let err = out.try_clone()?;
        let mut cmd = Command::new(program);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", program.display()))?;
        Ok(Self {
            name: name.to_string(),
            child: Some(child),
            log,
            _dir: dir,
        })
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// Sends a signal by name (`TERM`, `KILL`, `STOP`, `CONT`) with the system's `kill`.
    pub fn signal(&self, sig: &str) -> anyhow::Result<()> {
        let pid = self.pid().context("process already exited")?;
        let st = std::process::Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(pid.to_string())
            .status()?;
        if !st.success() {
            bail!("kill -{sig} {pid} failed");
        }
        Ok(())
    }

    /// SIGTERM, then waits for exit; returns the exit code (None if killed by a signal).
    pub async fn terminate(&mut self, timeout: Duration) -> anyhow::Result<Option<i32>> {
        self.signal("TERM")?;
        self.wait(timeout).await
    }

    pub async fn wait(&mut self, timeout: Duration) -> anyhow::Result<Option<i32>> {
        let child = self.child.as_mut().context("no child")?;
        let st = tokio::time::timeout(timeout, child.wait())
            .await
            .with_context(|| {
                format!(
                    "{} did not exit within {timeout:?}; log:\n{}",
                    self.name,
                    self.logs()
                )
            })??;
        self.child = None;
        Ok(st.code())
    }

    /// Kills immediately (SIGKILL) and reaps.
    pub async fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill().await;
        }
    }

    /// Fails with the log when the process has already exited.
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        if let Some(c) = self.child.as_mut()
            && let Ok(Some(st)) = c.try_wait()
        {
            bail!(
                "{} exited early with {st}; log:\n{}",
                self.name,
                self.logs()
            );
        }
        Ok(())
    }
}

/// Polls `url` until it answers 200, failing with the process log after `timeout`.
pub async fn wait_http_ok(proc: &mut Proc, url: &str, timeout: Duration) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let start = Instant::now();
    loop {
        proc.check_running()?;
        if let Ok(r) = client.get(url).send().await
            && r.status().is_success()
        {
            return Ok(());
        }
        if start.elapsed() > timeout {
            bail!(
                "{url} not ready after {timeout:?}; {} log:\n{}",
                proc.name,
                proc.logs()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls an async condition until it returns `Some`, or fails after `timeout` with `what`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return Ok(v);
        }
        if start.elapsed() > timeout {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Installs a test log subscriber once (RUST_LOG, default warn).
pub fn init_test_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}
