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
    /// warnings for the client.
    pub(super) async fn prepare_mesh(
        &self,
        mesh: &str,
        spec: &MeshSpec,
    ) -> Result<(Vec<WriteOp>, Vec<String>), ManagerError> {
        let ctx = MeshCa {
            mesh,
            loader: self.loader.as_ref(),
        };
        let mut errors = ValidationError::new();
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
        errors.into_result().map_err(ManagerError::Invalid)?;

        let mut ops = Vec::new();
        for (i, backend) in spec.backends().iter().enumerate() {
            let Some(ca) = self.ca.get(backend.backend_type) else {
                continue;
            };
            let created: Vec<Resource> = ca.ensure(&ctx, backend).await.map_err(|e| {
                ManagerError::Invalid(ValidationError::single(
                    backends_path.index(i).field("conf"),
                    e.message().to_string(),
                ))
            })?;
            for r in created {
                let owner = Some(crate::model::ResourceKey::mesh(mesh));
                ops.push(WriteOp::create(&r, owner));
            }
        }
        Ok((ops, warnings))
    }
}
