//! Deletes with Kuma's protections: Secrets in use by a backend, Meshes with dataplanes, connected Zones.

use crate::{
    model::{ResourceKey, ResourceKind, Spec},
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
                    for b in m.backends() {
                        if let Some(ca) = self.ca.get(b.backend_type) {
                            ca.release(&key.name, &b.name);
                        }
                    }
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
            && matches!(&insight.spec, Spec::ZoneInsight(z) if z.is_online())
        {
            return Err(ManagerError::Invalid(ValidationError::single(
                "zone",
                "unable to delete Zone, Zone CP is still connected, please shut it down first",
            )));
        }
        Ok(())
    }
}
