//! Malformed, oversized and hostile bodies: broken JSON and YAML, alias bombs, deep nesting.

use super::*;

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
