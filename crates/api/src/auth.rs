//! Who may do what on the API, as in Kuma: clients on the loopback interface are admins (this can be
//! turned off, and must be behind a local reverse proxy); everyone else needs a user token
//! (`meshctl generate user-token`) to write anything or to read Secrets. Reading other resources,
//! health and metrics stays open. The peer address is the socket's; forwarded headers are ignored,
//! since anyone can send them.

use std::net::SocketAddr;

use axum::{
    extract::{ConnectInfo, Request, State},
    http::{Method, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use meshplane_core::tokens::{TokenKind, UserClaims};

use crate::{ApiError, ApiState};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccessConfig {
    /// Treat loopback clients as admins (Kuma's default).
    pub localhost_is_admin: bool,
}

impl Default for AccessConfig {
    fn default() -> Self {
        Self {
            localhost_is_admin: true,
        }
    }
}

fn needs_token(method: &Method, path: &str) -> bool {
    let reads = method == Method::GET || method == Method::HEAD;
    let secret_path = path == "/secrets"
        || path.starts_with("/global-secrets")
        || path.split('/').any(|seg| seg == "secrets");
    !reads || secret_path
}

fn unauthenticated(detail: impl Into<String>) -> Response {
    ApiError {
        status: StatusCode::UNAUTHORIZED,
        title: "Unauthenticated",
        detail: detail.into(),
        invalid: None,
    }
    .into_response()
}

pub async fn middleware(
    State(s): State<ApiState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
    next: Next,
) -> Response {
    if s.access.localhost_is_admin && peer.ip().is_loopback() {
        return next.run(req).await;
    }
    if !needs_token(req.method(), req.uri().path()) {
        return next.run(req).await;
    }
    let Some(token) = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        tracing::info!(%peer, method = %req.method(), path = req.uri().path(), "refused: no user token");
        return unauthenticated(
            "a user token is required for this request (Authorization: Bearer <token>; see meshctl generate user-token)",
        );
    };
    match s
        .verifier
        .verify::<UserClaims>(TokenKind::User, token.trim())
        .await
    {
        Ok(v) => {
            tracing::debug!(user = %v.claims.name, %peer, method = %req.method(), path = req.uri().path(), "authenticated");
            next.run(req).await
        }
        Err(e) => {
            tracing::info!(%peer, method = %req.method(), path = req.uri().path(), reason = %e, "refused: invalid user token");
            unauthenticated(format!("user token refused: {e}"))
        }
    }
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
