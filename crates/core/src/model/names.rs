//! Rules for resource and backend names.

/// The longest Mesh name Kuma accepts.
pub const MAX_MESH_NAME: usize = 63;
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
