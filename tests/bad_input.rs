//! Bad input, table-driven, against a running global: malformed and oversized JSON and YAML, alias
//! bombs, deep nesting, unknown fields, wrong types, invalid durations and commonName templates,
//! DataSources pointing at missing Secrets or unreadable files, invalid PEM, huge Secrets, odd
//! Unicode and traversal-looking names. Every request gets a 4xx; a 400 names the field and the
//! reason in `invalid_parameters` (or, when the body could not be read at all, the reason in
//! `detail`); and after every request the server still answers `GET /readyz` and a valid PUT works.

use base64::Engine;
use meshplane_tests::{Api, Global, Store};
use serde_json::{Value, json};

/// The request body limit of the API.
const MAX_BODY: usize = 2 * 1024 * 1024;
/// The largest Secret, decoded.
const MAX_SECRET: usize = 1024 * 1024;
const NAME_RULE: &str = "must consist of lower case alphanumeric characters";

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
        Self {
            g: Global::start(Store::Memory, &[]).await.expect("global"),
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
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
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
    let mut answer = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(90),
        sock.read_to_end(&mut answer),
    )
    .await
    .expect("an answer in time")
    .expect("read the answer");
    let text = String::from_utf8_lossy(&answer);
    let (head, rest) = text.split_once("\r\n\r\n").expect("an HTTP answer");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status");
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(rest)
    } else {
        rest.to_string()
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

// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_oversized_json_and_yaml_bodies() {
    let mut w = World::start().await;
    let addr = w.addr();
    let json_t = "application/json";
    let yaml_t = "application/yaml";
    // (what, content type, body, detail contains)
    let cases: Vec<(&str, &str, Vec<u8>, &str)> = vec![
        (
            "truncated JSON",
            json_t,
            b"{\"type\":\"Mesh\",\"name\":".to_vec(),
            "invalid JSON",
        ),
        (
            "trailing comma",
            json_t,
            b"{\"type\":\"Mesh\",}".to_vec(),
            "invalid JSON",
        ),
        (
            "single quotes",
            json_t,
            b"{'type':'Mesh'}".to_vec(),
            "invalid JSON",
        ),
        (
            "trailing garbage",
            json_t,
            b"{\"type\":\"Mesh\"} x".to_vec(),
            "invalid JSON",
        ),
        (
            "a comment",
            json_t,
            b"{/* */\"type\":\"Mesh\"}".to_vec(),
            "invalid JSON",
        ),
        (
            "NaN",
            json_t,
            b"{\"type\":\"Mesh\",\"x\":NaN}".to_vec(),
            "invalid JSON",
        ),
        (
            "a number out of range",
            json_t,
            b"{\"type\":\"Mesh\",\"x\":1e999999}".to_vec(),
            "invalid JSON",
        ),
        (
            "a lone surrogate",
            json_t,
            b"{\"type\":\"Mesh\",\"name\":\"\\ud800\"}".to_vec(),
            "invalid JSON",
        ),
        (
            "invalid UTF-8 in a JSON string",
            json_t,
            b"{\"type\":\"Mesh\",\"name\":\"\xff\xfe\"}".to_vec(),
            "invalid JSON",
        ),
        (
            "a byte-order mark",
            json_t,
            b"\xef\xbb\xbf{\"type\":\"Mesh\"}".to_vec(),
            "invalid JSON",
        ),
        (
            "a control character in a string",
            json_t,
            b"{\"type\":\"Mesh\",\"name\":\"a\x01\"}".to_vec(),
            "invalid JSON",
        ),
        (
            "YAML sent as JSON",
            json_t,
            b"type: Mesh\nname: bad\n".to_vec(),
            "invalid JSON",
        ),
        ("an empty body", json_t, Vec::new(), "empty"),
        ("only whitespace", json_t, b" \n\t ".to_vec(), "empty"),
        (
            "an empty YAML document",
            yaml_t,
            b"---\n...\n".to_vec(),
            "empty",
        ),
        (
            "unclosed flow list",
            yaml_t,
            b"type: Mesh\nname: [bad\n".to_vec(),
            "invalid YAML",
        ),
        (
            "tab indentation",
            yaml_t,
            b"type: Mesh\nmtls:\n\tbackends: []\n".to_vec(),
            "invalid YAML",
        ),
        (
            "bad indentation",
            yaml_t,
            b"type: Mesh\n  name: bad\n name: x\n".to_vec(),
            "invalid YAML",
        ),
        (
            "an undefined alias",
            yaml_t,
            b"type: Mesh\nname: *nowhere\n".to_vec(),
            "invalid YAML",
        ),
        (
            "two documents",
            yaml_t,
            b"type: Mesh\nname: bad\n---\ntype: Mesh\nname: bad\n".to_vec(),
            "invalid YAML",
        ),
        (
            "invalid UTF-8 in YAML",
            yaml_t,
            b"type: Mesh\nname: \xff\n".to_vec(),
            "UTF-8",
        ),
        (
            "an unterminated quoted string",
            yaml_t,
            b"type: Mesh\nname: \"bad\n".to_vec(),
            "invalid YAML",
        ),
        (
            "a duplicate key",
            yaml_t,
            b"type: Mesh\nname: bad\nname: bad\n".to_vec(),
            "invalid YAML",
        ),
    ];
    for (what, ctype, body, detail) in cases {
        let (s, b) = w
            .api()
            .put_raw("/meshes/bad", ctype, body)
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_detail(what, s, 400, &b, detail);
        w.still_serving(what).await;
    }
    let (s, _) = w.api().get("/meshes/bad").await.expect("get");
    assert_eq!(s, 404, "nothing was stored");

    // Documents that parse but are not an object.
    for (what, ctype, body) in [
        ("a JSON list", json_t, "[1, 2]"),
        ("a JSON string", json_t, "\"Mesh\""),
        ("a JSON number", json_t, "42"),
        ("JSON null", json_t, "null"),
        ("a YAML scalar", yaml_t, "just text"),
        ("a YAML list", yaml_t, "- type: Mesh\n"),
    ] {
        let (s, b) = w
            .api()
            .put_raw("/meshes/bad", ctype, body.as_bytes().to_vec())
            .await
            .expect("put");
        assert_eq!(s, 400, "{what}: {b}");
        assert_envelope(what, 400, &b);
        w.still_serving(what).await;
    }

    // YAML that is not a resource: non-string keys, tags, a type that is not a string.
    for (what, body, field, reason) in [
        (
            "a tagged scalar",
            "type: Mesh\nname: !!python/object/apply:os.system [\"true\"]\n",
            "name",
            "name from the URL has to be the same as in body",
        ),
        (
            "a list for the type",
            "type: [Mesh]\nname: bad\n",
            "type",
            "type from the URL has to be the same as in body",
        ),
        (
            "a map for a label",
            "type: Mesh\nname: bad\nlabels: {a: {b: c}}\n",
            "labels[\"a\"]",
            "must be a string",
        ),
    ] {
        let (s, b) = w
            .api()
            .put_raw("/meshes/bad", yaml_t, body.as_bytes().to_vec())
            .await
            .expect("put");
        if b["invalid_parameters"].is_array() {
            assert_field(what, s, &b, field, reason);
        } else {
            assert_detail(what, s, 400, &b, "invalid YAML");
        }
        w.still_serving(what).await;
    }

    // Bodies over 2 MiB, JSON and YAML, announced or streamed.
    let pad = "A".repeat(MAX_BODY);
    let json_body = format!("{{\"type\":\"Mesh\",\"name\":\"bad\",\"pad\":\"{pad}\"}}");
    let yaml_body = format!("type: Mesh\nname: bad\npad: {pad}\n");
    for (what, ctype, body, chunked) in [
        (
            "oversized JSON with Content-Length",
            json_t,
            &json_body,
            false,
        ),
        ("oversized JSON streamed", json_t, &json_body, true),
        (
            "oversized YAML with Content-Length",
            yaml_t,
            &yaml_body,
            false,
        ),
        ("oversized YAML streamed", yaml_t, &yaml_body, true),
    ] {
        let (s, b) = raw(&addr, "PUT", "/meshes/bad", ctype, body.as_bytes(), chunked).await;
        assert_detail(what, s, 413, &b, "larger than 2097152 bytes");
        w.still_serving(what).await;
    }
    let (s, _) = w.api().get("/meshes/bad").await.expect("get");
    assert_eq!(s, 404, "nothing was stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn yaml_alias_bombs_and_deep_nesting() {
    let mut w = World::start().await;
    let json_t = "application/json";
    let yaml_t = "application/yaml";

    // Billion laughs: 10 levels of 9 aliases each, 9^10 nodes once expanded.
    let mut laughs = String::from(
        "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
    );
    let mut prev = 'a';
    for c in 'b'..='j' {
        let refs = vec![format!("*{prev}"); 9].join(",");
        laughs.push_str(&format!("{c}: &{c} [{refs}]\n"));
        prev = c;
    }
    let laughs = format!(
        "type: Mesh\nname: bad\nlogging:\n  x: *j\n{}",
        indent(&laughs)
    );
    // Quadratic blow-up: one 1 MiB anchored string referenced 900 times (~900 MiB expanded).
    let big = "x".repeat(1024 * 1024);
    let refs = vec!["*big"; 900].join(", ");
    let quadratic = format!("type: Mesh\nname: bad\nlogging:\n  s: &big {big}\n  l: [{refs}]\n");
    // Many small aliases: more than the alias budget.
    let many = format!(
        "type: Mesh\nname: bad\nlogging:\n  a: &a x\n  l: [{}]\n",
        vec!["*a"; 5000].join(",")
    );
    // A self-referencing anchor.
    let recursive = "type: Mesh\nname: bad\nlogging: &r\n  self: *r\n".to_string();
    let deep = 10_000;
    let cases: Vec<(&str, &str, String, &str)> = vec![
        ("billion laughs", yaml_t, laughs, "invalid YAML"),
        ("quadratic alias blow-up", yaml_t, quadratic, "invalid YAML"),
        ("more aliases than the budget", yaml_t, many, "invalid YAML"),
        ("a recursive alias", yaml_t, recursive, "invalid YAML"),
        (
            "10,000 nested JSON lists in a field",
            json_t,
            format!(
                "{{\"type\":\"Mesh\",\"name\":\"bad\",\"logging\":{}1{}}}",
                "[".repeat(deep),
                "]".repeat(deep)
            ),
            "invalid JSON",
        ),
        (
            "10,000 nested JSON lists as the body",
            json_t,
            format!("{}{}", "[".repeat(deep), "]".repeat(deep)),
            "invalid JSON",
        ),
        (
            "10,000 nested JSON objects",
            json_t,
            format!(
                "{{\"type\":\"Mesh\",\"name\":\"bad\",\"logging\":{}1{}}}",
                "{\"a\":".repeat(deep),
                "}".repeat(deep)
            ),
            "invalid JSON",
        ),
        (
            "10,000 nested YAML flow lists",
            yaml_t,
            format!(
                "type: Mesh\nname: bad\nlogging: {}1{}\n",
                "[".repeat(deep),
                "]".repeat(deep)
            ),
            "invalid YAML",
        ),
        (
            "10,000 nested YAML flow maps",
            yaml_t,
            format!(
                "type: Mesh\nname: bad\nlogging: {}1{}\n",
                "{a: ".repeat(deep),
                "}".repeat(deep)
            ),
            "invalid YAML",
        ),
        (
            "10,000 nested YAML block sequences",
            yaml_t,
            format!("type: Mesh\nname: bad\nlogging: {}1\n", "- ".repeat(deep)),
            "invalid YAML",
        ),
        (
            "100 nested JSON lists (deeper than YAML allows)",
            json_t,
            format!(
                "{{\"type\":\"Mesh\",\"name\":\"bad\",\"logging\":{}1{}}}",
                "[".repeat(100),
                "]".repeat(100)
            ),
            "nesting deeper than 64 levels",
        ),
    ];
    for (what, ctype, body, detail) in cases {
        let (s, b) = w
            .api()
            .put_raw("/meshes/bad", ctype, body.into_bytes())
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_detail(what, s, 400, &b, detail);
        w.still_serving(what).await;
    }

    // Wide rather than deep: 100,000 labels; 10,000 empty backends (20,000 violations).
    let labels: serde_json::Map<String, Value> = (0..100_000)
        .map(|i| (format!("l{i}"), json!("v")))
        .collect();
    let (s, b) = w
        .api()
        .put(
            "/meshes/bad",
            &json!({"type": "Mesh", "name": "bad", "labels": labels}),
        )
        .await
        .expect("put");
    assert_field(
        "100,000 labels",
        s,
        &b,
        "labels",
        "cannot have more than 64 labels",
    );
    w.still_serving("100,000 labels").await;
    let backends = vec![json!({}); 10_000];
    let (s, b) = w
        .api()
        .put(
            "/meshes/bad",
            &json!({"type": "Mesh", "name": "bad", "mtls": {"backends": backends}}),
        )
        .await
        .expect("put");
    assert_field(
        "10,000 empty backends",
        s,
        &b,
        "mtls.backends[9999].type",
        "has to be defined",
    );
    w.still_serving("10,000 empty backends").await;
    let (s, _) = w.api().get("/meshes/bad").await.expect("get");
    assert_eq!(s, 404, "nothing was stored");
}

fn indent(s: &str) -> String {
    s.lines().map(|l| format!("  {l}\n")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_fields_and_wrong_types_name_the_field() {
    let mut w = World::start().await;
    let builtin = |extra: Value| {
        let mut b = json!({"name": "ca-1", "type": "builtin"});
        if let Value::Object(m) = extra {
            b.as_object_mut().expect("object").extend(m);
        }
        builtin_mesh("bad", b)
    };
    // (what, path, body, field, reason)
    let cases: Vec<(&str, &str, Value, &str, &str)> = vec![
        (
            "unknown top-level field",
            "/meshes/bad",
            json!({"type": "Mesh", "name": "bad", "bogus": 1}),
            "bogus",
            "unknown field",
        ),
        (
            "unknown field in a backend",
            "/meshes/bad",
            builtin(json!({"bogus": true})),
            "mtls.backends[0].bogus",
            "unknown field",
        ),
        (
            "unknown field in mtls",
            "/meshes/bad",
            json!({"type": "Mesh", "name": "bad", "mtls": {"enabled": true}}),
            "mtls.enabled",
            "unknown field",
        ),
        (
            "unknown field in a DataSource",
            "/meshes/bad",
            builtin_mesh(
                "bad",
                json!({"name": "ca-1", "type": "provided", "conf": {"cert": {"secret": "c", "url": "http://x"}, "key": {"secret": "k"}}}),
            ),
            "mtls.backends[0].conf.cert.url",
            "unknown field",
        ),
        (
            "unknown field in a Secret",
            "/meshes/default/secrets/bad",
            json!({"type": "Secret", "mesh": "default", "name": "bad", "data": "YQ==", "value": "a"}),
            "value",
            "unknown field",
        ),
        (
            "unknown field in a Zone",
            "/zones/bad",
            json!({"type": "Zone", "name": "bad", "address": "x"}),
            "address",
            "unknown field",
        ),
        (
            "mtls is a string",
            "/meshes/bad",
            json!({"type": "Mesh", "name": "bad", "mtls": "yes"}),
            "mtls",
            "must be an object, not a string",
        ),
        (
            "backends is an object",
            "/meshes/bad",
            json!({"type": "Mesh", "name": "bad", "mtls": {"backends": {}}}),
            "mtls.backends",
            "must be a list, not an object",
        ),
        (
            "a backend is a string",
            "/meshes/bad",
            json!({"type": "Mesh", "name": "bad", "mtls": {"backends": ["ca-1"]}}),
            "mtls.backends[0]",
            "must be an object, not a string",
        ),
        (
            "skipValidation is a string",
            "/meshes/bad",
            json!({"type": "Mesh", "name": "bad", "mtls": {"skipValidation": "true"}}),
            "mtls.skipValidation",
            "must be a boolean, not a string",
        ),
        (
            "enabledBackend is a list",
            "/meshes/bad",
            json!({"type": "Mesh", "name": "bad", "mtls": {"enabledBackend": ["ca-1"]}}),
            "mtls.enabledBackend",
            "must be a string, not a list",
        ),
        (
            "labels is a list",
            "/meshes/bad",
            json!({"type": "Mesh", "name": "bad", "labels": ["a"]}),
            "labels",
            "must be a map of strings, not a list",
        ),
        (
            "a label value is a number",
            "/meshes/bad",
            json!({"type": "Mesh", "name": "bad", "labels": {"a": 1}}),
            "labels[\"a\"]",
            "must be a string, not a number",
        ),
        (
            "a label value is null",
            "/meshes/bad",
            json!({"type": "Mesh", "name": "bad", "labels": {"a": null}}),
            "labels[\"a\"]",
            "must be a string, not null",
        ),
        (
            "the type is a number",
            "/meshes/bad",
            json!({"type": 1, "name": "bad"}),
            "type",
            "type from the URL has to be the same as in body",
        ),
        (
            "the name is a number",
            "/meshes/bad",
            json!({"type": "Mesh", "name": 7}),
            "name",
            "name from the URL has to be the same as in body",
        ),
        (
            "an unknown type",
            "/meshes/bad",
            json!({"type": "Meshh", "name": "bad"}),
            "type",
            "type from the URL has to be the same as in body",
        ),
        (
            "a backend type that is a boolean",
            "/meshes/bad",
            builtin_mesh("bad", json!({"name": "ca-1", "type": true})),
            "mtls.backends[0].type",
            "must be a string, not a boolean",
        ),
        (
            "RSAbits is a string",
            "/meshes/bad",
            builtin(json!({"conf": {"caCert": {"RSAbits": "2048"}}})),
            "mtls.backends[0].conf.caCert.RSAbits",
            "must be a non-negative integer",
        ),
        (
            "RSAbits is negative",
            "/meshes/bad",
            builtin(json!({"conf": {"caCert": {"RSAbits": -2048}}})),
            "mtls.backends[0].conf.caCert.RSAbits",
            "must be a non-negative integer",
        ),
        (
            "RSAbits is a float",
            "/meshes/bad",
            builtin(json!({"conf": {"caCert": {"RSAbits": 2048.5}}})),
            "mtls.backends[0].conf.caCert.RSAbits",
            "must be a non-negative integer",
        ),
        (
            "RSAbits is huge",
            "/meshes/bad",
            builtin(json!({"conf": {"caCert": {"RSAbits": 1e30}}})),
            "mtls.backends[0].conf.caCert.RSAbits",
            "must be a non-negative integer",
        ),
        (
            "RSAbits overflows u32",
            "/meshes/bad",
            builtin(json!({"conf": {"caCert": {"RSAbits": 4294967296u64}}})),
            "mtls.backends[0].conf.caCert.RSAbits",
            "must be at most 4294967295",
        ),
        (
            "an expiration that is a number",
            "/meshes/bad",
            builtin(json!({"dpCert": {"rotation": {"expiration": 3600}}})),
            "mtls.backends[0].dpCert.rotation.expiration",
            "must be a string, not a number",
        ),
        (
            "mode is not STRICT or PERMISSIVE",
            "/meshes/bad",
            builtin(json!({"mode": "strict"})),
            "mtls.backends[0].mode",
            "has to be one of STRICT, PERMISSIVE",
        ),
        (
            "Secret data is a number",
            "/meshes/default/secrets/bad",
            json!({"type": "Secret", "mesh": "default", "name": "bad", "data": 123}),
            "data",
            "must be a string, not a number",
        ),
        (
            "Secret data is missing",
            "/meshes/default/secrets/bad",
            json!({"type": "Secret", "mesh": "default", "name": "bad"}),
            "data",
            "has to be defined",
        ),
        (
            "Secret data is not base64",
            "/meshes/default/secrets/bad",
            json!({"type": "Secret", "mesh": "default", "name": "bad", "data": "%%%"}),
            "data",
            "has to be valid base64",
        ),
        (
            "Secret data is padding only",
            "/meshes/default/secrets/bad",
            json!({"type": "Secret", "mesh": "default", "name": "bad", "data": "===="}),
            "data",
            "has to be valid base64",
        ),
        (
            "a GlobalSecret with a mesh",
            "/global-secrets/bad",
            json!({"type": "GlobalSecret", "name": "bad", "mesh": "default", "data": "YQ=="}),
            "mesh",
            "must not be set",
        ),
        (
            "a Secret of a missing Mesh",
            "/meshes/nope/secrets/bad",
            json!({"type": "Secret", "mesh": "nope", "name": "bad", "data": "YQ=="}),
            "mesh",
            "mesh of name nope is not found",
        ),
        (
            "a Zone enabled flag that is a string",
            "/zones/bad",
            json!({"type": "Zone", "name": "bad", "enabled": "yes"}),
            "enabled",
            "must be a boolean, not a string",
        ),
    ];
    for (what, path, body, field, reason) in cases {
        let (s, b) = w.api().put(path, &body).await.expect("put");
        assert_field(what, s, &b, field, reason);
        let (s, _) = w.api().get(path).await.expect("get");
        assert_eq!(s, 404, "{what}: nothing was stored at {path}");
        w.still_serving(what).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_durations_and_common_name_templates_name_the_field() {
    let mut w = World::start().await;
    let expiration = "mtls.backends[0].dpCert.rotation.expiration";
    let format = "has to be a valid format";
    let durations: Vec<(&str, &str)> = vec![
        ("1h30m", format),
        ("-1s", format),
        ("+1s", format),
        ("1.5h", format),
        ("1H", format),
        ("1", format),
        ("h", format),
        ("", format),
        (" 1h", format),
        ("1h ", format),
        ("1\u{0}h", format),
        ("\u{ff11}h", format), // a full-width digit
        ("١h", format),        // an Arabic-Indic digit
        ("1e3s", format),
        ("1us", format),
        ("99999999999999999999y", "is too large"),
        ("999999999999999999y", "is too large"),
        ("0", "must be greater than 0"),
        ("0s", "must be greater than 0"),
    ];
    for (d, reason) in durations {
        let what = format!("dpCert expiration {d:?}");
        let body = builtin_mesh(
            "bad",
            json!({"name": "ca-1", "type": "builtin", "dpCert": {"rotation": {"expiration": d}}}),
        );
        let (s, b) = w.api().put("/meshes/bad", &body).await.expect("put");
        assert_field(&what, s, &b, expiration, reason);
        w.still_serving(&what).await;
        // The same grammar for the CA certificate's own lifetime.
        let what = format!("caCert expiration {d:?}");
        let body = builtin_mesh(
            "bad",
            json!({"name": "ca-1", "type": "builtin", "conf": {"caCert": {"expiration": d}}}),
        );
        let (s, b) = w.api().put("/meshes/bad", &body).await.expect("put");
        assert_field(
            &what,
            s,
            &b,
            "mtls.backends[0].conf.caCert.expiration",
            reason,
        );
        w.still_serving(&what).await;
    }
    for t in [
        "abc",
        "s",
        "1.s",
        ".5s",
        "1e3s",
        "-1s",
        "1.0000000001s",
        "10 s",
        "1,5s",
        "0x10s",
    ] {
        let what = format!("requestTimeout {t:?}");
        let body = builtin_mesh(
            "bad",
            json!({"name": "ca-1", "type": "builtin", "dpCert": {"requestTimeout": t}, "rootChain": {"requestTimeout": t}}),
        );
        let (s, b) = w.api().put("/meshes/bad", &body).await.expect("put");
        let reason = "has to be a valid duration such as 10s or 0.5s";
        assert_field(
            &what,
            s,
            &b,
            "mtls.backends[0].dpCert.requestTimeout",
            reason,
        );
        assert_field(
            &what,
            s,
            &b,
            "mtls.backends[0].rootChain.requestTimeout",
            reason,
        );
        w.still_serving(&what).await;
    }

    let cn = "mtls.backends[0].conf.fromCp.commonName";
    let templates: Vec<(&str, &str)> = vec![
        (r#"{{ tag "kuma.io/service" "#, "unclosed action"),
        (r#"{{ foo "a" }}"#, "function \"foo\" not defined"),
        (r#"{{ .Values.secret }}"#, "unexpected character '.'"),
        (r#"{{ tag "a" | upper }}"#, "function \"upper\" not defined"),
        (
            r#"{{ tag "a" | replace "_" }}"#,
            "replace takes two quoted strings",
        ),
        (
            r#"{{ tag "a" | replace "" "x" }}"#,
            "replace needs a non-empty string",
        ),
        (r#"{{ tag "a" | }}"#, "missing command"),
        (r#"{{ }}"#, "empty action"),
        (r#"{{ tag "a }}"#, "unterminated quoted string"),
        (r#"{{ tag "\q" }}"#, "unsupported escape"),
        (r#"x }} y"#, "unexpected \"}}\""),
        (r#"{{ tag }}"#, "tag takes exactly one quoted tag name"),
        (r#"{{ replace "a" "b" }}"#, "replace must follow a pipe"),
        (r#"{{ täg "a" }}"#, "unexpected character"),
        (r#"{{ tag "a" }}{{"#, "unclosed action"),
        ("{{ tag \"a\" }\u{202e}}", "unclosed action"),
        (r#"{{ printf "%s" (tag "a") }}"#, "unexpected character '('"),
    ];
    for (t, reason) in templates {
        let what = format!("commonName {t:?}");
        let (s, b) = w
            .api()
            .put("/meshes/bad", &builtin_mesh("bad", vault_backend(t)))
            .await
            .expect("put");
        assert_field(&what, s, &b, cn, "invalid template at offset");
        assert_field(&what, s, &b, cn, reason);
        w.still_serving(&what).await;
    }
    let (s, _) = w.api().get("/meshes/bad").await.expect("get");
    assert_eq!(s, 404, "nothing was stored");
}

/// A CA certificate and its key (P-256) that pass the provided backend's rules, as PEM.
fn good_ca() -> (String, String) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let key = KeyPair::generate().expect("key");
    let mut p = CertificateParams::default();
    p.distinguished_name
        .push(DnType::CommonName, "bad input CA");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let cert = p.self_signed(&key).expect("self-signed");
    (cert.pem(), key.serialize_pem())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datasources_pointing_at_missing_secrets_unreadable_files_and_invalid_pem() {
    let mut w = World::start().await;
    let (s, b) = w
        .api()
        .put("/meshes/prov", &json!({"type": "Mesh", "name": "prov"}))
        .await
        .expect("mesh");
    assert_eq!(s, 201, "{b}");
    let (cert, key) = good_ca();
    let secrets: Vec<(&str, Vec<u8>)> = vec![
        ("good-cert", cert.clone().into_bytes()),
        ("good-key", key.clone().into_bytes()),
        ("not-pem", b"not a pem at all".to_vec()),
        (
            "bad-body",
            b"-----BEGIN CERTIFICATE-----\n!!!! not base64 !!!!\n-----END CERTIFICATE-----\n"
                .to_vec(),
        ),
        (
            "not-der",
            format!(
                "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
                b64(b"definitely not DER")
            )
            .into_bytes(),
        ),
        (
            "no-end",
            cert.lines()
                .take(3)
                .collect::<Vec<_>>()
                .join("\n")
                .into_bytes(),
        ),
        ("binary", vec![0, 159, 146, 150, 255, 0, 1]),
    ];
    for (name, data) in &secrets {
        let (s, b) = w
            .api()
            .put(
                &format!("/meshes/prov/secrets/{name}"),
                &json!({"type": "Secret", "mesh": "prov", "name": name, "data": b64(data)}),
            )
            .await
            .expect("secret");
        assert_eq!(s, 201, "{name}: {b}");
    }
    let provided = |cert: Value, key: Value| {
        builtin_mesh(
            "prov",
            json!({"name": "ca-1", "type": "provided", "conf": {"cert": cert, "key": key}}),
        )
    };
    let c = "mtls.backends[0].conf.cert";
    let k = "mtls.backends[0].conf.key";
    let good_cert = json!({"secret": "good-cert"});
    let good_key = json!({"secret": "good-key"});
    // (what, cert, key, field, reason)
    let cases: Vec<(&str, Value, Value, &str, &str)> = vec![
        (
            "a missing Secret",
            json!({"secret": "nope"}),
            json!({"secret": "nope"}),
            c,
            "secret \"nope\" not found in mesh \"prov\"",
        ),
        (
            "a missing key Secret",
            good_cert.clone(),
            json!({"secret": "nope"}),
            k,
            "secret \"nope\" not found in mesh \"prov\"",
        ),
        (
            "a missing file",
            json!({"file": "/nonexistent"}),
            json!({"file": "/nonexistent"}),
            c,
            "could not read file \"/nonexistent\"",
        ),
        (
            "a directory",
            json!({"file": "/root"}),
            json!({"file": "/root"}),
            c,
            "not a regular file",
        ),
        (
            "a device",
            good_cert.clone(),
            json!({"file": "/dev/zero"}),
            k,
            "not a regular file",
        ),
        (
            "a relative traversal",
            json!({"file": "../../../../../../etc/hostname"}),
            good_key.clone(),
            c,
            "not a valid PEM certificate",
        ),
        (
            "a Secret that is not PEM",
            json!({"secret": "not-pem"}),
            good_key.clone(),
            c,
            "not a valid PEM certificate",
        ),
        (
            "PEM whose body is not base64",
            json!({"secret": "bad-body"}),
            good_key.clone(),
            c,
            "not a valid PEM certificate",
        ),
        (
            "PEM whose body is not DER",
            json!({"secret": "not-der"}),
            good_key.clone(),
            "mtls.backends[0].conf.cert[0]",
            "not a valid x509 certificate",
        ),
        (
            "PEM without its END line",
            json!({"secret": "no-end"}),
            good_key.clone(),
            c,
            "not a valid PEM certificate",
        ),
        (
            "binary bytes",
            json!({"secret": "binary"}),
            good_key.clone(),
            c,
            "not a valid PEM certificate",
        ),
        (
            "a key that is not PEM",
            good_cert.clone(),
            json!({"secret": "not-pem"}),
            c,
            "no private key block found",
        ),
        (
            "a certificate for the key",
            good_cert.clone(),
            good_cert.clone(),
            c,
            "found a certificate rather than a key",
        ),
        (
            "a key for the certificate",
            good_key.clone(),
            good_key.clone(),
            c,
            "not a valid PEM certificate",
        ),
        (
            "an inline string that is not PEM",
            json!({"inlineString": "garbage"}),
            good_key.clone(),
            c,
            "not a valid PEM certificate",
        ),
        (
            "inline bytes that are not PEM",
            json!({"inline": b64(b"garbage")}),
            good_key.clone(),
            c,
            "not a valid PEM certificate",
        ),
    ];
    for (what, cert_src, key_src, field, reason) in cases {
        let (s, b) = w
            .api()
            .put("/meshes/prov", &provided(cert_src, key_src))
            .await
            .expect("put");
        assert_field(what, s, &b, field, reason);
        // Errors never quote file contents.
        assert!(!b.to_string().contains("BEGIN"), "{what}: {b}");
        w.still_serving(what).await;
    }
    // The environment of the control plane is a regular file to read, but never echoed back.
    let (s, b) = w
        .api()
        .put(
            "/meshes/prov",
            &provided(json!({"file": "/proc/self/environ"}), good_key.clone()),
        )
        .await
        .expect("put");
    assert_eq!(s, 400, "{b}");
    assert!(
        b["invalid_parameters"]
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p["field"] == c)),
        "{b}"
    );
    assert!(
        !b.to_string().contains("PATH="),
        "file contents leaked: {b}"
    );
    w.still_serving("/proc/self/environ").await;

    // The Mesh is unchanged by all of it; the good pair is accepted.
    let (s, b) = w.api().get("/meshes/prov").await.expect("get");
    assert_eq!((s, &b["mtls"]), (200, &Value::Null), "{b}");
    let (s, b) = w
        .api()
        .put("/meshes/prov", &provided(good_cert, good_key))
        .await
        .expect("put");
    assert_eq!(s, 200, "the good pair is accepted: {b}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_secrets_are_refused_with_a_reason_or_413() {
    let mut w = World::start().await;
    let addr = w.addr();
    let over = b64(&vec![7u8; MAX_SECRET + 1]);
    let at = b64(&vec![7u8; MAX_SECRET]);
    let reason = format!("cannot be larger than {MAX_SECRET} bytes");
    for (what, path, body) in [
        (
            "a Secret of 1 MiB + 1",
            "/meshes/default/secrets/huge",
            json!({"type": "Secret", "mesh": "default", "name": "huge", "data": over}),
        ),
        (
            "a GlobalSecret of 1 MiB + 1",
            "/global-secrets/huge",
            json!({"type": "GlobalSecret", "name": "huge", "data": over}),
        ),
    ] {
        let (s, b) = w.api().put(path, &body).await.expect("put");
        assert_field(what, s, &b, "data", &reason);
        let (s, _) = w.api().get(path).await.expect("get");
        assert_eq!(s, 404, "{what}");
        w.still_serving(what).await;
    }
    // In YAML too, with the base64 folded over lines.
    let folded: String = over
        .as_bytes()
        .chunks(76)
        .map(|c| format!("  {}\n", String::from_utf8_lossy(c)))
        .collect();
    let (s, b) = w
        .api()
        .put_raw(
            "/meshes/default/secrets/huge",
            "application/yaml",
            format!("type: Secret\nmesh: default\nname: huge\ndata: |\n{folded}").into_bytes(),
        )
        .await
        .expect("put");
    assert_field("a folded YAML Secret of 1 MiB + 1", s, &b, "data", &reason);
    w.still_serving("a folded YAML Secret").await;

    // Exactly 1 MiB is accepted and reads back whole.
    let (s, b) = w
        .api()
        .put(
            "/meshes/default/secrets/max",
            &json!({"type": "Secret", "mesh": "default", "name": "max", "data": at}),
        )
        .await
        .expect("put");
    assert_eq!(s, 201, "{b}");
    let (s, b) = w
        .api()
        .get("/meshes/default/secrets/max")
        .await
        .expect("get");
    assert_eq!((s, b["data"].as_str()), (200, Some(at.as_str())));

    // Bodies over 2 MiB never reach the decoder.
    let huge = b64(&vec![7u8; 2 * MAX_BODY]);
    let body =
        json!({"type": "Secret", "mesh": "default", "name": "huge", "data": huge}).to_string();
    for chunked in [false, true] {
        let what = format!("a 4 MiB Secret body (chunked: {chunked})");
        let (s, b) = raw(
            &addr,
            "PUT",
            "/meshes/default/secrets/huge",
            "application/json",
            body.as_bytes(),
            chunked,
        )
        .await;
        assert_detail(&what, s, 413, &b, "larger than 2097152 bytes");
        w.still_serving(&what).await;
    }
    let (s, _) = w
        .api()
        .get("/meshes/default/secrets/huge")
        .await
        .expect("get");
    assert_eq!(s, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_unicode_and_traversal_looking_names() {
    let mut w = World::start().await;
    let addr = w.addr();
    let long = "a".repeat(254);
    // (what, name, reason)
    let names: Vec<(&str, String, &str)> = vec![
        (
            "a right-to-left override",
            "evil\u{202e}gpj.exe".into(),
            NAME_RULE,
        ),
        ("a zero-width space", "def\u{200b}ault".into(), NAME_RULE),
        ("a zero-width joiner", "a\u{200d}b".into(), NAME_RULE),
        ("a byte-order mark", "\u{feff}default".into(), NAME_RULE),
        ("a bidi isolate", "\u{2066}a\u{2069}".into(), NAME_RULE),
        ("an emoji", "mesh-\u{1f600}".into(), NAME_RULE),
        ("a NUL byte", "a\u{0}b".into(), NAME_RULE),
        ("a newline", "a\nb".into(), NAME_RULE),
        ("a Cyrillic homoglyph", "d\u{0435}fault".into(), NAME_RULE),
        ("a combining accent", "e\u{301}".into(), NAME_RULE),
        ("a full-width letter", "\u{ff41}".into(), NAME_RULE),
        ("upper case", "Default".into(), NAME_RULE),
        ("a space", "a b".into(), NAME_RULE),
        ("dot dot", "..".into(), NAME_RULE),
        ("a dot", ".".into(), NAME_RULE),
        ("a parent traversal", "../etc".into(), NAME_RULE),
        ("a deep traversal", "../../../etc/passwd".into(), NAME_RULE),
        ("a slash", "a/b".into(), NAME_RULE),
        ("a backslash traversal", "..\\etc".into(), NAME_RULE),
        ("an encoded traversal as text", "%2e%2e".into(), NAME_RULE),
        ("dots inside", "a..b".into(), NAME_RULE),
        ("254 characters", long, "cannot be longer than"),
    ];
    for (what, name, reason) in &names {
        // The Mesh name, percent-encoded in the path, raw in the body.
        let path = format!("/meshes/{}", encode_segment(name));
        let body = json!({"type": "Mesh", "name": name}).to_string();
        let (s, b) = raw(
            &addr,
            "PUT",
            &path,
            "application/json",
            body.as_bytes(),
            false,
        )
        .await;
        assert_field(what, s, &b, "name", reason);
        w.still_serving(what).await;
        // A Secret named so.
        let path = format!("/meshes/default/secrets/{}", encode_segment(name));
        let body =
            json!({"type": "Secret", "mesh": "default", "name": name, "data": "YQ=="}).to_string();
        let (s, b) = raw(
            &addr,
            "PUT",
            &path,
            "application/json",
            body.as_bytes(),
            false,
        )
        .await;
        assert_field(what, s, &b, "name", reason);
        // A Secret in a Mesh named so.
        let path = format!("/meshes/{}/secrets/s", encode_segment(name));
        let body = json!({"type": "Secret", "mesh": name, "name": "s", "data": "YQ=="}).to_string();
        let (s, b) = raw(
            &addr,
            "PUT",
            &path,
            "application/json",
            body.as_bytes(),
            false,
        )
        .await;
        assert_field(
            what,
            s,
            &b,
            "mesh",
            if *reason == NAME_RULE { NAME_RULE } else { "" },
        );
        w.still_serving(what).await;
    }
    // A label key with odd characters names the key.
    let (s, b) = w
        .api()
        .put(
            "/meshes/bad",
            &json!({"type": "Mesh", "name": "bad", "labels": {"a\u{202e}b": "x", "../k": "y"}}),
        )
        .await
        .expect("put");
    assert_field(
        "an odd label key",
        s,
        &b,
        "labels[\"a\\u{202e}b\"]",
        "label name must consist",
    );
    let (s, b) = w
        .api()
        .put(
            "/meshes/bad",
            &json!({"type": "Mesh", "name": "bad", "labels": {"k": "a\u{0}b"}}),
        )
        .await
        .expect("put");
    assert_field(
        "a NUL in a label value",
        s,
        &b,
        "labels[\"k\"]",
        "printable",
    );

    // Paths that look like traversal, written raw: never a 5xx, never another resource.
    let paths = [
        "/meshes/%2e%2e",
        "/meshes/%2E%2E",
        "/meshes/..",
        "/meshes/..%2f..%2fetc%2fpasswd",
        "/meshes/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "/meshes/default/secrets/..%2f..%2fdefault",
        "/meshes/%2e%2e/secrets/x",
        "/meshes/../meshes/default",
        "/meshes/default/../../zones",
        "/meshes/%00",
        "/meshes/a%00b",
        "/meshes/%c0%ae%c0%ae",
        "/meshes/%ff",
        "/meshes/%e2%80%ae",
        "/global-secrets/..%2f..%2fetc",
    ];
    for p in paths {
        for method in ["GET", "DELETE"] {
            let (s, b) = raw(&addr, method, p, "application/json", b"", false).await;
            assert!(
                (400..500).contains(&s),
                "{method} {p}: expected a 4xx, got {s} {b}"
            );
            w.still_serving(&format!("{method} {p}")).await;
        }
        // A PUT whose body names an ordinary resource must not be written through such a path.
        let body =
            json!({"type": "Mesh", "name": "default", "labels": {"via": "traversal"}}).to_string();
        let (s, b) = raw(&addr, "PUT", p, "application/json", body.as_bytes(), false).await;
        assert!(
            (400..500).contains(&s),
            "PUT {p}: expected a 4xx, got {s} {b}"
        );
        w.still_serving(&format!("PUT {p}")).await;
    }
    let (s, b) = w.api().get("/meshes/default").await.expect("get");
    assert_eq!(s, 200);
    assert!(
        b["labels"]["via"].is_null(),
        "default was not written through a traversal: {b}"
    );
    let (_, list) = w.api().get("/meshes").await.expect("list");
    let stored: Vec<&str> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|m| m["name"].as_str())
        .collect();
    assert_eq!(
        stored,
        ["canary", "default"],
        "only valid names were stored"
    );
}
