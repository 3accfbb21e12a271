//! Shared pieces of the vault backend tests: a DataSource loader over an in-memory map of Secrets,
//! backend builders, leaf requests, `openssl` checks and log capture.
#![allow(dead_code, reason = "each test file uses a different subset")]

use std::{
    collections::{BTreeMap, HashMap},
    io::Write,
    process::Command,
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use meshplane_core::{
    ca::{LeafRequest, MeshCa},
    datasource::{DataSourceLoader, FileDirs, LoadError, load_file, load_inline},
    duration::Timeout,
    model::{
        Backend, BackendConf, BackendType, DataSource, TagSet,
        mesh::{DpCert, VaultAuth, VaultConf, VaultFromCp, VaultTls},
    },
    template::CnTemplate,
};

pub const MESH: &str = "default";

/// Mesh-scoped Secrets kept in memory; tests rotate them with `put`.
#[derive(Default)]
pub struct Secrets(Mutex<HashMap<String, Vec<u8>>>);

impl Secrets {
    pub fn put(&self, name: &str, data: impl AsRef<[u8]>) {
        self.0
            .lock()
            .unwrap()
            .insert(name.into(), data.as_ref().to_vec());
    }

    pub fn ca(&self) -> MeshCa<'_> {
        MeshCa {
            mesh: MESH,
            loader: self,
        }
    }
}

#[async_trait]
impl DataSourceLoader for Secrets {
    async fn load(&self, mesh: &str, source: &DataSource) -> Result<Vec<u8>, LoadError> {
        if let Some(r) = load_inline(source) {
            return r;
        }
        match source {
            DataSource::File(p) => load_file(p, &FileDirs::default()).await,
            DataSource::Secret(name) => {
                self.0
                    .lock()
                    .unwrap()
                    .get(name)
                    .cloned()
                    .ok_or_else(|| LoadError::SecretNotFound {
                        mesh: mesh.into(),
                        name: name.clone(),
                    })
            }
            _ => Err(LoadError::Base64),
        }
    }
}

/// `fromCp` for the seed's mount and role with token auth from Secret `vault-token`.
pub fn from_cp(address: &str) -> VaultFromCp {
    VaultFromCp {
        address: address.into(),
        agent_address: None,
        namespace: None,
        pki: "kmesh-pki-default".into(),
        role: "dataplane-proxies".into(),
        common_name: None,
        tls: None,
        auth: Some(VaultAuth::Token(DataSource::Secret("vault-token".into()))),
        csr: None,
    }
}

pub fn backend(from_cp: VaultFromCp) -> Backend {
    Backend {
        name: "vault-1".into(),
        backend_type: BackendType::Vault,
        mode: None,
        dp_cert: None,
        root_chain: None,
        conf: Some(BackendConf::Vault(VaultConf { from_cp })),
    }
}

/// With `dpCert.requestTimeout` set (bounds issue retries).
pub fn with_request_timeout(mut b: Backend, t: &str) -> Backend {
    b.dp_cert = Some(DpCert {
        rotation: None,
        request_timeout: Some(Timeout::parse(t).unwrap()),
    });
    b
}

pub fn cn(template: &str) -> Option<CnTemplate> {
    Some(CnTemplate::parse(template).unwrap())
}

pub fn ca_cert(pem: &str) -> Option<VaultTls> {
    Some(VaultTls {
        ca_cert: Some(DataSource::InlineString(pem.into())),
        skip_verify: None,
        server_name: None,
    })
}

pub fn tags(pairs: &[(&str, &str)]) -> TagSet {
    let mut t: TagSet = BTreeMap::new();
    for (k, v) in pairs {
        t.entry((*k).into()).or_default().insert((*v).into());
    }
    t
}

pub fn request(tags: TagSet) -> LeafRequest {
    LeafRequest {
        mesh: MESH.into(),
        dataplane: "web-1".into(),
        tags,
        validity: Duration::from_secs(3600),
    }
}

/// Writes `content` to a temp file and runs `openssl args… <file>`; stdout, or a panic with stderr.
pub fn openssl(args: &[&str], files: &[(&str, &str)]) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut full: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    for (name, content) in files {
        let p = dir.path().join(name);
        std::fs::File::create(&p)
            .unwrap()
            .write_all(content.as_bytes())
            .unwrap();
        full = full
            .into_iter()
            .map(|a| {
                if a == *name {
                    p.display().to_string()
                } else {
                    a
                }
            })
            .collect();
    }
    let out = Command::new("openssl").args(&full).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

pub fn x509_text(cert_pem: &str) -> String {
    let (ok, text) = openssl(
        &["x509", "-noout", "-text", "-in", "leaf.pem"],
        &[("leaf.pem", cert_pem)],
    );
    assert!(ok, "{text}");
    text
}

/// `openssl verify -CAfile <roots> <leaf>` succeeds.
pub fn verify(cert_pem: &str, roots: &[String]) {
    let (ok, text) = openssl(
        &["verify", "-CAfile", "roots.pem", "leaf.pem"],
        &[("roots.pem", &roots.concat()), ("leaf.pem", cert_pem)],
    );
    assert!(ok && text.contains("OK"), "{text}");
}

/// The DER of each certificate in a PEM bundle, for comparisons that ignore line wrapping.
pub fn ders(pem: &str) -> Vec<Vec<u8>> {
    meshplane_ca::pem_util::parse_certificates(pem.as_bytes()).unwrap()
}

/// Captures log lines of the current thread while alive (tests run on a current-thread runtime).
pub struct LogCapture {
    buf: Arc<Mutex<Vec<u8>>>,
    _guard: tracing::dispatcher::DefaultGuard,
}

#[derive(Clone)]
struct BufWriter(Arc<Mutex<Vec<u8>>>);

impl Write for BufWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogCapture {
    pub fn start() -> Self {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let w = BufWriter(buf.clone());
        let sub = tracing_subscriber::fmt()
            .with_writer(move || w.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::DEBUG)
            .finish();
        let guard = tracing::dispatcher::set_default(&tracing::Dispatch::new(sub));
        Self { buf, _guard: guard }
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.buf.lock().unwrap()).into_owned()
    }
}

/// A stand-in for a Vault agent: forwards every request to `upstream`, adding its own token, and
/// records whether a client sent one (it should not).
pub struct FakeAgent {
    pub url: String,
    pub requests: Arc<std::sync::atomic::AtomicUsize>,
    pub client_tokens: Arc<std::sync::atomic::AtomicUsize>,
}

pub async fn start_agent(upstream: &str, token: &str) -> FakeAgent {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::{body::Bytes, extract::Request, http::StatusCode, response::IntoResponse};

    let requests = Arc::new(AtomicUsize::new(0));
    let client_tokens = Arc::new(AtomicUsize::new(0));
    let (r, c) = (requests.clone(), client_tokens.clone());
    let upstream = upstream.to_string();
    let token = token.to_string();
    let http = reqwest::Client::new();
    let app = axum::Router::new().fallback(move |req: Request| {
        let (r, c, upstream, token, http) = (
            r.clone(),
            c.clone(),
            upstream.clone(),
            token.clone(),
            http.clone(),
        );
        async move {
            r.fetch_add(1, Ordering::SeqCst);
            let (parts, body) = req.into_parts();
            if parts.headers.contains_key("x-vault-token") {
                c.fetch_add(1, Ordering::SeqCst);
            }
            let body: Bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap();
            let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
            let mut out = http
                .request(parts.method.clone(), format!("{upstream}{path}"))
                .header("X-Vault-Token", token)
                .body(body);
            for h in ["x-vault-namespace", "content-type"] {
                if let Some(v) = parts.headers.get(h) {
                    out = out.header(h, v);
                }
            }
            let resp = out.send().await.unwrap();
            let status = StatusCode::from_u16(resp.status().as_u16()).unwrap();
            (status, resp.bytes().await.unwrap()).into_response()
        }
    });
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    FakeAgent {
        url,
        requests,
        client_tokens,
    }
}
