//! What a zone sends to global and how it stores what global sends.

use std::collections::BTreeMap;

use meshplane_core::{
    model::{ResourceKey, ResourceKind, resource::ORIGIN_LABEL},
    store::{Record, ResourceStore, Selection, StoreError},
};

use crate::{
    apply::{Placement, Policy},
    link::Outbound,
    proto,
    version::version_of,
    view::{GLOBAL_TO_ZONE, Item, ZONE_TO_GLOBAL, ref_of, zone_to_global},
};

pub struct ZoneOutbound {
    pub zone: String,
}

impl Outbound for ZoneOutbound {
    fn view_key(&self, key: &ResourceKey) -> Option<ResourceKey> {
        ZONE_TO_GLOBAL.contains(&key.kind).then(|| key.clone())
    }

    fn select(&self, view_keys: &[ResourceKey]) -> Selection {
        Selection {
            kinds: Vec::new(),
            keys: view_keys.to_vec(),
            ..Default::default()
        }
    }

    fn kinds(&self) -> &'static [ResourceKind] {
        &ZONE_TO_GLOBAL
    }

    fn item(&self, rec: &Record) -> Option<Item> {
        zone_to_global(rec, &self.zone)
    }
}

/// Stores global's resources as sent; mesh Secrets are owned by their Mesh so they go with it.
pub struct ZonePolicy;

impl Policy for ZonePolicy {
    fn place_upsert(
        &self,
        key: &ResourceKey,
        labels: BTreeMap<String, String>,
    ) -> Result<Placement, String> {
        if !GLOBAL_TO_ZONE.contains(&key.kind) {
            return Err(format!(
                "zones do not accept {} resources from global",
                key.kind
            ));
        }
        Ok(Placement {
            key: key.clone(),
            labels,
            owner: meshplane_core::manager::owner_of(key),
        })
    }

    fn place_removal(&self, key: &ResourceKey) -> Result<ResourceKey, String> {
        if !GLOBAL_TO_ZONE.contains(&key.kind) {
            return Err(format!(
                "zones do not accept {} removals from global",
                key.kind
            ));
        }
        Ok(key.clone())
    }
}

/// What the zone holds of global's resources (for the Hello).
pub async fn held_from_global(
    store: &dyn ResourceStore,
) -> Result<Vec<proto::KnownVersion>, StoreError> {
    let mut out = Vec::new();
    for kind in GLOBAL_TO_ZONE {
        for rec in store
            .list(&meshplane_core::store::ListQuery::all(kind))
            .await?
            .items
        {
            if rec.labels.get(ORIGIN_LABEL).map(String::as_str) == Some("global") {
                out.push(proto::KnownVersion {
                    r#ref: Some(ref_of(&rec.key)),
                    version: version_of(&rec.labels, &rec.spec),
                });
            }
        }
    }
    Ok(out)
}
