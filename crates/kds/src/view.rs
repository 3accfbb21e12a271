//! What crosses the wire in each direction, and how names and labels change on the way.
//!
//! Global -> zone: Meshes, mesh Secrets, and only the GlobalSecrets zones need: the PUBLIC keys of the
//! dataplane and user token families (derived from the private signing keys, which never leave
//! global) and those families' revocation lists.
//! Zone -> global: Dataplanes and DataplaneInsights, renamed `<zone>.<name>` at global and owned by
//! the Zone resource there, so deleting a Zone deletes what it reported.

use std::collections::BTreeMap;

use meshplane_core::{
    model::{
        ResourceKey, ResourceKind, Spec,
        resource::{ORIGIN_LABEL, ZONE_LABEL},
    },
    store::Record,
    tokens::{TokenKind, parse_signing_key_name, public_key_pem},
};
use serde_json::Value;

use crate::{proto, version::version_of};

/// Label with the name a zone-reported resource has in its zone.
pub const DISPLAY_NAME_LABEL: &str = "kuma.io/display-name";

/// Kinds global sends to zones.
pub const GLOBAL_TO_ZONE: [ResourceKind; 3] = [
    ResourceKind::Mesh,
    ResourceKind::Secret,
    ResourceKind::GlobalSecret,
];
/// Kinds zones send to global.
pub const ZONE_TO_GLOBAL: [ResourceKind; 2] =
    [ResourceKind::Dataplane, ResourceKind::DataplaneInsight];

/// One resource as the receiver will store it.
#[derive(Clone, Debug, PartialEq)]
pub struct Item {
    pub key: ResourceKey,
    pub labels: BTreeMap<String, String>,
    pub spec: Value,
    pub version: String,
}

impl Item {
    pub fn new(key: ResourceKey, labels: BTreeMap<String, String>, spec: Value) -> Self {
        let version = version_of(&labels, &spec);
        Self {
            key,
            labels,
            spec,
            version,
        }
    }

    pub fn to_proto(&self) -> proto::Resource {
        proto::Resource {
            r#ref: Some(ref_of(&self.key)),
            version: self.version.clone(),
            labels: self.labels.clone().into_iter().collect(),
            spec: serde_json::to_vec(&self.spec).unwrap_or_default(),
        }
    }
}

pub fn ref_of(key: &ResourceKey) -> proto::ResourceRef {
    proto::ResourceRef {
        r#type: key.kind.name().to_string(),
        mesh: key.mesh.clone(),
        name: key.name.clone(),
    }
}

/// The key a ref names, if its type is known and its scope right.
pub fn key_of(r: &proto::ResourceRef) -> Result<ResourceKey, String> {
    let kind = ResourceKind::from_name(&r.r#type)
        .ok_or_else(|| format!("unknown resource type {:?}", r.r#type))?;
    if kind.is_mesh_scoped() == r.mesh.is_empty() {
        return Err(format!(
            "{kind} {:?}: mesh {:?} does not fit the kind's scope",
            r.name, r.mesh
        ));
    }
    Ok(ResourceKey {
        kind,
        mesh: r.mesh.clone(),
        name: r.name.clone(),
    })
}

fn global_labels(rec: &Record) -> BTreeMap<String, String> {
    let mut labels = rec.labels.clone();
    labels.insert(ORIGIN_LABEL.into(), "global".into());
    labels
}

/// What a zone receives for a global store record, or `None` when it does not flow.
pub fn global_to_zone(rec: &Record) -> Option<Item> {
    match rec.key.kind {
        ResourceKind::Mesh | ResourceKind::Secret => Some(Item::new(
            rec.key.clone(),
            global_labels(rec),
            rec.spec.clone(),
        )),
        ResourceKind::GlobalSecret => global_secret_view(rec),
        _ => None,
    }
}

/// Zones get public keys instead of the private signing keys, and the revocation lists of the token
/// families they verify. Every other GlobalSecret stays at global.
fn global_secret_view(rec: &Record) -> Option<Item> {
    let verified_at_zones = |k: TokenKind| matches!(k, TokenKind::Dataplane | TokenKind::User);
    if let Some((kind, kid)) = parse_signing_key_name(&rec.key.name) {
        if !verified_at_zones(kind) {
            return None;
        }
        let Spec::GlobalSecret(s) = rec.to_resource().ok()?.spec else {
            return None;
        };
        let private = String::from_utf8(s.data.bytes().to_vec()).ok()?;
        let public = public_key_pem(&private).ok()?;
        let spec = Spec::GlobalSecret(meshplane_core::model::SecretSpec {
            data: meshplane_core::model::SecretData::new(public.into_bytes()),
        })
        .to_json();
        let key = ResourceKey::global(ResourceKind::GlobalSecret, kind.public_key_name(kid));
        return Some(Item::new(key, global_labels(rec), spec));
    }
    let is_revocation = TokenKind::all()
        .into_iter()
        .any(|k| verified_at_zones(k) && rec.key.name == k.revocations_name());
    is_revocation.then(|| Item::new(rec.key.clone(), global_labels(rec), rec.spec.clone()))
}

/// The global store key a view key maps back to (for events on signing keys).
pub fn global_view_key(key: &ResourceKey) -> Option<ResourceKey> {
    if key.kind == ResourceKind::GlobalSecret
        && let Some((kind, kid)) = parse_signing_key_name(&key.name)
    {
        return Some(ResourceKey::global(
            ResourceKind::GlobalSecret,
            kind.public_key_name(kid),
        ));
    }
    GLOBAL_TO_ZONE.contains(&key.kind).then(|| key.clone())
}

/// The resource a synced resource belongs to and that the receiver must hold first: a mesh-scoped
/// resource's Mesh.
pub fn owner_of(key: &ResourceKey) -> Option<ResourceKey> {
    meshplane_core::manager::owner_of(key)
}

/// The sync group of a resource: a Mesh and everything in it. The members of a group that are
/// sent together go in one push, which the receiver applies in one transaction, so a Mesh never
/// lands without the CA Secrets its write created.
pub fn sync_group(key: &ResourceKey) -> Option<&str> {
    if key.kind == ResourceKind::Mesh {
        Some(&key.name)
    } else if key.kind.is_mesh_scoped() {
        Some(&key.mesh)
    } else {
        None
    }
}

/// Whether other synced resources belong to this one (it is a Mesh).
pub fn is_owner(key: &ResourceKey) -> bool {
    key.kind == ResourceKind::Mesh
}

/// What global receives for a zone store record (named as in the zone), or `None`.
pub fn zone_to_global(rec: &Record, zone: &str) -> Option<Item> {
    if !ZONE_TO_GLOBAL.contains(&rec.key.kind) {
        return None;
    }
    let mut labels = rec.labels.clone();
    labels.insert(ORIGIN_LABEL.into(), "zone".into());
    labels.insert(ZONE_LABEL.into(), zone.into());
    labels.insert(DISPLAY_NAME_LABEL.into(), rec.key.name.clone());
    Some(Item::new(rec.key.clone(), labels, rec.spec.clone()))
}

/// `<zone>.<name>`: the name at global of a resource a zone reported.
pub fn global_name(zone: &str, name: &str) -> String {
    format!("{zone}.{name}")
}

/// The zone-local name of a global record reported by `zone`.
pub fn zone_local_name<'a>(zone: &str, global: &'a str) -> Option<&'a str> {
    global.strip_prefix(zone)?.strip_prefix('.')
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use serde_json::json;

    fn rec(kind: ResourceKind, name: &str, spec: Value) -> Record {
        Record {
            key: ResourceKey::global(kind, name),
            version: 1,
            spec,
            labels: BTreeMap::new(),
            owner: None,
            creation_time: Utc::now(),
            modification_time: Utc::now(),
        }
    }

    #[test]
    fn private_keys_never_flow() {
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let private = kp.serialize_pem();
        let data = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            private.as_bytes(),
        );
        for (name, flows) in [
            (
                "dataplane-token-signing-key-1",
                Some("dataplane-token-signing-public-key-1"),
            ),
            (
                "user-token-signing-key-2",
                Some("user-token-signing-public-key-2"),
            ),
            ("zone-token-signing-key-1", None),
            ("some-user-secret", None),
            ("zone-token-revocations", None),
        ] {
            let out = global_to_zone(&rec(
                ResourceKind::GlobalSecret,
                name,
                json!({"data": data}),
            ));
            assert_eq!(out.as_ref().map(|i| i.key.name.as_str()), flows, "{name}");
            if let Some(item) = out {
                let text = serde_json::to_string(&item.spec).expect("json");
                assert!(
                    !text.contains(&data),
                    "{name}: private key would leave global"
                );
                let Spec::GlobalSecret(s) =
                    Spec::from_json(ResourceKind::GlobalSecret, &item.spec).expect("spec")
                else {
                    panic!()
                };
                assert!(String::from_utf8_lossy(s.data.bytes()).contains("BEGIN PUBLIC KEY"));
            }
        }
        let revs = global_to_zone(&rec(
            ResourceKind::GlobalSecret,
            "dataplane-token-revocations",
            json!({"data": "YQ=="}),
        ));
        assert!(revs.is_some());
    }

    #[test]
    fn zone_names() {
        assert_eq!(global_name("east", "web-1"), "east.web-1");
        assert_eq!(zone_local_name("east", "east.web-1"), Some("web-1"));
        assert_eq!(zone_local_name("east", "eastern.web-1"), None);
    }
}
