//! Who may see the console: the REST API's rules (a direct loopback client is the admin, everyone
//! else shows a user token), with the token also taken from the login form or a `?token=` link,
//! kept in an HttpOnly cookie. A request that proves nothing gets the login page, never data.

use std::net::SocketAddr;

use axum::http::{HeaderMap, Uri, header};

use crate::{ApiState, auth::verify_user_token, loopback};

/// The cookie holding a signed-in user's token.
pub const COOKIE: &str = "meshplane_console";

/// Who is looking.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Access {
    /// A direct loopback client (`--api-localhost-is-admin`, on by default).
    Admin,
    /// A user token's holder; `via_cookie` when it came from the sign-in cookie (so signing out
    /// means something).
    User { name: String, via_cookie: bool },
}

/// What to do with a console request.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    Allow(Access),
    /// A good `?token=`: keep it in the cookie and load the same page without it in the address.
    Redirect {
        location: String,
        cookie: String,
    },
    /// The login page; `reason` says why a presented token did not count.
    Login {
        reason: Option<String>,
        clear_cookie: bool,
    },
}

/// Whether the request came over the API's HTTPS listener (set by `serve`).
#[derive(Clone, Copy, Debug)]
pub struct Https;

/// Decides `headers`/`uri` from `peer`. A presented token is always checked first, as the REST API
/// does: a bad one is reported, not papered over by the loopback rule.
pub async fn decide(
    s: &ApiState,
    peer: SocketAddr,
    uri: &Uri,
    headers: &HeaderMap,
    https: bool,
) -> Decision {
    if let Some(token) = query_token(uri) {
        return match check_shape(&token) {
            Err(reason) => login(reason, false),
            Ok(()) => match verify_user_token(s, &token).await {
                Ok(_) => Decision::Redirect {
                    location: without_token(uri),
                    cookie: set_cookie(&token, https),
                },
                Err(reason) => login(reason, false),
            },
        };
    }
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let text = String::from_utf8_lossy(value.as_bytes());
        let token = match text.split_once(' ') {
            Some((scheme, t)) if scheme.eq_ignore_ascii_case("bearer") => t.trim().to_string(),
            _ => return login("Authorization must be `Bearer <user token>`".into(), false),
        };
        return match verify_user_token(s, &token).await {
            Ok(name) => Decision::Allow(Access::User {
                name,
                via_cookie: false,
            }),
            Err(reason) => login(reason, false),
        };
    }
    if let Some(token) = cookie_token(headers) {
        return match verify_user_token(s, &token).await {
            Ok(name) => Decision::Allow(Access::User {
                name,
                via_cookie: true,
            }),
            Err(reason) => login(
                format!("you were signed out: {reason}. Sign in with a current token"),
                true,
            ),
        };
    }
    if s.access.localhost_is_admin && loopback::direct(peer.ip(), uri, headers).is_ok() {
        return Decision::Allow(Access::Admin);
    }
    Decision::Login {
        reason: None,
        clear_cookie: false,
    }
}

fn login(reason: String, clear_cookie: bool) -> Decision {
    Decision::Login {
        reason: Some(reason),
        clear_cookie,
    }
}

/// User tokens are JWTs: base64url parts joined by dots. Anything else cannot be one, and must not
/// reach a `Set-Cookie` header.
pub fn check_shape(token: &str) -> Result<(), String> {
    let ok = !token.is_empty()
        && token.len() <= 8192
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(
            "that is not a user token (expected the text `meshctl generate user-token` printed)"
                .into(),
        )
    }
}

fn query_pairs(uri: &Uri) -> impl Iterator<Item = &str> {
    uri.query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
}

fn query_token(uri: &Uri) -> Option<String> {
    query_pairs(uri)
        .find_map(|p| p.strip_prefix("token="))
        .map(|v| percent_decode(v).trim().to_string())
}

/// The request's path and query with `token` removed.
pub fn without_token(uri: &Uri) -> String {
    let rest: Vec<&str> = query_pairs(uri)
        .filter(|p| !p.starts_with("token=") && *p != "token")
        .collect();
    if rest.is_empty() {
        uri.path().to_string()
    } else {
        format!("{}?{}", uri.path(), rest.join("&"))
    }
}

fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix(COOKIE)?.strip_prefix('='))
        .map(str::to_string)
        .filter(|t| !t.is_empty())
}

/// The sign-in cookie: for the console's paths only, out of reach of scripts, not sent with other
/// sites' subresource requests or form posts, and only over HTTPS when the page came over HTTPS.
pub fn set_cookie(token: &str, https: bool) -> String {
    let secure = if https { "; Secure" } else { "" };
    format!("{COOKIE}={token}; Path=/gui; HttpOnly; SameSite=Lax{secure}")
}

pub fn clear_cookie() -> String {
    format!("{COOKIE}=; Path=/gui; HttpOnly; SameSite=Lax; Max-Age=0")
}

/// Where to go after signing in: a console path of this server, nothing else.
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if (n == "/gui" || n.starts_with("/gui/") || n.starts_with("/gui?"))
                && !n.contains("token=")
                && !n.contains(['\\', '\r', '\n']) =>
        {
            n.to_string()
        }
        _ => "/gui".to_string(),
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                    }
                    Err(_) => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn token_links_lose_the_token() {
        let uri: Uri = "/gui/dataplanes?mesh=default&token=a.b.c&zone=east"
            .parse()
            .expect("uri");
        assert_eq!(query_token(&uri).as_deref(), Some("a.b.c"));
        assert_eq!(
            without_token(&uri),
            "/gui/dataplanes?mesh=default&zone=east"
        );
        let only: Uri = "/gui?token=x".parse().expect("uri");
        assert_eq!(without_token(&only), "/gui");
        let none: Uri = "/gui/zones".parse().expect("uri");
        assert_eq!(query_token(&none), None);
        let encoded: Uri = "/gui?token=a%2Eb".parse().expect("uri");
        assert_eq!(query_token(&encoded).as_deref(), Some("a.b"));
    }

    #[test]
    fn cookies() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("other=1; meshplane_console=a.b.c"),
        );
        assert_eq!(cookie_token(&h).as_deref(), Some("a.b.c"));
        let mut empty = HeaderMap::new();
        empty.append(
            header::COOKIE,
            HeaderValue::from_static("meshplane_console="),
        );
        assert_eq!(cookie_token(&empty), None);
        let c = set_cookie("a.b.c", true);
        assert!(
            c.contains("HttpOnly") && c.contains("Path=/gui") && c.ends_with("; Secure"),
            "{c}"
        );
        assert!(!set_cookie("a.b.c", false).contains("Secure"));
        assert!(clear_cookie().contains("Max-Age=0"));
    }

    #[test]
    fn only_token_shaped_text_reaches_a_cookie() {
        assert!(check_shape("eyJhbGciOiJFUzI1NiJ9.eyJuYW1lIjoiYSJ9.c2ln-_").is_ok());
        for bad in ["", "a b", "a;b", "a\r\nSet-Cookie: x=1", "a=b"] {
            assert!(check_shape(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn next_stays_on_the_console() {
        assert_eq!(safe_next(Some("/gui/zones")), "/gui/zones");
        assert_eq!(safe_next(Some("/gui?mesh=a")), "/gui?mesh=a");
        for bad in [
            "https://evil.example/gui",
            "//evil.example",
            "/guide",
            "/meshes",
            "/gui/x?token=abc",
            "/gui/\\evil",
        ] {
            assert_eq!(safe_next(Some(bad)), "/gui", "{bad}");
        }
        assert_eq!(safe_next(None), "/gui");
    }
}
