//! Change-event fan-out shared by the store implementations. A subscriber either sees every event in
//! commit order or is told to `Resync` (it fell behind, or the store may have missed events).

use tokio::sync::{broadcast, watch};

use super::ChangeEvent;

/// How many events a subscriber may fall behind before it is told to resync.
pub const EVENT_BUFFER: usize = 16 * 1024;

/// The sending side, owned by a store.
pub struct EventHub {
    tx: broadcast::Sender<ChangeEvent>,
    epoch: watch::Sender<u64>,
}

impl Default for EventHub {
    fn default() -> Self {
        Self::new()
    }
}

impl EventHub {
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(EVENT_BUFFER);
        let (epoch, _) = watch::channel(0);
        Self { tx, epoch }
    }

    pub fn publish(&self, e: ChangeEvent) {
        // Nobody subscribed yet is fine.
        let _ = self.tx.send(e);
    }

    /// Tells every subscriber that events may have been lost and it must re-list.
    pub fn resync(&self) {
        self.epoch.send_modify(|e| *e += 1);
    }

    pub fn subscribe(&self) -> Subscription {
        let mut epoch = self.epoch.subscribe();
        epoch.mark_unchanged();
        Subscription {
            rx: self.tx.subscribe(),
            epoch,
        }
    }
}

/// What a subscriber receives next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Received {
    Event(ChangeEvent),
    /// Events may have been missed: re-list what you track.
    Resync,
    /// The store is gone.
    Closed,
}

pub struct Subscription {
    rx: broadcast::Receiver<ChangeEvent>,
    epoch: watch::Receiver<u64>,
}

impl Subscription {
    pub async fn recv(&mut self) -> Received {
        if self.epoch.has_changed().unwrap_or(false) {
            self.epoch.mark_unchanged();
            return Received::Resync;
        }
        tokio::select! {
            biased;
            changed = self.epoch.changed() => match changed {
                Ok(()) => {
                    self.epoch.mark_unchanged();
                    Received::Resync
                }
                Err(_) => Received::Closed,
            },
            r = self.rx.recv() => match r {
                Ok(e) => Received::Event(e),
                Err(broadcast::error::RecvError::Lagged(_)) => Received::Resync,
                Err(broadcast::error::RecvError::Closed) => Received::Closed,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{model::ResourceKey, store::ChangeOp};

    #[tokio::test]
    async fn resync_and_events() {
        let hub = EventHub::new();
        let mut sub = hub.subscribe();
        let e = ChangeEvent {
            op: ChangeOp::Create,
            key: ResourceKey::mesh("m"),
            version: 1,
        };
        hub.publish(e.clone());
        assert_eq!(sub.recv().await, Received::Event(e));
        hub.resync();
        assert_eq!(sub.recv().await, Received::Resync);
        drop(hub);
        assert_eq!(sub.recv().await, Received::Closed);
    }
}
