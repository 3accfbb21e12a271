//! A thin REST client for the control plane's API; turns Kuma-shaped errors into `CliError::Api`.

use meshplane_core::model::ResourceKind;
use reqwest::StatusCode;
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{detail} [HTTP {status}]")]
    Api {
        status: u16,
        detail: String,
        violations: Vec<(String, String)>,
        context: Option<String>,
    },
    #[error("Resource is not valid ({context})")]
    Invalid {
        context: String,
        violations: Vec<(String, String)>,
    },
    #[error("could not reach the control plane at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Io(String),
}

pub struct Client {
    base: String,
    http: reqwest::Client,
    token: Option<String>,
}

/// Where a kind lives in the API.
pub fn item_path(kind: ResourceKind, mesh: &str, name: &str) -> String {
    if kind.is_mesh_scoped() {
        format!("/meshes/{mesh}/{}/{name}", kind.path_segment())
    } else {
        format!("/{}/{name}", kind.path_segment())
    }
}

pub fn list_path(kind: ResourceKind, mesh: Option<&str>) -> String {
    match (kind.is_mesh_scoped(), mesh) {
        (true, Some(m)) => format!("/meshes/{m}/{}", kind.path_segment()),
        _ => format!("/{}", kind.path_segment()),
    }
}

impl Client {
    pub fn new(
        base: &str,
        ca_cert: Option<&std::path::Path>,
        token: Option<String>,
    ) -> Result<Self, CliError> {
        let mut b = reqwest::Client::builder().timeout(std::time::Duration::from_secs(90));
        if let Some(path) = ca_cert {
            let pem = std::fs::read(path)
                .map_err(|e| CliError::Usage(format!("--ca-cert {}: {e}", path.display())))?;
            let cert = reqwest::Certificate::from_pem(&pem)
                .map_err(|e| CliError::Usage(format!("--ca-cert {}: {e}", path.display())))?;
            b = b.add_root_certificate(cert);
        }
        let http = b
            .build()
            .map_err(|e| CliError::Usage(format!("could not build the HTTP client: {e}")))?;
        let base = base.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(CliError::Usage(format!(
                "--api-url {base:?} must start with http:// or https://"
            )));
        }
        Ok(Self { base, http, token })
    }

    fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let r = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    async fn send(
        &self,
        rb: reqwest::RequestBuilder,
        context: Option<String>,
    ) -> Result<(StatusCode, Value), CliError> {
        let resp = rb.send().await.map_err(|e| CliError::Unreachable {
            url: self.base.clone(),
            reason: meshplane_core::runtime::telemetry::error_chain(&e),
        })?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| CliError::Unreachable {
            url: self.base.clone(),
            reason: e.to_string(),
        })?;
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if status.is_success() {
            return Ok((status, body));
        }
        let detail = body
            .get("detail")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| body.to_string());
        let violations = body
            .get("invalid_parameters")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .map(|v| {
                        (
                            v.get("field")
                                .and_then(Value::as_str)
                                .unwrap_or("")
                                .to_string(),
                            with_detail(
                                v.get("reason").and_then(Value::as_str).unwrap_or(""),
                                v.get("detail").and_then(Value::as_str),
                            ),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        Err(CliError::Api {
            status: status.as_u16(),
            detail,
            violations,
            context,
        })
    }

    pub async fn get(&self, path: &str) -> Result<Value, CliError> {
        Ok(self
            .send(self.req(reqwest::Method::GET, path), None)
            .await?
            .1)
    }

    /// Every item of a list, following pages.
    pub async fn list(&self, path: &str) -> Result<Vec<Value>, CliError> {
        let mut out = Vec::new();
        let mut offset = 0;
        loop {
            let page = self
                .get(&format!("{path}?size=1000&offset={offset}"))
                .await?;
            let items = page
                .get("items")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let n = items.len();
            out.extend(items);
            let total = page.get("total").and_then(Value::as_u64).unwrap_or(0) as usize;
            offset += n;
            if n == 0 || offset >= total {
                return Ok(out);
            }
        }
    }

    /// PUTs a resource; returns true when it was created.
    /// PUTs a resource; whether it was created, and the server's warnings.
    pub async fn put(
        &self,
        path: &str,
        body: &Value,
        context: String,
    ) -> Result<(bool, Vec<String>), CliError> {
        let (status, answer) = self
            .send(
                self.req(reqwest::Method::PUT, path).json(body),
                Some(context),
            )
            .await?;
        let warnings = answer
            .get("warnings")
            .and_then(Value::as_array)
            .map(|w| {
                w.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        Ok((status == StatusCode::CREATED, warnings))
    }

    /// POSTs JSON and returns the body as text (tokens come back as text/plain).
    pub async fn post_text(&self, path: &str, body: &Value) -> Result<String, CliError> {
        let (_, v) = self
            .send(self.req(reqwest::Method::POST, path).json(body), None)
            .await?;
        Ok(match v {
            Value::String(s) => s,
            other => other.to_string(),
        })
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Result<Value, CliError> {
        Ok(self
            .send(self.req(reqwest::Method::POST, path).json(body), None)
            .await?
            .1)
    }

    pub async fn delete(
        &self,
        kind: ResourceKind,
        mesh: &str,
        name: &str,
        force: bool,
    ) -> Result<(), CliError> {
        let mut path = item_path(kind, mesh, name);
        if force {
            path.push_str("?force=true");
        }
        let context = format!("{} {name:?}", kind.name());
        self.send(self.req(reqwest::Method::DELETE, &path), Some(context))
            .await
            .map(|_| ())
    }
}

/// A violation's reason followed by its detail, as one line says them.
pub fn with_detail(reason: &str, detail: Option<&str>) -> String {
    match detail {
        Some(d) => format!("{reason} ({d})"),
        None => reason.to_string(),
    }
}
