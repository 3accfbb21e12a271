//! Mesh-specific rules: every CA backend is validated (unless `skipValidation`) and its CA material
//! ensured, in the same transaction as the Mesh write.

use crate::{
    ca::MeshCa,
    model::{MeshSpec, Resource},
    store::WriteOp,
    validation::{FieldPath, ValidationError},
};

use super::{ManagerError, ResourceManager};

impl ResourceManager {
    /// Validates the Mesh's backends and returns the writes that create missing CA material, plus
    /// warnings for the client. `old` is the stored Mesh an update replaces: a backend it already
    /// had never gets new CA material, since a new CA would silently break the trust of every
    /// dataplane in the Mesh; its missing material is reported instead.
    pub(super) async fn prepare_mesh(
        &self,
        mesh: &str,
        spec: &MeshSpec,
        old: Option<&MeshSpec>,
    ) -> Result<(Vec<WriteOp>, Vec<String>), ManagerError> {
        let ctx = MeshCa {
            mesh,
            loader: self.loader.as_ref(),
        };
        let mut errors = ValidationError::new();
        if let Some(old) = old {
            errors.extend(super::ca_change::check_enabled_backend_change(old, spec));
        }
        let mut warnings = Vec::new();
        let skip = spec.skip_validation();
        if skip && !spec.backends().is_empty() {
            warnings.push("skipValidation is set: the CA backends were not validated".to_string());
        }
        let backends_path = FieldPath::root().field("mtls").field("backends");
        for (i, backend) in spec.backends().iter().enumerate() {
            let Some(ca) = self.ca.get(backend.backend_type) else {
                errors.add(
                    backends_path.index(i).field("type"),
                    "could not find installed plugin for this type",
                );
                continue;
            };
            if skip {
                continue;
            }
            let span = tracing::info_span!("validate_backend", mesh, backend = %backend.name, backend_type = backend.backend_type.name());
            let result = tracing::Instrument::instrument(ca.validate(&ctx, backend), span).await;
            let result = match result {
                Ok(w) => {
                    warnings.extend(
                        w.into_iter()
                            .map(|w| format!("mtls.backends[{i}] ({}): {w}", backend.name)),
                    );
                    Ok(())
                }
                Err(e) => Err(e),
            };
            if let Err(e) = result {
                let conf = backends_path.index(i).field("conf");
                for v in e.violations {
                    let field = if v.field.is_empty() {
                        conf.to_string()
                    } else {
                        format!("{conf}.{}", v.field)
                    };
                    errors.add(field, v.reason);
                }
            }
        }
        if !errors.is_empty() {
            // A backend that could not read its Secrets because the store is down is not invalid:
            // the client should retry (503), not fix its Mesh (400).
            if let Err(e) = self.store.ping().await {
                return Err(e.into());
            }
        }
        errors.into_result().map_err(ManagerError::Invalid)?;

        let mut ops = Vec::new();
        for (i, backend) in spec.backends().iter().enumerate() {
            let Some(ca) = self.ca.get(backend.backend_type) else {
                continue;
            };
            let created: Vec<Resource> = ca.ensure(&ctx, backend).await.map_err(|e| {
                if e.is_transient() {
                    // The store could not be read (or written) just now: nothing was decided.
                    ManagerError::Unavailable(e.to_string())
                } else {
                    ManagerError::Invalid(ValidationError::single(
                        backends_path.index(i).field("conf"),
                        e.message().to_string(),
                    ))
                }
            })?;
            let existed = old.is_some_and(|o| {
                o.backends()
                    .iter()
                    .any(|b| b.name == backend.name && b.backend_type == backend.backend_type)
            });
            if existed && !created.is_empty() {
                let names: Vec<String> = created
                    .iter()
                    .map(|r| format!("{:?}", r.meta.name))
                    .collect();
                return Err(ManagerError::Invalid(ValidationError::single(
                    backends_path.index(i),
                    format!(
                        "the CA material of this existing backend is missing (Secret {}); it is not \
                         regenerated, because a new CA would break the trust of every dataplane in \
                         the Mesh: restore the Secret from a backup, or add a backend under a new \
                         name to rotate to a new CA",
                        names.join(", ")
                    ),
                )));
            }
            for r in created {
                let owner = Some(crate::model::ResourceKey::mesh(mesh));
                ops.push(WriteOp::create(&r, owner));
            }
        }
        Ok((ops, warnings))
    }
}
