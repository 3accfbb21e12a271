//! The physical limit: raw HTTP calls to OpenBao's `<pki>/issue/<role>` and `<pki>/sign/<role>`
//! through one shared pooled reqwest client (as vault.md §2's vaultrs rows), with the same request
//! body the vault backend sends (URI SANs, CN from the template, TTL, `exclude_cn_from_sans`). In
//! CSR mode each call first makes a fresh key and CSR with rcgen off the runtime, exactly as the
//! backend does, because every certificate needs its own key.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use meshplane_core::{ca::identity, model::TagSet};
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, RsaKeySize, SanType};
use serde_json::{Value, json};

use crate::env::{KeyKind, Pki};

/// Issue (Vault makes the key) or sign a CSR made here.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Mode {
    #[serde(rename = "issue")]
    Issue,
    #[serde(rename = "csr-sign")]
    Csr,
}

impl Mode {
    pub fn short(self) -> &'static str {
        match self {
            Self::Issue => "issue",
            Self::Csr => "csr",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Issue => "issue",
            Self::Csr => "CSR sign",
        }
    }
}

/// How many distinct services the simulated dataplanes spread over.
pub const SERVICES: usize = 50;

pub fn service_of(i: usize) -> String {
    format!("svc-{}", i % SERVICES)
}

/// The tags the harness gives dataplane `i` (one inbound, one service).
pub fn tags_of(i: usize) -> TagSet {
    BTreeMap::from([(
        "kuma.io/service".to_string(),
        BTreeSet::from([service_of(i)]),
    )])
}

/// The CN template the benchmark Meshes use, and what it renders to.
pub const CN_TEMPLATE: &str = "{{ tag \"kuma.io/service\" }}.mesh";

pub fn common_name(i: usize) -> String {
    format!("{}.mesh", service_of(i))
}

/// The leaf lifetime the benchmark Meshes ask for (`dpCert.rotation.expiration: 1d`).
pub const TTL_SECS: u64 = 86_400;

/// A fresh key and its CSR for dataplane `i` of `mesh`, as the vault backend's CSR mode makes them.
pub fn make_csr(kind: KeyKind, mesh: &str, i: usize) -> anyhow::Result<String> {
    let key = match kind {
        KeyKind::Rsa => KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, RsaKeySize::_2048),
        KeyKind::Ec => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
    }?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name(i));
    for uri in identity::uri_sans(mesh, &tags_of(i)) {
        params
            .subject_alt_names
            .push(SanType::URI(uri.as_str().try_into()?));
    }
    let csr = params.serialize_request(&key)?.pem()?;
    // The backend also encodes the key for the dataplane; keep that cost on both sides.
    let _ = key.serialize_pem();
    Ok(csr)
}

/// One raw call for dataplane `i`.
pub async fn call(
    http: &reqwest::Client,
    pki: &Pki,
    kind: KeyKind,
    mode: Mode,
    i: usize,
) -> anyhow::Result<()> {
    let mut body = json!({
        "uri_sans": identity::uri_sans(&pki.mesh, &tags_of(i)).join(","),
        "ttl": format!("{TTL_SECS}s"),
        "exclude_cn_from_sans": true,
        "common_name": common_name(i),
    });
    let verb = match mode {
        Mode::Issue => "issue",
        Mode::Csr => {
            let mesh = pki.mesh.clone();
            let csr = tokio::task::spawn_blocking(move || make_csr(kind, &mesh, i)).await??;
            body["csr"] = json!(csr);
            "sign"
        }
    };
    let url = format!("{}/v1/{}/{verb}/{}", pki.addr, pki.mount, pki.role(kind));
    let r = http
        .post(url)
        .header("X-Vault-Token", &pki.token)
        .header("X-Vault-Request", "true")
        .json(&body)
        .send()
        .await?;
    let status = r.status();
    let bytes = r.bytes().await?;
    if !status.is_success() {
        bail!("raw {verb}: {status}: {}", String::from_utf8_lossy(&bytes));
    }
    let v: Value = serde_json::from_slice(&bytes).context("raw answer is not JSON")?;
    if v["data"]["certificate"].as_str().is_none() {
        bail!("raw {verb}: no data.certificate");
    }
    Ok(())
}

pub fn client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(256)
        .build()?)
}

/// `count` calls spread over `concurrency` tasks; certificates per second.
pub async fn run_count(
    http: &reqwest::Client,
    pki: &Pki,
    kind: KeyKind,
    mode: Mode,
    concurrency: usize,
    count: usize,
) -> anyhow::Result<f64> {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (http, pki, next) = (http.clone(), pki.clone(), next.clone());
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return Ok::<_, anyhow::Error>(());
                }
                call(&http, &pki, kind, mode, i).await?;
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    Ok(count as f64 / started.elapsed().as_secs_f64())
}

/// Calls for `dur` over `concurrency` tasks; certificates per second.
pub async fn run_for(
    http: &reqwest::Client,
    pki: &Pki,
    kind: KeyKind,
    mode: Mode,
    concurrency: usize,
    dur: Duration,
) -> anyhow::Result<f64> {
    let done = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..concurrency {
        let (http, pki, done) = (http.clone(), pki.clone(), done.clone());
        tasks.spawn(async move {
            let mut i = t;
            while started.elapsed() < dur {
                call(&http, &pki, kind, mode, i).await?;
                done.fetch_add(1, Ordering::Relaxed);
                i += concurrency;
            }
            Ok::<_, anyhow::Error>(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    Ok(done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64())
}
