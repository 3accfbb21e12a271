//! What global sends to a zone and how it stores what a zone sends.

use std::collections::BTreeMap;

use meshplane_core::{
    model::{
        ResourceKey, ResourceKind,
        resource::{ORIGIN_LABEL, ZONE_LABEL},
    },
    store::{Record, ResourceStore, Selection, StoreError},
    tokens::TokenKind,
};

use crate::{
    apply::{Placement, Policy},
    link::Outbound,
    proto,
    version::version_of,
    view::{
        DISPLAY_NAME_LABEL, GLOBAL_TO_ZONE, Item, ZONE_TO_GLOBAL, global_name, global_to_zone,
        global_view_key, ref_of, zone_local_name,
    },
};

pub struct GlobalOutbound;

/// The store key behind a view key: public keys are derived from the private signing keys.
fn store_key(view_key: &ResourceKey) -> ResourceKey {
    if view_key.kind == ResourceKind::GlobalSecret {
        for kind in TokenKind::all() {
            if let Some(kid) = view_key
                .name
                .strip_prefix(&format!("{}-signing-public-key-", kind.prefix()))
                && let Ok(kid) = kid.parse::<u32>()
            {
                return ResourceKey::global(ResourceKind::GlobalSecret, kind.signing_key_name(kid));
            }
        }
    }
    view_key.clone()
}

impl Outbound for GlobalOutbound {
    fn view_key(&self, key: &ResourceKey) -> Option<ResourceKey> {
        global_view_key(key)
    }

    /// A Mesh is read with every Secret of its mesh: the CA Secrets its write created reach the
    /// zone in the same push.
    fn select(&self, view_keys: &[ResourceKey]) -> Selection {
        let mut sel = Selection::default();
        for k in view_keys {
            sel.keys.push(store_key(k));
            if k.kind == ResourceKind::Mesh {
                sel.kinds.push((ResourceKind::Secret, Some(k.name.clone())));
            }
        }
        sel
    }

    fn kinds(&self) -> &'static [ResourceKind] {
        &GLOBAL_TO_ZONE
    }

    fn item(&self, rec: &Record) -> Option<Item> {
        global_to_zone(rec)
    }
}

/// Stores a zone's Dataplanes and insights as `<zone>.<name>`, labelled with the zone (whatever the
/// zone claimed) and owned by the Zone resource.
pub struct GlobalPolicy {
    pub zone: String,
}

impl GlobalPolicy {
    fn map(&self, key: &ResourceKey) -> Result<ResourceKey, String> {
        if !ZONE_TO_GLOBAL.contains(&key.kind) {
            return Err(format!(
                "global does not accept {} resources from zones",
                key.kind
            ));
        }
        Ok(ResourceKey {
            kind: key.kind,
            mesh: key.mesh.clone(),
            name: global_name(&self.zone, &key.name),
        })
    }
}

impl Policy for GlobalPolicy {
    fn place_upsert(
        &self,
        key: &ResourceKey,
        mut labels: BTreeMap<String, String>,
    ) -> Result<Placement, String> {
        let global_key = self.map(key)?;
        labels.insert(ZONE_LABEL.into(), self.zone.clone());
        labels.insert(ORIGIN_LABEL.into(), "zone".into());
        labels.insert(DISPLAY_NAME_LABEL.into(), key.name.clone());
        Ok(Placement {
            key: global_key,
            labels,
            owner: Some(ResourceKey::global(ResourceKind::Zone, self.zone.clone())),
        })
    }

    fn place_removal(&self, key: &ResourceKey) -> Result<ResourceKey, String> {
        self.map(key)
    }
}

/// What global holds of `zone`'s resources, under the zone's own names (for the Welcome).
pub async fn zone_known(
    store: &dyn ResourceStore,
    zone: &str,
) -> Result<Vec<proto::KnownVersion>, StoreError> {
    // Read by owner (the Zone owns every record it reported), so a reconnect costs this zone's
    // records, not the whole fleet's: listing every zone's and filtering stalled global when
    // zones reconnected at 100,000 dataplanes (docs/scaling.md).
    let owner = ResourceKey::global(ResourceKind::Zone, zone);
    let sel = meshplane_core::store::Selection {
        owned_by: vec![owner],
        ..Default::default()
    };
    let mut out = Vec::new();
    for rec in store.snapshot(&sel).await? {
        let kind = rec.key.kind;
        if !ZONE_TO_GLOBAL.contains(&kind) {
            continue;
        }
        if rec.labels.get(ZONE_LABEL).map(String::as_str) != Some(zone) {
            continue;
        }
        let Some(local) = zone_local_name(zone, &rec.key.name) else {
            continue;
        };
        let key = ResourceKey {
            kind,
            mesh: rec.key.mesh.clone(),
            name: local.to_string(),
        };
        out.push(proto::KnownVersion {
            r#ref: Some(ref_of(&key)),
            version: version_of(&rec.labels, &rec.spec),
        });
    }
    Ok(out)
}
