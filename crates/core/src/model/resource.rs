//! A resource in Kuma's universal format: `type`, `mesh`, `name`, `labels`, times, then the spec's fields.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value};

use crate::{
    decode::{Decoder, Obj},
    model::{
        dataplane::{DataplaneCertificateSpec, DataplaneInsightSpec, DataplaneSpec},
        kind::{ResourceKey, ResourceKind},
        mesh::{BackendType, MeshSpec},
        mesh_validation::MeshValidationSpec,
        names,
        secret::SecretSpec,
        zone::{ZoneInsightSpec, ZoneSpec},
    },
    validation::{FieldPath, ValidationError},
};

/// Label set by sync on resources that came from another control plane (`global` or `zone`).
pub const ORIGIN_LABEL: &str = "kuma.io/origin";
/// Label set by sync on resources that a zone reported: the zone's name.
pub const ZONE_LABEL: &str = "kuma.io/zone";

const MAX_LABELS: usize = 64;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Meta {
    pub name: String,
    /// The owning mesh; empty for global-scoped kinds.
    pub mesh: String,
    pub labels: BTreeMap<String, String>,
    pub creation_time: Option<DateTime<Utc>>,
    pub modification_time: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Spec {
    Mesh(MeshSpec),
    Secret(SecretSpec),
    GlobalSecret(SecretSpec),
    Zone(ZoneSpec),
    ZoneInsight(ZoneInsightSpec),
    Dataplane(DataplaneSpec),
    DataplaneInsight(DataplaneInsightSpec),
    DataplaneCertificate(DataplaneCertificateSpec),
    MeshValidation(MeshValidationSpec),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Resource {
    pub meta: Meta,
    pub spec: Spec,
}

impl Spec {
    pub fn kind(&self) -> ResourceKind {
        match self {
            Self::Mesh(_) => ResourceKind::Mesh,
            Self::Secret(_) => ResourceKind::Secret,
            Self::GlobalSecret(_) => ResourceKind::GlobalSecret,
            Self::Zone(_) => ResourceKind::Zone,
            Self::ZoneInsight(_) => ResourceKind::ZoneInsight,
            Self::Dataplane(_) => ResourceKind::Dataplane,
            Self::DataplaneInsight(_) => ResourceKind::DataplaneInsight,
            Self::DataplaneCertificate(_) => ResourceKind::DataplaneCertificate,
            Self::MeshValidation(_) => ResourceKind::MeshValidation,
        }
    }

    /// The spec's own fields as a JSON object (what the store keeps and sync sends).
    pub fn to_json(&self) -> Value {
        let v = match self {
            Self::Mesh(s) => serde_json::to_value(s),
            Self::Secret(s) | Self::GlobalSecret(s) => serde_json::to_value(s),
            Self::Zone(s) => serde_json::to_value(s),
            Self::ZoneInsight(s) => serde_json::to_value(s),
            Self::Dataplane(s) => serde_json::to_value(s),
            Self::DataplaneInsight(s) => serde_json::to_value(s),
            Self::DataplaneCertificate(s) => serde_json::to_value(s),
            Self::MeshValidation(s) => serde_json::to_value(s),
        };
        // Every spec type is a plain struct of strings, numbers, lists and maps; serializing cannot fail.
        v.unwrap_or_else(|_| Value::Object(Map::new()))
    }

    /// Decodes a spec's fields from a JSON object (from the store, sync, or a request body's spec part).
    pub fn from_json(kind: ResourceKind, v: &Value) -> Result<Spec, ValidationError> {
        let mut d = Decoder::new();
        let Some(mut o) = d.object(v, &FieldPath::root()) else {
            return d.finish_with(None);
        };
        let spec = decode_spec(&mut d, &mut o, kind);
        o.finish(&mut d);
        d.finish_with(spec)
    }
}

fn decode_spec(d: &mut Decoder, o: &mut Obj<'_>, kind: ResourceKind) -> Option<Spec> {
    match kind {
        ResourceKind::Mesh => MeshSpec::decode(d, o).map(Spec::Mesh),
        ResourceKind::Secret => SecretSpec::decode(d, o).map(Spec::Secret),
        ResourceKind::GlobalSecret => SecretSpec::decode(d, o).map(Spec::GlobalSecret),
        ResourceKind::Zone => ZoneSpec::decode(d, o).map(Spec::Zone),
        ResourceKind::Dataplane => DataplaneSpec::decode(d, o).map(Spec::Dataplane),
        ResourceKind::ZoneInsight => serde_fields(d, o, &["subscriptions"]).map(Spec::ZoneInsight),
        ResourceKind::DataplaneInsight => {
            serde_fields(d, o, &["subscriptions", "mTLS"]).map(Spec::DataplaneInsight)
        }
        ResourceKind::DataplaneCertificate => serde_fields(
            d,
            o,
            &[
                "dataplane",
                "svidService",
                "chainPem",
                "backend",
                "fingerprint",
                "certPem",
                "keyPem",
                "notBefore",
                "notAfter",
                "issuedAt",
                "regenerations",
            ],
        )
        .map(Spec::DataplaneCertificate),
        ResourceKind::MeshValidation => serde_fields(d, o, &["backends"]).map(Spec::MeshValidation),
    }
}

/// System-written kinds are decoded with serde: they come from the control plane, not from users.
fn serde_fields<T: serde::de::DeserializeOwned>(
    d: &mut Decoder,
    o: &mut Obj<'_>,
    fields: &[&str],
) -> Option<T> {
    let path = o.path().clone();
    let map = o.take_rest(fields);
    match serde_json::from_value(Value::Object(map)) {
        Ok(t) => Some(t),
        Err(e) => {
            d.violation(&path, format!("invalid: {e}"));
            None
        }
    }
}

impl Resource {
    pub fn new(meta: Meta, spec: Spec) -> Self {
        Self { meta, spec }
    }

    pub fn kind(&self) -> ResourceKind {
        self.spec.kind()
    }

    pub fn key(&self) -> ResourceKey {
        ResourceKey {
            kind: self.kind(),
            mesh: self.meta.mesh.clone(),
            name: self.meta.name.clone(),
        }
    }

    /// SHA-256 of what a write would store (kind, spec as stored, labels), without times or
    /// version: two resources with equal digests write the same record.
    pub fn content_digest(&self) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(self.kind().name().as_bytes());
        h.update([0]);
        // Serializing a Value or a string map cannot fail; an empty slice would only make the
        // digest weaker, never wrong, since callers compare digests made the same way.
        h.update(serde_json::to_vec(&self.spec.to_json()).unwrap_or_default());
        h.update([0]);
        h.update(serde_json::to_vec(&self.meta.labels).unwrap_or_default());
        h.finalize().into()
    }

    /// Parses and structurally validates a resource written by a user, reporting every violation.
    pub fn from_universal(v: &Value) -> Result<Resource, ValidationError> {
        let mut d = Decoder::new();
        let Some(mut o) = d.object(v, &FieldPath::root()) else {
            return d.finish_with(None);
        };
        let kind = match o.field("type") {
            None => {
                d.violation(&FieldPath::root().field("type"), "has to be defined");
                None
            }
            Some((tv, tp)) => d.string(tv, &tp).and_then(|t| {
                let k = ResourceKind::from_name(&t).filter(|k| k.is_user_writable() || k.origin() != crate::model::kind::Origin::Local);
                if k.is_none() {
                    d.violation(&tp, format!("unknown resource type {t:?} (known: Mesh, Secret, GlobalSecret, Zone, Dataplane)"));
                }
                k
            }),
        };
        let Some(kind) = kind else {
            // Without a type nothing else can be judged; say only that.
            return d.finish_with(None);
        };
        let name = o.req_string(&mut d, "name");
        if let Some(n) = &name {
            validate_name(&mut d, kind, n);
        }
        let mesh = if kind.is_mesh_scoped() {
            let m = o.req_string(&mut d, "mesh");
            if let Some(m) = &m
                && let Some(reason) = names::mesh_ref_violation(m)
            {
                d.violation(&FieldPath::root().field("mesh"), reason);
            }
            m
        } else {
            if o.contains("mesh") {
                o.ignore("mesh");
                d.violation(
                    &FieldPath::root().field("mesh"),
                    format!("must not be set: {kind} is not mesh-scoped"),
                );
            }
            Some(String::new())
        };
        let labels = o
            .opt_with(&mut d, "labels", validate_labels)
            .unwrap_or_default();
        o.ignore("creationTime");
        o.ignore("modificationTime");
        let spec = decode_spec(&mut d, &mut o, kind);
        o.finish(&mut d);
        if let (Some(Spec::Mesh(m)), Some(mesh_name)) = (&spec, &name) {
            validate_mesh_derived_names(&mut d, mesh_name, m);
        }
        let meta = match (name, mesh) {
            (Some(name), Some(mesh)) => Some(Meta {
                name,
                mesh,
                labels,
                creation_time: None,
                modification_time: None,
            }),
            _ => None,
        };
        let out = match (meta, spec) {
            (Some(meta), Some(spec)) => Some(Resource { meta, spec }),
            _ => None,
        };
        d.finish_with(out)
    }

    /// The universal JSON form, secret data included (only for a secret's own path).
    pub fn to_universal(&self) -> Value {
        self.universal(true)
    }

    /// The universal JSON form for listings and logs: secret data left out.
    pub fn to_universal_redacted(&self) -> Value {
        self.universal(!self.kind().is_secret())
    }

    fn universal(&self, with_spec: bool) -> Value {
        let mut out = Map::new();
        out.insert("type".into(), Value::String(self.kind().name().into()));
        if self.kind().is_mesh_scoped() {
            out.insert("mesh".into(), Value::String(self.meta.mesh.clone()));
        }
        out.insert("name".into(), Value::String(self.meta.name.clone()));
        if let Some(t) = self.meta.creation_time {
            out.insert(
                "creationTime".into(),
                Value::String(t.to_rfc3339_opts(SecondsFormat::Millis, true)),
            );
        }
        if let Some(t) = self.meta.modification_time {
            out.insert(
                "modificationTime".into(),
                Value::String(t.to_rfc3339_opts(SecondsFormat::Millis, true)),
            );
        }
        if !self.meta.labels.is_empty() {
            let labels = self
                .meta
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect();
            out.insert("labels".into(), Value::Object(labels));
        }
        if with_spec && let Value::Object(spec) = self.spec.to_json() {
            out.extend(spec);
        }
        Value::Object(out)
    }
}

fn validate_name(d: &mut Decoder, kind: ResourceKind, name: &str) {
    if let Some(reason) = names::name_violation(name, names::max_len(kind)) {
        d.violation(&FieldPath::root().field("name"), reason);
    }
}

fn validate_labels(d: &mut Decoder, v: &Value, p: &FieldPath) -> Option<BTreeMap<String, String>> {
    let labels = d.string_map(v, p)?;
    if labels.len() > MAX_LABELS {
        d.violation(p, format!("cannot have more than {MAX_LABELS} labels"));
        return None;
    }
    let mut ok = true;
    for (k, val) in &labels {
        let key_ok = !k.is_empty()
            && k.len() <= 253
            && k.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'/'));
        if !key_ok {
            ok = false;
            d.violation(
                &p.key(k),
                "label name must consist of alphanumeric characters, '.', '-', '_' or '/'",
            );
        } else if val.len() > 253 || val.chars().any(char::is_control) {
            ok = false;
            d.violation(
                &p.key(k),
                "label value must be at most 253 printable characters",
            );
        }
    }
    ok.then_some(labels)
}

/// The builtin CA's Secrets are named after the mesh and backend; both must make a valid name.
fn validate_mesh_derived_names(d: &mut Decoder, mesh: &str, spec: &MeshSpec) {
    for (i, b) in spec.backends().iter().enumerate() {
        if b.backend_type == BackendType::Builtin {
            let secret = builtin_cert_secret_name(mesh, &b.name);
            if !names::is_valid_name(&secret) {
                d.violation(
                    &FieldPath::root().field("mtls").field("backends").index(i).field("name"),
                    format!("makes the builtin CA secret name {secret:?}, which is not a valid name (at most 253 characters)"),
                );
            }
        }
    }
}

/// `<mesh>.ca-builtin-cert-<backend>`, as Kuma names the builtin CA certificate Secret.
pub fn builtin_cert_secret_name(mesh: &str, backend: &str) -> String {
    format!("{mesh}.ca-builtin-cert-{backend}")
}

/// `<mesh>.ca-builtin-key-<backend>`, as Kuma names the builtin CA key Secret.
pub fn builtin_key_secret_name(mesh: &str, backend: &str) -> String {
    format!("{mesh}.ca-builtin-key-{backend}")
}
