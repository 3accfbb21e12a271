//! Loopback admin end to end, against real `meshplane-global` and `meshplane-zone` processes and
//! requests written byte for byte on loopback sockets: only a direct local tool is the admin (a
//! foreign Host, proxy headers or a cross-site browser page are not), cross-site browser writes are
//! refused, bodies are JSON or YAML only, and a presented token is always checked.

use std::time::{Duration, Instant};

use meshplane_tests::{Global, Store, Zone, eventually, meshctl, read_answer, run};
use serde_json::{Value, json};

/// One request on its own connection with exactly `headers` (no Host unless given), answered as
/// (status, body parsed as JSON, or the raw text).
async fn raw(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Value) {
    use tokio::io::AsyncWriteExt;
    let mut head = format!("{method} {path} HTTP/1.1\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    let mut sock = tokio::net::TcpStream::connect(addr).await.expect("connect");
    sock.write_all(head.as_bytes()).await.expect("head");
    sock.write_all(body.as_bytes()).await.expect("body");
    let (status, _, rest) = read_answer(&mut sock).await.expect("an answer");
    let body = serde_json::from_str(&rest).unwrap_or(Value::String(rest));
    (status, body)
}

fn mesh(name: &str) -> String {
    json!({"type": "Mesh", "name": name}).to_string()
}

async fn exists(api: &meshplane_tests::Api, path: &str) -> bool {
    let (s, b) = api.get(path).await.expect("get");
    assert!(s == 200 || s == 404, "GET {path}: {s} {b}");
    s == 200
}

/// A refusal in Kuma's error shape, with `named` (a header, a media type) in its detail.
fn assert_refused(what: &str, status: u16, body: &Value, want: u16, title: &str, named: &str) {
    assert_eq!(status, want, "{what}: {body}");
    assert_eq!(body["type"], "/std-errors", "{what}: {body}");
    assert_eq!(body["status"], want, "{what}: {body}");
    assert_eq!(body["title"], title, "{what}: {body}");
    let detail = body["detail"].as_str().unwrap_or("");
    assert!(
        detail.contains(named),
        "{what}: {named:?} not in {detail:?}"
    );
}

const JSON_T: (&str, &str) = ("content-type", "application/json");

/// A request's description, its headers, and what the answer's detail must name.
type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, &'a str);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_direct_local_tool_is_the_loopback_admin() {
    let g = Global::start(Store::Memory, &[]).await.expect("global");
    let port = g.api_port;
    let (local, evil) = (format!("127.0.0.1:{port}"), format!("evil.example:{port}"));
    let evil_origin = format!("http://{evil}");
    let (local, evil, evil_origin) = (local.as_str(), evil.as_str(), evil_origin.as_str());

    // Not the admin, so an anonymous write: 401 naming why loopback did not count, nothing created.
    let anonymous: Vec<Case> = vec![
        ("a foreign Host", vec![("host", evil), JSON_T], "Host"),
        (
            // What the issue saw create a Mesh: a DNS-rebound page posting text/plain to its own
            // origin, which a browser sends without a preflight.
            "a DNS-rebound page",
            vec![
                ("host", evil),
                ("origin", evil_origin),
                ("sec-fetch-site", "same-origin"),
                ("content-type", "text/plain;charset=UTF-8"),
            ],
            "Host",
        ),
        ("no Host at all", vec![JSON_T], "names no Host"),
        (
            "X-Forwarded-For",
            vec![("host", local), ("x-forwarded-for", "203.0.113.9"), JSON_T],
            "X-Forwarded-For",
        ),
        (
            "Forwarded",
            vec![("host", local), ("forwarded", "for=203.0.113.9"), JSON_T],
            "Forwarded",
        ),
        (
            "X-Forwarded-Host",
            vec![("host", local), ("x-forwarded-host", "cp.example"), JSON_T],
            "X-Forwarded-Host",
        ),
        (
            "X-Real-IP",
            vec![("host", local), ("x-real-ip", "203.0.113.9"), JSON_T],
            "X-Real-IP",
        ),
        (
            "Sec-Fetch-Site: same-site",
            vec![("host", local), ("sec-fetch-site", "same-site"), JSON_T],
            "Sec-Fetch-Site",
        ),
    ];
    for (i, (what, headers, named)) in anonymous.into_iter().enumerate() {
        let name = format!("anonymous-{i}");
        let path = format!("/meshes/{name}");
        let (s, b) = raw(local, "PUT", &path, &headers, &mesh(&name)).await;
        assert_refused(what, s, &b, 401, "Unauthenticated", named);
        assert!(!exists(&g.api, &path).await, "{what}: the Mesh was created");
    }
    // Anonymous reads stay open, except Secrets.
    let (s, b) = raw(local, "GET", "/meshes", &[("host", evil)], "").await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = raw(
        local,
        "GET",
        "/meshes/default/secrets",
        &[("host", evil)],
        "",
    )
    .await;
    assert_refused(
        "a Secret listing for a foreign Host",
        s,
        &b,
        401,
        "Unauthenticated",
        "Host",
    );

    // A browser page of another origin: refused outright, 403, whatever else the request says.
    let forbidden: Vec<Case> = vec![
        (
            "Origin: http://evil.example",
            vec![("host", local), ("origin", "http://evil.example"), JSON_T],
            "Origin \"http://evil.example\"",
        ),
        (
            "Origin: null (a sandboxed frame or a local file)",
            vec![("host", local), ("origin", "null"), JSON_T],
            "Origin \"null\"",
        ),
        (
            "Sec-Fetch-Site: cross-site",
            vec![("host", local), ("sec-fetch-site", "cross-site"), JSON_T],
            "Sec-Fetch-Site",
        ),
        (
            "a cross-site text/plain form post",
            vec![
                ("host", local),
                ("origin", "http://evil.example"),
                ("sec-fetch-site", "cross-site"),
                ("content-type", "text/plain"),
            ],
            "cross-site",
        ),
    ];
    for (i, (what, headers, named)) in forbidden.into_iter().enumerate() {
        let name = format!("forbidden-{i}");
        let path = format!("/meshes/{name}");
        let (s, b) = raw(local, "PUT", &path, &headers, &mesh(&name)).await;
        assert_refused(what, s, &b, 403, "Access Denied", named);
        assert!(!exists(&g.api, &path).await, "{what}: the Mesh was created");
    }
    let (s, b) = raw(
        local,
        "DELETE",
        "/meshes/default",
        &[("host", local), ("origin", "http://evil.example")],
        "",
    )
    .await;
    assert_refused("a cross-site DELETE", s, &b, 403, "Access Denied", "Origin");
    assert!(
        exists(&g.api, "/meshes/default").await,
        "the cross-site DELETE deleted"
    );

    // Direct local calls, by every loopback name and from this API's own local origin, are admins.
    let (localhost, v6) = (format!("localhost:{port}"), format!("[::1]:{port}"));
    let own_origin = format!("http://localhost:{port}");
    let (localhost, v6, own_origin) = (localhost.as_str(), v6.as_str(), own_origin.as_str());
    let admitted: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("Host: 127.0.0.1", vec![("host", local), JSON_T]),
        ("Host: localhost", vec![("host", localhost), JSON_T]),
        ("Host: [::1]", vec![("host", v6), JSON_T]),
        ("Host: 127.0.0.2", vec![("host", "127.0.0.2"), JSON_T]),
        (
            "a loopback Origin",
            vec![("host", local), ("origin", "http://localhost:3000"), JSON_T],
        ),
        (
            "this API's own page",
            vec![
                ("host", localhost),
                ("origin", own_origin),
                ("sec-fetch-site", "same-origin"),
                JSON_T,
            ],
        ),
        (
            "Sec-Fetch-Site: none (typed by the user)",
            vec![("host", local), ("sec-fetch-site", "none"), JSON_T],
        ),
    ];
    for (i, (what, headers)) in admitted.into_iter().enumerate() {
        let name = format!("admitted-{i}");
        let path = format!("/meshes/{name}");
        let (s, b) = raw(local, "PUT", &path, &headers, &mesh(&name)).await;
        assert_eq!(s, 201, "{what}: {b}");
        assert!(exists(&g.api, &path).await, "{what}");
    }

    // curl, as a user types it: HTTP/1.1, and HTTP/2 where the name travels as :authority.
    for (what, extra) in [
        ("HTTP/1.1", None),
        ("HTTP/2", Some("--http2-prior-knowledge")),
    ] {
        let name = format!("curl-{}", if extra.is_some() { 2 } else { 1 });
        let url = format!("http://localhost:{port}/meshes/{name}");
        let mut args = vec![
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{http_version}",
        ];
        args.extend(extra);
        let body = mesh(&name);
        let good = [
            &args[..],
            &[
                "-X",
                "PUT",
                "-H",
                "Content-Type: application/json",
                "--data",
                &body,
                &url,
            ],
        ]
        .concat();
        let (code, out, err) = run("curl", &good).await.expect("curl");
        assert_eq!(code, 0, "{what}: {err}");
        let want_version = if extra.is_some() { "2" } else { "1.1" };
        assert_eq!(out, format!("201 {want_version}"), "{what}: {err}");
        let foreign = format!("Host: {evil}");
        let bad_url = format!("{url}-foreign");
        let bad_body = mesh(&format!("{name}-foreign"));
        let bad = [
            &args[..],
            &[
                "-X",
                "PUT",
                "-H",
                "Content-Type: application/json",
                "-H",
                &foreign,
                "--data",
                &bad_body,
                &bad_url,
            ],
        ]
        .concat();
        let (code, out, err) = run("curl", &bad).await.expect("curl");
        assert_eq!(code, 0, "{what}: {err}");
        assert_eq!(
            out,
            format!("401 {want_version}"),
            "{what} with a foreign Host"
        );
        assert!(
            !exists(&g.api, &format!("/meshes/{name}-foreign")).await,
            "{what}"
        );
    }
    // Refusals are logged with the reason, and no request was taken for the admin.
    let logs = g.proc.logs();
    assert!(logs.contains("refused: cross-site write"), "{logs}");
    assert!(
        logs.contains("not the loopback admin") || logs.contains("refused: no user token"),
        "{logs}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_take_only_json_or_yaml_bodies() {
    let g = Global::start(Store::Memory, &[]).await.expect("global");
    let local = &format!("127.0.0.1:{}", g.api_port);
    let host = ("host", local.as_str());
    for (i, ctype) in [
        Some("text/plain"),
        Some("text/plain; charset=utf-8"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        Some("application/octet-stream"),
        Some("application/jsonp"),
        None,
    ]
    .into_iter()
    .enumerate()
    {
        let name = format!("typed-{i}");
        let path = format!("/meshes/{name}");
        let mut headers = vec![host];
        headers.extend(ctype.map(|c| ("content-type", c)));
        let (s, b) = raw(local, "PUT", &path, &headers, &mesh(&name)).await;
        let what = format!("Content-Type {ctype:?}");
        let named = ctype.map_or("needs a Content-Type".to_string(), |c| format!("{c:?}"));
        assert_refused(&what, s, &b, 415, "Unsupported Media Type", &named);
        assert_refused(
            &what,
            s,
            &b,
            415,
            "Unsupported Media Type",
            "application/json, application/yaml",
        );
        assert!(!exists(&g.api, &path).await, "{what}: the Mesh was created");
    }
    // The accepted types, parameters and case aside.
    for (i, (ctype, body)) in [
        ("application/json; charset=utf-8", mesh("accepted-0")),
        ("Application/JSON", mesh("accepted-1")),
        (
            "application/yaml",
            "type: Mesh\nname: accepted-2\n".to_string(),
        ),
        (
            "application/x-yaml",
            "type: Mesh\nname: accepted-3\n".to_string(),
        ),
        (
            "text/yaml; charset=utf-8",
            "type: Mesh\nname: accepted-4\n".to_string(),
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let path = format!("/meshes/accepted-{i}");
        let (s, b) = raw(local, "PUT", &path, &[host, ("content-type", ctype)], &body).await;
        assert_eq!(s, 201, "{ctype}: {b}");
        assert!(exists(&g.api, &path).await, "{ctype}");
    }
    // Token endpoints and DELETE bodies are held to the same rule.
    let user = json!({"name": "mallory", "validFor": "1h"}).to_string();
    let (s, b) = raw(
        local,
        "POST",
        "/tokens/user",
        &[host, ("content-type", "text/plain")],
        &user,
    )
    .await;
    assert_refused(
        "a text/plain token request",
        s,
        &b,
        415,
        "Unsupported Media Type",
        "text/plain",
    );
    let (s, b) = raw(
        local,
        "DELETE",
        "/meshes/accepted-0",
        &[host, ("content-type", "text/plain")],
        "{}",
    )
    .await;
    assert_refused(
        "a DELETE with a text/plain body",
        s,
        &b,
        415,
        "Unsupported Media Type",
        "text/plain",
    );
    assert!(
        exists(&g.api, "/meshes/accepted-0").await,
        "the refused DELETE deleted"
    );
    let (s, b) = raw(local, "DELETE", "/meshes/accepted-0", &[host], "").await;
    assert_eq!(s, 200, "a DELETE without a body: {b}");

    // meshctl sends its bodies as JSON and keeps working from loopback.
    let (code, out, err) = meshctl(
        &g.api.base,
        &["apply", "-f", "-"],
        Some("type: Mesh\nname: by-meshctl\n"),
    )
    .await
    .expect("meshctl");
    assert_eq!(code, 0, "{out}{err}");
    assert!(exists(&g.api, "/meshes/by-meshctl").await);
    let (code, token, err) = meshctl(
        &g.api.base,
        &[
            "generate",
            "user-token",
            "--name",
            "ops",
            "--valid-for",
            "1h",
        ],
        None,
    )
    .await
    .expect("meshctl");
    assert_eq!(code, 0, "{err}");
    assert_eq!(token.trim().split('.').count(), 3, "a JWT: {token}");
    let (code, out, err) = meshctl(&g.api.base, &["delete", "mesh", "by-meshctl"], None)
        .await
        .expect("meshctl");
    assert_eq!(code, 0, "{out}{err}");
    assert!(!exists(&g.api, "/meshes/by-meshctl").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_not_minted_cross_site_and_bad_tokens_are_refused_from_loopback() {
    let g = Global::start(Store::Memory, &[]).await.expect("global");
    let local = &format!("127.0.0.1:{}", g.api_port);
    let host = ("host", local.as_str());
    // Minted first: its expiry (plus the verifier's 30 s leeway) runs while the rest is checked.
    let short = g
        .api
        .token("/tokens/user", &json!({"name": "brief", "validFor": "1s"}))
        .await
        .expect("token");
    let minted_at = Instant::now();

    // Cross-site token requests: 403, and the body is the error, not a token.
    let user = json!({"name": "mallory", "validFor": "8760h"}).to_string();
    let zone = json!({"zone": "mallory", "validFor": "8760h"}).to_string();
    for (what, path, headers, body) in [
        (
            "a cross-site form post for a user token",
            "/tokens/user",
            vec![
                host,
                ("origin", "http://evil.example"),
                ("sec-fetch-site", "cross-site"),
                ("content-type", "text/plain"),
            ],
            &user,
        ),
        (
            "a cross-site fetch for a zone token",
            "/tokens/zone",
            vec![host, ("sec-fetch-site", "cross-site"), JSON_T],
            &zone,
        ),
        (
            "a foreign Origin rotating signing keys",
            "/tokens/signing-keys",
            vec![host, ("origin", "http://evil.example"), JSON_T],
            &json!({"type": "user"}).to_string(),
        ),
    ] {
        let (s, b) = raw(local, "POST", path, &headers, body).await;
        assert_refused(what, s, &b, 403, "Access Denied", "cross-site");
        assert!(
            !b.to_string().contains("eyJ"),
            "{what}: a token came back: {b}"
        );
    }
    // And a foreign Host gets no token either.
    let (s, b) = raw(
        local,
        "POST",
        "/tokens/user",
        &[("host", "evil.example"), JSON_T],
        &user,
    )
    .await;
    assert_refused(
        "a token request for a foreign Host",
        s,
        &b,
        401,
        "Unauthenticated",
        "Host",
    );

    // A valid token is the caller's identity, wherever it comes from.
    let good = g
        .api
        .token("/tokens/user", &json!({"name": "ops", "validFor": "1h"}))
        .await
        .expect("token");
    let bearer = format!("Bearer {good}");
    let (s, b) = raw(
        local,
        "PUT",
        "/meshes/with-token",
        &[host, ("authorization", &bearer), JSON_T],
        &mesh("with-token"),
    )
    .await;
    assert_eq!(s, 201, "a good token from loopback: {b}");
    let (s, b) = raw(
        local,
        "PUT",
        "/meshes/with-token-foreign",
        &[("host", "evil.example"), ("authorization", &bearer), JSON_T],
        &mesh("with-token-foreign"),
    )
    .await;
    assert_eq!(s, 201, "a good token for a foreign Host: {b}");
    // But a token does not make a cross-site browser write acceptable.
    let (s, b) = raw(
        local,
        "PUT",
        "/meshes/with-token-cross",
        &[
            host,
            ("authorization", &bearer),
            ("origin", "http://evil.example"),
            JSON_T,
        ],
        &mesh("with-token-cross"),
    )
    .await;
    assert_refused(
        "a good token on a cross-site write",
        s,
        &b,
        403,
        "Access Denied",
        "Origin",
    );

    // Bad credentials from loopback are refused, not ignored in favour of the admin rule.
    let mut tampered = good.clone();
    let last = tampered.pop().expect("a non-empty token");
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    let revoked = g
        .api
        .token("/tokens/user", &json!({"name": "leaver", "validFor": "1h"}))
        .await
        .expect("token");
    let (s, b) = g
        .api
        .post(
            "/tokens/revocations",
            &json!({"type": "user", "token": revoked}),
        )
        .await
        .expect("revoke");
    assert_eq!(s, 200, "{b}");
    let tampered = format!("Bearer {tampered}");
    let revoked = format!("Bearer {revoked}");
    let mut bad: Vec<(&str, String)> = vec![
        ("not a token", "Bearer not-a-token".to_string()),
        ("a tampered signature", tampered),
        ("a revoked token", revoked),
        ("another scheme", "Basic YWRtaW46YWRtaW4=".to_string()),
    ];
    let wait = Duration::from_secs(32).saturating_sub(minted_at.elapsed());
    tokio::time::sleep(wait).await;
    bad.push(("an expired token", format!("Bearer {short}")));
    for (i, (what, auth)) in bad.iter().enumerate() {
        let path = format!("/meshes/bad-token-{i}");
        let (s, b) = raw(
            local,
            "PUT",
            &path,
            &[host, ("authorization", auth), JSON_T],
            &mesh(&format!("bad-token-{i}")),
        )
        .await;
        assert_refused(what, s, &b, 401, "Unauthenticated", "token");
        assert!(!exists(&g.api, &path).await, "{what}: the Mesh was created");
        let (s, b) = raw(
            local,
            "GET",
            "/meshes",
            &[host, ("authorization", auth)],
            "",
        )
        .await;
        assert_refused(
            &format!("{what} on a read"),
            s,
            &b,
            401,
            "Unauthenticated",
            "token",
        );
    }
    let logs = g.proc.logs();
    assert!(
        !logs.contains(&good) && !logs.contains(&short),
        "a token reached the log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zones_api_applies_the_same_rules() {
    let g = Global::start(Store::Memory, &[]).await.expect("global");
    let (s, b) = g
        .api
        .put("/meshes/shop", &json!({"type": "Mesh", "name": "shop"}))
        .await
        .expect("mesh");
    assert_eq!(s, 201, "{b}");
    let zone = Zone::start(&g, "zone-1", Store::Memory, &[])
        .await
        .expect("zone");
    eventually(Duration::from_secs(60), "the Mesh at the zone", || async {
        exists(&zone.api, "/meshes/shop").await.then_some(())
    })
    .await
    .expect("synced");
    let local = &format!("127.0.0.1:{}", zone.api_port);
    let host = ("host", local.as_str());
    let dp = |name: &str| {
        json!({"type": "Dataplane", "mesh": "shop", "name": name, "networking": {"address": "10.0.0.1",
            "inbound": [{"port": 80, "tags": {"kuma.io/service": "web"}}]}})
        .to_string()
    };
    let path = |name: &str| format!("/meshes/shop/dataplanes/{name}");
    let cases: Vec<(u16, Case)> = vec![
        (
            401,
            (
                "a foreign Host",
                vec![("host", "evil.example"), JSON_T],
                "Host",
            ),
        ),
        (
            401,
            (
                "X-Forwarded-For",
                vec![host, ("x-forwarded-for", "203.0.113.9"), JSON_T],
                "X-Forwarded-For",
            ),
        ),
        (
            401,
            (
                "a bad token",
                vec![host, ("authorization", "Bearer not-a-token"), JSON_T],
                "user token refused",
            ),
        ),
        (
            403,
            (
                "Origin: http://evil.example",
                vec![host, ("origin", "http://evil.example"), JSON_T],
                "Origin",
            ),
        ),
        (
            403,
            (
                "Sec-Fetch-Site: cross-site",
                vec![host, ("sec-fetch-site", "cross-site"), JSON_T],
                "Sec-Fetch-Site",
            ),
        ),
        (
            415,
            (
                "a text/plain body",
                vec![host, ("content-type", "text/plain")],
                "text/plain",
            ),
        ),
    ];
    for (i, (want, (what, headers, named))) in cases.into_iter().enumerate() {
        let name = format!("dp-{i}");
        let (s, b) = raw(local, "PUT", &path(&name), &headers, &dp(&name)).await;
        let title = match want {
            401 => "Unauthenticated",
            403 => "Access Denied",
            _ => "Unsupported Media Type",
        };
        assert_refused(what, s, &b, want, title, named);
        assert!(
            !exists(&zone.api, &path(&name)).await,
            "{what}: the Dataplane was created"
        );
    }
    let (s, b) = raw(local, "PUT", &path("dp-ok"), &[host, JSON_T], &dp("dp-ok")).await;
    assert_eq!(s, 201, "a direct local write at the zone: {b}");
}
