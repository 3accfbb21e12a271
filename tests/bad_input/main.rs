//! Bad input, table-driven, against a running global: malformed and oversized JSON and YAML, alias
//! bombs, deep nesting, unknown fields, wrong types, invalid durations and commonName templates,
//! DataSources pointing at missing Secrets or unreadable files, invalid PEM, huge Secrets, odd
//! Unicode and traversal-looking names. Every request gets a 4xx; a 400 names the field and the
//! reason in `invalid_parameters` (or, when the body could not be read at all, the reason in
//! `detail`); and after every request the server still answers `GET /readyz` and a valid PUT works.

mod bodies;
mod datasources;
mod fields;
mod names;

use base64::Engine;
use meshplane_tests::{Api, Global, Store};
use serde_json::{Value, json};

/// The request body limit of the API.
const MAX_BODY: usize = 2 * 1024 * 1024;
/// The largest Secret, decoded.
const MAX_SECRET: usize = 1024 * 1024;
const NAME_RULE: &str = "must consist of lower case alphanumeric characters";
/// Kuma's reason for a `mesh` field with characters no Mesh name has.
const MESH_REF_RULE: &str = "Valid characters are numbers, lowercase latin letters";

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A global on the memory store, and a counter for the canary writes.
struct World {
    g: Global,
    canary: u64,
}

impl World {
    async fn start() -> Self {
        Self::start_with(&[]).await
    }

    async fn start_with(args: &[&str]) -> Self {
        Self {
            g: Global::start(Store::Memory, args).await.expect("global"),
            canary: 0,
        }
    }

    fn api(&self) -> &Api {
        &self.g.api
    }

    fn addr(&self) -> String {
        self.g.api.base.trim_start_matches("http://").to_string()
    }

    /// After a bad request: readiness is 200, a valid write is applied and reads back, and the
    /// process has not panicked.
    async fn still_serving(&mut self, after: &str) {
        let (s, b) = self.api().get("/readyz").await.expect("readyz");
        assert_eq!((s, &b), (200, &json!({"ready": true})), "after {after}");
        self.canary += 1;
        let n = self.canary.to_string();
        let (s, b) = self
            .api()
            .put(
                "/meshes/canary",
                &json!({"type": "Mesh", "name": "canary", "labels": {"n": n}}),
            )
            .await
            .expect("canary PUT");
        assert!(s == 200 || s == 201, "a valid PUT after {after}: {s} {b}");
        let (s, b) = self.api().get("/meshes/canary").await.expect("canary GET");
        assert_eq!(
            (s, b["labels"]["n"].as_str()),
            (200, Some(n.as_str())),
            "after {after}"
        );
        let logs = self.g.proc.logs();
        assert!(!logs.contains("panicked"), "after {after}: {logs}");
    }
}

/// Kuma's error envelope with `status`.
fn assert_envelope(what: &str, status: u16, body: &Value) {
    assert_eq!(body["type"], "/std-errors", "{what}: {body}");
    assert_eq!(body["status"], status, "{what}: {body}");
    assert!(
        body["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{what}: {body}"
    );
}

/// A 400 whose `invalid_parameters` has `field` with a reason containing `reason`.
fn assert_field(what: &str, status: u16, body: &Value, field: &str, reason: &str) {
    assert_eq!(status, 400, "{what}: {body}");
    assert_envelope(what, 400, body);
    let params = body["invalid_parameters"]
        .as_array()
        .unwrap_or_else(|| panic!("{what}: no invalid_parameters in {body}"));
    assert!(
        params.iter().any(
            |p| p["field"] == field && p["reason"].as_str().is_some_and(|r| r.contains(reason))
        ),
        "{what}: expected {field:?}: {reason:?} in {body}"
    );
}

/// A refusal of the body itself (it could not be read as a document): `status`, and `detail`
/// containing `reason`.
fn assert_detail(what: &str, status: u16, want: u16, body: &Value, reason: &str) {
    assert_eq!(status, want, "{what}: {body}");
    assert_envelope(what, want, body);
    assert!(
        body["detail"].as_str().is_some_and(|d| d.contains(reason)),
        "{what}: expected {reason:?} in the detail of {body}"
    );
}

/// One request on a fresh connection, exactly as given: the path is not normalised (`%2e%2e`
/// stays), and the body may be announced by Content-Length or streamed chunked. Returns the status
/// and the JSON body.
async fn raw(
    addr: &str,
    method: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
    chunked: bool,
) -> (u16, Value) {
    use tokio::io::AsyncWriteExt;
    let mut sock = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let framing = if chunked {
        "Transfer-Encoding: chunked".to_string()
    } else {
        format!("Content-Length: {}", body.len())
    };
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {content_type}\r\n{framing}\r\nConnection: close\r\n\r\n"
    );
    sock.write_all(head.as_bytes()).await.expect("headers");
    // The server may answer and close before reading everything (413): ignore write errors.
    if chunked {
        for chunk in body.chunks(64 * 1024) {
            let mut framed = format!("{:x}\r\n", chunk.len()).into_bytes();
            framed.extend_from_slice(chunk);
            framed.extend_from_slice(b"\r\n");
            if sock.write_all(&framed).await.is_err() {
                break;
            }
        }
        let _ = sock.write_all(b"0\r\n\r\n").await;
    } else {
        let _ = sock.write_all(body).await;
    }
    let (status, head, rest) = meshplane_tests::read_answer(&mut sock)
        .await
        .expect("an answer");
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(&rest)
    } else {
        rest
    };
    (
        status,
        serde_json::from_str(&body).unwrap_or(Value::String(body)),
    )
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// Percent-encodes every byte that is not an unreserved URL character (so `.` and `/` inside a
/// name stay what they are only when written raw on purpose).
fn encode_segment(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn builtin_mesh(name: &str, backend: Value) -> Value {
    json!({"type": "Mesh", "name": name, "mtls": {"enabledBackend": "ca-1", "backends": [backend]}})
}

fn vault_backend(common_name: &str) -> Value {
    json!({"name": "ca-1", "type": "vault", "conf": {"fromCp": {
        "address": "http://127.0.0.1:1", "pki": "kmesh-pki-default", "role": "dataplane-proxies",
        "commonName": common_name, "auth": {"token": {"secret": "vault-token"}}}}})
}
