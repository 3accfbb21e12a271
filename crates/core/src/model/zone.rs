//! `Zone` (written at global) and `ZoneInsight` (the sync status global keeps for each zone).

use std::collections::BTreeMap;

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

impl ZoneInsightSpec {
    /// Online means the newest subscription is connected and was not disconnected.
    pub fn is_online(&self) -> bool {
        self.subscriptions
            .last()
            .is_some_and(|s| s.disconnect_time.is_none())
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
