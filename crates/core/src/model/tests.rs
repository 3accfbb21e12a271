//! Model tests: the shared examples round-trip, and each validation path answers as Kuma does.

use serde_json::{Value, json};

use super::*;
use crate::format;

fn examples_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/examples")
}

/// `head` followed by `body`, whose common indentation is removed, parsed as YAML (for table tests).
pub(super) fn yaml_doc(head: &str, body: &str) -> Value {
    let lines: Vec<&str> = body.lines().filter(|l| !l.trim().is_empty()).collect();
    let indent = lines
        .iter()
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    let mut text = head.to_string();
    for l in lines {
        text.push_str(&l[indent..]);
        text.push('\n');
    }
    format::parse_yaml(&text).unwrap_or_else(|e| panic!("{e}:\n{text}"))
}

/// `doc` (written as `body`) is refused with exactly `expected` (field, reason), in order.
pub(super) fn assert_refused(doc: Value, body: &str, expected: &[(&str, &str)]) {
    let want: Vec<(String, String)> = expected
        .iter()
        .map(|(f, r)| (f.to_string(), r.to_string()))
        .collect();
    assert_eq!(violations(doc), want, "for:\n{body}");
}

/// `doc` (written as `body`) is accepted, and reads back (universal form, YAML, and the store's
/// spec form) as applied.
pub(super) fn assert_round_trips(doc: Value, body: &str) {
    let r = Resource::from_universal(&doc).unwrap_or_else(|e| panic!("{e}\nfor:\n{body}"));
    assert_eq!(r.to_universal(), doc, "round trip of:\n{body}");
    let yaml = format::to_yaml(&r.to_universal());
    let again = Resource::from_universal(&format::parse_yaml(&yaml).expect("yaml")).expect("valid");
    assert_eq!(again, r, "{yaml}");
    assert_eq!(
        Spec::from_json(r.kind(), &r.spec.to_json()).expect("spec"),
        r.spec
    );
}

pub(super) fn violations(v: Value) -> Vec<(String, String)> {
    match Resource::from_universal(&v) {
        Ok(r) => panic!("expected violations, got {r:?}"),
        Err(e) => e
            .violations
            .into_iter()
            .map(|v| (v.field, v.reason))
            .collect(),
    }
}

fn has(vs: &[(String, String)], field: &str, reason_part: &str) -> bool {
    vs.iter()
        .any(|(f, r)| f == field && r.contains(reason_part))
}

#[test]
fn every_example_round_trips_through_json_and_yaml() {
    let mut seen = 0;
    for entry in std::fs::read_dir(examples_dir()).expect("examples dir") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("read");
        let doc = format::parse_yaml(&text).expect("yaml");
        let r =
            Resource::from_universal(&doc).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        // Nothing is dropped: the universal form equals the input document, key for key.
        assert_eq!(r.to_universal(), doc, "{}", path.display());
        // JSON both ways.
        let json_text = serde_json::to_string(&r.to_universal()).expect("json");
        let again = Resource::from_universal(
            &format::parse_json(json_text.as_bytes()).expect("json parses"),
        )
        .expect("valid");
        assert_eq!(again, r);
        // YAML both ways.
        let yaml_text = format::to_yaml(&r.to_universal());
        let again = Resource::from_universal(&format::parse_yaml(&yaml_text).expect("yaml parses"))
            .expect("valid");
        assert_eq!(again, r, "{yaml_text}");
        // The store's spec form decodes to the same spec.
        assert_eq!(
            Spec::from_json(r.kind(), &r.spec.to_json()).expect("spec"),
            r.spec
        );
        seen += 1;
    }
    assert!(seen >= 8, "expected the eight shared examples, saw {seen}");
}

#[test]
fn vault_example_is_typed() {
    let text = std::fs::read_to_string(examples_dir().join("mesh-vault-token.yaml")).expect("read");
    let r = Resource::from_universal(&format::parse_yaml(&text).expect("yaml")).expect("valid");
    let Spec::Mesh(m) = &r.spec else {
        panic!("not a mesh")
    };
    let b = m.enabled_backend().expect("enabled backend");
    assert_eq!(
        b.dp_cert_expiration(),
        std::time::Duration::from_secs(86400)
    );
    let Some(BackendConf::Vault(v)) = &b.conf else {
        panic!("not vault")
    };
    assert_eq!(v.from_cp.pki, "kmesh-pki-default");
    assert_eq!(v.from_cp.role, "dataplane-proxies");
    assert_eq!(v.from_cp.agent_address.as_deref(), Some(""));
    assert!(
        matches!(v.from_cp.auth, Some(mesh::VaultAuth::Token(DataSource::Secret(ref s))) if s == "vault-token")
    );
    let srcs: Vec<String> = b
        .conf
        .as_ref()
        .expect("conf")
        .data_sources()
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    assert_eq!(srcs, vec!["fromCp.tls.caCert", "fromCp.auth.token"]);
}

#[test]
fn kuma_mesh_sections_are_kept() {
    let doc = json!({"type": "Mesh", "name": "m", "logging": {"backends": [{"name": "f", "type": "file", "conf": {"path": "/dev/stdout"}}]}, "skipCreatingInitialPolicies": ["*"]});
    let r = Resource::from_universal(&doc).expect("valid");
    assert_eq!(r.to_universal(), doc);
}

#[test]
fn all_violations_reported_at_once_with_kuma_paths() {
    let vs = violations(json!({
        "type": "Mesh",
        "name": "m".repeat(64),
        "bogus": 1,
        "mtls": {
            "enabledBackend": "nope",
            "backends": [
                {"name": "ca-1", "type": "builtin", "dpCert": {"rotation": {"expiration": "1h30m"}}},
                {"name": "ca-1", "type": "builtin", "conf": {"caCert": {"RSAbits": 1000}}},
                {"name": "x", "type": "acme"},
                {"name": "p", "type": "provided", "conf": {"cert": {}}},
            ]
        }
    }));
    let expected = [
        ("name", "cannot be longer than 63 characters"),
        (
            "mtls.backends[0].dpCert.rotation.expiration",
            "has to be a valid format",
        ),
        (
            "mtls.backends[1].conf.caCert.RSAbits",
            "must be one of 2048, 3072 or 4096",
        ),
        (
            "mtls.backends[2].type",
            "could not find installed plugin for this type",
        ),
        (
            "mtls.backends[3].conf.cert",
            "data source has to be chosen. Available sources: secret, file, inline",
        ),
        ("mtls.backends[3].conf.key", "has to be defined"),
        ("bogus", "unknown field"),
    ];
    for (f, r) in expected {
        assert!(has(&vs, f, r), "missing {f}: {r} in {vs:#?}");
    }
}

#[test]
fn duplicate_backend_names_and_unknown_enabled_backend() {
    let vs = violations(
        json!({"type": "Mesh", "name": "m", "mtls": {"enabledBackend": "b", "backends": [
        {"name": "a", "type": "builtin"}, {"name": "a", "type": "builtin"}]}}),
    );
    assert!(
        has(
            &vs,
            "mtls.backends[1].name",
            "\"a\" name is already used for another backend"
        ),
        "{vs:?}"
    );
    assert!(
        has(
            &vs,
            "mtls.enabledBackend",
            "has to be set to one of the backends in the mesh"
        ),
        "{vs:?}"
    );
}

#[test]
fn duplicates_are_reported_even_when_another_backend_fails() {
    let vs = violations(json!({"type": "Mesh", "name": "m", "mtls": {"backends": [
        {"name": "a", "type": "builtin"}, {"name": "a", "type": "builtin"}, {"name": "c", "type": "acme"}]}}));
    assert!(
        has(
            &vs,
            "mtls.backends[1].name",
            "\"a\" name is already used for another backend"
        ),
        "{vs:?}"
    );
    assert!(
        has(
            &vs,
            "mtls.backends[2].type",
            "could not find installed plugin"
        ),
        "{vs:?}"
    );
}

#[test]
fn vault_conf_paths() {
    let vs = violations(
        json!({"type": "Mesh", "name": "m", "mtls": {"backends": [{"name": "v", "type": "vault", "conf": {"fromCp": {
            "address": "ftp://x", "pki": "", "commonName": "{{ foo }}", "auth": {"token": {"secret": "t"}, "tls": {}}, "extra": true
        }}}]}}),
    );
    let p = "mtls.backends[0].conf.fromCp";
    assert!(
        has(&vs, &format!("{p}.address"), "http:// or https://"),
        "{vs:?}"
    );
    assert!(has(&vs, &format!("{p}.pki"), "has to be defined"), "{vs:?}");
    assert!(
        has(&vs, &format!("{p}.role"), "has to be defined"),
        "{vs:?}"
    );
    assert!(
        has(
            &vs,
            &format!("{p}.commonName"),
            "function \"foo\" not defined"
        ),
        "{vs:?}"
    );
    assert!(
        has(
            &vs,
            &format!("{p}.auth"),
            "only one auth method can be set, found: token, tls"
        ),
        "{vs:?}"
    );
    assert!(has(&vs, &format!("{p}.extra"), "unknown field"), "{vs:?}");
}

#[test]
fn vault_csr_mode_and_agent() {
    let doc = json!({"type": "Mesh", "name": "m", "mtls": {"enabledBackend": "v", "backends": [{"name": "v", "type": "vault", "conf": {"fromCp": {
        "address": "http://127.0.0.1:8200", "agentAddress": "http://127.0.0.1:8100", "pki": "pki", "role": "r", "csr": {"keyType": "ec"}
    }}}]}});
    let r = Resource::from_universal(&doc).expect("agent needs no auth");
    assert_eq!(r.to_universal(), doc);
    let vs = violations(
        json!({"type": "Mesh", "name": "m", "mtls": {"backends": [{"name": "v", "type": "vault", "conf": {"fromCp": {
            "address": "http://127.0.0.1:8200", "pki": "pki", "role": "r", "csr": {"keyType": "ec", "keyBits": 2048}
        }}}]}}),
    );
    assert!(
        has(
            &vs,
            "mtls.backends[0].conf.fromCp.csr.keyBits",
            "256 or 384"
        ),
        "{vs:?}"
    );
    assert!(
        has(
            &vs,
            "mtls.backends[0].conf.fromCp.auth",
            "has to be defined"
        ),
        "{vs:?}"
    );
}

#[test]
fn secrets() {
    let r = Resource::from_universal(
        &json!({"type": "Secret", "mesh": "default", "name": "s", "data": "aGVsbG8="}),
    )
    .expect("valid");
    let Spec::Secret(s) = &r.spec else {
        panic!("secret")
    };
    assert_eq!(s.data.bytes(), b"hello");
    assert!(!format!("{s:?}").contains("hello"));
    assert!(r.to_universal_redacted().get("data").is_none());
    assert_eq!(r.to_universal()["data"], "aGVsbG8=");
    let vs = violations(json!({"type": "Secret", "name": "s", "data": "%%%"}));
    assert!(has(&vs, "mesh", "has to be defined"), "{vs:?}");
    assert!(has(&vs, "data", "has to be valid base64"), "{vs:?}");
    let vs = violations(json!({"type": "GlobalSecret", "mesh": "m", "name": "g", "data": ""}));
    assert!(has(&vs, "mesh", "must not be set"), "{vs:?}");
    assert!(has(&vs, "data", "has to be defined"), "{vs:?}");
}

#[test]
fn names_are_checked() {
    for bad in ["../etc", "a/b", "Ü", "UPPER", "a b", ""] {
        let vs = violations(json!({"type": "Zone", "name": bad}));
        assert!(vs.iter().any(|(f, _)| f == "name"), "{bad:?}: {vs:?}");
    }
    let vs = violations(json!({"type": "Bogus", "name": "x"}));
    assert_eq!(
        vs,
        vec![(
            "type".to_string(),
            "unknown resource type \"Bogus\" (known: Mesh, Secret, GlobalSecret, Zone, Dataplane)"
                .to_string()
        )]
    );
    let vs = violations(json!({"type": "ZoneInsight", "name": "x"}));
    assert!(
        has(&vs, "type", "unknown resource type"),
        "system kinds are not user-writable: {vs:?}"
    );
}

#[test]
fn dataplanes() {
    let r = Resource::from_universal(&json!({"type": "Dataplane", "mesh": "default", "name": "dp", "networking": {"address": "10.0.0.1",
        "inbound": [{"port": 80, "tags": {"kuma.io/service": "web", "version": "v1"}}, {"port": 81, "tags": {"kuma.io/service": "web-admin", "version": "v1"}}]}}))
    .expect("valid");
    let Spec::Dataplane(dp) = &r.spec else {
        panic!("dp")
    };
    assert_eq!(dp.services(), vec!["web", "web-admin"]);
    assert_eq!(dp.tag_set()["version"].len(), 1);
    let vs = violations(
        json!({"type": "Dataplane", "mesh": "default", "name": "dp", "networking": {"address": "10.0.0.1",
        "inbound": [{"port": 0, "tags": {"version": "v 1"}}]}}),
    );
    assert!(has(&vs, "networking.inbound[0].port", "range"), "{vs:?}");
    assert!(
        has(
            &vs,
            "networking.inbound[0].tags[\"kuma.io/service\"]",
            "tag has to exist"
        ),
        "{vs:?}"
    );
    assert!(
        has(
            &vs,
            "networking.inbound[0].tags[\"version\"]",
            "tag value must consist"
        ),
        "{vs:?}"
    );
}

#[test]
fn wrong_types_are_named() {
    let vs = violations(
        json!({"type": "Mesh", "name": "m", "mtls": {"skipValidation": "yes", "backends": {"a": 1}}}),
    );
    assert!(
        has(
            &vs,
            "mtls.skipValidation",
            "must be a boolean, not a string"
        ),
        "{vs:?}"
    );
    assert!(
        has(&vs, "mtls.backends", "must be a list, not an object"),
        "{vs:?}"
    );
    let vs = violations(json!(["not", "an", "object"]));
    assert_eq!(
        vs,
        vec![(String::new(), "must be an object, not a list".to_string())]
    );
}

#[test]
fn acmpca_conf_round_trips_and_lists_its_secrets() {
    let doc = json!({"type": "Mesh", "name": "m", "mtls": {"enabledBackend": "pca", "backends": [{"name": "pca", "type": "acmpca",
        "dpCert": {"rotation": {"expiration": "1h"}},
        "conf": {
            "arn": "arn:aws:acm-pca:us-east-1:123456789012:certificate-authority/1f2e3d4c-aaaa-bbbb-cccc-1234567890ab",
            "commonName": "{{ tag \"kuma.io/service\" }}.mesh",
            "caCert": {"secret": "pca-root"},
            "auth": {"awsCredentials": {"accessKey": {"secret": "ak"}, "accessKeySecret": {"secret": "sk"}}},
            "endpoint": "http://127.0.0.1:5000"
    }}]}});
    let r = Resource::from_universal(&doc).expect("valid");
    assert_eq!(r.to_universal(), doc);
    let Spec::Mesh(m) = &r.spec else {
        panic!("not a mesh")
    };
    let b = m.enabled_backend().expect("enabled");
    assert_eq!(b.backend_type, mesh::BackendType::AcmPca);
    let Some(BackendConf::AcmPca(c)) = &b.conf else {
        panic!("not acmpca")
    };
    assert_eq!(c.region(), Some("us-east-1"));
    let srcs: Vec<String> = b
        .conf
        .as_ref()
        .expect("conf")
        .data_sources()
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    assert_eq!(
        srcs,
        vec![
            "caCert",
            "auth.awsCredentials.accessKey",
            "auth.awsCredentials.accessKeySecret"
        ]
    );
}

#[test]
fn acmpca_conf_paths() {
    let vs = violations(
        json!({"type": "Mesh", "name": "m", "mtls": {"backends": [{"name": "p", "type": "acmpca", "conf": {
            "arn": "arn:aws:acm-pca:us-east-1:42:certificate-authority/x",
            "commonName": "{{ foo }}",
            "auth": {"awsCredentials": {"accessKey": {"secret": "ak"}, "region": "x"}},
            "endpoint": "ftp://x",
            "extra": 1
        }}]}}),
    );
    let p = "mtls.backends[0].conf";
    assert!(
        has(&vs, &format!("{p}.arn"), "account \"42\" must be 12 digits"),
        "{vs:?}"
    );
    assert!(
        has(
            &vs,
            &format!("{p}.commonName"),
            "function \"foo\" not defined"
        ),
        "{vs:?}"
    );
    assert!(
        has(
            &vs,
            &format!("{p}.auth.awsCredentials.accessKeySecret"),
            "has to be defined"
        ),
        "{vs:?}"
    );
    assert!(
        has(
            &vs,
            &format!("{p}.auth.awsCredentials.region"),
            "unknown field"
        ),
        "{vs:?}"
    );
    assert!(
        has(&vs, &format!("{p}.endpoint"), "http:// or https://"),
        "{vs:?}"
    );
    assert!(has(&vs, &format!("{p}.extra"), "unknown field"), "{vs:?}");
    let missing = violations(
        json!({"type": "Mesh", "name": "m", "mtls": {"backends": [{"name": "p", "type": "acmpca", "conf": {}}]}}),
    );
    assert!(
        has(&missing, &format!("{p}.arn"), "has to be defined"),
        "{missing:?}"
    );
}
