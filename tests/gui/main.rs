//! The web console end to end: a global on PostgreSQL, two zones and their dataplanes with Vault
//! certificates, seen through Debian's chromium (headless, driven over WebDriver): every page's
//! visible text, links followed, the live refresh, the login page for a non-loopback visitor, the
//! token sign-in by form and by `?token=`, errors with their fix, and no secret in any page.
//! Screenshots go to a directory the test prints; `MESHPLANE_GUI_DOCS=1` also writes the overview
//! to docs/gui-overview.png (how the README's picture is made).

mod browser;

use std::time::Duration;

use browser::{Browser, REMOTE_HOST};
use fantoccini::Locator;
use meshplane_test_support::openbao::{OpenBao, SeedPki};
use meshplane_tests::{Agent, Global, Store, Zone, migrated_db, repo_root, run};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);

fn dataplane(name: &str, service: &str, port: u16) -> String {
    format!(
        "type: Dataplane\nmesh: default\nname: {name}\nnetworking:\n  address: 127.0.0.1\n  inbound:\n    - port: {port}\n      tags:\n        kuma.io/service: {service}\n"
    )
}

fn vault_mesh(bao: &OpenBao, seed: &SeedPki, role: &str) -> Value {
    json!({"type": "Mesh", "name": "default", "mtls": {"enabledBackend": "vault-1", "backends": [
        {"name": "vault-1", "type": "vault", "dpCert": {"rotation": {"expiration": "24h"}},
         "conf": {"fromCp": {"address": bao.addr, "pki": seed.mount, "role": role,
            "commonName": "{{ tag \"kuma.io/service\" }}.mesh",
            "auth": {"token": {"secret": "vault-token"}}}}}]}})
}

struct World {
    bao: OpenBao,
    seed: SeedPki,
    g: Global,
    east: Zone,
    west: Zone,
    agents: Vec<(String, Agent)>,
    user_token: String,
    /// Every token and key the test used, none of which may appear in a page.
    secrets: Vec<(String, String)>,
    _db: meshplane_test_support::postgres::TestDatabase,
}

async fn agent(g: &Global, z: &Zone, name: &str, service: &str, port: u16) -> (Agent, String) {
    let token = g
        .dataplane_token("default", name, Some(service))
        .await
        .expect("dataplane token");
    let a = Agent::start(z, &dataplane(name, service, port), &token)
        .await
        .expect("agent");
    (a, token)
}

async fn world() -> World {
    meshplane_test_support::process::init_test_logging();
    let bao = OpenBao::start_dev().await.expect("openbao");
    let seed = bao.seed_setup("default").await.expect("seed steps 1-4");
    let db = migrated_db().await.expect("database");
    let g = Global::start(Store::Postgres(db.url.clone()), &[])
        .await
        .expect("global");
    g.put_vault_token(&seed.token).await.expect("secret");
    let (s, b) = g
        .api
        .put("/meshes/default", &vault_mesh(&bao, &seed, &seed.role))
        .await
        .expect("mesh");
    assert!(s == 200 || s == 201, "{s} {b}");
    let east = Zone::start(&g, "east", Store::Memory, &[])
        .await
        .expect("east");
    let west = Zone::start(&g, "west", Store::Memory, &[])
        .await
        .expect("west");
    let mut secrets = vec![("Vault token".to_string(), seed.token.clone())];
    // The dev server's root token is a word ("root") when the fixture fixes it; only a real
    // token-shaped one can be searched for.
    if bao.root_token.len() >= 16 {
        secrets.push(("OpenBao root token".to_string(), bao.root_token.clone()));
    }
    let mut agents = Vec::new();
    for (zone, name, service, port) in [
        (&east, "web-1", "web", 8080),
        (&west, "backend-1", "backend", 8081),
    ] {
        let (mut a, token) = agent(&g, zone, name, service, port).await;
        a.wait_cert(None, WAIT).await.expect("certificate");
        secrets.push((format!("{name}'s dataplane token"), token));
        agents.push((name.to_string(), a));
    }
    let user_token = g
        .api
        .token("/tokens/user", &json!({"name": "ops", "validFor": "1h"}))
        .await
        .expect("user token");
    secrets.push(("the user token".into(), user_token.clone()));
    World {
        bao,
        seed,
        g,
        east,
        west,
        agents,
        user_token,
        secrets,
        _db: db,
    }
}

/// The base64 body of a PEM private key: the part that would leak if a page showed it.
fn key_body(pem: &str) -> String {
    pem.lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<Vec<_>>()
        .join("")
}

async fn openssl_x509(path: &std::path::Path, arg: &str) -> String {
    let (code, out, err) = run(
        "openssl",
        &["x509", "-in", &path.display().to_string(), "-noout", arg],
    )
    .await
    .expect("openssl");
    assert_eq!(code, 0, "openssl x509 {arg}: {err}");
    out.trim().to_string()
}

/// Plain HTTP checks of access that need no browser: a visitor who is not the loopback admin gets
/// the sign-in page and no data, whatever console path it asks for.
async fn non_loopback_gets_the_login_page(w: &World) {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    for path in [
        "/gui",
        "/gui/zones",
        "/gui/meshes",
        "/gui/meshes/default",
        "/gui/dataplanes",
        "/gui/meshes/default/dataplanes/east.web-1",
        "/gui/nowhere",
    ] {
        let url = format!("{}{path}", w.g.api.base);
        for (name, value) in [
            ("x-forwarded-for", "203.0.113.7"),
            ("host", "console.example"),
        ] {
            let r = http
                .get(&url)
                .header(name, value)
                .send()
                .await
                .expect("get");
            assert_eq!(r.status(), 401, "{path} with {name}");
            let body = r.text().await.expect("body");
            assert!(body.contains("Sign in to the console"), "{path}: {body}");
            // The page may name where to go after signing in; nothing else.
            let body = body.replace(path, "");
            for data in ["east", "west", "spiffe://", "vault-1", "web-1", &w.bao.addr] {
                assert!(
                    !body.contains(data),
                    "{path} showed {data:?} to a stranger: {body}"
                );
            }
        }
    }
    // A bad token is refused with the reason, and is not echoed back.
    let r = http
        .get(format!("{}/gui?token=not.a.token", w.g.api.base))
        .header("x-forwarded-for", "203.0.113.7")
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 401);
    let body = r.text().await.expect("body");
    assert!(body.contains("user token refused"), "{body}");
    assert!(!body.contains("not.a.token"), "{body}");
    // A good one signs in once: a cookie, and the same page without the token in its address.
    let r = http
        .get(format!("{}/gui/zones?token={}", w.g.api.base, w.user_token))
        .header("x-forwarded-for", "203.0.113.7")
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/gui/zones");
    let cookie = r.headers()["set-cookie"]
        .to_str()
        .expect("cookie")
        .to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("Path=/gui"),
        "{cookie}"
    );
    // A cross-site login form is refused before it is read.
    let r = http
        .post(format!("{}/gui/login", w.g.api.base))
        .header("origin", "http://evil.example")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={}", w.user_token))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 403);
    // The assets carry no data and need no sign-in.
    for asset in ["/gui/assets/console.css", "/gui/assets/console.js"] {
        let r = http
            .get(format!("{}{asset}", w.g.api.base))
            .header("x-forwarded-for", "203.0.113.7")
            .send()
            .await
            .expect("asset");
        assert_eq!(r.status(), 200, "{asset}");
        let text = r.text().await.expect("asset body");
        for (what, s) in &w.secrets {
            assert!(!text.contains(s.as_str()), "{asset} holds {what}");
        }
    }
}

fn shots_dir() -> std::path::PathBuf {
    let dir = tempfile::Builder::new()
        .prefix("meshplane-gui-")
        .tempdir()
        .expect("dir")
        .keep();
    eprintln!("GUI screenshots: {}", dir.display());
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_in_a_browser() {
    let mut w = world().await;
    non_loopback_gets_the_login_page(&w).await;
    let Some(mut b) = Browser::start(&shots_dir()).await.expect("browser") else {
        return;
    };
    let g = w.g.api.base.clone();

    // Overview at global: both zones online (the live refresh brings them in), counts, identity.
    b.open(&format!("{g}/gui")).await.expect("overview");
    b.wait_css_text("#count-zones-online .n", "2", WAIT)
        .await
        .expect("both zones online");
    let text = b
        .wait_text(&["Overview", "zones online", "loopback admin"], WAIT)
        .await
        .expect("overview");
    assert!(text.contains("0.1.0"), "{text}");
    let dps = b
        .client
        .find(Locator::Css("#count-dataplanes .n"))
        .await
        .expect("card")
        .text()
        .await
        .expect("text");
    assert_eq!(dps, "2");
    assert!(
        text.contains("KeyUsage"),
        "the seed role's warning is listed: {text}"
    );
    b.shot("overview").await.expect("shot");

    // Zones: each online, with sync counters and its version.
    b.click_link("Zones").await.expect("zones link");
    let text = b
        .wait_text(&["east", "west", "Online"], WAIT)
        .await
        .expect("zones");
    assert_eq!(text.matches("Online").count(), 2, "{text}");
    assert!(!text.contains("Offline"), "{text}");
    b.shot("zones").await.expect("shot");

    // Meshes, then the mesh: its backend, Vault address and PKI path, the warning with its fix,
    // the root from Vault with its expiry, and the timeline.
    b.click_link("Meshes").await.expect("meshes link");
    b.wait_text(&["default", "vault-1"], WAIT)
        .await
        .expect("meshes");
    b.click_link("default").await.expect("mesh link");
    let text = b
        .wait_text(&["Mesh default", "vault-1", "enabled"], WAIT)
        .await
        .expect("mesh");
    for want in [
        w.bao.addr.as_str(),
        w.seed.mount.as_str(),
        w.seed.role.as_str(),
        "token from Secret \"vault-token\"",
        "without a KeyUsage extension",
        "Fix:",
        "DigitalSignature,KeyAgreement,KeyEncipherment",
        "Trust bundle roots",
        "Certificate expiry",
    ] {
        assert!(text.contains(want), "mesh page lacks {want:?}:\n{text}");
    }
    let root_subject = {
        let dir = tempfile::tempdir().expect("dir");
        let f = dir.path().join("root.pem");
        std::fs::write(&f, &w.seed.root_pem).expect("root");
        openssl_x509(&f, "-subject").await
    };
    // `subject=CN = name` (OpenSSL 3) or `subject=CN=name`.
    let cn = root_subject
        .split("CN")
        .last()
        .unwrap_or_default()
        .trim_start_matches([' ', '='])
        .split(',')
        .next()
        .unwrap_or_default()
        .trim()
        .to_string();
    assert!(
        !cn.is_empty() && text.contains(&cn),
        "root {cn:?} listed:\n{text}"
    );
    let svg = b
        .client
        .find(Locator::Css("svg.timeline"))
        .await
        .expect("timeline svg");
    let label = svg
        .attr("aria-label")
        .await
        .expect("attr")
        .unwrap_or_default();
    assert!(label.starts_with("2 certificates"), "{label}");
    b.shot("mesh").await.expect("shot");

    // Dataplanes: both, with their SPIFFE IDs and zones; filtered by zone; then one of them.
    b.click_link("Dataplanes").await.expect("dataplanes link");
    let text = b
        .wait_text(
            &[
                "web-1",
                "backend-1",
                "spiffe://default/web",
                "spiffe://default/backend",
            ],
            WAIT,
        )
        .await
        .expect("dataplanes");
    assert!(text.contains("1–2 of 2"), "{text}");
    b.client
        .find(Locator::Css("select[name=zone]"))
        .await
        .expect("zone filter")
        .select_by_value("east")
        .await
        .expect("select");
    b.click("form.filters button").await.expect("filter");
    let text = b
        .wait_text(&["1–1 of 1", "web-1"], WAIT)
        .await
        .expect("filtered");
    assert!(!text.contains("backend-1"), "{text}");
    assert!(
        b.client
            .current_url()
            .await
            .expect("url")
            .as_str()
            .contains("zone=east")
    );
    b.shot("dataplanes").await.expect("shot");
    b.click_link("web-1").await.expect("dataplane link");
    let text = b
        .wait_text(
            &[
                "Dataplane web-1",
                "Subject alternative names",
                "Issuer chain",
            ],
            WAIT,
        )
        .await
        .expect("dataplane");
    let (_, web) = &w.agents[0];
    let cert = web.cert_dir.join("cert.pem");
    let serial = openssl_x509(&cert, "-serial").await;
    let serial = serial.trim_start_matches("serial=").to_ascii_lowercase();
    assert!(
        text.to_ascii_lowercase()
            .contains(serial.trim_start_matches('0')),
        "the page shows openssl's serial {serial}:\n{text}"
    );
    let ext = run(
        "openssl",
        &[
            "x509",
            "-in",
            &cert.display().to_string(),
            "-noout",
            "-ext",
            "subjectAltName",
        ],
    )
    .await
    .expect("openssl");
    assert!(ext.1.contains("URI:spiffe://default/web"), "{}", ext.1);
    assert!(text.contains("URI:spiffe://default/web"), "{text}");
    assert!(
        text.contains("CN=web.mesh"),
        "subject as openssl reads it: {text}"
    );
    b.shot("dataplane").await.expect("shot");

    // Live: a new dataplane appears on the open page without a reload.
    b.open(&format!("{g}/gui/dataplanes"))
        .await
        .expect("dataplanes");
    b.client
        .execute("window.__notReloaded = 42; return 1", vec![])
        .await
        .expect("mark");
    let (mut web2, token) = agent(&w.g, &w.east, "web-2", "web", 8082).await;
    w.secrets.push(("web-2's dataplane token".into(), token));
    web2.wait_cert(None, WAIT).await.expect("certificate");
    b.wait_text(&["web-2", "1–3 of 3"], WAIT)
        .await
        .expect("live refresh");
    let marker = b
        .client
        .execute("return window.__notReloaded", vec![])
        .await
        .expect("marker");
    assert_eq!(
        marker,
        json!(42),
        "the page was refreshed in place, not reloaded"
    );
    w.agents.push(("web-2".into(), web2));

    // A zone's own console: its link to global and its dataplanes.
    let east = w.east.api.base.clone();
    b.open(&format!("{east}/gui")).await.expect("zone overview");
    b.wait_text(&["zone east", "Connected"], WAIT)
        .await
        .expect("zone overview");
    b.click_link("Global").await.expect("global link");
    b.wait_text(&["Connected", "In sync"], WAIT)
        .await
        .expect("zone link");
    b.click_link("Dataplanes").await.expect("zone dataplanes");
    let text = b
        .wait_text(&["web-1", "web-2", "spiffe://default/web"], WAIT)
        .await
        .expect("zone dataplanes");
    assert!(!text.contains("backend-1"), "only this zone's: {text}");
    b.shot("zone-east").await.expect("shot");

    // Errors as a person needs them. A zone whose token is revoked: refused at global, with the
    // fix, on both consoles.
    let south = Zone::start(&w.g, "south", Store::Memory, &[])
        .await
        .expect("south");
    w.secrets
        .push(("south's zone token".into(), south_zone_token(&south)));
    // South must be known to global before its token is revoked, or it would never be listed
    // (zones appear by connecting). Its readiness says it synced; wait for global's side too.
    meshplane_tests::eventually(WAIT, "global to list zone south", || async {
        matches!(w.g.api.get("/zones/south").await, Ok((200, _))).then_some(())
    })
    .await
    .expect("south known to global");
    for z in [&w.east, &w.west] {
        w.secrets
            .push((format!("{}'s zone token", z.name), south_zone_token(z)));
    }
    let (s, body) =
        w.g.api
            .post(
                "/tokens/revocations",
                &json!({"type": "zone", "token": south_zone_token(&south)}),
            )
            .await
            .expect("revoke");
    assert_eq!(s, 200, "{body}");
    b.open(&format!("{g}/gui/zones")).await.expect("zones");
    let text = b
        .wait_text(
            &[
                "Refused connections",
                "south",
                "Offline",
                "token was revoked",
                "meshctl generate zone-token --zone south",
            ],
            WAIT,
        )
        .await
        .expect("refusal shown");
    assert_eq!(text.matches("Online").count(), 2, "{text}");
    b.shot("zones-refused").await.expect("shot");
    b.open(&format!("{}/gui/zones", south.api.base))
        .await
        .expect("south link");
    b.wait_text(&["Disconnected", "token was revoked", "Fix:"], WAIT)
        .await
        .expect("the zone says why");
    b.shot("zone-south-refused").await.expect("shot");

    // A backend whose validation fails: Vault's message and the fix on the mesh page, the stored
    // Mesh unchanged.
    let (s, body) =
        w.g.api
            .put(
                "/meshes/default",
                &vault_mesh(&w.bao, &w.seed, "no-such-role"),
            )
            .await
            .expect("put");
    assert_eq!(s, 400, "{body}");
    b.open(&format!("{g}/gui/meshes/default"))
        .await
        .expect("mesh");
    b.wait_text(
        &[
            "validation failed",
            "no-such-role",
            "Fix: check that conf.fromCp.pki and conf.fromCp.role",
            "the stored configuration is unchanged",
        ],
        WAIT,
    )
    .await
    .expect("validation failure shown");
    b.shot("mesh-validation-failed").await.expect("shot");

    // The overview now lists what needs attention; this is the README's picture.
    b.open(&format!("{g}/gui")).await.expect("overview");
    b.wait_text(
        &[
            "Needs attention",
            "Zone south is offline",
            "validation failed",
        ],
        WAIT,
    )
    .await
    .expect("attention");
    let overview = b.shot("overview-attention").await.expect("shot");
    if std::env::var("MESHPLANE_GUI_DOCS").is_ok_and(|v| v == "1") {
        let dest = repo_root().join("docs").join("gui-overview.png");
        std::fs::copy(&overview, &dest).expect("docs screenshot");
        eprintln!("wrote {}", dest.display());
    }

    // Signing in from elsewhere: a name that is not loopback gets the login page, the form signs
    // in, signing out signs out, and a ?token= link signs in and leaves the address clean.
    let port = w.g.api_port;
    let remote = format!("http://{REMOTE_HOST}:{port}");
    b.open(&format!("{remote}/gui/meshes"))
        .await
        .expect("remote");
    let text = b
        .wait_text(&["Sign in to the console"], WAIT)
        .await
        .expect("login");
    for data in ["vault-1", "east", "spiffe://"] {
        assert!(
            !text.contains(data),
            "the login page shows {data:?}: {text}"
        );
    }
    b.shot("login").await.expect("shot");
    b.sign_in("wrong.token.here").await.expect("sign in");
    b.wait_text(&["user token refused"], WAIT)
        .await
        .expect("refused");
    b.sign_in(&w.user_token).await.expect("sign in");
    let text = b
        .wait_text(&["Meshes", "signed in as ops", "vault-1"], WAIT)
        .await
        .expect("signed in, back on the page asked for");
    assert!(
        b.client
            .current_url()
            .await
            .expect("url")
            .path()
            .ends_with("/gui/meshes"),
        "{text}"
    );
    b.click("form[action='/gui/logout'] button")
        .await
        .expect("sign out");
    b.wait_text(&["Sign in to the console"], WAIT)
        .await
        .expect("signed out");
    b.open(&format!("{remote}/gui/zones?token={}", w.user_token))
        .await
        .expect("token link");
    b.wait_text(&["Zones", "east", "signed in as ops"], WAIT)
        .await
        .expect("token link");
    let url = b.client.current_url().await.expect("url").to_string();
    assert!(!url.contains("token="), "the token left the address: {url}");
    b.shot("signed-in-by-link").await.expect("shot");

    // No page showed a token, a Secret or a key.
    for (_, a) in &w.agents {
        let key = std::fs::read_to_string(a.cert_dir.join("key.pem")).expect("key");
        w.secrets
            .push(("a dataplane's private key".into(), key_body(&key)));
    }
    for (url, html) in &b.seen {
        assert!(!html.contains("PRIVATE KEY"), "{url} holds a PEM key");
        for (what, s) in &w.secrets {
            assert!(!html.contains(s.as_str()), "{url} holds {what}");
        }
    }
    assert!(b.seen.len() > 15, "pages checked: {}", b.seen.len());
    b.close().await;
    drop(south);
}

/// The zone token a running zone was started with.
fn south_zone_token(z: &Zone) -> String {
    std::fs::read_to_string(z.dir.path().join("zone.token")).expect("zone token")
}
