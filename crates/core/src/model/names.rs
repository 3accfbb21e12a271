//! Rules for resource and backend names.

/// The longest Mesh name Kuma accepts.
pub const MAX_MESH_NAME: usize = 63;
/// The longest Zone name: a zone's name is a label value (`kuma.io/zone`) on everything it syncs,
/// and Kubernetes caps label values at 63.
pub const MAX_ZONE_NAME: usize = 63;
/// The longest name of any other resource.
pub const MAX_NAME: usize = 253;

/// The reason given for a name outside the allowed alphabet.
pub const NAME_RULE: &str = "must consist of lower case alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";

/// Lower-case ASCII letters and digits, with `-`, `_` and `.` inside. Rejects anything that could be
/// a path (`/`, `..` alone), odd Unicode, and empty names.
pub fn is_valid_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_NAME
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'-' | b'_' | b'.')
        })
        && !s.contains("..")
}

/// The longest name a resource of `kind` may have.
pub fn max_len(kind: super::ResourceKind) -> usize {
    match kind {
        super::ResourceKind::Mesh => MAX_MESH_NAME,
        super::ResourceKind::Zone => MAX_ZONE_NAME,
        _ => MAX_NAME,
    }
}

/// Why `name` cannot be a name of at most `max` characters, or `None` when it can. One rule for
/// the API, the token endpoint and the zone binary's `--zone`.
pub fn name_violation(name: &str, max: usize) -> Option<String> {
    if name.len() > max {
        Some(format!("cannot be longer than {max} characters"))
    } else if !is_valid_name(name) {
        Some(NAME_RULE.to_string())
    } else {
        None
    }
}

/// An RFC 1123 DNS subdomain name (what Kuma requires of backend names).
pub fn is_dns_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_NAME
        && s.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b.len() <= 63
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_has_its_length_rule() {
        use crate::model::ResourceKind;
        let at = |n: usize| "a".repeat(n);
        assert_eq!(name_violation(&at(63), max_len(ResourceKind::Zone)), None);
        assert_eq!(
            name_violation(&at(64), max_len(ResourceKind::Zone)).as_deref(),
            Some("cannot be longer than 63 characters")
        );
        assert_eq!(
            name_violation(&at(64), max_len(ResourceKind::Mesh)).as_deref(),
            Some("cannot be longer than 63 characters")
        );
        assert_eq!(
            name_violation(&at(253), max_len(ResourceKind::Secret)),
            None
        );
        assert_eq!(
            name_violation("A", max_len(ResourceKind::Secret)).as_deref(),
            Some(NAME_RULE)
        );
    }

    #[test]
    fn names() {
        for ok in [
            "default",
            "a",
            "vault-token",
            "default.ca-builtin-cert-ca-1",
            "backend_1",
            "x9",
        ] {
            assert!(is_valid_name(ok), "{ok}");
        }
        for bad in [
            "",
            "-a",
            "a-",
            "A",
            "a/b",
            "..",
            "a..b",
            "../etc",
            "é",
            "a b",
            "a\u{202e}b",
            "a\0",
        ] {
            assert!(!is_valid_name(bad), "{bad:?}");
        }
        assert!(!is_valid_name(&"a".repeat(254)));
    }

    #[test]
    fn dns_names() {
        assert!(is_dns_name("ca-1"));
        assert!(is_dns_name("vault.v2"));
        assert!(!is_dns_name("ca_1"));
        assert!(!is_dns_name("CA"));
        assert!(!is_dns_name("a..b"));
    }
}
