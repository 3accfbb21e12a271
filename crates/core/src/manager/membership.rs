//! Kuma's membership rule (`membership_validator.go`): a Dataplane joins a Mesh only when each of
//! its tag sets — every inbound's and the gateway's, with the zone's `kuma.io/zone` as Kuma's
//! dataplane manager stamps it before judging — meets one of the Mesh's
//! `constraints.dataplaneProxy.requirements` (when there are any) and none of its restrictions.

use std::collections::BTreeMap;

use crate::{
    model::{
        DataplaneSpec, MeshSpec,
        dataplane::{Tags, ZONE_TAG},
        mesh::{MeshServicesMode, TagRule},
    },
    validation::{FieldPath, ValidationError},
};

/// Whether the Mesh has membership rules at all: without them every Dataplane qualifies, and a
/// dataplane registering again unchanged needs no fresh check.
pub fn has_rules(spec: &MeshSpec) -> bool {
    spec.constraints
        .as_ref()
        .and_then(|c| c.dataplane_proxy.as_ref())
        .is_some()
}

/// Refuses `dp` in mesh `mesh` when Kuma would, naming the tags that do not qualify.
pub(super) fn check(
    mesh: &str,
    spec: &MeshSpec,
    dp: &DataplaneSpec,
    zone: Option<&str>,
) -> Result<(), ValidationError> {
    let Some(c) = spec
        .constraints
        .as_ref()
        .and_then(|c| c.dataplane_proxy.as_ref())
    else {
        return Ok(());
    };
    let requirements = c.requirements.as_deref().unwrap_or_default();
    let restrictions = c.restrictions.as_deref().unwrap_or_default();
    let exclusive =
        spec.mesh_services.as_ref().and_then(|m| m.mode) == Some(MeshServicesMode::Exclusive);
    let net = FieldPath::root().field("networking");
    let empty = Tags::new();
    let mut sets: Vec<(FieldPath, Tags)> = Vec::new();
    for (i, inbound) in dp.networking.inbound.iter().flatten().enumerate() {
        let mut tags = inbound.tags.as_ref().unwrap_or(&empty).clone();
        // Kuma leaves untagged inbounds unstamped only in a Mesh of exclusive MeshServices.
        if let Some(z) = zone
            && !(tags.is_empty() && exclusive)
        {
            tags.insert(ZONE_TAG.into(), z.into());
        }
        sets.push((net.field("inbound").index(i).field("tags"), tags));
    }
    if let Some(g) = &dp.networking.gateway {
        let mut tags = g.tags.as_ref().unwrap_or(&empty).clone();
        if let Some(z) = zone {
            tags.insert(ZONE_TAG.into(), z.into());
        }
        sets.push((net.field("gateway").field("tags"), tags));
    }
    for (path, tags) in sets {
        if !requirements.is_empty() && !requirements.iter().any(|r| matches(r, &tags)) {
            return Err(ValidationError::single(
                path,
                format!(
                    "dataplane cannot be a member of mesh {mesh:?} because its tags {:?} does not fulfill any requirements defined on the Mesh",
                    tag_set(&tags)
                ),
            ));
        }
        if let Some(r) = restrictions.iter().find(|r| matches(r, &tags)) {
            return Err(ValidationError::single(
                path,
                format!(
                    "dataplane cannot be a member of mesh {mesh:?} because its tags {:?} matches restricted tags {:?} defined on the Mesh",
                    tag_set(&tags),
                    tag_set(&r.tags)
                ),
            ));
        }
    }
    Ok(())
}

/// Kuma's `matchTags`: every selector tag present with its value, `*` matching any non-empty one.
fn matches(rule: &TagRule, tags: &Tags) -> bool {
    rule.tags.iter().all(|(k, want)| {
        let have = tags.get(k).map(String::as_str).unwrap_or_default();
        (want == "*" && !have.is_empty()) || want == have
    })
}

/// Kuma's `SingleValueTagSet.String`: `name=value` pairs sorted, space-separated.
fn tag_set(tags: &BTreeMap<String, String>) -> String {
    let mut pairs: Vec<String> = tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
    pairs.sort();
    pairs.join(" ")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::model::{Resource, Spec};

    fn mesh(constraints: serde_json::Value) -> MeshSpec {
        match Resource::from_universal(
            &json!({"type": "Mesh", "name": "default", "constraints": {"dataplaneProxy": constraints}}),
        )
        .expect("mesh")
        .spec
        {
            Spec::Mesh(m) => m,
            _ => unreachable!(),
        }
    }

    fn dp(networking: serde_json::Value) -> DataplaneSpec {
        match Resource::from_universal(
            &json!({"type": "Dataplane", "mesh": "default", "name": "dp", "networking": networking}),
        )
        .expect("dataplane")
        .spec
        {
            Spec::Dataplane(d) => d,
            _ => unreachable!(),
        }
    }

    fn refusal(r: Result<(), ValidationError>) -> Option<(String, String)> {
        r.err().map(|e| {
            let v = &e.violations[0];
            (v.field.clone(), v.reason.clone())
        })
    }

    #[test]
    fn requirements_and_restrictions_as_kuma_judges_them() {
        let m = mesh(
            json!({"requirements": [{"tags": {"kuma.io/zone": "east"}}, {"tags": {"team": "*"}}],
            "restrictions": [{"tags": {"kuma.io/service": "legacy"}}]}),
        );
        let web = dp(
            json!({"address": "10.0.0.1", "inbound": [{"port": 80, "tags": {"kuma.io/service": "web"}}]}),
        );
        // The zone's tag, stamped as Kuma's manager stamps it, meets the first requirement.
        assert_eq!(check("default", &m, &web, Some("east")), Ok(()));
        assert_eq!(
            refusal(check("default", &m, &web, Some("west"))),
            Some((
                "networking.inbound[0].tags".into(),
                "dataplane cannot be a member of mesh \"default\" because its tags \"kuma.io/service=web kuma.io/zone=west\" does not fulfill any requirements defined on the Mesh".into()
            ))
        );
        let teamed = dp(
            json!({"address": "10.0.0.1", "inbound": [{"port": 80, "tags": {"kuma.io/service": "web", "team": "a"}}]}),
        );
        assert_eq!(check("default", &m, &teamed, Some("west")), Ok(()));
        let legacy =
            dp(json!({"address": "10.0.0.1", "gateway": {"tags": {"kuma.io/service": "legacy"}}}));
        assert_eq!(
            refusal(check("default", &m, &legacy, Some("east"))),
            Some((
                "networking.gateway.tags".into(),
                "dataplane cannot be a member of mesh \"default\" because its tags \"kuma.io/service=legacy kuma.io/zone=east\" matches restricted tags \"kuma.io/service=legacy\" defined on the Mesh".into()
            ))
        );
        // Nothing to judge without tag sets, or without constraints.
        let outbound_only = dp(
            json!({"address": "10.0.0.1", "outbound": [{"port": 1, "tags": {"kuma.io/service": "x"}}]}),
        );
        assert_eq!(check("default", &m, &outbound_only, None), Ok(()));
        assert_eq!(check("default", &MeshSpec::default(), &web, None), Ok(()));
    }
}
