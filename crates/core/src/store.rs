//! The `ResourceStore` abstraction: keyed records with optimistic versions, owner cascades, atomic
//! multi-resource writes, and a stream of change events. PostgreSQL and in-memory implement it.

pub mod conformance;
pub mod encrypted;
pub mod events;
pub mod memory;
pub mod metered;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
pub use events::{EventHub, Received, Subscription};
use serde_json::Value;

use crate::model::{Meta, Resource, ResourceKey, ResourceKind, Spec};

/// One stored resource as the store sees it: the spec is JSON the store does not interpret.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    pub key: ResourceKey,
    /// Starts at 1 and grows by one on every update; an update naming an older version is refused.
    pub version: i64,
    pub spec: Value,
    pub labels: BTreeMap<String, String>,
    /// Deleting the owner deletes this record too.
    pub owner: Option<ResourceKey>,
    pub creation_time: DateTime<Utc>,
    pub modification_time: DateTime<Utc>,
}

impl Record {
    /// Decodes the record into a typed resource.
    pub fn to_resource(&self) -> Result<Resource, StoreError> {
        let spec = Spec::from_json(self.key.kind, &self.spec).map_err(|e| StoreError::Corrupt {
            key: self.key.clone(),
            reason: e.to_string(),
        })?;
        Ok(Resource {
            meta: Meta {
                name: self.key.name.clone(),
                mesh: self.key.mesh.clone(),
                labels: self.labels.clone(),
                creation_time: Some(self.creation_time),
                modification_time: Some(self.modification_time),
            },
            spec,
        })
    }
}

/// One write inside an atomic batch.
#[derive(Clone, Debug, PartialEq)]
pub enum WriteOp {
    /// Fails with `AlreadyExists` when the key is taken, `OwnerMissing` when the owner is absent.
    Create {
        key: ResourceKey,
        spec: Value,
        labels: BTreeMap<String, String>,
        owner: Option<ResourceKey>,
    },
    /// Fails with `Conflict` unless the stored version equals `expected_version`.
    Update {
        key: ResourceKey,
        expected_version: i64,
        spec: Value,
        labels: BTreeMap<String, String>,
    },
    /// Creates or replaces without a version check: for records only the control plane writes
    /// (synced copies, insights), where the newest write is by definition the right one.
    Upsert {
        key: ResourceKey,
        spec: Value,
        labels: BTreeMap<String, String>,
        owner: Option<ResourceKey>,
    },
    /// Deletes the record and everything it owns. With `expected_version`, fails with `Conflict` on
    /// a mismatch; fails with `NotFound` when absent.
    Delete {
        key: ResourceKey,
        expected_version: Option<i64>,
    },
}

impl WriteOp {
    pub fn key(&self) -> &ResourceKey {
        match self {
            Self::Create { key, .. }
            | Self::Update { key, .. }
            | Self::Upsert { key, .. }
            | Self::Delete { key, .. } => key,
        }
    }

    /// A create of a typed resource.
    pub fn create(r: &Resource, owner: Option<ResourceKey>) -> Self {
        Self::Create {
            key: r.key(),
            spec: r.spec.to_json(),
            labels: r.meta.labels.clone(),
            owner,
        }
    }

    /// An update of a typed resource at a known version.
    pub fn update(r: &Resource, expected_version: i64) -> Self {
        Self::Update {
            key: r.key(),
            expected_version,
            spec: r.spec.to_json(),
            labels: r.meta.labels.clone(),
        }
    }

    pub fn upsert(r: &Resource, owner: Option<ResourceKey>) -> Self {
        Self::Upsert {
            key: r.key(),
            spec: r.spec.to_json(),
            labels: r.meta.labels.clone(),
            owner,
        }
    }
}

/// What an applied write left behind: the record for creates and updates, nothing for deletes.
pub type WriteResult = Option<Record>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeOp {
    Create,
    Update,
    Delete,
}

/// A committed change, seen by every subscriber of every replica sharing the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangeEvent {
    pub op: ChangeOp,
    pub key: ResourceKey,
    /// The version written (for a delete, the version deleted).
    pub version: i64,
}

/// Which records to list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListQuery {
    pub kind: ResourceKind,
    /// Only records of this mesh; `None` lists every mesh.
    pub mesh: Option<String>,
    pub offset: usize,
    /// At most this many; `None` for all.
    pub limit: Option<usize>,
}

impl ListQuery {
    pub fn all(kind: ResourceKind) -> Self {
        Self {
            kind,
            mesh: None,
            offset: 0,
            limit: None,
        }
    }

    pub fn in_mesh(kind: ResourceKind, mesh: impl Into<String>) -> Self {
        Self {
            kind,
            mesh: Some(mesh.into()),
            offset: 0,
            limit: None,
        }
    }
}

/// What one consistent read ([`ResourceStore::snapshot`]) selects: whole kinds, one mesh's records
/// of a kind, single keys, and everything an owner owns. A record matched more than once is returned once.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selection {
    /// Every record of each kind; with a mesh, only that mesh's.
    pub kinds: Vec<(ResourceKind, Option<String>)>,
    pub keys: Vec<ResourceKey>,
    /// Every record owned by one of these (a zone's records at global: read by owner, not by
    /// listing every zone's and filtering).
    pub owned_by: Vec<ResourceKey>,
}

impl Selection {
    /// Every record of these kinds, in every mesh.
    pub fn kinds(kinds: &[ResourceKind]) -> Self {
        Self {
            kinds: kinds.iter().map(|k| (*k, None)).collect(),
            keys: Vec::new(),
            owned_by: Vec::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.kinds.is_empty() && self.keys.is_empty() && self.owned_by.is_empty()
    }
}

/// A page of records, ordered by mesh then name, with the total matching the query.
#[derive(Clone, Debug, PartialEq)]
pub struct ListResult {
    pub items: Vec<Record>,
    pub total: usize,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(ResourceKey),
    #[error("{0} already exists")]
    AlreadyExists(ResourceKey),
    #[error("{key} was modified concurrently: expected version {expected}, found {found}")]
    Conflict {
        key: ResourceKey,
        expected: i64,
        found: i64,
    },
    #[error("{key} cannot be created: its owner {owner} does not exist")]
    OwnerMissing {
        key: ResourceKey,
        owner: ResourceKey,
    },
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    #[error("stored {key} could not be read: {reason}")]
    Corrupt { key: ResourceKey, reason: String },
    #[error("store error: {0}")]
    Internal(String),
}

#[async_trait]
pub trait ResourceStore: Send + Sync + 'static {
    async fn get(&self, key: &ResourceKey) -> Result<Option<Record>, StoreError>;

    async fn list(&self, query: &ListQuery) -> Result<ListResult, StoreError>;

    /// Every record `selection` names, ordered by key, as of one instant: a batch committed while
    /// the read runs is in the result whole or not at all. Whoever copies related records
    /// elsewhere (the sync views) reads through this, so a Mesh and the CA Secrets its write
    /// created are never seen apart; separate `get`/`list` calls give no such promise.
    async fn snapshot(&self, selection: &Selection) -> Result<Vec<Record>, StoreError>;

    /// Applies every op or none of them, in one transaction.
    async fn write(&self, ops: Vec<WriteOp>) -> Result<Vec<WriteResult>, StoreError>;

    /// Change events committed from now on, by this process or (for shared stores) any other.
    fn subscribe(&self) -> Subscription;

    /// Succeeds when the store answers.
    async fn ping(&self) -> Result<(), StoreError>;

    /// A short name for logs (`memory`, `postgres`).
    fn describe(&self) -> String;
}

/// Convenience wrappers over the trait.
#[async_trait]
pub trait ResourceStoreExt: ResourceStore {
    async fn write_one(&self, op: WriteOp) -> Result<WriteResult, StoreError> {
        let mut out = self.write(vec![op]).await?;
        Ok(out.pop().flatten())
    }

    async fn get_resource(&self, key: &ResourceKey) -> Result<Option<(Resource, i64)>, StoreError> {
        match self.get(key).await? {
            Some(r) => Ok(Some((r.to_resource()?, r.version))),
            None => Ok(None),
        }
    }

    async fn list_all(
        &self,
        kind: ResourceKind,
        mesh: Option<&str>,
    ) -> Result<Vec<Record>, StoreError> {
        let q = ListQuery {
            kind,
            mesh: mesh.map(str::to_string),
            offset: 0,
            limit: None,
        };
        Ok(self.list(&q).await?.items)
    }
}

impl<T: ResourceStore + ?Sized> ResourceStoreExt for T {}
