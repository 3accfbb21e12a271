//! Kuma's rule against changing a Mesh's CA while mTLS is on, scoped so that Kong Mesh's CA
//! rotation (add a backend, switch to it, remove the old one) keeps working.

use crate::{model::MeshSpec, validation::ValidationError};

pub(super) const CA_CHANGE_FORBIDDEN: &str =
    "Changing CA when mTLS is enabled is forbidden. Disable mTLS first and then change the CA";

/// Refuses an update that switches `mtls.enabledBackend`, with mTLS on before and after, to a
/// backend the stored Mesh did not have (same name and type).
///
/// Kuma refuses every switch, but allows one backend per Mesh, so there every switch is to a new
/// backend. With several backends the switch to one the stored Mesh already had is step 3 of the
/// documented rotation: its root has been in every dataplane's bundle since the step that added
/// it. Switching to a backend added in the same update is what Kuma's rule protects against —
/// dataplanes would get certificates their peers do not trust yet — and stays refused.
pub(super) fn check_enabled_backend_change(old: &MeshSpec, new: &MeshSpec) -> ValidationError {
    let mut errors = ValidationError::new();
    let (Some(before), Some(after)) = (enabled_name(old), enabled_name(new)) else {
        return errors;
    };
    if before == after {
        return errors;
    }
    let known = new.enabled_backend().is_some_and(|b| {
        old.backends()
            .iter()
            .any(|o| o.name == b.name && o.backend_type == b.backend_type)
    });
    if !known {
        errors.add("mtls.enabledBackend", CA_CHANGE_FORBIDDEN);
    }
    errors
}

fn enabled_name(spec: &MeshSpec) -> Option<&str> {
    spec.mtls
        .as_ref()?
        .enabled_backend
        .as_deref()
        .filter(|n| !n.is_empty())
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::model::{Resource, Spec};

    fn spec(enabled: Option<&str>, backends: &[(&str, &str)]) -> MeshSpec {
        let backends: Vec<Value> = backends
            .iter()
            .map(|(n, t)| match *t {
                "builtin" => json!({"name": n, "type": "builtin"}),
                _ => json!({"name": n, "type": "provided", "conf": {
                    "cert": {"secret": "c"}, "key": {"secret": "k"}}}),
            })
            .collect();
        let mut mtls = json!({"backends": backends});
        if let Some(e) = enabled {
            mtls["enabledBackend"] = json!(e);
        }
        let r = Resource::from_universal(&json!({"type": "Mesh", "name": "m", "mtls": mtls}))
            .expect("valid mesh");
        match r.spec {
            Spec::Mesh(m) => m,
            other => panic!("not a mesh: {other:?}"),
        }
    }

    fn refused(old: &MeshSpec, new: &MeshSpec) -> bool {
        let e = check_enabled_backend_change(old, new);
        match e.violations.as_slice() {
            [] => false,
            [v] => {
                assert_eq!(
                    (v.field.as_str(), v.reason.as_str()),
                    ("mtls.enabledBackend", CA_CHANGE_FORBIDDEN)
                );
                true
            }
            more => panic!("one violation at most: {more:?}"),
        }
    }

    #[test]
    fn kuma_single_backend_switch_is_refused() {
        let old = spec(Some("a"), &[("a", "builtin")]);
        assert!(refused(&old, &spec(Some("b"), &[("b", "builtin")])));
        // Adding the new backend and enabling it in the same update: the same hazard.
        assert!(refused(
            &old,
            &spec(Some("b"), &[("a", "builtin"), ("b", "builtin")])
        ));
    }

    #[test]
    fn rotation_to_a_backend_already_present_is_allowed() {
        let both = [("a", "builtin"), ("b", "builtin")];
        let old = spec(Some("a"), &both);
        assert!(!refused(&old, &spec(Some("b"), &both)));
        assert!(!refused(&old, &spec(Some("b"), &[("b", "builtin")])));
    }

    #[test]
    fn same_name_of_another_type_is_another_ca() {
        let old = spec(Some("a"), &[("a", "builtin"), ("b", "builtin")]);
        assert!(refused(
            &old,
            &spec(Some("b"), &[("a", "builtin"), ("b", "provided")])
        ));
    }

    #[test]
    fn disabling_or_enabling_mtls_is_no_ca_change() {
        let on = spec(Some("a"), &[("a", "builtin")]);
        let off = spec(None, &[("b", "builtin")]);
        assert!(!refused(&on, &off), "disable");
        assert!(
            !refused(&off, &spec(Some("b"), &[("b", "builtin")])),
            "enable"
        );
        assert!(
            !refused(&on, &spec(Some("a"), &[("a", "builtin")])),
            "unchanged"
        );
    }
}
