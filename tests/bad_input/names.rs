//! Odd Unicode and traversal-looking names, in the body and in the path.

use super::*;

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
        ("an underscore", "vault_token".into(), NAME_RULE),
        (
            "254 characters",
            long,
            "value length must less or equal 253",
        ),
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
        // Kuma judges a `mesh` field by its characters only (it still takes '_'); Meshplane also
        // refuses shapes no Mesh name can have.
        let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
        let bytes = name.as_bytes();
        let mesh_reason = if *reason != NAME_RULE {
            ""
        } else if !bytes.iter().all(|c| alnum(*c) || b"-_.".contains(c)) {
            MESH_REF_RULE
        } else if alnum(bytes[0]) && alnum(bytes[bytes.len() - 1]) && !name.contains("..") {
            // An old Mesh may have such a name; this one does not exist.
            "is not found"
        } else {
            "must start and end with an alphanumeric character"
        };
        assert_field(what, s, &b, "mesh", mesh_reason);
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
