//! Debian's chromium, headless, driven through chromedriver over WebDriver (fantoccini): pages are
//! loaded, read as a person sees them (visible text), clicked through, and photographed.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use fantoccini::{Client, ClientBuilder, Locator};
use meshplane_test_support::process::{Proc, free_port};

/// The name that resolves to 127.0.0.1 inside the browser only: a request for it comes from a
/// loopback peer but names a foreign host, so it is not the loopback admin.
pub const REMOTE_HOST: &str = "console.test";

fn find(env: &str, candidates: &[&str]) -> Option<PathBuf> {
    if let Ok(p) = std::env::var(env) {
        return Some(PathBuf::from(p));
    }
    candidates.iter().map(PathBuf::from).find(|p| p.exists())
}

pub struct Browser {
    pub client: Client,
    _driver: Proc,
    _profile: tempfile::TempDir,
    pub shots: PathBuf,
    /// Every page's HTML as loaded, for the secret search at the end.
    pub seen: Vec<(String, String)>,
}

impl Browser {
    /// `Ok(None)` (after saying why) where no browser can start here; an error for anything else.
    pub async fn start(shots: &Path) -> anyhow::Result<Option<Self>> {
        let Some(driver_bin) = find(
            "MESHPLANE_CHROMEDRIVER",
            &["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"],
        ) else {
            eprintln!(
                "SKIPPED: the GUI test needs chromedriver (Debian package chromium-driver; scripts/test.sh installs it)"
            );
            return Ok(None);
        };
        let Some(chromium) = find("MESHPLANE_CHROMIUM", &["/usr/bin/chromium"]) else {
            eprintln!(
                "SKIPPED: the GUI test needs chromium (Debian package chromium; scripts/test.sh installs it)"
            );
            return Ok(None);
        };
        let port = free_port();
        let driver = Proc::spawn(
            "chromedriver",
            &driver_bin,
            &[format!("--port={port}")],
            &[],
        )
        .await?;
        let url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let started = Instant::now();
        while http
            .get(format!("{url}/status"))
            .send()
            .await
            .map(|r| !r.status().is_success())
            .unwrap_or(true)
        {
            if started.elapsed() > Duration::from_secs(30) {
                eprintln!(
                    "SKIPPED: chromedriver did not start within 30 s; its log:\n{}",
                    driver.logs()
                );
                return Ok(None);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = tempfile::tempdir()?;
        let args = [
            "--headless=new".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--disable-dev-shm-usage".into(),
            "--window-size=1360,1000".into(),
            format!("--user-data-dir={}", profile.path().display()),
            format!("--host-resolver-rules=MAP {REMOTE_HOST} 127.0.0.1"),
        ];
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({"binary": chromium.display().to_string(), "args": args}),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = match ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&url)
            .await
        {
            Ok(c) => c,
            Err(e) => {
                eprintln!(
                    "SKIPPED: chromium could not start under chromedriver: {e}; chromedriver log:\n{}",
                    driver.logs()
                );
                return Ok(None);
            }
        };
        std::fs::create_dir_all(shots)?;
        Ok(Some(Self {
            client,
            _driver: driver,
            _profile: profile,
            shots: shots.to_path_buf(),
            seen: Vec::new(),
        }))
    }

    pub async fn open(&mut self, url: &str) -> anyhow::Result<()> {
        self.client
            .goto(url)
            .await
            .with_context(|| format!("loading {url}"))?;
        self.record().await
    }

    /// Keeps the current page's HTML for the secret search.
    pub async fn record(&mut self) -> anyhow::Result<()> {
        let url = self.client.current_url().await?.to_string();
        let html = self.client.source().await?;
        self.seen.push((url, html));
        Ok(())
    }

    /// What a person sees: the body's rendered text.
    pub async fn text(&self) -> anyhow::Result<String> {
        Ok(self.client.find(Locator::Css("body")).await?.text().await?)
    }

    /// Waits until every one of `want` is visible (the page refreshes itself); returns the text.
    pub async fn wait_text(&mut self, want: &[&str], timeout: Duration) -> anyhow::Result<String> {
        let started = Instant::now();
        loop {
            let text = self.text().await.unwrap_or_default();
            if want.iter().all(|w| text.contains(w)) {
                self.record().await?;
                return Ok(text);
            }
            if started.elapsed() > timeout {
                bail!(
                    "after {timeout:?} the page at {} still lacks {:?}; it shows:\n{text}",
                    self.client.current_url().await?,
                    want.iter()
                        .filter(|w| !text.contains(**w))
                        .collect::<Vec<_>>()
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Waits until the element at `css` shows exactly `want`.
    pub async fn wait_css_text(
        &mut self,
        css: &str,
        want: &str,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let started = Instant::now();
        loop {
            let got = match self.client.find(Locator::Css(css)).await {
                Ok(e) => e.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            if got.trim() == want {
                return self.record().await;
            }
            if started.elapsed() > timeout {
                bail!("after {timeout:?} {css} shows {got:?}, not {want:?}");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Clicks the first link whose text is `text`, as a person would, and waits for the new page.
    pub async fn click_link(&mut self, text: &str) -> anyhow::Result<()> {
        let before = self.client.current_url().await?;
        self.client
            .find(Locator::LinkText(text))
            .await
            .with_context(|| format!("no link {text:?} on {before}"))?
            .click()
            .await?;
        let started = Instant::now();
        while self.client.current_url().await? == before {
            if started.elapsed() > Duration::from_secs(20) {
                bail!("clicking {text:?} on {before} went nowhere");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        while self
            .client
            .execute("return document.readyState", vec![])
            .await?
            .as_str()
            != Some("complete")
        {
            if started.elapsed() > Duration::from_secs(20) {
                bail!("the page after clicking {text:?} did not finish loading");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.record().await
    }

    /// Clicks the element at `css`.
    pub async fn click(&self, css: &str) -> anyhow::Result<()> {
        self.client
            .find(Locator::Css(css))
            .await
            .with_context(|| format!("no {css} on the page"))?
            .click()
            .await?;
        Ok(())
    }

    /// Types `token` into the sign-in form and sends it, as a person would.
    pub async fn sign_in(&self, token: &str) -> anyhow::Result<()> {
        self.client
            .find(Locator::Css("textarea[name=token]"))
            .await
            .context("no token field")?
            .send_keys(token)
            .await?;
        self.click("form[action='/gui/login'] button").await
    }

    pub async fn shot(&self, name: &str) -> anyhow::Result<PathBuf> {
        let png = self.client.screenshot().await?;
        let path = self.shots.join(format!("{name}.png"));
        std::fs::write(&path, png)?;
        Ok(path)
    }

    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }
}

/// A failed assertion skips `close`, and killing chromedriver leaves the browser it started
/// running: end the processes started with this test's own profile directory, by their ids.
impl Drop for Browser {
    fn drop(&mut self) {
        let marker = format!("--user-data-dir={}", self._profile.path().display());
        let Ok(procs) = std::fs::read_dir("/proc") else {
            return;
        };
        for entry in procs.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let ours = cmdline
                .split(|b| *b == 0)
                .any(|arg| arg == marker.as_bytes());
            if ours {
                let _ = std::process::Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
        }
    }
}
