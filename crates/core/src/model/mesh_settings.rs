//! A Mesh's smaller sections — `networking`, `routing`, `constraints` and `meshServices` — typed,
//! with Kuma's rules for the dataplane constraints' tag selectors.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use super::mesh_telemetry::decode_enum;
use crate::{decode::Decoder, validation::FieldPath};

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Networking {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outbound: Option<Outbound>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Outbound {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub passthrough: Option<bool>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Routing {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locality_aware_load_balancing: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zone_egress: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_forbid_mesh_external_service_access: Option<bool>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Constraints {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dataplane_proxy: Option<DataplaneProxyConstraints>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct DataplaneProxyConstraints {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requirements: Option<Vec<TagRule>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restrictions: Option<Vec<TagRule>>,
}

/// One requirement or restriction: a tag selector a dataplane must (or must not) match.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct TagRule {
    pub tags: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct MeshServices {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<MeshServicesMode>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum MeshServicesMode {
    Disabled,
    Everywhere,
    ReachableBackends,
    Exclusive,
}

const MESH_SERVICES_MODES: [(&str, MeshServicesMode); 4] = [
    ("Disabled", MeshServicesMode::Disabled),
    ("Everywhere", MeshServicesMode::Everywhere),
    ("ReachableBackends", MeshServicesMode::ReachableBackends),
    ("Exclusive", MeshServicesMode::Exclusive),
];

impl Networking {
    pub(super) fn decode(d: &mut Decoder, v: &Value, path: &FieldPath) -> Option<Self> {
        let mut o = d.object(v, path)?;
        let outbound = o.opt_with(d, "outbound", |d, v, p| {
            let mut o = d.object(v, p)?;
            let passthrough = o.opt_bool(d, "passthrough");
            o.finish(d);
            Some(Outbound { passthrough })
        });
        o.finish(d);
        Some(Self { outbound })
    }
}

impl Routing {
    pub(super) fn decode(d: &mut Decoder, v: &Value, path: &FieldPath) -> Option<Self> {
        let mut o = d.object(v, path)?;
        let out = Self {
            locality_aware_load_balancing: o.opt_bool(d, "localityAwareLoadBalancing"),
            zone_egress: o.opt_bool(d, "zoneEgress"),
            default_forbid_mesh_external_service_access: o
                .opt_bool(d, "defaultForbidMeshExternalServiceAccess"),
        };
        o.finish(d);
        Some(out)
    }
}

impl Constraints {
    pub(super) fn decode(d: &mut Decoder, v: &Value, path: &FieldPath) -> Option<Self> {
        let mut o = d.object(v, path)?;
        let dataplane_proxy = o.opt_with(d, "dataplaneProxy", |d, v, p| {
            let mut o = d.object(v, p)?;
            let requirements = o.opt_list(d, "requirements", TagRule::decode);
            let restrictions = o.opt_list(d, "restrictions", TagRule::decode);
            o.finish(d);
            Some(DataplaneProxyConstraints {
                requirements,
                restrictions,
            })
        });
        o.finish(d);
        Some(Self { dataplane_proxy })
    }
}

impl TagRule {
    fn decode(d: &mut Decoder, v: &Value, path: &FieldPath) -> Option<Self> {
        let mut o = d.object(v, path)?;
        let tags_path = path.field("tags");
        let tags = match o.field("tags") {
            Some((v, p)) => d.tag_map(v, &p),
            None => Some(BTreeMap::new()),
        };
        if let Some(tags) = &tags {
            check_selector(d, &tags_path, tags);
        }
        o.finish(d);
        Some(Self { tags: tags? })
    }
}

/// Kuma's `ValidateSelector` with at least one tag required, in its order (keys sorted).
fn check_selector(d: &mut Decoder, path: &FieldPath, tags: &BTreeMap<String, String>) {
    if tags.is_empty() {
        d.violation(path, "must have at least one tag");
    }
    for (key, value) in tags {
        if key.is_empty() {
            d.violation(path, "tag name must be non-empty");
        }
        if !selector_chars(key) {
            d.violation(
                &path.key(key),
                "tag name must consist of alphanumeric characters, dots, dashes, slashes and underscores",
            );
        }
        if value.is_empty() {
            d.violation(&path.key(key), "tag value must be non-empty");
        }
        if value != "*" && !selector_chars(value) {
            d.violation(
                &path.key(key),
                "tag value must consist of alphanumeric characters, dots, dashes, slashes and underscores or be \"*\"",
            );
        }
    }
}

/// Kuma's character set for a selector's tag names and values: `[a-zA-Z0-9.\-_:/]`.
fn selector_chars(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b".-_:/".contains(&b))
}

impl MeshServices {
    pub(super) fn decode(d: &mut Decoder, v: &Value, path: &FieldPath) -> Option<Self> {
        let mut o = d.object(v, path)?;
        let mode = o.opt_with(d, "mode", |d, v, p| {
            decode_enum(d, v, p, &MESH_SERVICES_MODES)
        });
        o.finish(d);
        Some(Self { mode })
    }
}
