//! The ZoneInsight subscription a stream keeps at global: connect and disconnect times, liveness and
//! per-type sent/acknowledged/rejected counters. Each stream's subscription has a random id, so a
//! restarted replica (same `--instance-id`, stream numbers from 1 again) never updates an older
//! stream's entry. `last_seen_time` is refreshed every flush; readers judge liveness with
//! `ZoneInsightSpec::is_online_at` and `ZONE_INSIGHT_MAX_AGE`, so a zone whose replica was killed
//! without recording the disconnect stops counting as connected once that time is older than the bound.

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

impl<'a> Insight<'a> {
    /// A new subscription of `zone`'s stream, with an id no other stream had (uuid v4).
    pub fn new(store: &'a dyn ResourceStore, zone: &str) -> Self {
        Self {
            store,
            zone: zone.to_string(),
            id: uuid::Uuid::new_v4().to_string(),
        }
    }

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

#[cfg(test)]
mod tests {
    use super::*;
    use meshplane_core::{
        model::{ZoneSpec, zone::ZONE_INSIGHT_MAX_AGE},
        store::memory::MemoryStore,
    };

    async fn insight(store: &dyn ResourceStore) -> ZoneInsightSpec {
        match store
            .get_resource(&ResourceKey::global(ResourceKind::ZoneInsight, "east"))
            .await
            .expect("read")
        {
            Some((
                Resource {
                    spec: Spec::ZoneInsight(s),
                    ..
                },
                _,
            )) => s,
            other => panic!("no insight: {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_restarted_global_with_the_same_instance_id_records_its_own_stream() {
        let store = MemoryStore::new();
        let zone = Resource::new(
            Meta {
                name: "east".into(),
                ..Default::default()
            },
            Spec::Zone(ZoneSpec::default()),
        );
        store
            .write(vec![WriteOp::create(&zone, None)])
            .await
            .expect("zone");
        let stats = BTreeMap::new();

        // global-1 serves the zone's first stream, then is killed: no disconnect is recorded.
        let before = Insight::new(&store, "east");
        before
            .connect("global-1", "east-1", "1")
            .await
            .expect("connect");
        drop(before);

        // global-1 restarts (same instance id, stream numbering from the start) and the zone reconnects.
        let after = Insight::new(&store, "east");
        after
            .connect("global-1", "east-1", "1")
            .await
            .expect("connect");
        after.heartbeat(&stats).await.expect("heartbeat");
        let s = insight(&store).await;
        assert_eq!(s.subscriptions.len(), 2);
        assert_ne!(s.subscriptions[0].id, s.subscriptions[1].id);
        assert!(s.is_online_at(Utc::now(), ZONE_INSIGHT_MAX_AGE));
        assert!(!after.superseded().await.expect("superseded"));

        after.disconnect(&stats).await.expect("disconnect");
        let s = insight(&store).await;
        assert!(
            s.subscriptions.iter().all(|x| x.disconnect_time.is_some()),
            "{s:?}"
        );
        assert!(!s.is_online_at(Utc::now(), ZONE_INSIGHT_MAX_AGE));
    }
}
