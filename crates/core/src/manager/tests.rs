//! Manager rules, with an in-memory store and a scripted CA backend (the real backends are tested
//! against real material and a real OpenBao in `meshplane-ca`).

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde_json::json;

use super::*;
use crate::{
    ca::{CaBackend, IssuedCert, LeafRequest, MeshCa},
    datasource::StoreLoader,
    model::{Backend, BackendType, Meta, SecretData, SecretSpec},
    store::memory::MemoryStore,
};

/// A builtin-typed backend whose validation answer the test scripts, and which "creates" one Secret.
struct ScriptedCa {
    fail_with: Mutex<Option<String>>,
    validations: Mutex<usize>,
}

#[async_trait]
impl CaBackend for ScriptedCa {
    fn backend_type(&self) -> BackendType {
        BackendType::Builtin
    }
    async fn validate(&self, _: &MeshCa<'_>, _: &Backend) -> Result<Vec<String>, ValidationError> {
        *self.validations.lock().expect("lock") += 1;
        match self.fail_with.lock().expect("lock").clone() {
            Some(reason) => Err(ValidationError::single("", reason)),
            None => Ok(vec![]),
        }
    }
    async fn ensure(
        &self,
        ca: &MeshCa<'_>,
        b: &Backend,
    ) -> Result<Vec<Resource>, crate::ca::CaError> {
        let name = crate::model::resource::builtin_cert_secret_name(ca.mesh, &b.name);
        let exists = ca
            .loader
            .load(ca.mesh, &crate::model::DataSource::Secret(name.clone()))
            .await
            .is_ok();
        if exists {
            return Ok(vec![]);
        }
        Ok(vec![Resource::new(
            Meta {
                name,
                mesh: ca.mesh.into(),
                ..Default::default()
            },
            Spec::Secret(SecretSpec {
                data: SecretData::new(b"cert".to_vec()),
            }),
        )])
    }
    fn used_secrets(&self, mesh: &str, b: &Backend) -> Vec<String> {
        vec![crate::model::resource::builtin_cert_secret_name(
            mesh, &b.name,
        )]
    }
    async fn root_certs(
        &self,
        _: &MeshCa<'_>,
        _: &Backend,
    ) -> Result<Vec<String>, crate::ca::CaError> {
        Ok(vec![])
    }
    async fn issue(
        &self,
        ca: &MeshCa<'_>,
        b: &Backend,
        _: &LeafRequest,
    ) -> Result<IssuedCert, crate::ca::CaError> {
        Err(crate::ca::CaError::config(
            ca.mesh,
            &b.name,
            "not in this test",
        ))
    }
}

fn setup(mode: Mode) -> (ResourceManager, Arc<ScriptedCa>) {
    let store: Arc<dyn ResourceStore> = Arc::new(MemoryStore::new());
    let ca = Arc::new(ScriptedCa {
        fail_with: Mutex::new(None),
        validations: Mutex::new(0),
    });
    let mut reg = CaRegistry::new();
    reg.register(ca.clone());
    let loader = Arc::new(StoreLoader::new(store.clone()));
    (ResourceManager::new(store, reg, loader, mode), ca)
}

fn parse(v: serde_json::Value) -> Resource {
    Resource::from_universal(&v).expect("valid resource")
}

fn mesh_with_builtin(name: &str, skip: bool) -> Resource {
    parse(
        json!({"type": "Mesh", "name": name, "mtls": {"enabledBackend": "ca-1", "skipValidation": skip, "backends": [{"name": "ca-1", "type": "builtin"}]}}),
    )
}

#[tokio::test]
async fn create_then_update_and_ensure_once() {
    let (m, ca) = setup(Mode::Global);
    let (applied, _) = m
        .apply(mesh_with_builtin("m1", false), ApplyOptions::default())
        .await
        .expect("create");
    assert!(matches!(applied, Applied::Created(ref r) if r.version == 1));
    let secret = ResourceKey::in_mesh(ResourceKind::Secret, "m1", "m1.ca-builtin-cert-ca-1");
    let (_, v1) = m
        .get(&secret)
        .await
        .expect("get")
        .expect("CA secret created with the mesh");
    let (applied, _) = m
        .apply(mesh_with_builtin("m1", false), ApplyOptions::default())
        .await
        .expect("update");
    assert!(matches!(applied, Applied::Updated(ref r) if r.version == 2));
    let (_, v2) = m.get(&secret).await.expect("get").expect("still there");
    assert_eq!(v1, v2, "an existing CA secret is never regenerated");
    assert_eq!(
        *ca.validations.lock().expect("lock"),
        2,
        "every create and update validates the backends"
    );
}

#[tokio::test]
async fn an_existing_backend_whose_ca_is_gone_is_refused_not_regenerated() {
    let (m, _) = setup(Mode::Global);
    m.apply(mesh_with_builtin("m3", false), ApplyOptions::default())
        .await
        .expect("create");
    let secret = ResourceKey::in_mesh(ResourceKind::Secret, "m3", "m3.ca-builtin-cert-ca-1");
    // Lost behind the manager's back (a restore from an incomplete backup, a hand edit).
    m.store()
        .write(vec![WriteOp::Delete {
            key: secret.clone(),
            expected_version: None,
        }])
        .await
        .expect("delete");
    let (_, version) = m
        .get(&ResourceKey::mesh("m3"))
        .await
        .expect("get")
        .expect("mesh");
    let err = m
        .apply(mesh_with_builtin("m3", false), ApplyOptions::default())
        .await
        .expect_err("an update must not mint a new CA for an existing backend");
    let ManagerError::Invalid(v) = err else {
        panic!("expected Invalid, got {err:?}")
    };
    assert_eq!(v.violations[0].field, "mtls.backends[0]");
    assert!(
        v.violations[0].reason.contains("m3.ca-builtin-cert-ca-1")
            && v.violations[0].reason.contains("restore"),
        "{v}"
    );
    assert!(
        m.get(&secret).await.expect("get").is_none(),
        "nothing regenerated"
    );
    let (_, after) = m
        .get(&ResourceKey::mesh("m3"))
        .await
        .expect("get")
        .expect("mesh");
    assert_eq!(version, after, "the refused update wrote nothing");

    // A new backend name is a deliberate new CA, and gets one. Switching straight to it is Kuma's
    // forbidden CA change (no dataplane trusts it yet); with mTLS off first it is allowed.
    let renamed = |enabled: Option<&str>| {
        let mut mtls = json!({"backends": [{"name": "ca-2", "type": "builtin"}]});
        if let Some(e) = enabled {
            mtls["enabledBackend"] = json!(e);
        }
        parse(json!({"type": "Mesh", "name": "m3", "mtls": mtls}))
    };
    let err = m
        .apply(renamed(Some("ca-2")), ApplyOptions::default())
        .await
        .expect_err("switching the CA while mTLS is on");
    let ManagerError::Invalid(v) = err else {
        panic!("expected Invalid, got {err:?}")
    };
    assert_eq!(v.violations[0].field, "mtls.enabledBackend", "{v}");
    m.apply(renamed(None), ApplyOptions::default())
        .await
        .expect("a renamed backend gets a new CA");
    let fresh = ResourceKey::in_mesh(ResourceKind::Secret, "m3", "m3.ca-builtin-cert-ca-2");
    assert!(m.get(&fresh).await.expect("get").is_some());
    m.apply(renamed(Some("ca-2")), ApplyOptions::default())
        .await
        .expect("enabling mTLS again on the new backend");
}

#[tokio::test]
async fn failed_backend_validation_stores_nothing() {
    let (m, ca) = setup(Mode::Global);
    *ca.fail_with.lock().expect("lock") =
        Some("Vault at http://x rejected the token: permission denied".into());
    let err = m
        .apply(mesh_with_builtin("m2", false), ApplyOptions::default())
        .await
        .expect_err("refused");
    let ManagerError::Invalid(v) = err else {
        panic!("expected Invalid, got {err:?}")
    };
    assert_eq!(v.violations[0].field, "mtls.backends[0].conf");
    assert!(v.violations[0].reason.contains("rejected the token"));
    assert!(
        m.get(&ResourceKey::mesh("m2"))
            .await
            .expect("get")
            .is_none(),
        "nothing stored"
    );
    assert_eq!(
        m.store()
            .list(&ListQuery::all(ResourceKind::Secret))
            .await
            .expect("list")
            .total,
        0
    );

    let (_, warnings) = m
        .apply(mesh_with_builtin("m2", true), ApplyOptions::default())
        .await
        .expect("skipValidation accepts");
    assert_eq!(
        warnings,
        vec!["skipValidation is set: the CA backends were not validated".to_string()]
    );
}

#[tokio::test]
async fn expected_version_detects_lost_updates() {
    let (m, _) = setup(Mode::Global);
    m.apply(mesh_with_builtin("m3", true), ApplyOptions::default())
        .await
        .expect("create");
    let err = m
        .apply(
            mesh_with_builtin("m3", true),
            ApplyOptions {
                expected_version: Some(7),
            },
        )
        .await
        .expect_err("stale");
    assert!(
        matches!(err, ManagerError::Conflict(ref s) if s.contains("expected version 7, found 1")),
        "{err:?}"
    );
    m.apply(
        mesh_with_builtin("m3", true),
        ApplyOptions {
            expected_version: Some(1),
        },
    )
    .await
    .expect("current version");
}

#[tokio::test]
async fn secrets_need_their_mesh_and_are_protected_while_used() {
    let (m, _) = setup(Mode::Global);
    let secret = parse(json!({"type": "Secret", "mesh": "m4", "name": "s", "data": "YQ=="}));
    let err = m
        .apply(secret.clone(), ApplyOptions::default())
        .await
        .expect_err("no mesh");
    assert!(
        matches!(err, ManagerError::Invalid(ref v) if v.violations[0].reason == "mesh of name m4 is not found"),
        "{err:?}"
    );

    m.apply(mesh_with_builtin("m4", false), ApplyOptions::default())
        .await
        .expect("mesh");
    m.apply(secret, ApplyOptions::default())
        .await
        .expect("secret");
    let used = ResourceKey::in_mesh(ResourceKind::Secret, "m4", "m4.ca-builtin-cert-ca-1");
    let err = m
        .delete(&used, DeleteOptions::default())
        .await
        .expect_err("in use");
    let ManagerError::Invalid(v) = err else {
        panic!("{err:?}")
    };
    assert!(v.violations[0].reason.starts_with("The secret \"m4.ca-builtin-cert-ca-1\" that you are trying to remove is currently in use in Mesh \"m4\" in mTLS backend \"ca-1\""));
    m.delete(
        &ResourceKey::in_mesh(ResourceKind::Secret, "m4", "s"),
        DeleteOptions::default(),
    )
    .await
    .expect("unused secret");

    // Deleting the Mesh cascades to its Secrets.
    m.delete(&ResourceKey::mesh("m4"), DeleteOptions::default())
        .await
        .expect("mesh");
    assert!(m.get(&used).await.expect("get").is_none());
}

#[tokio::test]
async fn meshes_with_dataplanes_need_force() {
    let (m, _) = setup(Mode::StandaloneZone);
    m.apply(mesh_with_builtin("m5", true), ApplyOptions::default())
        .await
        .expect("mesh");
    let dp = parse(
        json!({"type": "Dataplane", "mesh": "m5", "name": "dp", "networking": {"address": "10.0.0.1", "inbound": [{"port": 80, "tags": {"kuma.io/service": "web"}}]}}),
    );
    m.apply(dp, ApplyOptions::default()).await.expect("dp");
    let err = m
        .delete(&ResourceKey::mesh("m5"), DeleteOptions::default())
        .await
        .expect_err("attached");
    assert!(
        matches!(err, ManagerError::Invalid(ref v) if v.violations[0].reason == "unable to delete mesh, there are still some dataplanes attached")
    );
    m.delete(
        &ResourceKey::mesh("m5"),
        DeleteOptions {
            force: true,
            ..Default::default()
        },
    )
    .await
    .expect("forced");
}

#[tokio::test]
async fn read_only_kinds_per_mode() {
    let (g, _) = setup(Mode::Global);
    let dp = parse(
        json!({"type": "Dataplane", "mesh": "default", "name": "dp", "networking": {"address": "10.0.0.1", "inbound": [{"port": 80, "tags": {"kuma.io/service": "web"}}]}}),
    );
    assert!(matches!(
        g.apply(dp, ApplyOptions::default()).await,
        Err(ManagerError::ReadOnly(_))
    ));
    let (z, _) = setup(Mode::FederatedZone);
    assert!(
        matches!(z.apply(mesh_with_builtin("m6", true), ApplyOptions::default()).await, Err(ManagerError::ReadOnly(ref s)) if s.contains("global control plane"))
    );
    assert!(matches!(
        z.check_writable(ResourceKind::Zone),
        Err(ManagerError::ReadOnly(_))
    ));
    let (s, _) = setup(Mode::StandaloneZone);
    assert!(s.check_writable(ResourceKind::Mesh).is_ok());
}

#[tokio::test]
async fn default_mesh_is_created_once() {
    let (m, _) = setup(Mode::Global);
    assert!(m.ensure_default_mesh().await.expect("first"));
    assert!(!m.ensure_default_mesh().await.expect("second"));
}

#[tokio::test]
async fn an_unchanged_dataplane_is_not_written_again() {
    let (m, _) = setup(Mode::StandaloneZone);
    m.apply(mesh_with_builtin("m7", true), ApplyOptions::default())
        .await
        .expect("mesh");
    let dp = |port: u16| {
        parse(
            json!({"type": "Dataplane", "mesh": "m7", "name": "dp", "networking": {"address": "10.0.0.1", "inbound": [{"port": port, "tags": {"kuma.io/service": "web"}}]}}),
        )
    };
    let mut events = m.store().subscribe();
    let (first, _) = m.apply(dp(80), ApplyOptions::default()).await.expect("dp");
    assert!(matches!(first, Applied::Created(_)));
    let (again, _) = m
        .apply(dp(80), ApplyOptions::default())
        .await
        .expect("again");
    assert!(
        matches!(again, Applied::Updated(ref r) if r.version == 1),
        "no new version"
    );
    let (changed, _) = m
        .apply(dp(81), ApplyOptions::default())
        .await
        .expect("changed");
    assert!(matches!(changed, Applied::Updated(ref r) if r.version == 2));
    let versions: Vec<i64> = [events.recv().await, events.recv().await]
        .into_iter()
        .map(|r| match r {
            crate::store::Received::Event(e) => e.version,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(versions, [1, 2], "one event per real change");
}

async fn validation_record(
    m: &ResourceManager,
    mesh: &str,
) -> Option<crate::model::mesh_validation::MeshValidationSpec> {
    match m
        .get(&ResourceKey::global(ResourceKind::MeshValidation, mesh))
        .await
        .expect("get")
    {
        Some((
            Resource {
                spec: Spec::MeshValidation(v),
                ..
            },
            _,
        )) => Some(v),
        _ => None,
    }
}

#[tokio::test]
async fn each_backends_last_validation_is_recorded_with_its_mesh() {
    use crate::model::mesh_validation::ValidationOutcome;
    let (m, ca) = setup(Mode::Global);
    // A refused create leaves nothing, not even a record: there is no Mesh to show it on.
    *ca.fail_with.lock().expect("lock") = Some("Vault is sealed".into());
    m.apply(mesh_with_builtin("m", false), ApplyOptions::default())
        .await
        .expect_err("refused");
    assert_eq!(validation_record(&m, "m").await, None);

    *ca.fail_with.lock().expect("lock") = None;
    m.apply(mesh_with_builtin("m", false), ApplyOptions::default())
        .await
        .expect("stored");
    let v = validation_record(&m, "m")
        .await
        .expect("recorded in the Mesh's batch");
    let b = v.backend("ca-1").expect("ca-1");
    assert_eq!((b.outcome, b.stored), (ValidationOutcome::Ok, true));

    // A refused update is recorded on the Mesh it left unchanged, with the backend's words.
    *ca.fail_with.lock().expect("lock") =
        Some("Vault at http://x has no role \"r\" in mount \"pki\"".into());
    m.apply(mesh_with_builtin("m", false), ApplyOptions::default())
        .await
        .expect_err("refused");
    let v = validation_record(&m, "m").await.expect("record");
    let b = v.backend("ca-1").expect("ca-1");
    assert_eq!((b.outcome, b.stored), (ValidationOutcome::Failed, false));
    assert_eq!(b.errors[0].field, "mtls.backends[0].conf");
    assert!(b.errors[0].reason.contains("has no role"));
    let (_, version) = m
        .get(&ResourceKey::mesh("m"))
        .await
        .expect("get")
        .expect("mesh");
    assert_eq!(version, 1, "the Mesh itself is unchanged");

    m.apply(mesh_with_builtin("m", true), ApplyOptions::default())
        .await
        .expect("skipValidation");
    let b = validation_record(&m, "m").await.expect("record");
    assert_eq!(
        b.backend("ca-1").map(|b| b.outcome),
        Some(ValidationOutcome::Skipped)
    );

    // The record goes with its Mesh.
    m.delete(
        &ResourceKey::mesh("m"),
        DeleteOptions {
            force: true,
            ..Default::default()
        },
    )
    .await
    .expect("delete");
    assert_eq!(validation_record(&m, "m").await, None);
}
