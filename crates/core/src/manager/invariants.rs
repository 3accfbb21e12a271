//! The store invariant between Meshes and the Secrets their CA backends use, checked at start by
//! global and by each zone: every Secret a backend reads (a builtin CA's cert and key above all)
//! exists, and no Secret exists without its Mesh. A violation is reported with what to do; nothing
//! here repairs it, since regenerating a CA for an existing Mesh would silently break the trust of
//! every dataplane in it.

use std::collections::BTreeSet;

use crate::{
    ca::CaRegistry,
    model::{BackendType, ResourceKind, Spec},
    store::{ResourceStore, Selection, StoreError},
};

/// One broken invariant, with the operator's way out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub mesh: String,
    /// The backend whose material is missing; `None` for a Secret without its Mesh.
    pub backend: Option<String>,
    pub problem: String,
    pub fix: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}; to fix: {}", self.problem, self.fix)
    }
}

/// Reads every Mesh and Secret in one snapshot (so a write committing meanwhile cannot look like a
/// violation) and lists what is broken. Secret values are read only to be dropped: names are all
/// that is compared or reported.
pub async fn check_ca_material(
    store: &dyn ResourceStore,
    ca: &CaRegistry,
) -> Result<Vec<Violation>, StoreError> {
    let recs = store
        .snapshot(&Selection::kinds(&[
            ResourceKind::Mesh,
            ResourceKind::Secret,
        ]))
        .await?;
    let secrets: BTreeSet<(&str, &str)> = recs
        .iter()
        .filter(|r| r.key.kind == ResourceKind::Secret)
        .map(|r| (r.key.mesh.as_str(), r.key.name.as_str()))
        .collect();
    let meshes: BTreeSet<&str> = recs
        .iter()
        .filter(|r| r.key.kind == ResourceKind::Mesh)
        .map(|r| r.key.name.as_str())
        .collect();
    let mut out = Vec::new();
    for rec in recs.iter().filter(|r| r.key.kind == ResourceKind::Mesh) {
        let mesh = rec.key.name.as_str();
        let spec = rec.to_resource().map(|r| r.spec);
        let Ok(Spec::Mesh(spec)) = spec else {
            // Say why: after an upgrade whose validation is stricter, the reason is the fix.
            let why = spec.err().map(|e| format!(": {e}")).unwrap_or_default();
            out.push(Violation {
                mesh: mesh.into(),
                backend: None,
                problem: format!("Mesh {mesh:?} is stored in a form that cannot be read{why}"),
                fix: "re-apply the Mesh from its source YAML".into(),
            });
            continue;
        };
        for backend in spec.backends() {
            let Some(backend_ca) = ca.get(backend.backend_type) else {
                continue;
            };
            let missing: Vec<String> = backend_ca
                .used_secrets(mesh, backend)
                .into_iter()
                .filter(|s| !secrets.contains(&(mesh, s.as_str())))
                .collect();
            if missing.is_empty() {
                continue;
            }
            let (problem, fix) = if backend.backend_type == BackendType::Builtin {
                (
                    format!(
                        "Mesh {mesh:?}: builtin CA backend {:?} lacks its CA Secret(s) {}",
                        backend.name,
                        quoted(&missing)
                    ),
                                            "restore the missing Secret(s) from a backup of this CA (meshctl apply -f); \
                         the CA is not regenerated, because a new one would break the trust of every \
                         dataplane in the Mesh. To start over with a new CA on purpose, add a builtin \
                         backend under a new name and switch enabledBackend to it (CA rotation)"
                    .to_string(),
                )
            } else {
                (
                    format!(
                        "Mesh {mesh:?}: {} backend {:?} reads Secret(s) {} that do not exist",
                        backend.backend_type.name(),
                        backend.name,
                        quoted(&missing)
                    ),
                    "create the Secret(s) again (meshctl apply -f), or change the backend's conf to \
                     Secrets that exist"
                        .to_string(),
                )
            };
            out.push(Violation {
                mesh: mesh.into(),
                backend: Some(backend.name.clone()),
                problem,
                fix,
            });
        }
    }
    let orphans: BTreeSet<&str> = secrets
        .iter()
        .filter(|(m, _)| !meshes.contains(m))
        .map(|(m, _)| *m)
        .collect();
    for mesh in orphans {
        let names: Vec<String> = secrets
            .iter()
            .filter(|(m, _)| *m == mesh)
            .map(|(_, n)| n.to_string())
            .collect();
        out.push(Violation {
            mesh: mesh.into(),
            backend: None,
            problem: format!(
                "Secret(s) {} of mesh {mesh:?} exist without their Mesh",
                quoted(&names)
            ),
            fix: format!(
                "re-create Mesh {mesh:?} with the backends these Secrets belong to (an existing \
                 builtin CA is picked up again, not replaced), or delete the Secrets if the Mesh is \
                 gone for good"
            ),
        });
    }
    Ok(out)
}

/// Checks the store and reports what it found (see [`report`]); returns how many violations there
/// were. What global and every zone run at start.
pub async fn check_and_report(
    store: &dyn ResourceStore,
    ca: &CaRegistry,
    at: &str,
) -> Result<usize, StoreError> {
    Ok(report(&check_ca_material(store, ca).await?, at))
}

/// Logs every violation at ERROR with what to do, and a summary line; returns how many there were.
pub fn report(violations: &[Violation], at: &str) -> usize {
    for v in violations {
        tracing::error!(
            mesh = %v.mesh,
            backend = v.backend.as_deref().unwrap_or(""),
            problem = %v.problem,
            fix = %v.fix,
            "store invariant violated at {at}: a Mesh and the Secrets of its CA do not match"
        );
    }
    if violations.is_empty() {
        tracing::info!("checked the store: every Mesh has the Secrets its CA backends read");
    } else {
        tracing::error!(
            violations = violations.len(),
            "the store holds Meshes whose CA material is missing or Secrets without their Mesh; \
             dataplanes of those Meshes get no new certificates until it is fixed (see the errors above)"
        );
    }
    violations.len()
}

fn quoted(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("{n:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use std::{collections::BTreeMap, sync::Arc};

    use serde_json::json;

    use super::*;
    use crate::{
        ca::{CaBackend, CaError, IssuedCert, LeafRequest, MeshCa},
        model::{Backend, Resource, ResourceKey},
        store::{WriteOp, memory::MemoryStore},
        validation::ValidationError,
    };

    /// Reads `<mesh>.ca-builtin-{cert,key}-<backend>`, as the real builtin backend does.
    struct Builtin;

    #[async_trait::async_trait]
    impl CaBackend for Builtin {
        fn backend_type(&self) -> BackendType {
            BackendType::Builtin
        }
        async fn validate(
            &self,
            _: &MeshCa<'_>,
            _: &Backend,
        ) -> Result<Vec<String>, ValidationError> {
            Ok(vec![])
        }
        async fn ensure(&self, _: &MeshCa<'_>, _: &Backend) -> Result<Vec<Resource>, CaError> {
            Ok(vec![])
        }
        fn used_secrets(&self, mesh: &str, b: &Backend) -> Vec<String> {
            vec![
                crate::model::resource::builtin_cert_secret_name(mesh, &b.name),
                crate::model::resource::builtin_key_secret_name(mesh, &b.name),
            ]
        }
        async fn root_certs(&self, _: &MeshCa<'_>, _: &Backend) -> Result<Vec<String>, CaError> {
            Ok(vec![])
        }
        async fn issue(
            &self,
            ca: &MeshCa<'_>,
            b: &Backend,
            _: &LeafRequest,
        ) -> Result<IssuedCert, CaError> {
            Err(CaError::config(ca.mesh, &b.name, "not in this test"))
        }
    }

    fn registry_with_builtin_names() -> CaRegistry {
        let mut reg = CaRegistry::new();
        reg.register(Arc::new(Builtin));
        reg
    }

    fn mesh(name: &str) -> WriteOp {
        let r = Resource::from_universal(&json!({"type": "Mesh", "name": name,
            "mtls": {"enabledBackend": "ca-1", "backends": [{"name": "ca-1", "type": "builtin"}]}}))
        .expect("mesh");
        WriteOp::create(&r, None)
    }

    fn secret(mesh: &str, name: &str, owned: bool) -> WriteOp {
        WriteOp::Create {
            key: ResourceKey::in_mesh(ResourceKind::Secret, mesh, name),
            spec: json!({"data": "c2VjcmV0"}),
            labels: BTreeMap::new(),
            owner: owned.then(|| ResourceKey::mesh(mesh)),
        }
    }

    #[tokio::test]
    async fn whole_meshes_pass_and_each_kind_of_break_is_named() {
        let store = Arc::new(MemoryStore::new());
        store
            .write(vec![
                mesh("whole"),
                secret("whole", "whole.ca-builtin-cert-ca-1", true),
                secret("whole", "whole.ca-builtin-key-ca-1", true),
                mesh("half"),
                secret("half", "half.ca-builtin-cert-ca-1", true),
                mesh("bare"),
                // Only a store without owner keys (or a hand edit) can hold this.
                secret("gone", "gone.ca-builtin-cert-ca-1", false),
            ])
            .await
            .expect("seed");
        let ca = registry_with_builtin_names();
        let v = check_ca_material(store.as_ref(), &ca).await.expect("check");
        let by_mesh: BTreeMap<&str, &Violation> = v.iter().map(|v| (v.mesh.as_str(), v)).collect();
        assert_eq!(by_mesh.len(), 3, "{v:#?}");
        assert!(!by_mesh.contains_key("whole"));
        let half = by_mesh["half"];
        assert!(
            half.problem.contains("half.ca-builtin-key-ca-1")
                && !half.problem.contains("half.ca-builtin-cert-ca-1"),
            "{half}"
        );
        assert!(half.fix.contains("restore"), "{half}");
        assert!(
            by_mesh["bare"]
                .problem
                .contains("bare.ca-builtin-cert-ca-1")
        );
        assert!(by_mesh["bare"].problem.contains("bare.ca-builtin-key-ca-1"));
        let gone = by_mesh["gone"];
        assert_eq!(gone.backend, None);
        assert!(gone.problem.contains("without their Mesh"), "{gone}");
        assert_eq!(report(&v, "test"), 3);
        let text = format!("{v:?}");
        assert!(!text.contains("c2VjcmV0"), "no Secret value in a report");
    }
}
