//! Applying a received push to the local store, resource by resource, so one bad resource is NACKed
//! with its reason while the rest are applied, and acknowledging it to the peer.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use meshplane_core::{
    model::{ResourceKey, Spec},
    store::{ResourceStore, StoreError, WriteOp},
};
use serde_json::Value;
use tokio::sync::{Semaphore, mpsc};

use crate::{
    link::{Inbound, LinkError, send_within},
    proto,
    version::version_of,
    view::{key_of, sync_group},
};

/// Where and how a received resource is stored; `Err` rejects it with a reason.
pub struct Placement {
    pub key: ResourceKey,
    pub labels: BTreeMap<String, String>,
    pub owner: Option<ResourceKey>,
}

pub trait Policy: Send + Sync {
    /// Maps a received upsert (already decoded) to its local key and labels, or refuses it.
    fn place_upsert(
        &self,
        key: &ResourceKey,
        labels: BTreeMap<String, String>,
    ) -> Result<Placement, String>;
    /// Maps a received removal to the local key to delete, or refuses it.
    fn place_removal(&self, key: &ResourceKey) -> Result<ResourceKey, String>;
}

/// What happened to one push.
#[derive(Debug, Default)]
pub struct Outcome {
    pub nacks: Vec<proto::Nack>,
    pub applied: usize,
    /// A store failure: the whole push should be NACKed and retried, not blamed on the resources.
    pub store_error: Option<String>,
}

fn nack(r: &proto::ResourceRef, version: &str, reason: impl Into<String>) -> proto::Nack {
    proto::Nack {
        r#ref: Some(r.clone()),
        version: version.to_string(),
        reason: reason.into(),
    }
}

/// Validates every upsert, then writes all valid ones in one transaction (falling back to one
/// transaction per sync group, then one write per resource, if the batch fails, so one failure
/// cannot block the others).
pub async fn apply(store: &dyn ResourceStore, policy: &dyn Policy, push: &proto::Push) -> Outcome {
    let mut out = Outcome::default();
    let mut ops: Vec<(proto::ResourceRef, String, WriteOp)> = Vec::new();
    for r in &push.upserts {
        let empty = proto::ResourceRef::default();
        let rref = r.r#ref.as_ref().unwrap_or(&empty);
        let key = match key_of(rref) {
            Ok(k) => k,
            Err(e) => {
                out.nacks.push(nack(rref, &r.version, e));
                continue;
            }
        };
        let spec: Value = match serde_json::from_slice(&r.spec) {
            Ok(v) => v,
            Err(e) => {
                out.nacks
                    .push(nack(rref, &r.version, format!("spec is not JSON: {e}")));
                continue;
            }
        };
        if let Err(e) = Spec::from_json(key.kind, &spec) {
            out.nacks
                .push(nack(rref, &r.version, format!("invalid {}: {e}", key.kind)));
            continue;
        }
        let labels: BTreeMap<String, String> = r.labels.clone().into_iter().collect();
        if version_of(&labels, &spec) != r.version {
            out.nacks
                .push(nack(rref, &r.version, "version does not match the content"));
            continue;
        }
        match policy.place_upsert(&key, labels) {
            Ok(p) => ops.push((
                rref.clone(),
                r.version.clone(),
                WriteOp::Upsert {
                    key: p.key,
                    spec,
                    labels: p.labels,
                    owner: p.owner,
                },
            )),
            Err(reason) => out.nacks.push(nack(rref, &r.version, reason)),
        }
    }
    for rref in &push.removals {
        let placed = key_of(rref).and_then(|k| policy.place_removal(&k));
        match placed {
            Ok(key) => ops.push((
                rref.clone(),
                String::new(),
                WriteOp::Delete {
                    key,
                    expected_version: None,
                },
            )),
            Err(reason) => out.nacks.push(nack(rref, "", reason)),
        }
    }
    if ops.is_empty() {
        return out;
    }
    let (refs, batch): (Vec<_>, Vec<_>) = ops.into_iter().map(|(r, v, op)| ((r, v), op)).unzip();
    match store.write(batch.clone()).await {
        Ok(_) => {
            out.applied = batch.len();
            return out;
        }
        Err(StoreError::Unavailable(e)) => {
            out.store_error = Some(e);
            return out;
        }
        Err(_) => {}
    }
    // Something in the push was refused. Each sync group (a Mesh with its Secrets) is retried as
    // one transaction, so a good group stays whole; only a group that fails again is applied
    // resource by resource, to NACK just what is wrong in it.
    let mut entries: Vec<((proto::ResourceRef, String), WriteOp)> =
        refs.into_iter().zip(batch).collect();
    while !entries.is_empty() {
        let g = sync_group(entries[0].1.key()).map(str::to_string);
        let n = match &g {
            Some(g) => entries
                .iter()
                .take_while(|(_, op)| sync_group(op.key()) == Some(g.as_str()))
                .count(),
            None => 1,
        };
        let members: Vec<_> = entries.drain(..n).collect();
        if members.len() > 1 {
            match store
                .write(members.iter().map(|(_, op)| op.clone()).collect())
                .await
            {
                Ok(_) => {
                    out.applied += members.len();
                    continue;
                }
                Err(StoreError::Unavailable(e)) => {
                    out.store_error = Some(e);
                    return out;
                }
                Err(_) => {}
            }
        }
        for ((rref, version), op) in members {
            match store.write(vec![op]).await {
                Ok(_) | Err(StoreError::NotFound(_)) => out.applied += 1,
                Err(StoreError::Unavailable(e)) => {
                    out.store_error = Some(e);
                    return out;
                }
                Err(StoreError::OwnerMissing { owner, .. }) => {
                    out.nacks.push(nack(
                        &rref,
                        &version,
                        format!("{owner} does not exist here"),
                    ));
                }
                Err(e) => out.nacks.push(nack(&rref, &version, e.to_string())),
            }
        }
    }
    out
}

/// The writing half of a link: applies the peer's pushes and acknowledges each. It shares nothing
/// mutable with the sending half, so global runs it in a task of its own beside the session loop:
/// a zone's downstream (a Mesh change) never waits behind its upstream writes.
pub struct Applier<T> {
    pub(crate) store: Arc<dyn ResourceStore>,
    pub(crate) policy: Arc<dyn Policy>,
    pub(crate) tx: mpsc::Sender<T>,
    pub(crate) wrap_ack: fn(proto::Ack) -> T,
    /// Taken while a push is applied (global shares one set among all zones); released before the
    /// Ack is sent, so a peer that does not read never holds one.
    pub(crate) permits: Option<Arc<Semaphore>>,
    pub(crate) send_timeout: Duration,
    pub(crate) peer: String,
}

impl<T> Clone for Applier<T> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            policy: self.policy.clone(),
            tx: self.tx.clone(),
            wrap_ack: self.wrap_ack,
            permits: self.permits.clone(),
            send_timeout: self.send_timeout,
            peer: self.peer.clone(),
        }
    }
}

impl<T: Send + 'static> Applier<T> {
    /// Applies a peer push and acknowledges it.
    pub async fn apply_push(&self, p: proto::Push) -> Result<Inbound, LinkError> {
        let permit = match &self.permits {
            Some(s) => Some(
                s.clone()
                    .acquire_owned()
                    .await
                    .map_err(|_| LinkError::Closed)?,
            ),
            None => None,
        };
        let outcome = apply(self.store.as_ref(), self.policy.as_ref(), &p).await;
        drop(permit);
        let mut nacks = outcome.nacks;
        if let Some(e) = &outcome.store_error {
            // Our store failed, not the resources: NACK them all so the peer retries after its backoff.
            tracing::warn!(peer = %self.peer, error = %e, "could not apply a sync push; the peer will retry");
            nacks = p
                .upserts
                .iter()
                .map(|r| nack_ref(r.r#ref.clone(), &r.version, e))
                .chain(p.removals.iter().map(|r| nack_ref(Some(r.clone()), "", e)))
                .collect();
        }
        for n in &nacks {
            let what = n
                .r#ref
                .as_ref()
                .map(|r| format!("{} {:?} mesh {:?}", r.r#type, r.name, r.mesh))
                .unwrap_or_default();
            tracing::warn!(peer = %self.peer, resource = %what, reason = %n.reason, "rejected a synced resource");
        }
        let ack = proto::Ack {
            nonce: p.nonce.clone(),
            nacks,
        };
        send_within(&self.tx, (self.wrap_ack)(ack), self.send_timeout).await?;
        Ok(if p.initial_done && outcome.store_error.is_none() {
            Inbound::InitialDone
        } else {
            Inbound::Nothing
        })
    }
}

fn nack_ref(r: Option<proto::ResourceRef>, version: &str, e: &str) -> proto::Nack {
    proto::Nack {
        r#ref: r,
        version: version.to_string(),
        reason: format!("store unavailable: {e}"),
    }
}
