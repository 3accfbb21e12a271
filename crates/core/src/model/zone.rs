//! `Zone` (written at global) and `ZoneInsight` (the sync status global keeps for each zone).

use std::{collections::BTreeMap, time::Duration};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::decode::{Decoder, Obj};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ZoneSpec {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

impl ZoneSpec {
    pub fn is_enabled(&self) -> bool {
        self.enabled.unwrap_or(true)
    }

    pub(crate) fn decode(d: &mut Decoder, o: &mut Obj<'_>) -> Option<Self> {
        let enabled = o.opt_bool(d, "enabled");
        Some(Self { enabled })
    }
}

/// What global knows of a zone's sync streams, newest subscription last.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ZoneInsightSpec {
    #[serde(default)]
    pub subscriptions: Vec<KdsSubscription>,
}

/// How long a connected subscription stays online without proof of life (`last_seen_time`).
// Fixed, not derived from the serving replica's `--kds-insight-flush`, because readers (the
// manager's zone-delete check at any replica, meshctl) do not know it; global refuses a flush above
// a third of this, so two refreshes can be missed or late (a busy or briefly store-less replica)
// before a zone whose replica died without recording the disconnect (SIGKILL) counts as offline.
pub const ZONE_INSIGHT_MAX_AGE: Duration = Duration::from_secs(30);

impl ZoneInsightSpec {
    /// The one liveness rule: online means the newest subscription was not disconnected and proved
    /// alive (`last_seen_time`, else `connect_time`) at most `max_age` before `now`.
    pub fn is_online_at(&self, now: DateTime<Utc>, max_age: Duration) -> bool {
        let Some(s) = self.subscriptions.last() else {
            return false;
        };
        if s.disconnect_time.is_some() {
            return false;
        }
        let seen = s.last_seen_time.unwrap_or(s.connect_time);
        // A negative age (a replica's clock ahead of ours) counts as fresh.
        (now - seen).to_std().ok().is_none_or(|age| age <= max_age)
    }

    /// [`Self::is_online_at`] now, with [`ZONE_INSIGHT_MAX_AGE`].
    pub fn is_online(&self) -> bool {
        self.is_online_at(Utc::now(), ZONE_INSIGHT_MAX_AGE)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KdsSubscription {
    /// Unique id of this stream.
    pub id: String,
    /// The global replica serving the stream.
    pub global_instance_id: String,
    /// The zone control plane instance on the other end.
    pub zone_instance_id: String,
    pub connect_time: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disconnect_time: Option<DateTime<Utc>>,
    /// Last time the stream proved it was alive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen_time: Option<DateTime<Utc>>,
    #[serde(default)]
    pub status: KdsSubscriptionStatus,
    #[serde(default)]
    pub version: ZoneVersion,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KdsSubscriptionStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_update_time: Option<DateTime<Utc>>,
    #[serde(default)]
    pub total: KdsCounters,
    /// Counters per resource type.
    #[serde(default)]
    pub stat: BTreeMap<String, KdsCounters>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KdsCounters {
    #[serde(default)]
    pub responses_sent: u64,
    #[serde(default)]
    pub responses_acknowledged: u64,
    #[serde(default)]
    pub responses_rejected: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ZoneVersion {
    #[serde(default)]
    pub meshplane: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(connect: DateTime<Utc>, seen: Option<DateTime<Utc>>) -> KdsSubscription {
        KdsSubscription {
            id: "s".into(),
            connect_time: connect,
            last_seen_time: seen,
            ..Default::default()
        }
    }

    #[test]
    fn online_needs_a_recent_proof_of_life() {
        let now = Utc::now();
        let secs = chrono::TimeDelta::seconds;
        let max = ZONE_INSIGHT_MAX_AGE;
        let one = |s: KdsSubscription| ZoneInsightSpec {
            subscriptions: vec![s],
        };
        assert!(!ZoneInsightSpec::default().is_online_at(now, max));
        assert!(one(sub(now - secs(3600), Some(now - secs(5)))).is_online_at(now, max));
        assert!(one(sub(now - secs(3600), Some(now - secs(30)))).is_online_at(now, max));
        // Connected but silent: its replica died without recording the disconnect.
        assert!(!one(sub(now - secs(3600), Some(now - secs(31)))).is_online_at(now, max));
        assert!(!one(sub(now - secs(3600), Some(now - secs(31)))).is_online());
        // No heartbeat yet: the connect time counts.
        assert!(one(sub(now - secs(5), None)).is_online_at(now, max));
        assert!(!one(sub(now - secs(60), None)).is_online_at(now, max));
        // A clock ahead of ours is not stale.
        assert!(one(sub(now, Some(now + secs(5)))).is_online_at(now, max));
        let mut gone = sub(now - secs(10), Some(now));
        gone.disconnect_time = Some(now);
        assert!(!one(gone).is_online_at(now, max));
        // Only the newest subscription counts.
        let earlier = sub(now - secs(7200), Some(now));
        let newest = sub(now - secs(3600), Some(now - secs(100)));
        let z = ZoneInsightSpec {
            subscriptions: vec![earlier, newest],
        };
        assert!(!z.is_online_at(now, max));
    }
}
