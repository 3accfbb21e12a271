//! The raw HTTP side of Vault: one long-lived reqwest client per endpoint, `/v1/<path>` calls with
//! the token and namespace headers, JSON replies with their `warnings`, and transport failures
//! (refused, timed out, untrusted certificate) told apart by walking the error's source chain.
//!
//! vaultrs serves where its answers carry all we need (`lookup-self`, see [`Endpoint::lookup_self`]):
//! it runs over this module's pooled client, so custom CAs, `serverName` and namespaces still apply.
//! Issue, sign, login and renew go through [`Endpoint::call`] instead, because vaultrs drops login
//! warnings and response headers (`Retry-After`, the "TTL capped" warning), cannot pin a cert role,
//! and breaks on OpenBao's health shape (vault.md §4.3).

use std::{error::Error as StdError, time::Duration};

use reqwest::{Method, StatusCode, header::HeaderMap};
use serde_json::Value;
use url::Url;

use super::{
    error::{Failure, Op, VaultError, classify},
    token::Secret,
};

/// A reply with a 2xx status: the JSON body (`Null` for 204) and Vault's non-fatal warnings.
#[derive(Debug)]
pub(crate) struct Reply {
    pub body: Value,
    pub warnings: Vec<String>,
}

/// Where requests go and how: the configured address (for messages), the URL actually dialled
/// (it differs when `tls.serverName` rewrites the host), the namespace, and the pooled client.
#[derive(Clone)]
pub(crate) struct Endpoint {
    http: reqwest::Client,
    base: Url,
    addr: String,
    namespace: Option<String>,
}

impl Endpoint {
    pub(crate) fn new(
        http: reqwest::Client,
        base: Url,
        addr: &str,
        namespace: Option<&str>,
    ) -> Self {
        Self {
            http,
            base,
            addr: addr.trim_end_matches('/').to_string(),
            namespace: namespace
                .map(|n| n.trim_matches('/').to_string())
                .filter(|n| !n.is_empty()),
        }
    }

    /// The address as configured, for messages.
    pub(crate) fn addr(&self) -> &str {
        &self.addr
    }

    fn url(&self, path: &str) -> Result<Url, VaultError> {
        self.base
            .join(&format!("v1/{}", path.trim_start_matches('/')))
            .map_err(|e| VaultError::setup(None, format!("cannot build a URL for {path}: {e}")))
    }

    fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&Secret>,
        timeout: Duration,
    ) -> Result<reqwest::RequestBuilder, VaultError> {
        let mut req = self
            .http
            .request(method, self.url(path)?)
            .timeout(timeout.max(Duration::from_millis(100)))
            .header("X-Vault-Request", "true");
        if let Some(t) = token {
            req = req.header("X-Vault-Token", t.expose());
        }
        if let Some(ns) = &self.namespace {
            req = req.header("X-Vault-Namespace", ns);
        }
        Ok(req)
    }

    /// One JSON call. Non-2xx answers are classified in the light of `op`.
    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&Secret>,
        body: Option<&Value>,
        op: Op<'_>,
        timeout: Duration,
    ) -> Result<Reply, VaultError> {
        let label = super::metrics::op_label(&op);
        super::metrics::timed(
            label,
            self.call_once(method, path, token, body, op, timeout),
        )
        .await
    }

    async fn call_once(
        &self,
        method: Method,
        path: &str,
        token: Option<&Secret>,
        body: Option<&Value>,
        op: Op<'_>,
        timeout: Duration,
    ) -> Result<Reply, VaultError> {
        let mut req = self.request(method, path, token, timeout)?;
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(|e| self.transport(&e))?;
        let status = resp.status();
        let retry_after = retry_after(resp.headers());
        let text = resp.text().await.map_err(|e| self.transport(&e))?;
        if !status.is_success() {
            return Err(self.failure(path, op, status, &text, retry_after));
        }
        if text.trim().is_empty() {
            return Ok(Reply {
                body: Value::Null,
                warnings: vec![],
            });
        }
        let body: Value = serde_json::from_str(&text).map_err(|e| VaultError::Malformed {
            addr: self.addr.clone(),
            path: path.to_string(),
            reason: format!("not JSON: {e}"),
        })?;
        let warnings = body["warnings"]
            .as_array()
            .map(|w| {
                w.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        Ok(Reply { body, warnings })
    }

    /// `auth/token/lookup-self` through vaultrs, on this endpoint's pooled client and namespace.
    pub(crate) async fn lookup_self(
        &self,
        token: &Secret,
        timeout: Duration,
    ) -> Result<vaultrs::api::token::responses::LookupTokenResponse, VaultError> {
        let label = super::metrics::op_label(&Op::LookupSelf);
        super::metrics::timed(label, self.lookup_self_once(token, timeout)).await
    }

    async fn lookup_self_once(
        &self,
        token: &Secret,
        timeout: Duration,
    ) -> Result<vaultrs::api::token::responses::LookupTokenResponse, VaultError> {
        const PATH: &str = "auth/token/lookup-self";
        let settings = vaultrs::client::VaultClientSettingsBuilder::default()
            .address(self.base.as_str())
            .token(token.expose())
            .namespace(self.namespace.clone())
            .build()
            .map_err(|e| {
                VaultError::setup(
                    None,
                    format!("cannot configure the Vault client for {}: {e}", self.addr),
                )
            })?;
        let client = vaultrs::client::VaultClient {
            http: rustify::clients::reqwest::Client::new(
                self.base.as_str().trim_end_matches('/'),
                self.http.clone(),
            ),
            middle: vaultrs::api::EndpointMiddleware {
                token: token.expose().to_string(),
                version: "v1".into(),
                wrap: None,
                namespace: self.namespace.clone(),
            },
            settings,
        };
        let answer = tokio::time::timeout(timeout, vaultrs::token::lookup_self(&client))
            .await
            .map_err(|_| VaultError::Timeout {
                addr: self.addr.clone(),
                reason: format!("no answer to {PATH} within {timeout:?}"),
            })?;
        match answer {
            Ok(r) => Ok(r),
            Err(vaultrs::error::ClientError::APIError { code, errors }) => Err(classify(
                Op::LookupSelf,
                Failure {
                    addr: &self.addr,
                    namespace: self.namespace.as_deref(),
                    path: PATH,
                    status: code,
                    errors,
                    raw: String::new(),
                    retry_after: None,
                },
            )),
            // A non-JSON error body (the HTTPS listener's note to plain HTTP, a proxy's page).
            Err(vaultrs::error::ClientError::RestClientError {
                source: rustify::errors::ClientError::ServerResponseError { code, content },
            }) => Err(classify(
                Op::LookupSelf,
                Failure {
                    addr: &self.addr,
                    namespace: self.namespace.as_deref(),
                    path: PATH,
                    status: code,
                    errors: vec![],
                    raw: content.unwrap_or_default(),
                    retry_after: None,
                },
            )),
            Err(other) => {
                // A transport failure: find reqwest's error in the chain to tell refused from untrusted.
                let mut cur: Option<&(dyn StdError + 'static)> = Some(&other);
                while let Some(e) = cur {
                    if let Some(re) = e.downcast_ref::<reqwest::Error>() {
                        return Err(self.transport(re));
                    }
                    cur = e.source();
                }
                Err(VaultError::Malformed {
                    addr: self.addr.clone(),
                    path: PATH.into(),
                    reason: other.to_string(),
                })
            }
        }
    }

    /// A GET whose 2xx body is text (PEM bundles).
    pub(crate) async fn get_text(
        &self,
        path: &str,
        token: Option<&Secret>,
        op: Op<'_>,
        timeout: Duration,
    ) -> Result<String, VaultError> {
        let label = super::metrics::op_label(&op);
        super::metrics::timed(label, self.get_text_once(path, token, op, timeout)).await
    }

    async fn get_text_once(
        &self,
        path: &str,
        token: Option<&Secret>,
        op: Op<'_>,
        timeout: Duration,
    ) -> Result<String, VaultError> {
        let resp = self
            .request(Method::GET, path, token, timeout)?
            .send()
            .await
            .map_err(|e| self.transport(&e))?;
        let status = resp.status();
        let retry_after = retry_after(resp.headers());
        let text = resp.text().await.map_err(|e| self.transport(&e))?;
        if !status.is_success() {
            return Err(self.failure(path, op, status, &text, retry_after));
        }
        Ok(text)
    }

    fn failure(
        &self,
        path: &str,
        op: Op<'_>,
        status: StatusCode,
        text: &str,
        retry_after: Option<Duration>,
    ) -> VaultError {
        let errors = serde_json::from_str::<Value>(text)
            .ok()
            .and_then(|v| {
                v["errors"].as_array().map(|a| {
                    a.iter()
                        .filter_map(|e| e.as_str().map(str::to_string))
                        .collect::<Vec<_>>()
                })
            })
            .unwrap_or_default();
        classify(
            op,
            Failure {
                addr: &self.addr,
                namespace: self.namespace.as_deref(),
                path,
                status: status.as_u16(),
                raw: if errors.is_empty() {
                    text.to_string()
                } else {
                    String::new()
                },
                errors,
                retry_after,
            },
        )
    }

    /// Names a failure below HTTP. reqwest's own text ("error sending request") is the same for a
    /// refused connection and an untrusted certificate; only the source chain tells them apart.
    fn transport(&self, e: &reqwest::Error) -> VaultError {
        let addr = self.addr.clone();
        if e.is_builder() {
            return VaultError::setup(
                None,
                format!("cannot build a request to Vault at {addr}: {e}"),
            );
        }
        let chain = e
            .source()
            .map(meshplane_core::runtime::tls_refusal::sources)
            .unwrap_or_default();
        for c in &chain {
            if let Some(tls) = c.downcast_ref::<rustls::Error>() {
                let reason = tls.to_string();
                return match tls {
                    rustls::Error::InvalidCertificate(_) => VaultError::Untrusted { addr, reason },
                    _ => VaultError::Handshake { addr, reason },
                };
            }
        }
        for c in &chain {
            if let Some(io) = c.downcast_ref::<std::io::Error>() {
                let reason = match io.kind() {
                    std::io::ErrorKind::ConnectionRefused => "connection refused".to_string(),
                    std::io::ErrorKind::TimedOut => {
                        return VaultError::Timeout {
                            addr,
                            reason: "connect timed out".into(),
                        };
                    }
                    _ => io.to_string(),
                };
                return VaultError::Unreachable { addr, reason };
            }
        }
        let innermost = chain
            .last()
            .map_or_else(|| e.to_string(), |c| c.to_string());
        if e.is_timeout() {
            VaultError::Timeout {
                addr,
                reason: "request timed out".into(),
            }
        } else {
            VaultError::Unreachable {
                addr,
                reason: innermost,
            }
        }
    }
}

/// `Retry-After` in seconds (the HTTP-date form is not used by Vault and is ignored).
fn retry_after(h: &HeaderMap) -> Option<Duration> {
    h.get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}
