//! The ZoneInsight subscription a stream keeps at global: connect and disconnect times, liveness
//! (refreshed every flush, so a replica killed without warning stops counting as connected), and
//! per-type sent/acknowledged/rejected counters.

use std::collections::BTreeMap;

use chrono::Utc;
use meshplane_core::{
    model::{
        Meta, Resource, ResourceKey, ResourceKind, Spec, ZoneInsightSpec,
        zone::{KdsCounters, KdsSubscription, KdsSubscriptionStatus, ZoneVersion},
    },
    store::{ResourceStore, ResourceStoreExt, StoreError, WriteOp},
};

use crate::link::Counters;

/// At most this many subscriptions are kept per zone, newest last (Kuma keeps 10).
const MAX_SUBSCRIPTIONS: usize = 10;

pub struct Insight<'a> {
    pub store: &'a dyn ResourceStore,
    pub zone: String,
    pub id: String,
}

impl Insight<'_> {
    fn key(&self) -> ResourceKey {
        ResourceKey::global(ResourceKind::ZoneInsight, self.zone.clone())
    }

    /// Read-modify-write with optimistic retries: two replicas may write one zone's insight.
    async fn update(&self, f: impl Fn(&mut ZoneInsightSpec)) -> Result<(), StoreError> {
        for _ in 0..20 {
            let current = self.store.get_resource(&self.key()).await?;
            let (mut spec, version) = match current {
                Some((
                    Resource {
                        spec: Spec::ZoneInsight(s),
                        ..
                    },
                    v,
                )) => (s, Some(v)),
                _ => (ZoneInsightSpec::default(), None),
            };
            f(&mut spec);
            let r = Resource::new(
                Meta {
                    name: self.zone.clone(),
                    ..Default::default()
                },
                Spec::ZoneInsight(spec),
            );
            let op = match version {
                Some(v) => WriteOp::update(&r, v),
                None => WriteOp::create(
                    &r,
                    Some(ResourceKey::global(ResourceKind::Zone, self.zone.clone())),
                ),
            };
            match self.store.write(vec![op]).await {
                Ok(_) => return Ok(()),
                Err(StoreError::Conflict { .. } | StoreError::AlreadyExists(_)) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(StoreError::Internal(format!(
            "ZoneInsight of zone {:?} kept changing",
            self.zone
        )))
    }

    pub async fn connect(
        &self,
        global_instance: &str,
        zone_instance: &str,
        version: &str,
    ) -> Result<(), StoreError> {
        let now = Utc::now();
        let sub = KdsSubscription {
            id: self.id.clone(),
            global_instance_id: global_instance.into(),
            zone_instance_id: zone_instance.into(),
            connect_time: now,
            disconnect_time: None,
            last_seen_time: Some(now),
            status: KdsSubscriptionStatus {
                last_update_time: Some(now),
                ..Default::default()
            },
            version: ZoneVersion {
                meshplane: version.into(),
            },
        };
        self.update(|s| {
            // Any older subscription still marked connected belonged to a stream that is gone now.
            for old in s
                .subscriptions
                .iter_mut()
                .filter(|o| o.disconnect_time.is_none())
            {
                old.disconnect_time = Some(now);
            }
            s.subscriptions.push(sub.clone());
            let excess = s.subscriptions.len().saturating_sub(MAX_SUBSCRIPTIONS);
            s.subscriptions.drain(..excess);
        })
        .await
    }

    fn apply_counters(sub: &mut KdsSubscription, stats: &BTreeMap<String, Counters>) {
        let mut total = KdsCounters::default();
        sub.status.stat = stats
            .iter()
            .map(|(t, c)| {
                total.responses_sent += c.sent;
                total.responses_acknowledged += c.acked;
                total.responses_rejected += c.rejected;
                (
                    t.clone(),
                    KdsCounters {
                        responses_sent: c.sent,
                        responses_acknowledged: c.acked,
                        responses_rejected: c.rejected,
                    },
                )
            })
            .collect();
        sub.status.total = total;
        sub.status.last_update_time = Some(Utc::now());
    }

    pub async fn heartbeat(&self, stats: &BTreeMap<String, Counters>) -> Result<(), StoreError> {
        let now = Utc::now();
        self.update(|s| {
            if let Some(sub) = s.subscriptions.iter_mut().find(|x| x.id == self.id) {
                sub.last_seen_time = Some(now);
                Self::apply_counters(sub, stats);
            }
        })
        .await
    }

    pub async fn disconnect(&self, stats: &BTreeMap<String, Counters>) -> Result<(), StoreError> {
        let now = Utc::now();
        self.update(|s| {
            if let Some(sub) = s.subscriptions.iter_mut().find(|x| x.id == self.id) {
                sub.disconnect_time = Some(now);
                sub.last_seen_time = Some(now);
                Self::apply_counters(sub, stats);
            }
        })
        .await
    }

    /// True when a newer connected subscription than ours exists (the zone reconnected elsewhere).
    pub async fn superseded(&self) -> Result<bool, StoreError> {
        let Some((
            Resource {
                spec: Spec::ZoneInsight(s),
                ..
            },
            _,
        )) = self.store.get_resource(&self.key()).await?
        else {
            return Ok(false);
        };
        let Some(ours) = s.subscriptions.iter().find(|x| x.id == self.id) else {
            // Trimmed away or overwritten: only a much newer stream could have done that.
            return Ok(true);
        };
        Ok(s.subscriptions.iter().any(|x| {
            x.id != self.id && x.disconnect_time.is_none() && x.connect_time > ours.connect_time
        }))
    }
}
