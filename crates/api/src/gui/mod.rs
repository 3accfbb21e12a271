//! The web console (`GET /gui`), as Kuma's GUI is on its API port, for an identity plane: zones
//! online, certificates and their expiry, CA backends and what they last said. Read-only,
//! server-rendered (maud), its CSS and a small script embedded in the binary, with the REST API's
//! access rules (`auth.rs`). Each page module holds a pure page model (store data in, view struct
//! out) and its rendering; this module routes and answers.

mod assets;
pub mod auth;
mod dataplane;
mod dataplanes;
pub mod fleet;
mod hints;
mod layout;
mod meshes;
mod overview;
mod roots;
mod timeline;
mod zones;

use std::{net::SocketAddr, sync::Arc};

use axum::{
    Extension, Router,
    extract::{ConnectInfo, FromRequestParts},
    http::{HeaderValue, StatusCode, Uri, header, request::Parts},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use chrono::{DateTime, Utc};
use maud::Markup;
use meshplane_core::store::StoreError;

pub use auth::{Access, Https};
pub use layout::BASE;

use crate::ApiState;

/// A zone stream global refused, as the console lists it (global only).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZoneRefusal {
    pub zone: String,
    pub peer: String,
    pub reason: String,
    pub first: DateTime<Utc>,
    pub last: DateTime<Utc>,
    pub count: u64,
}

/// A zone's link to global, as the zone's console shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GlobalLink {
    pub address: String,
    pub connected: bool,
    pub connected_since: Option<DateTime<Utc>>,
    pub global_instance: Option<String>,
    pub synced_once: bool,
    pub last_sync: Option<DateTime<Utc>>,
    pub connects: u64,
    pub last_error: Option<String>,
    pub last_error_time: Option<DateTime<Utc>>,
}

/// What the console shows about sync that the store does not hold; the binaries adapt their sync
/// server (global) or client (zone) to it.
pub trait SyncSource: Send + Sync + 'static {
    /// Zone streams this replica refused and that have not connected since, newest first.
    fn refusals(&self) -> Vec<ZoneRefusal> {
        Vec::new()
    }

    /// The zone's link to global; `None` at global and in a standalone zone.
    fn global_link(&self) -> Option<GlobalLink> {
        None
    }
}

/// A control plane without sync (a standalone zone, tests).
pub struct NoSync;

impl SyncSource for NoSync {}

/// The console's own state: where sync status comes from, the dataplane index and root cache.
#[derive(Clone)]
pub struct Console {
    inner: Arc<Inner>,
}

struct Inner {
    sync: Arc<dyn SyncSource>,
    fleet: tokio::sync::OnceCell<fleet::Fleet>,
    roots: roots::RootsCache,
}

/// Seconds between live refreshes of a page's content.
pub const REFRESH_SECS: u32 = 5;

impl Console {
    pub fn new(sync: Arc<dyn SyncSource>) -> Self {
        Self {
            inner: Arc::new(Inner {
                sync,
                fleet: tokio::sync::OnceCell::new(),
                roots: roots::RootsCache::default(),
            }),
        }
    }

    /// The dataplane index, built (and following the store) from the first request that needs it.
    async fn fleet(&self, s: &ApiState) -> Result<&fleet::Fleet, StoreError> {
        self.inner
            .fleet
            .get_or_try_init(|| fleet::Fleet::start(s.manager.store().clone()))
            .await
    }

    fn sync(&self) -> &dyn SyncSource {
        self.inner.sync.as_ref()
    }
}

/// The console's routes, to merge into the API router (`router`'s `extra`).
pub fn routes(console: Console) -> Router<ApiState> {
    Router::new()
        .route(BASE, get(overview::handler))
        .route("/gui/", get(overview::handler))
        .route("/gui/zones", get(zones::handler))
        .route("/gui/meshes", get(meshes::list_handler))
        .route("/gui/meshes/{mesh}", get(meshes::mesh_handler))
        .route("/gui/dataplanes", get(dataplanes::handler))
        .route(
            "/gui/meshes/{mesh}/dataplanes/{name}",
            get(dataplane::handler),
        )
        .route("/gui/login", get(login_page).post(login_submit))
        .route("/gui/logout", post(logout))
        .route("/gui/assets/console.css", get(assets::css))
        .route("/gui/assets/console.js", get(assets::js))
        .route("/gui/{*rest}", get(not_found))
        .layer(axum::middleware::map_response(security_headers))
        .layer(Extension(console))
}

/// What every console response carries: nothing runs but our own script, nothing is framed,
/// no address leaks to another site in a Referer, pages are never cached. (`same-origin`, not
/// `no-referrer`: under the latter browsers send the login form with `Origin: null`, which the
/// API's cross-site check rightly refuses.)
async fn security_headers(mut res: Response) -> Response {
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    res
}

/// A request the console accepted: who it is from, and whether only `<main>` is wanted.
pub struct Ctx {
    pub s: ApiState,
    pub console: Console,
    pub access: Access,
    /// The live refresh asks for the content alone (`X-Meshplane-Fragment: 1`).
    pub fragment: bool,
    pub now: DateTime<Utc>,
    pub uri: Uri,
}

const FRAGMENT_HEADER: &str = "x-meshplane-fragment";

impl FromRequestParts<ApiState> for Ctx {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, s: &ApiState) -> Result<Self, Response> {
        let Some(console) = parts.extensions.get::<Console>().cloned() else {
            return Err(StatusCode::INTERNAL_SERVER_ERROR.into_response());
        };
        let Some(ConnectInfo(peer)) = parts.extensions.get::<ConnectInfo<SocketAddr>>().cloned()
        else {
            return Err(StatusCode::INTERNAL_SERVER_ERROR.into_response());
        };
        let https = parts.extensions.get::<Https>().is_some();
        let now = Utc::now();
        match auth::decide(s, peer, &parts.uri, &parts.headers, https).await {
            auth::Decision::Allow(access) => Ok(Ctx {
                s: s.clone(),
                console,
                access,
                fragment: parts
                    .headers
                    .get(FRAGMENT_HEADER)
                    .is_some_and(|v| v.as_bytes() == b"1"),
                now,
                uri: parts.uri.clone(),
            }),
            auth::Decision::Redirect { location, cookie } => Err((
                StatusCode::SEE_OTHER,
                [(header::LOCATION, location), (header::SET_COOKIE, cookie)],
            )
                .into_response()),
            auth::Decision::Login {
                reason,
                clear_cookie,
            } => {
                tracing::debug!(%peer, path = parts.uri.path(), "console: sign-in needed");
                let next = parts.uri.path_and_query().map(|p| p.as_str().to_string());
                let mut res = login_response(s, reason.as_deref(), next.as_deref(), now);
                *res.status_mut() = StatusCode::UNAUTHORIZED;
                if clear_cookie && let Ok(v) = HeaderValue::from_str(&auth::clear_cookie()) {
                    res.headers_mut().insert(header::SET_COOKIE, v);
                }
                Err(res)
            }
        }
    }
}

impl Ctx {
    /// The page (or, for the live refresh, its content alone).
    pub fn page(&self, title: &str, nav: layout::Nav, body: Markup) -> Response {
        if self.fragment {
            let mut res = html_response(body.into_string());
            res.headers_mut()
                .insert(FRAGMENT_HEADER, HeaderValue::from_static("1"));
            return res;
        }
        let shell = layout::Shell {
            info: &self.s.info,
            access: Some(&self.access),
            title,
            nav,
            refresh: Some(REFRESH_SECS),
            now: self.now,
        };
        html_response(layout::page(&shell, body).into_string())
    }

    /// An error page: what failed, in words, with the status that says whether to retry.
    pub fn error(&self, status: StatusCode, what: &str, fix: Option<&str>) -> Response {
        let body = maud::html! {
            h1 { "Cannot show this page" }
            (layout::problem(what, fix))
        };
        let mut res = self.page("Error", layout::Nav::None, body);
        *res.status_mut() = status;
        res
    }

    pub fn store_error(&self, e: impl std::fmt::Display) -> Response {
        self.error(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("The store did not answer: {e}"),
            Some("the page shows data again as soon as the store answers; check the control plane's log and its database"),
        )
    }
}

fn html_response(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
}

fn login_response(
    s: &ApiState,
    reason: Option<&str>,
    next: Option<&str>,
    now: DateTime<Utc>,
) -> Response {
    let shell = layout::Shell {
        info: &s.info,
        access: None,
        title: "Sign in",
        nav: layout::Nav::None,
        refresh: None,
        now,
    };
    let body = overview::login_body(
        reason,
        &auth::safe_next(next),
        s.access.localhost_is_admin,
        s.info.zone.is_some(),
    );
    html_response(layout::page(&shell, body).into_string())
}

async fn login_page(
    axum::extract::State(s): axum::extract::State<ApiState>,
    axum::extract::Query(q): axum::extract::Query<LoginQuery>,
) -> Response {
    login_response(&s, None, q.next.as_deref(), Utc::now())
}

#[derive(Debug, Default, serde::Deserialize)]
struct LoginQuery {
    next: Option<String>,
}

#[derive(serde::Deserialize)]
struct LoginForm {
    token: String,
    next: Option<String>,
}

async fn login_submit(
    axum::extract::State(s): axum::extract::State<ApiState>,
    https: Option<Extension<Https>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    axum::Form(form): axum::Form<LoginForm>,
) -> Response {
    let token = form.token.trim();
    let next = auth::safe_next(form.next.as_deref());
    let refused = |reason: String| {
        tracing::info!(%peer, reason = %reason, "console: sign-in refused");
        let mut res = login_response(&s, Some(&reason), Some(&next), Utc::now());
        *res.status_mut() = StatusCode::UNAUTHORIZED;
        res
    };
    if let Err(reason) = auth::check_shape(token) {
        return refused(reason);
    }
    match crate::auth::verify_user_token(&s, token).await {
        Ok(user) => {
            tracing::info!(%peer, user, "console: signed in");
            (
                StatusCode::SEE_OTHER,
                [
                    (header::LOCATION, next.clone()),
                    (header::SET_COOKIE, auth::set_cookie(token, https.is_some())),
                ],
            )
                .into_response()
        }
        Err(reason) => refused(reason),
    }
}

async fn logout() -> Response {
    (
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, format!("{BASE}/login")),
            (header::SET_COOKIE, auth::clear_cookie()),
        ],
    )
        .into_response()
}

async fn not_found(ctx: Ctx) -> Response {
    ctx.error(
        StatusCode::NOT_FOUND,
        &format!("There is no console page at {}", ctx.uri.path()),
        Some("start from the overview"),
    )
}
