//! Well-formed documents with wrong content: unknown fields, wrong types, invalid durations and
//! commonName templates, each answered with its field path.

use super::*;

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
    // A requestTimeout is a protobuf Duration: Kuma's decoder reads it with Go's time.ParseDuration
    // and answers in Go's words (`1.s`, `.5s` and `1m30s` are valid Go durations).
    let go = "bad Duration: time: ";
    for (t, reason) in [
        ("abc", go),
        ("s", go),
        ("1e3s", go),
        ("10 s", go),
        ("1,5s", go),
        ("0x10s", go),
        ("10", "bad Duration: time: missing unit in duration \"10\""),
        ("-1s", "must not be negative"),
    ] {
        let what = format!("requestTimeout {t:?}");
        let body = builtin_mesh(
            "bad",
            json!({"name": "ca-1", "type": "builtin", "dpCert": {"requestTimeout": t}, "rootChain": {"requestTimeout": t}}),
        );
        let (s, b) = w.api().put("/meshes/bad", &body).await.expect("put");
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
