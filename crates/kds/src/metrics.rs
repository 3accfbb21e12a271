//! Prometheus metrics of zone sync.

use prometheus_client::{
    metrics::{counter::Counter, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

#[derive(Clone, Debug)]
pub struct KdsMetrics {
    /// Zones with a stream open on this replica (global) or 1 while connected (zone).
    pub connected: Gauge,
    /// Time from sending a push to receiving its acknowledgement: the sync lag a change sees.
    pub ack_seconds: Histogram,
    /// Known-versions entries received in handshakes: with summaries, what a reconnect re-lists.
    pub handshake_entries: Counter,
}

impl Default for KdsMetrics {
    fn default() -> Self {
        Self {
            connected: Gauge::default(),
            ack_seconds: Histogram::new([
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
            ]),
            handshake_entries: Counter::default(),
        }
    }
}

impl KdsMetrics {
    /// Registers under `kds_` with names fitting the side (`zones_connected` at global).
    pub fn register(reg: &mut Registry, global: bool) -> Self {
        let m = Self::default();
        if global {
            reg.register(
                "kds_zones_connected",
                "Zones with a sync stream open on this replica",
                m.connected.clone(),
            );
        } else {
            reg.register(
                "kds_connected",
                "1 while this zone's sync stream to global is open",
                m.connected.clone(),
            );
        }
        reg.register(
            "kds_sync_lag_seconds",
            "Time from a sync push to its acknowledgement",
            m.ack_seconds.clone(),
        );
        reg.register(
            "kds_handshake_known_entries",
            "Known-versions entries received from the peer in sync handshakes",
            m.handshake_entries.clone(),
        );
        m
    }
}
