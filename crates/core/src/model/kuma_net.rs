//! The address and URL grammars Kuma's validators accept, as Go's `net.SplitHostPort`,
//! `url.ParseRequestURI` and `net.ParseIP` and govalidator's `IsDNSName` define them: a `tcp`
//! logging address, a `zipkin` URL, a probe path or a Dataplane's address is accepted by Meshplane
//! exactly when Kuma accepts it, however odd (`kibana:abc` is a valid tcp address).

use std::net::IpAddr;

/// Go's `net.ParseIP`: dotted IPv4 without leading zeros, or IPv6 (IPv4-mapped included), no zone.
pub fn parse_ip(s: &str) -> Option<IpAddr> {
    s.parse().ok()
}

/// Go's `net.IP.Equal`: an IPv4 address equals its IPv4-mapped IPv6 form.
pub fn same_ip(a: IpAddr, b: IpAddr) -> bool {
    a.to_canonical() == b.to_canonical()
}

/// govalidator's `IsDNSName`, which Kuma applies to a Dataplane's address: labels of letters,
/// digits, `_` and `-` (not first), at most 63 each, an optional trailing `.` or `_`, at most 255
/// characters besides the dots, and not an IP address.
pub fn is_dns_name(s: &str) -> bool {
    if s.is_empty() || s.bytes().filter(|b| *b != b'.').count() > 255 || parse_ip(s).is_some() {
        return false;
    }
    let body = s
        .strip_suffix('.')
        .or_else(|| s.strip_suffix('_'))
        .unwrap_or(s);
    let label_ok = |l: &str| {
        let b = l.as_bytes();
        !b.is_empty()
            && b.len() <= 63
            && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-'))
    };
    // The regex's optional trailing `_` may also be the last character of the last label.
    body.split('.').all(label_ok) || (s != body && s.split('.').all(label_ok))
}

/// `host` and `port` of `HOST:PORT` as Go's `net.SplitHostPort` splits them; `None` when it refuses.
pub fn split_host_port(s: &str) -> Option<(&str, &str)> {
    let colon = s.rfind(':')?;
    let (host, after_host) = if let Some(inner) = s.strip_prefix('[') {
        let end = inner.find(']')? + 1;
        // The closing bracket must be followed by the port's colon and nothing else.
        if end + 1 != colon {
            return None;
        }
        (&s[1..end], end + 1)
    } else {
        let host = &s[..colon];
        if host.contains(':') {
            return None;
        }
        (host, 0)
    };
    let open_from = usize::from(s.starts_with('['));
    if s[open_from..].contains('[') || s[after_host..].contains(']') {
        return None;
    }
    Some((host, &s[colon + 1..]))
}

/// Kuma's rule for a tcp logging address: Go splits it, and neither part is empty.
pub fn is_host_port(s: &str) -> bool {
    split_host_port(s).is_some_and(|(h, p)| !h.is_empty() && !p.is_empty())
}

/// The port Go's `url.ParseRequestURI(s).Port()` returns (empty when the URL has none), or `None`
/// when Go refuses `s` as a request URI.
pub fn request_uri_port(s: &str) -> Option<&str> {
    if s.is_empty() || s.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return None;
    }
    if s == "*" {
        return Some("");
    }
    let (scheme, rest) = split_scheme(s)?;
    let rest = match rest.strip_suffix('?') {
        Some(r) if rest.matches('?').count() == 1 => r,
        _ => rest.split_once('?').map_or(rest, |(r, _)| r),
    };
    if !rest.starts_with('/') {
        // `zipkin:9411` is an opaque URL to Go: valid, without a host or port.
        return (!scheme.is_empty()).then_some("");
    }
    let (port, path) = match rest.strip_prefix("//") {
        Some(after) if !scheme.is_empty() => {
            let (authority, path) = after.find('/').map_or((after, ""), |i| after.split_at(i));
            (authority_port(authority)?, path)
        }
        _ => ("", rest),
    };
    valid_escapes(path).then_some(port)
}

/// Go's `getScheme`: a scheme is letters first, then letters, digits, `+`, `-` or `.`, up to `:`.
fn split_scheme(s: &str) -> Option<(&str, &str)> {
    for (i, c) in s.bytes().enumerate() {
        match c {
            b'a'..=b'z' | b'A'..=b'Z' => {}
            b'0'..=b'9' | b'+' | b'-' | b'.' if i > 0 => {}
            b':' if i == 0 => return None,
            b':' => return Some((&s[..i], &s[i + 1..])),
            _ => return Some(("", s)),
        }
    }
    Some(("", s))
}

/// Go's `parseAuthority` and `parseHost`, answering the port `URL.Port()` would give.
fn authority_port(authority: &str) -> Option<&str> {
    let host = match authority.rfind('@') {
        Some(i) => {
            let user = &authority[..i];
            if !user.bytes().all(valid_userinfo_byte) || !valid_escapes(user) {
                return None;
            }
            &authority[i + 1..]
        }
        None => authority,
    };
    let port_from = if host.starts_with('[') {
        host.rfind(']')? + 1
    } else {
        host.rfind(':').unwrap_or(host.len())
    };
    let colon_port = &host[port_from..];
    if !valid_optional_port(colon_port) {
        return None;
    }
    let name = &host[..port_from];
    let name_ok = name
        .bytes()
        .all(|b| b >= 0x80 || !host_byte_needs_escape(b));
    if !name_ok || !valid_escapes(name) {
        return None;
    }
    Some(colon_port.strip_prefix(':').unwrap_or(""))
}

fn valid_optional_port(p: &str) -> bool {
    match p.strip_prefix(':') {
        None => p.is_empty(),
        Some(digits) => digits.bytes().all(|b| b.is_ascii_digit()),
    }
}

fn valid_userinfo_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b >= 0x80 || br"-._:~!$&'()*+,;=%@".contains(&b)
}

/// Bytes Go refuses in a host name (`shouldEscape` in host mode); `%` is judged by `valid_escapes`.
fn host_byte_needs_escape(b: u8) -> bool {
    !(b.is_ascii_alphanumeric() || br#"-_.~!$&'()*+,;=:[]<>"%"#.contains(&b))
}

/// Every `%` starts a two-hex-digit escape, as Go's `unescape` insists.
fn valid_escapes(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = |j: usize| b.get(j).is_some_and(u8::is_ascii_hexdigit);
            if !(hex(i + 1) && hex(i + 2)) {
                return false;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_as_go_splits_it() {
        for (s, want) in [
            ("kibana:1234", Some(("kibana", "1234"))),
            ("kibana:abc", Some(("kibana", "abc"))),
            ("127.0.0.1:5000", Some(("127.0.0.1", "5000"))),
            ("[::1]:5000", Some(("::1", "5000"))),
            (":5000", Some(("", "5000"))),
            ("kibana:", Some(("kibana", ""))),
            ("kibana", None),
            ("wrong-format:234:234", None),
            ("::1:5000", None),
            ("[::1]", None),
            ("[::1]5000:1", None),
            ("[::1]:50]", None),
            ("a[b:1", None),
            ("", None),
        ] {
            assert_eq!(split_host_port(s), want, "{s:?}");
        }
        assert!(is_host_port("kibana:1234"));
        for bad in [":5000", "kibana:", "wrong-format:234:234", "kibana"] {
            assert!(!is_host_port(bad), "{bad:?}");
        }
    }

    #[test]
    fn ips_as_go_parses_them() {
        for ok in [
            "192.168.0.1",
            "0.0.0.0",
            "::",
            "::1",
            "0:0:0:0:0:FFFF:C0A8:0001",
            "::ffff:1.2.3.4",
            "fe80::1",
        ] {
            assert!(parse_ip(ok).is_some(), "{ok:?}");
        }
        for bad in [
            "",
            "192.168.0.01",
            "192.168.0",
            "1.2.3.256",
            "fe80::1%eth0",
            "[::1]",
            " 1.2.3.4",
            "example.com",
            "invalid-address",
        ] {
            assert!(parse_ip(bad).is_none(), "{bad:?}");
        }
        let v4 = parse_ip("127.0.0.1").expect("v4");
        let mapped = parse_ip("::ffff:127.0.0.1").expect("mapped");
        assert!(same_ip(v4, mapped));
        assert!(!same_ip(v4, parse_ip("::1").expect("v6")));
    }

    #[test]
    fn dns_names_as_govalidator_judges_them() {
        for ok in [
            "example.com",
            "example.com.",
            "a",
            "a_b",
            "_a",
            "a-",
            "web_",
            "1.2.3.400",
            "x-1.svc.cluster.local",
        ] {
            assert!(is_dns_name(ok), "{ok:?}");
        }
        for bad in [
            "",
            "..>_<..",
            "not-valid!",
            "-a",
            "a..b",
            ".a",
            "a b",
            "192.168.0.1",
            "::1",
            "é.com",
        ] {
            assert!(!is_dns_name(bad), "{bad:?}");
        }
        assert!(!is_dns_name(&"a".repeat(64)));
        assert!(is_dns_name(&format!("{}.{}", "a".repeat(63), "b")));
    }

    #[test]
    fn request_uris_as_go_parses_them() {
        for (s, want) in [
            ("http://zipkin.local:9411/v2/spans", Some("9411")),
            ("http://zipkin.local/v2/spans", Some("")),
            ("https://user:pw@zipkin:9411", Some("9411")),
            ("http://[::1]:9411/api", Some("9411")),
            ("http://[::1]/api", Some("")),
            ("http://zipkin:/x", Some("")),
            ("/v2/spans", Some("")),
            ("zipkin:9411", Some("")),
            ("http://zipkin:9411/a?b=c", Some("9411")),
            ("*", Some("")),
            ("invalid-url", None),
            ("zipkin.local:9411/v2", Some("")),
            (":9411", None),
            ("http://zipkin:94x1/", None),
            ("http://zip kin:9411/", None),
            ("http://zipkin:9411/%zz", None),
            ("http://zipkin:9411/\n", None),
            ("", None),
        ] {
            assert_eq!(request_uri_port(s), want, "{s:?}");
        }
    }
}
