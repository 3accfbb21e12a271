//! The resource manager: Kuma's rules for creating, updating and deleting resources on top of a
//! `ResourceStore` — structural and backend validation, CA material, ownership, protected deletes,
//! and which control plane may write which kind.

mod ca_change;
mod delete;
pub mod invariants;
mod membership;
mod mesh;
#[cfg(test)]
mod tests;

use std::sync::Arc;

pub use membership::has_rules as mesh_has_membership_rules;

use crate::{
    ca::CaRegistry,
    datasource::DataSourceLoader,
    model::{Origin, Resource, ResourceKey, ResourceKind, Spec, names},
    store::{ListQuery, ListResult, Record, ResourceStore, StoreError, WriteOp},
    validation::ValidationError,
};

/// Which control plane this manager serves; decides which kinds are read-only here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Global,
    /// A zone connected to a global control plane: global-provided kinds arrive by sync only.
    FederatedZone,
    /// A zone without a global control plane: it owns its Meshes itself.
    StandaloneZone,
}

/// What a write did.
#[derive(Clone, Debug, PartialEq)]
pub enum Applied {
    Created(Record),
    Updated(Record),
}

impl Applied {
    pub fn record(&self) -> &Record {
        match self {
            Self::Created(r) | Self::Updated(r) => r,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApplyOptions {
    /// Refuse the write unless the stored version is this one (HTTP `If-Match`).
    pub expected_version: Option<i64>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeleteOptions {
    pub expected_version: Option<i64>,
    /// Delete a Mesh even though dataplanes are attached.
    pub force: bool,
}

/// Why a request was refused. Each variant maps to one HTTP status.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ManagerError {
    /// 400: the resource is not valid; every violation is listed.
    #[error("resource is not valid: {0}")]
    Invalid(ValidationError),
    /// 404
    #[error("{0} not found")]
    NotFound(ResourceKey),
    /// 409: a concurrent write won, or the resource already exists.
    #[error("{0}")]
    Conflict(String),
    /// 405: this control plane does not own the kind.
    #[error("{0}")]
    ReadOnly(String),
    /// 503: the store is unreachable; nothing was written.
    #[error("{0}")]
    Unavailable(String),
    /// 500
    #[error("{0}")]
    Internal(String),
}

impl From<StoreError> for ManagerError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(k) => Self::NotFound(k),
            StoreError::AlreadyExists(k) => Self::Conflict(format!("{k} already exists")),
            e @ StoreError::Conflict { .. } => Self::Conflict(e.to_string()),
            StoreError::OwnerMissing { owner, .. } if owner.kind == ResourceKind::Mesh => {
                Self::Invalid(ValidationError::single(
                    "mesh",
                    format!("mesh of name {} is not found", owner.name),
                ))
            }
            e @ StoreError::OwnerMissing { .. } => {
                Self::Invalid(ValidationError::single("", e.to_string()))
            }
            StoreError::Unavailable(m) => {
                Self::Unavailable(format!("the store is unavailable: {m}"))
            }
            e @ (StoreError::Corrupt { .. } | StoreError::Internal(_)) => {
                Self::Internal(e.to_string())
            }
        }
    }
}

pub struct ResourceManager {
    store: Arc<dyn ResourceStore>,
    ca: CaRegistry,
    loader: Arc<dyn DataSourceLoader>,
    mode: Mode,
    /// `--strict-names`: Mesh and Zone names must be RFC 1035 labels.
    strict_names: bool,
    /// The zone this manager serves, whose `kuma.io/zone` Kuma's membership rule counts.
    zone: Option<String>,
}

impl ResourceManager {
    pub fn new(
        store: Arc<dyn ResourceStore>,
        ca: CaRegistry,
        loader: Arc<dyn DataSourceLoader>,
        mode: Mode,
    ) -> Self {
        Self {
            store,
            ca,
            loader,
            mode,
            strict_names: false,
            zone: None,
        }
    }

    /// The zone whose name Dataplanes carry as `kuma.io/zone` (for the Mesh's constraints).
    pub fn with_zone(mut self, zone: impl Into<String>) -> Self {
        self.zone = Some(zone.into());
        self
    }

    /// Refuse Mesh and Zone names that are not RFC 1035 labels, instead of warning as Kuma does.
    pub fn with_strict_names(mut self, strict: bool) -> Self {
        self.strict_names = strict;
        self
    }

    pub fn store(&self) -> &Arc<dyn ResourceStore> {
        &self.store
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    pub fn ca(&self) -> &CaRegistry {
        &self.ca
    }

    pub fn loader(&self) -> &Arc<dyn DataSourceLoader> {
        &self.loader
    }

    pub async fn get(&self, key: &ResourceKey) -> Result<Option<(Resource, i64)>, ManagerError> {
        match self.store.get(key).await? {
            Some(rec) => Ok(Some((rec.to_resource()?, rec.version))),
            None => Ok(None),
        }
    }

    pub async fn list(&self, query: &ListQuery) -> Result<ListResult, ManagerError> {
        Ok(self.store.list(query).await?)
    }

    /// Refuses writes to kinds another control plane owns, with a message saying where to go.
    pub fn check_writable(&self, kind: ResourceKind) -> Result<(), ManagerError> {
        let refuse = match (self.mode, kind.origin()) {
            (_, Origin::Local) if !kind.is_user_writable() => true,
            (Mode::Global, Origin::Zone) => true,
            (Mode::FederatedZone, Origin::Global) => true,
            (Mode::FederatedZone | Mode::StandaloneZone, _) if kind == ResourceKind::Zone => true,
            _ => false,
        };
        if !refuse {
            return Ok(());
        }
        let msg = match self.mode {
            Mode::Global => format!(
                "On the global control plane you cannot modify {kind} resources: they are reported by zone control planes. Apply the change on the zone control plane instead"
            ),
            Mode::FederatedZone | Mode::StandaloneZone if kind == ResourceKind::Zone => {
                "Zones are managed on the global control plane".to_string()
            }
            Mode::FederatedZone => format!(
                "On a zone control plane you cannot modify {kind} resources: they are synced from the global control plane. Apply the change on the global control plane instead"
            ),
            Mode::StandaloneZone => {
                format!("{kind} resources are managed by the control plane itself")
            }
        };
        Err(ManagerError::ReadOnly(msg))
    }

    /// Creates or updates a resource a user wrote, after every check Kuma makes.
    pub async fn apply(
        &self,
        resource: Resource,
        opts: ApplyOptions,
    ) -> Result<(Applied, Vec<String>), ManagerError> {
        let kind = resource.kind();
        self.check_writable(kind)?;
        let key = resource.key();
        let mut warnings = Vec::new();
        if names::rfc1035_applies(kind)
            && let Some(reason) = names::rfc1035_violation(&key.name)
        {
            if self.strict_names {
                let mut e = ValidationError::new();
                e.add_detailed(
                    "name",
                    reason,
                    format!("--strict-names is on: {kind} names must be RFC 1035 labels"),
                );
                return Err(ManagerError::Invalid(e));
            }
            warnings.extend(names::rfc1035_warning(kind, &key.name));
        }
        let current = if kind.is_mesh_scoped() {
            // The Mesh and the record in one read: a fleet registering costs one statement each,
            // not two.
            let mesh_key = ResourceKey::mesh(key.mesh.clone());
            let sel = crate::store::Selection {
                kinds: Vec::new(),
                keys: vec![mesh_key.clone(), key.clone()],
                ..Default::default()
            };
            let mut found = self.store.snapshot(&sel).await?;
            let Some(at) = found.iter().position(|r| r.key == mesh_key) else {
                return Err(mesh_not_found(&key.mesh));
            };
            let mesh = found.swap_remove(at);
            if let Spec::Dataplane(dp) = &resource.spec
                && let Ok(Resource {
                    spec: Spec::Mesh(m),
                    ..
                }) = mesh.to_resource()
            {
                membership::check(&key.mesh, &m, dp, self.zone.as_deref())
                    .map_err(ManagerError::Invalid)?;
            }
            found.retain(|r| r.key == key);
            found.pop()
        } else {
            self.store.get(&key).await?
        };
        if let Some(expected) = opts.expected_version {
            match &current {
                Some(c) if c.version == expected => {}
                Some(c) => {
                    return Err(ManagerError::Conflict(format!(
                        "{key} was modified concurrently: expected version {expected}, found {}",
                        c.version
                    )));
                }
                None => return Err(ManagerError::NotFound(key)),
            }
        }
        // A dataplane registering again unchanged (every agent does on reconnect, a whole fleet
        // after a zone restart) writes nothing: no new version, no change event, no work downstream.
        if kind == ResourceKind::Dataplane
            && let Some(c) = &current
            && c.labels == resource.meta.labels
            && c.to_resource().is_ok_and(|cur| cur.spec == resource.spec)
        {
            return Ok((Applied::Updated(c.clone()), Vec::new()));
        }
        let mut extra_ops = Vec::new();
        if let Spec::Mesh(spec) = &resource.spec {
            let old = current
                .as_ref()
                .and_then(|c| c.to_resource().ok())
                .and_then(|r| match r.spec {
                    Spec::Mesh(m) => Some(m),
                    _ => None,
                });
            let mut outcomes = Vec::new();
            let prepared = self
                .prepare_mesh(&key.name, spec, old.as_ref(), &mut outcomes)
                .await;
            let (ops, w) = match prepared {
                Ok(p) => p,
                Err(e) => {
                    if current.is_some() {
                        self.record_refused(&key.name, outcomes).await;
                    }
                    return Err(e);
                }
            };
            extra_ops = ops;
            warnings.extend(w);
            extra_ops.extend(self.validation_op(&key.name, spec, outcomes).await?);
        }
        let primary = match &current {
            Some(c) => WriteOp::update(&resource, c.version),
            None => WriteOp::create(&resource, owner_of(&key)),
        };
        let mut ops = vec![primary];
        ops.append(&mut extra_ops);
        let mut results = self.store.write(ops).await?;
        // Backends the update removed: let them drop cached clients (Vault sessions renew tokens).
        if let (Some(c), Spec::Mesh(new)) = (&current, &resource.spec)
            && let Ok(old) = c.to_resource()
            && let Spec::Mesh(old) = old.spec
        {
            self.ca.release_removed(&key.name, &old, Some(new));
        }
        let record = results
            .swap_remove(0)
            .ok_or_else(|| ManagerError::Internal(format!("BUG: no record returned for {key}")))?;
        let applied = if current.is_some() {
            Applied::Updated(record)
        } else {
            Applied::Created(record)
        };
        Ok((applied, warnings))
    }

    /// Creates the `default` Mesh when it is absent, as Kuma does at start.
    pub async fn ensure_default_mesh(&self) -> Result<bool, ManagerError> {
        let key = ResourceKey::mesh("default");
        if self.store.get(&key).await?.is_some() {
            return Ok(false);
        }
        let r = Resource::new(
            crate::model::Meta {
                name: "default".into(),
                ..Default::default()
            },
            Spec::Mesh(Default::default()),
        );
        match self.store.write(vec![WriteOp::create(&r, None)]).await {
            Ok(_) => Ok(true),
            // Another replica created it first.
            Err(StoreError::AlreadyExists(_)) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}

/// Mesh-scoped resources are owned by their Mesh, so deleting the Mesh deletes them.
pub fn owner_of(key: &ResourceKey) -> Option<ResourceKey> {
    key.kind
        .is_mesh_scoped()
        .then(|| ResourceKey::mesh(key.mesh.clone()))
}

/// Kuma's answer for a mesh-scoped resource whose Mesh does not exist.
fn mesh_not_found(mesh: &str) -> ManagerError {
    ManagerError::Invalid(ValidationError::single(
        "mesh",
        format!("mesh of name {mesh} is not found"),
    ))
}
