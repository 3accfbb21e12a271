//! Deletes with Kuma's protections: Secrets in use by a backend, Meshes with dataplanes, connected Zones.

use chrono::Utc;

use crate::{
    model::{ResourceKey, ResourceKind, Spec, zone::ZONE_INSIGHT_MAX_AGE},
    store::{ListQuery, StoreError, WriteOp},
    validation::ValidationError,
};

use super::{DeleteOptions, ManagerError, ResourceManager};

impl ResourceManager {
    pub async fn delete(&self, key: &ResourceKey, opts: DeleteOptions) -> Result<(), ManagerError> {
        self.check_writable(key.kind)?;
        let Some(current) = self.store.get(key).await? else {
            return Err(ManagerError::NotFound(key.clone()));
        };
        match key.kind {
            ResourceKind::Secret => self.check_secret_unused(key).await?,
            ResourceKind::Mesh if !opts.force => self.check_mesh_empty(&key.name).await?,
            ResourceKind::Zone => self.check_zone_offline(&key.name).await?,
            _ => {}
        }
        match self
            .store
            .write(vec![WriteOp::Delete {
                key: key.clone(),
                expected_version: opts.expected_version,
            }])
            .await
        {
            Ok(_) => {
                // Let backends drop cached clients of a deleted Mesh (Vault sessions renew tokens).
                if let Ok(r) = current.to_resource()
                    && let Spec::Mesh(m) = r.spec
                {
                    self.ca.release_removed(&key.name, &m, None);
                }
                Ok(())
            }
            Err(StoreError::NotFound(k)) => Err(ManagerError::NotFound(k)),
            Err(e) => Err(e.into()),
        }
    }

    async fn check_secret_unused(&self, key: &ResourceKey) -> Result<(), ManagerError> {
        let Some((mesh, _)) = self.get(&ResourceKey::mesh(key.mesh.clone())).await? else {
            return Ok(());
        };
        let Spec::Mesh(spec) = &mesh.spec else {
            return Ok(());
        };
        for backend in spec.backends() {
            let Some(ca) = self.ca.get(backend.backend_type) else {
                continue;
            };
            if ca.used_secrets(&key.mesh, backend).contains(&key.name) {
                return Err(ManagerError::Invalid(ValidationError::single(
                    "name",
                    format!(
                        "The secret {:?} that you are trying to remove is currently in use in Mesh {:?} in mTLS backend {:?}. Please remove the reference from the {:?} backend before removing the secret.",
                        key.name, key.mesh, backend.name, backend.name
                    ),
                )));
            }
        }
        Ok(())
    }

    async fn check_mesh_empty(&self, mesh: &str) -> Result<(), ManagerError> {
        let q = ListQuery {
            kind: ResourceKind::Dataplane,
            mesh: Some(mesh.to_string()),
            offset: 0,
            limit: Some(1),
        };
        if self.store.list(&q).await?.total > 0 {
            return Err(ManagerError::Invalid(ValidationError::single(
                "mesh",
                "unable to delete mesh, there are still some dataplanes attached",
            )));
        }
        Ok(())
    }

    async fn check_zone_offline(&self, zone: &str) -> Result<(), ManagerError> {
        let key = ResourceKey::global(ResourceKind::ZoneInsight, zone);
        if let Some((insight, _)) = self.get(&key).await?
            && matches!(&insight.spec, Spec::ZoneInsight(z) if z.is_online_at(Utc::now(), ZONE_INSIGHT_MAX_AGE))
        {
            return Err(ManagerError::Invalid(ValidationError::single(
                "zone",
                "unable to delete Zone, Zone CP is still connected, please shut it down first",
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chrono::{DateTime, TimeDelta, Utc};

    use crate::{
        ca::CaRegistry,
        datasource::StoreLoader,
        manager::{DeleteOptions, ManagerError, Mode, ResourceManager},
        model::{
            Meta, Resource, ResourceKey, ResourceKind, Spec, ZoneInsightSpec, ZoneSpec,
            zone::KdsSubscription,
        },
        store::{ResourceStore, WriteOp, memory::MemoryStore},
    };

    async fn zone_last_seen(seen: DateTime<Utc>) -> (ResourceManager, ResourceKey) {
        let store: Arc<dyn ResourceStore> = Arc::new(MemoryStore::new());
        let zone = ResourceKey::global(ResourceKind::Zone, "east");
        let meta = Meta {
            name: "east".into(),
            ..Default::default()
        };
        let z = Resource::new(meta.clone(), Spec::Zone(ZoneSpec::default()));
        // Connected an hour ago, never disconnected, last proved alive at `seen`.
        let insight = Resource::new(
            meta,
            Spec::ZoneInsight(ZoneInsightSpec {
                subscriptions: vec![KdsSubscription {
                    id: "s".into(),
                    connect_time: Utc::now() - TimeDelta::hours(1),
                    last_seen_time: Some(seen),
                    ..Default::default()
                }],
            }),
        );
        store
            .write(vec![
                WriteOp::create(&z, None),
                WriteOp::create(&insight, Some(zone.clone())),
            ])
            .await
            .expect("seeded");
        let loader = Arc::new(StoreLoader::new(store.clone()));
        let m = ResourceManager::new(store, CaRegistry::new(), loader, Mode::Global);
        (m, zone)
    }

    #[tokio::test]
    async fn a_connected_zone_is_protected_until_its_insight_goes_stale() {
        let (m, zone) = zone_last_seen(Utc::now() - TimeDelta::seconds(5)).await;
        let refused = m.delete(&zone, DeleteOptions::default()).await;
        assert!(
            matches!(&refused, Err(ManagerError::Invalid(e)) if e.to_string().contains("still connected")),
            "{refused:?}"
        );

        // Its replica died without recording the disconnect: no heartbeat for a minute.
        let (m, zone) = zone_last_seen(Utc::now() - TimeDelta::seconds(60)).await;
        m.delete(&zone, DeleteOptions::default())
            .await
            .expect("a stale zone can be deleted");
    }
}
