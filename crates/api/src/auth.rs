//! Who may do what on the API, as in Kuma: a local tool talking to the server directly over loopback
//! is the admin (`loopback.rs` says exactly when; this can be turned off); everyone else needs a
//! user token (`meshctl generate user-token`) to write anything or to read Secrets. Reading other
//! resources, health and metrics stays open. A token that is presented is always checked, from
//! loopback too, and writes a browser sends for another site's page are refused outright.

use std::net::SocketAddr;

use axum::{
    extract::{ConnectInfo, Request, State},
    http::{HeaderValue, Method, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use meshplane_core::tokens::{TokenKind, UserClaims};

use crate::{ApiError, ApiState, loopback};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccessConfig {
    /// Treat direct loopback clients as admins (Kuma's default).
    pub localhost_is_admin: bool,
}

impl Default for AccessConfig {
    fn default() -> Self {
        Self {
            localhost_is_admin: true,
        }
    }
}

/// GET and HEAD; every other method is treated as a write (no route answers OPTIONS or TRACE).
pub(crate) fn is_read(method: &Method) -> bool {
    method == Method::GET || method == Method::HEAD
}

fn needs_token(method: &Method, path: &str) -> bool {
    let secret_path = path == "/secrets"
        || path.starts_with("/global-secrets")
        || path.split('/').any(|seg| seg == "secrets");
    !is_read(method) || secret_path
}

const TOKEN_HINT: &str = "Authorization: Bearer <token>; see meshctl generate user-token";

/// The user a presented `Authorization` header proves, or why it proves nothing.
async fn verify(s: &ApiState, value: &HeaderValue) -> Result<String, String> {
    let text = value
        .to_str()
        .map_err(|_| "the Authorization header is not text".to_string())?;
    let token = match text.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
        _ => return Err(format!("Authorization must be a user token ({TOKEN_HINT})")),
    };
    verify_user_token(s, token).await
}

/// The user `token` names, or why it is refused (never the token itself).
pub(crate) async fn verify_user_token(s: &ApiState, token: &str) -> Result<String, String> {
    s.verifier
        .verify::<UserClaims>(TokenKind::User, token)
        .await
        .map(|v| v.claims.name)
        .map_err(|e| format!("user token refused: {e}"))
}

/// Whether `path` is the console's: it answers its own access rules (the same ones, with the
/// token also accepted as a cookie or `?token=`) and takes its login form.
pub(crate) fn is_console(path: &str) -> bool {
    path == crate::gui::BASE || path.starts_with("/gui/")
}

pub async fn middleware(
    State(s): State<ApiState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
    next: Next,
) -> Response {
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    if !is_read(&method)
        && let Some(why) = loopback::cross_site(req.uri(), req.headers())
    {
        tracing::info!(%peer, %method, path, reason = %why, "refused: cross-site write");
        return ApiError::access_denied(format!("cross-site request refused: {why}"))
            .into_response();
    }
    if is_console(&path) {
        return next.run(req).await;
    }
    // Checked before the loopback rule: a local tool holding a bad, expired or revoked token has a
    // problem its user must hear about, not one the admin rule silently papers over.
    if let Some(value) = req.headers().get(header::AUTHORIZATION) {
        return match verify(&s, value).await {
            Ok(user) => {
                tracing::debug!(user, %peer, %method, path, "authenticated");
                next.run(req).await
            }
            Err(detail) => {
                tracing::info!(%peer, %method, path, reason = %detail, "refused: invalid user token");
                ApiError::unauthenticated(detail).into_response()
            }
        };
    }
    let not_admin = if s.access.localhost_is_admin {
        match loopback::direct(peer.ip(), req.uri(), req.headers()) {
            Ok(()) => return next.run(req).await,
            Err(why) => Some(why),
        }
    } else {
        None
    };
    if !needs_token(&method, &path) {
        return next.run(req).await;
    }
    let mut detail = format!("a user token is required for this request ({TOKEN_HINT})");
    if let Some(why) = &not_admin {
        detail.push_str(&format!("; not the loopback admin: {why}"));
    }
    tracing::info!(%peer, %method, path, not_admin = not_admin.as_ref().map(tracing::field::display), "refused: no user token");
    ApiError::unauthenticated(detail).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_requests_need_a_token() {
        assert!(!needs_token(&Method::GET, "/meshes"));
        assert!(!needs_token(
            &Method::GET,
            "/meshes/default/dataplanes/_overview"
        ));
        assert!(!needs_token(&Method::GET, "/readyz"));
        assert!(needs_token(&Method::GET, "/meshes/default/secrets"));
        assert!(needs_token(
            &Method::GET,
            "/meshes/default/secrets/vault-token"
        ));
        assert!(needs_token(&Method::GET, "/secrets"));
        assert!(needs_token(&Method::GET, "/global-secrets/x"));
        assert!(needs_token(&Method::PUT, "/meshes/default"));
        assert!(needs_token(&Method::DELETE, "/zones/east"));
        assert!(needs_token(&Method::POST, "/tokens/zone"));
    }
}
