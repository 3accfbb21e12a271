//! Mesh-specific rules: every CA backend is validated (unless `skipValidation`) and its CA material
//! ensured, in the same transaction as the Mesh write.

use chrono::Utc;

use crate::{
    ca::MeshCa,
    model::{
        MeshSpec, Meta, Resource, ResourceKey, ResourceKind, Spec,
        mesh_validation::{
            BackendValidation, MeshValidationSpec, ValidationIssue, ValidationOutcome,
        },
    },
    store::WriteOp,
    validation::{FieldPath, ValidationError},
};

use super::{ManagerError, ResourceManager};

impl ResourceManager {
    /// Validates the Mesh's backends and returns the writes that create missing CA material, plus
    /// warnings for the client. `old` is the stored Mesh an update replaces: a backend it already
    /// had never gets new CA material, since a new CA would silently break the trust of every
    /// dataplane in the Mesh; its missing material is reported instead. How each backend's
    /// validation went is pushed to `outcomes`, whether or not the write goes ahead.
    pub(super) async fn prepare_mesh(
        &self,
        mesh: &str,
        spec: &MeshSpec,
        old: Option<&MeshSpec>,
        outcomes: &mut Vec<BackendValidation>,
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
                outcomes.push(BackendValidation::new(
                    backend,
                    Utc::now(),
                    ValidationOutcome::Skipped,
                ));
                continue;
            }
            let span = tracing::info_span!("validate_backend", mesh, backend = %backend.name, backend_type = backend.backend_type.name());
            let result = tracing::Instrument::instrument(ca.validate(&ctx, backend), span).await;
            match result {
                Ok(w) => {
                    let mut entry =
                        BackendValidation::new(backend, Utc::now(), ValidationOutcome::Ok);
                    entry.warnings = w.clone();
                    outcomes.push(entry);
                    warnings.extend(
                        w.into_iter()
                            .map(|w| format!("mtls.backends[{i}] ({}): {w}", backend.name)),
                    );
                }
                Err(e) => {
                    let mut entry =
                        BackendValidation::new(backend, Utc::now(), ValidationOutcome::Failed);
                    let conf = backends_path.index(i).field("conf");
                    for v in e.violations {
                        let field = if v.field.is_empty() {
                            conf.to_string()
                        } else {
                            format!("{conf}.{}", v.field)
                        };
                        entry.errors.push(ValidationIssue {
                            field: field.clone(),
                            reason: v.reason.clone(),
                        });
                        errors.add(field, v.reason);
                    }
                    outcomes.push(entry);
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

impl ResourceManager {
    fn validation_key(mesh: &str) -> ResourceKey {
        ResourceKey::global(ResourceKind::MeshValidation, mesh)
    }

    async fn stored_validation(&self, mesh: &str) -> Result<MeshValidationSpec, ManagerError> {
        Ok(match self.store.get(&Self::validation_key(mesh)).await? {
            Some(rec) => match rec.to_resource().map(|r| r.spec) {
                Ok(Spec::MeshValidation(v)) => v,
                // An unreadable record is only a report: the next validation replaces it.
                _ => MeshValidationSpec::default(),
            },
            None => MeshValidationSpec::default(),
        })
    }

    fn validation_write(mesh: &str, spec: MeshValidationSpec) -> WriteOp {
        let r = Resource::new(
            Meta {
                name: mesh.to_string(),
                ..Default::default()
            },
            Spec::MeshValidation(spec),
        );
        WriteOp::upsert(&r, Some(ResourceKey::mesh(mesh)))
    }

    /// The write that records a stored Mesh's validation, in the Mesh's own batch; `None` when
    /// there is nothing to record or remove.
    pub(super) async fn validation_op(
        &self,
        mesh: &str,
        spec: &MeshSpec,
        mut outcomes: Vec<BackendValidation>,
    ) -> Result<Option<WriteOp>, ManagerError> {
        for o in &mut outcomes {
            o.stored = true;
        }
        let before = self.stored_validation(mesh).await?;
        if outcomes.is_empty() && before.backends.is_empty() {
            return Ok(None);
        }
        let merged = before.merged(outcomes, Some(spec));
        Ok(Some(Self::validation_write(mesh, merged)))
    }

    /// Records a refused write's backend failures on the Mesh it did not change, so the console
    /// can say what Vault answered. Best effort: the refusal itself is what the client hears.
    pub(super) async fn record_refused(&self, mesh: &str, outcomes: Vec<BackendValidation>) {
        if !outcomes
            .iter()
            .any(|o| o.outcome == ValidationOutcome::Failed)
        {
            return;
        }
        let result = async {
            let merged = self.stored_validation(mesh).await?.merged(outcomes, None);
            self.store
                .write(vec![Self::validation_write(mesh, merged)])
                .await
                .map_err(ManagerError::from)
        }
        .await;
        match result {
            // The Mesh does not exist (a refused create): there is nothing to show it on.
            Ok(_) | Err(ManagerError::Invalid(_)) => {}
            Err(e) => {
                tracing::warn!(mesh, error = %e, "could not record a refused validation for the console");
            }
        }
    }
}
