//! Which requests count as the loopback admin, and which writes are cross-site browser requests.
//!
//! A loopback peer alone proves little: a browser on the same host connects over loopback on behalf
//! of any page it shows (and a DNS-rebound name points a foreign page's own origin at 127.0.0.1), a
//! reverse proxy on the same host forwards remote users, and `ssh -L` or `kubectl port-forward`
//! turn any client into a loopback one. So, as Kuma 2.14 does, a request is the loopback admin only
//! when the peer, the name it asked for, and the browser headers all say it is a local tool talking
//! to this server directly.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use axum::http::{HeaderMap, Uri, header};

/// Headers a proxy adds when it forwards someone else's request.
const PROXY_HEADERS: [&str; 4] = [
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-real-ip",
];

/// Why a request is not the loopback admin; said in the 401 and the log, so a user whose tool or
/// proxy sends one of these learns which header made the difference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotDirect {
    #[error("the peer {0} is not on the loopback interface")]
    Peer(IpAddr),
    #[error("the request names no Host")]
    NoHost,
    #[error("Host {0:?} is not localhost or a loopback address")]
    Host(String),
    #[error("{0} is present, so the request came through a proxy")]
    Proxied(&'static str),
    #[error("Origin {0:?} is not a loopback origin")]
    Origin(String),
    #[error("Sec-Fetch-Site is {0:?}: a browser sent it for another site's page")]
    FetchSite(String),
}

/// Why a write is refused outright: a browser sent it for a page of another origin.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CrossSite {
    #[error(
        "Sec-Fetch-Site is \"cross-site\": a browser sent this write for another site's page; \
         the API accepts no cross-site writes"
    )]
    FetchSite,
    #[error(
        "Origin {0:?} is neither this API's origin nor a loopback origin; the API accepts no \
         cross-site writes"
    )]
    Origin(String),
}

/// `Ok` when the request is a direct call from a local tool: the peer is loopback, every name the
/// request gives for the server (Host, the URI's authority) is a loopback one, no proxy header is
/// present, any Origin is a loopback origin, and Sec-Fetch-Site is absent, `same-origin` or `none`.
pub fn direct(peer: IpAddr, uri: &Uri, headers: &HeaderMap) -> Result<(), NotDirect> {
    // A dual-stack listener sees 127.0.0.1 as ::ffff:127.0.0.1.
    if !peer.to_canonical().is_loopback() {
        return Err(NotDirect::Peer(peer));
    }
    if let Some(name) = PROXY_HEADERS.iter().find(|h| headers.contains_key(**h)) {
        return Err(NotDirect::Proxied(proxy_header_name(name)));
    }
    let names = server_names(uri, headers);
    if names.is_empty() {
        return Err(NotDirect::NoHost);
    }
    if let Some(bad) = names.iter().find(|n| !is_loopback_authority(n)) {
        return Err(NotDirect::Host(bad.clone()));
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let text = String::from_utf8_lossy(origin.as_bytes()).into_owned();
        if !origin_authority(&text).is_some_and(is_loopback_authority) {
            return Err(NotDirect::Origin(text));
        }
    }
    match fetch_site(headers) {
        None => Ok(()),
        Some(site) if site == "same-origin" || site == "none" => Ok(()),
        Some(site) => Err(NotDirect::FetchSite(site)),
    }
}

/// `Some` when a browser says this request comes from another site's page: Sec-Fetch-Site is
/// `cross-site`, or the Origin is neither the origin the request is addressed to nor a loopback
/// origin (`Origin: null`, from sandboxed frames and local files, is never acceptable). Callers
/// refuse such writes: no legitimate client of this API writes cross-site, and without CORS a
/// browser never lets such a page read the answer anyway.
pub fn cross_site(uri: &Uri, headers: &HeaderMap) -> Option<CrossSite> {
    if fetch_site(headers).as_deref() == Some("cross-site") {
        return Some(CrossSite::FetchSite);
    }
    let origin = headers.get(header::ORIGIN)?;
    let text = String::from_utf8_lossy(origin.as_bytes()).into_owned();
    let acceptable = origin_authority(&text).is_some_and(|authority| {
        is_loopback_authority(authority)
            || server_names(uri, headers)
                .iter()
                .any(|n| n.eq_ignore_ascii_case(authority))
    });
    (!acceptable).then_some(CrossSite::Origin(text))
}

/// The display spelling of a proxy header (the constant is lowercase, as `HeaderMap` looks up).
fn proxy_header_name(lower: &str) -> &'static str {
    match lower {
        "forwarded" => "Forwarded",
        "x-forwarded-for" => "X-Forwarded-For",
        "x-forwarded-host" => "X-Forwarded-Host",
        _ => "X-Real-IP",
    }
}

fn fetch_site(headers: &HeaderMap) -> Option<String> {
    headers.get("sec-fetch-site").map(|v| {
        String::from_utf8_lossy(v.as_bytes())
            .trim()
            .to_ascii_lowercase()
    })
}

/// Every name the request gives for the server: each Host header, and the URI's authority (HTTP/2's
/// `:authority`, or an absolute-form HTTP/1 target). All of them must pass, so a request cannot
/// show one name to this check and another to something else.
fn server_names(uri: &Uri, headers: &HeaderMap) -> Vec<String> {
    let mut names: Vec<String> = headers
        .get_all(header::HOST)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect();
    if let Some(a) = uri.authority() {
        names.push(a.as_str().to_string());
    }
    names
}

/// The `host[:port]` of an `http://` or `https://` origin; `None` for anything else (`null`, other
/// schemes, a path).
fn origin_authority(origin: &str) -> Option<&str> {
    let rest = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))?;
    (!rest.is_empty() && !rest.contains(['/', '?', '#', '@'])).then_some(rest)
}

/// `localhost`, an address in 127.0.0.0/8, or `[::1]`, each with or without a port. Nothing else:
/// not `*.localhost` and not a trailing dot, since those can reach a resolver that an attacker's
/// DNS answers.
fn is_loopback_authority(authority: &str) -> bool {
    let (host, port) = match authority.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((v6, port)) => match v6.parse::<Ipv6Addr>() {
                Ok(ip) if ip.is_loopback() => ("localhost", port),
                _ => return false,
            },
            None => return false,
        },
        // An unbracketed IPv6 address has several colons, so its "port" fails below.
        None => authority.split_at(authority.find(':').unwrap_or(authority.len())),
    };
    let port_ok = match port.strip_prefix(':') {
        None => port.is_empty(),
        Some(p) => !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()),
    };
    port_ok
        && (host.eq_ignore_ascii_case("localhost")
            || host.parse::<Ipv4Addr>().is_ok_and(|ip| ip.is_loopback()))
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).expect("header value"));
        }
        h
    }

    const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    fn origin_form() -> Uri {
        Uri::from_static("/meshes/m")
    }

    #[test]
    fn loopback_names() {
        for ok in [
            "localhost",
            "LOCALHOST:5681",
            "127.0.0.1",
            "127.0.0.1:5681",
            "127.8.9.10:1",
            "[::1]",
            "[::1]:5681",
            "[0:0:0:0:0:0:0:1]:80",
        ] {
            assert!(is_loopback_authority(ok), "{ok}");
        }
        for bad in [
            "",
            "evil.example",
            "evil.example:5681",
            "localhost.",
            "api.localhost",
            "localhost.evil.example",
            "127.0.0.1.nip.io",
            "128.0.0.1",
            "127.1",
            "0.0.0.0:5681",
            "::1",
            "[::1",
            "[::2]:5681",
            "[::ffff:127.0.0.1]",
            "localhost:",
            "localhost:http",
            "localhost:123456",
            "localhost:5681:1",
            "user@localhost",
        ] {
            assert!(!is_loopback_authority(bad), "{bad}");
        }
    }

    #[test]
    fn a_direct_local_call_is_admin() {
        let h = headers(&[("host", "127.0.0.1:5681")]);
        assert_eq!(direct(LOCAL, &origin_form(), &h), Ok(()));
        let mapped = IpAddr::V6(Ipv4Addr::LOCALHOST.to_ipv6_mapped());
        assert_eq!(direct(mapped, &origin_form(), &h), Ok(()));
        let v6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
        assert_eq!(
            direct(v6, &origin_form(), &headers(&[("host", "[::1]:5681")])),
            Ok(())
        );
        // What a local browser page of this API's own origin sends.
        let h = headers(&[
            ("host", "localhost:5681"),
            ("origin", "http://localhost:5681"),
            ("sec-fetch-site", "same-origin"),
        ]);
        assert_eq!(direct(LOCAL, &origin_form(), &h), Ok(()));
        // HTTP/2 carries the name as :authority, in the URI.
        let h2 = Uri::from_static("http://localhost:5681/meshes/m");
        assert_eq!(direct(LOCAL, &h2, &HeaderMap::new()), Ok(()));
    }

    #[test]
    fn what_makes_a_loopback_peer_not_admin() {
        let remote: IpAddr = "10.1.2.3".parse().expect("ip");
        let host = ("host", "127.0.0.1:5681");
        let cases: Vec<(IpAddr, Uri, HeaderMap, NotDirect)> = vec![
            (
                remote,
                origin_form(),
                headers(&[host]),
                NotDirect::Peer(remote),
            ),
            (LOCAL, origin_form(), HeaderMap::new(), NotDirect::NoHost),
            (
                LOCAL,
                origin_form(),
                headers(&[("host", "evil.example:5681")]),
                NotDirect::Host("evil.example:5681".into()),
            ),
            (
                LOCAL,
                origin_form(),
                headers(&[host, ("host", "evil.example")]),
                NotDirect::Host("evil.example".into()),
            ),
            (
                LOCAL,
                Uri::from_static("http://evil.example/meshes/m"),
                headers(&[host]),
                NotDirect::Host("evil.example".into()),
            ),
            (
                LOCAL,
                origin_form(),
                headers(&[host, ("x-forwarded-for", "203.0.113.9")]),
                NotDirect::Proxied("X-Forwarded-For"),
            ),
            (
                LOCAL,
                origin_form(),
                headers(&[host, ("forwarded", "for=203.0.113.9")]),
                NotDirect::Proxied("Forwarded"),
            ),
            (
                LOCAL,
                origin_form(),
                headers(&[host, ("x-forwarded-host", "cp.example")]),
                NotDirect::Proxied("X-Forwarded-Host"),
            ),
            (
                LOCAL,
                origin_form(),
                headers(&[host, ("x-real-ip", "203.0.113.9")]),
                NotDirect::Proxied("X-Real-IP"),
            ),
            (
                LOCAL,
                origin_form(),
                headers(&[host, ("origin", "http://evil.example")]),
                NotDirect::Origin("http://evil.example".into()),
            ),
            (
                LOCAL,
                origin_form(),
                headers(&[host, ("origin", "null")]),
                NotDirect::Origin("null".into()),
            ),
            (
                LOCAL,
                origin_form(),
                headers(&[host, ("sec-fetch-site", "cross-site")]),
                NotDirect::FetchSite("cross-site".into()),
            ),
            (
                LOCAL,
                origin_form(),
                headers(&[host, ("sec-fetch-site", "same-site")]),
                NotDirect::FetchSite("same-site".into()),
            ),
        ];
        for (peer, uri, h, want) in cases {
            assert_eq!(direct(peer, &uri, &h), Err(want.clone()), "{want}");
        }
    }

    #[test]
    fn cross_site_writes() {
        let none = |pairs: &[(&'static str, &str)]| cross_site(&origin_form(), &headers(pairs));
        assert_eq!(none(&[("host", "127.0.0.1:5681")]), None);
        assert_eq!(
            none(&[
                ("host", "127.0.0.1:5681"),
                ("origin", "http://localhost:3000")
            ]),
            None,
            "a loopback origin is not cross-site"
        );
        assert_eq!(
            none(&[
                ("host", "cp.example.com:5682"),
                ("origin", "https://CP.example.com:5682")
            ]),
            None,
            "a remote client's same-origin page"
        );
        assert_eq!(
            none(&[
                ("host", "127.0.0.1:5681"),
                ("origin", "http://evil.example")
            ]),
            Some(CrossSite::Origin("http://evil.example".into()))
        );
        assert_eq!(
            none(&[("host", "127.0.0.1:5681"), ("origin", "null")]),
            Some(CrossSite::Origin("null".into()))
        );
        assert_eq!(
            none(&[
                ("host", "127.0.0.1:5681"),
                ("origin", "http://localhost:5681/path")
            ]),
            Some(CrossSite::Origin("http://localhost:5681/path".into()))
        );
        assert_eq!(
            none(&[("host", "127.0.0.1:5681"), ("sec-fetch-site", "Cross-Site")]),
            Some(CrossSite::FetchSite)
        );
        // A DNS-rebound page is same-origin with the name it rebound: not cross-site, but not
        // the loopback admin either (its Host is foreign).
        let rebound = headers(&[
            ("host", "evil.example:5681"),
            ("origin", "http://evil.example:5681"),
            ("sec-fetch-site", "same-origin"),
        ]);
        assert_eq!(cross_site(&origin_form(), &rebound), None);
        assert!(matches!(
            direct(LOCAL, &origin_form(), &rebound),
            Err(NotDirect::Host(_))
        ));
    }
}
