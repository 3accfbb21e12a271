//! Rules for resource and backend names: Kuma 2.14's for every kind, and the RFC 1035 rule for Mesh
//! and Zone names that Kuma warns about and `--strict-names` enforces.

/// The longest Mesh name Kuma accepts.
pub const MAX_MESH_NAME: usize = 63;
/// The longest Zone name: a zone's name is a label value (`kuma.io/zone`) on everything it syncs,
/// and Kubernetes caps label values at 63.
pub const MAX_ZONE_NAME: usize = 63;
/// The longest name of any other resource.
pub const MAX_NAME: usize = 253;

/// Kuma's reason for a name that is not a lowercase RFC 1123 subdomain (every kind).
pub const NAME_RULE: &str = "invalid characters. A lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";

/// Kuma's reason for a `mesh` field with characters no Mesh name ever had; Kuma still accepts
/// `_` there, for Meshes named before it refused them.
pub const MESH_REF_RULE: &str = "invalid characters. Valid characters are numbers, lowercase latin letters and '-', '_', '.' symbols.";

/// Meshplane's reason for a `mesh` field of valid characters that no Mesh name can have.
const MESH_REF_SHAPE: &str =
    "must start and end with an alphanumeric character and contain no '..'";

/// The words Kubernetes uses for a name that is not an RFC 1035 label.
const DNS1035_RULE: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";

/// A lowercase RFC 1123 subdomain (Kuma's `^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
/// of at most 253 characters. Rejects anything that could be a path (`/`, `..`), odd Unicode,
/// `_`, and empty names.
pub fn is_valid_name(s: &str) -> bool {
    s.len() <= MAX_NAME && is_subdomain(s)
}

fn is_subdomain(s: &str) -> bool {
    s.split('.').all(|label| {
        let b = label.as_bytes();
        !b.is_empty()
            && alnum(b[0])
            && alnum(b[b.len() - 1])
            && b.iter().all(|c| alnum(*c) || *c == b'-')
    })
}

fn alnum(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// The longest name a resource of `kind` may have.
pub fn max_len(kind: super::ResourceKind) -> usize {
    match kind {
        super::ResourceKind::Mesh => MAX_MESH_NAME,
        super::ResourceKind::Zone => MAX_ZONE_NAME,
        _ => MAX_NAME,
    }
}

/// Why `name` cannot be a name of at most `max` characters, or `None` when it can: Kuma's checks
/// in Kuma's order and words. One rule for the API, the token endpoint and the zone binary's `--zone`.
pub fn name_violation(name: &str, max: usize) -> Option<String> {
    if name.is_empty() {
        Some("cannot be empty".into())
    } else if name.len() > MAX_NAME {
        Some(format!("value length must less or equal {MAX_NAME}"))
    } else if !is_subdomain(name) {
        Some(NAME_RULE.into())
    } else if name.len() > max {
        Some(format!("cannot be longer than {max} characters"))
    } else {
        None
    }
}

/// Why `mesh` cannot name a Mesh, as the `mesh` field of a mesh-scoped resource. Kuma's check is
/// on characters only; Meshplane also refuses shapes no Mesh name of any version can have.
pub fn mesh_ref_violation(mesh: &str) -> Option<&'static str> {
    let b = mesh.as_bytes();
    if !b
        .iter()
        .all(|c| alnum(*c) || matches!(c, b'-' | b'_' | b'.'))
    {
        return Some(MESH_REF_RULE);
    }
    let shaped = !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && !mesh.contains("..");
    (!shaped).then_some(MESH_REF_SHAPE)
}

/// What Kubernetes says of `name` as an RFC 1035 label (Kuma's newer rule for Mesh and Zone
/// names), joined as Kuma joins it; `None` when it is one.
pub fn rfc1035_violation(name: &str) -> Option<String> {
    let mut errs = Vec::new();
    if name.len() > 63 {
        errs.push("must be no more than 63 characters");
    }
    let b = name.as_bytes();
    let label = !b.is_empty()
        && b[0].is_ascii_lowercase()
        && alnum(b[b.len() - 1])
        && b.iter().all(|c| alnum(*c) || *c == b'-');
    if !label {
        errs.push(DNS1035_RULE);
    }
    (!errs.is_empty()).then(|| errs.join("; "))
}

/// Kuma's warning for a Mesh or Zone name that is not an RFC 1035 label (with `--strict-names`
/// off): the write succeeds and the answer carries this text.
pub fn rfc1035_warning(kind: super::ResourceKind, name: &str) -> Option<String> {
    rfc1035_violation(name).map(|errs| {
        format!("Invalid {kind} resource name: '{name}'. It does not conform to the DNS format (RFC 1035). This is deprecated. Errors: {errs}")
    })
}

/// Whether `kind`'s names fall under the RFC 1035 rule.
pub fn rfc1035_applies(kind: super::ResourceKind) -> bool {
    matches!(kind, super::ResourceKind::Mesh | super::ResourceKind::Zone)
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
    use crate::model::ResourceKind;

    #[test]
    fn each_kind_has_its_length_rule() {
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
        // Kuma's generic rule speaks first, in its words.
        assert_eq!(
            name_violation(&at(254), max_len(ResourceKind::Mesh)).as_deref(),
            Some("value length must less or equal 253")
        );
        assert_eq!(
            name_violation("", max_len(ResourceKind::Secret)).as_deref(),
            Some("cannot be empty")
        );
        assert_eq!(
            name_violation("A", max_len(ResourceKind::Secret)).as_deref(),
            Some(NAME_RULE)
        );
    }

    #[test]
    fn names_are_lowercase_rfc1123_subdomains_as_in_kuma() {
        for ok in [
            "default",
            "a",
            "vault-token",
            "default.ca-builtin-cert-ca-1",
            "x9",
            "1a",
            "a.b.c",
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
            "a.-b",
            "../etc",
            "backend_1",
            "vault_token",
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
    fn mesh_references_keep_underscores() {
        assert_eq!(mesh_ref_violation("my_mesh"), None);
        assert_eq!(mesh_ref_violation("default"), None);
        assert_eq!(mesh_ref_violation("Default"), Some(MESH_REF_RULE));
        assert_eq!(mesh_ref_violation("a/b"), Some(MESH_REF_RULE));
        assert_eq!(
            mesh_ref_violation("..").map(|r| r == MESH_REF_RULE),
            Some(false)
        );
        assert!(mesh_ref_violation("-a").is_some());
        assert!(mesh_ref_violation("").is_some());
    }

    #[test]
    fn rfc1035_for_meshes_and_zones() {
        assert_eq!(rfc1035_violation("my-mesh"), None);
        assert_eq!(rfc1035_violation("a"), None);
        for bad in ["1mesh", "a.b", "a_b", "a-", ""] {
            assert_eq!(
                rfc1035_violation(bad).as_deref(),
                Some(DNS1035_RULE),
                "{bad:?}"
            );
        }
        assert_eq!(
            rfc1035_violation(&"a".repeat(64)).as_deref(),
            Some("must be no more than 63 characters")
        );
        assert_eq!(
            rfc1035_warning(ResourceKind::Mesh, "aa.a").as_deref(),
            Some(
                "Invalid Mesh resource name: 'aa.a'. It does not conform to the DNS format (RFC 1035). This is deprecated. Errors: a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
            )
        );
        assert!(rfc1035_applies(ResourceKind::Zone));
        assert!(!rfc1035_applies(ResourceKind::Secret));
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
