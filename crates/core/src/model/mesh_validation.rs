//! `MeshValidation`: how each CA backend of a Mesh fared the last time a write of that Mesh validated
//! it (Vault issued a test certificate, or said why not), with the warnings and Vault's own message.
//! Written by the control plane that validates Meshes (global, a standalone zone), owned by the
//! Mesh, never synced and never served as a resource: the console reads it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::mesh::{Backend, MeshSpec};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MeshValidationSpec {
    /// One entry per backend name, in the order of the last write that named it.
    #[serde(default)]
    pub backends: Vec<BackendValidation>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ValidationOutcome {
    /// The backend worked (for Vault: a test certificate was issued).
    Ok,
    /// The backend refused or could not be reached; the write was refused.
    Failed,
    /// `skipValidation` was set: nothing was checked.
    Skipped,
}

/// The last validation of one backend.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackendValidation {
    pub name: String,
    #[serde(rename = "type")]
    pub backend_type: String,
    pub time: DateTime<Utc>,
    pub outcome: ValidationOutcome,
    /// Whether the write it validated was stored (a write is refused when any backend fails, so a
    /// backend that passed can belong to a refused write too).
    pub stored: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// `{field, reason}` pairs at the backend's conf paths (`mtls.backends[0].conf.fromCp.role`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<ValidationIssue>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ValidationIssue {
    pub field: String,
    pub reason: String,
}

impl BackendValidation {
    pub fn new(backend: &Backend, time: DateTime<Utc>, outcome: ValidationOutcome) -> Self {
        Self {
            name: backend.name.clone(),
            backend_type: backend.backend_type.name().to_string(),
            time,
            outcome,
            stored: false,
            warnings: Vec::new(),
            errors: Vec::new(),
        }
    }
}

impl MeshValidationSpec {
    /// `self` with the entries of `latest` replacing those of the same backend name; entries of
    /// backends no longer in `mesh` (when the write was stored) are dropped, since nothing uses them.
    pub fn merged(&self, latest: Vec<BackendValidation>, stored: Option<&MeshSpec>) -> Self {
        let mut out: Vec<BackendValidation> = latest;
        for old in &self.backends {
            if out.iter().any(|n| n.name == old.name) {
                continue;
            }
            if stored.is_some_and(|m| !m.backends().iter().any(|b| b.name == old.name)) {
                continue;
            }
            out.push(old.clone());
        }
        Self { backends: out }
    }

    pub fn backend(&self, name: &str) -> Option<&BackendValidation> {
        self.backends.iter().find(|b| b.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{BackendType, Resource, Spec};

    fn entry(name: &str, outcome: ValidationOutcome) -> BackendValidation {
        BackendValidation {
            name: name.into(),
            backend_type: "vault".into(),
            time: DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap_or_default(),
            outcome,
            stored: true,
            warnings: vec![],
            errors: vec![],
        }
    }

    fn mesh(backends: &[&str]) -> MeshSpec {
        let b: Vec<serde_json::Value> = backends
            .iter()
            .map(|n| serde_json::json!({"name": n, "type": "builtin"}))
            .collect();
        let r = Resource::from_universal(
            &serde_json::json!({"type": "Mesh", "name": "m", "mtls": {"backends": b}}),
        )
        .expect("mesh");
        match r.spec {
            Spec::Mesh(m) => m,
            _ => unreachable!(),
        }
    }

    #[test]
    fn the_latest_entry_per_backend_wins_and_removed_backends_go() {
        let before = MeshValidationSpec {
            backends: vec![
                entry("a", ValidationOutcome::Ok),
                entry("b", ValidationOutcome::Ok),
            ],
        };
        // A refused write that tried a new backend c: a and b keep their entries.
        let refused = before.merged(vec![entry("c", ValidationOutcome::Failed)], None);
        let names: Vec<&str> = refused.backends.iter().map(|b| b.name.as_str()).collect();
        assert_eq!(names, ["c", "a", "b"]);
        // A stored write of a Mesh with only a: b is gone, a is replaced.
        let stored = refused.merged(
            vec![entry("a", ValidationOutcome::Skipped)],
            Some(&mesh(&["a", "c"])),
        );
        let names: Vec<&str> = stored.backends.iter().map(|b| b.name.as_str()).collect();
        assert_eq!(names, ["a", "c"]);
        assert_eq!(
            stored.backend("a").map(|b| b.outcome),
            Some(ValidationOutcome::Skipped)
        );
        assert!(stored.backend("b").is_none());
        let b = Backend {
            name: "x".into(),
            backend_type: BackendType::Vault,
            mode: None,
            dp_cert: None,
            root_chain: None,
            conf: None,
        };
        let e = BackendValidation::new(&b, Utc::now(), ValidationOutcome::Ok);
        assert_eq!((e.name.as_str(), e.backend_type.as_str()), ("x", "vault"));
    }

    #[test]
    fn round_trips_through_json() {
        let mut e = entry("a", ValidationOutcome::Failed);
        e.errors.push(ValidationIssue {
            field: "mtls.backends[0].conf.fromCp.role".into(),
            reason: "Vault has no role".into(),
        });
        e.warnings.push("w".into());
        let spec = MeshValidationSpec { backends: vec![e] };
        let v = serde_json::to_value(&spec).expect("json");
        assert_eq!(v["backends"][0]["outcome"], "failed");
        let back: MeshValidationSpec = serde_json::from_value(v).expect("back");
        assert_eq!(back, spec);
    }
}
