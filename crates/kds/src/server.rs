//! The global side of sync: a tonic service that authenticates each zone by its token, then runs one
//! session per stream. Every global replica serves zones; writes made through any replica reach every
//! stream through the store's change events.

mod insight;
mod session;
mod sides;

use std::{
    collections::{HashMap, VecDeque},
    pin::Pin,
    sync::{Arc, Mutex},
    time::Duration,
};

use chrono::{DateTime, Utc};
use futures::Stream;
use meshplane_core::{
    store::ResourceStore,
    tokens::{TokenKind, Tokens, ZoneClaims},
};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::proto::{self, GlobalMessage, ZoneMessage};

/// Metadata key naming the zone, checked against the token's zone claim.
pub const ZONE_HEADER: &str = "meshplane-zone";

#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub instance_id: String,
    pub version: String,
    pub max_message: usize,
    pub send_timeout: Duration,
    pub nack_backoff: Duration,
    /// How often a stream refreshes its ZoneInsight subscription (liveness and counters).
    pub insight_flush: Duration,
    pub metrics: crate::metrics::KdsMetrics,
    /// Zone pushes applied at once across all zones; the others wait, their streams held back by
    /// HTTP/2 flow control. A push is decoded, parsed and written in memory, so this (with the
    /// per-zone read-ahead) bounds what a registration storm of many zones costs global.
    pub concurrent_applies: usize,
}

impl ServerConfig {
    pub fn new(instance_id: impl Into<String>) -> Self {
        Self {
            instance_id: instance_id.into(),
            version: env!("CARGO_PKG_VERSION").into(),
            max_message: 16 * 1024 * 1024,
            send_timeout: Duration::from_secs(60),
            nack_backoff: Duration::from_secs(5),
            insight_flush: Duration::from_secs(10),
            metrics: crate::metrics::KdsMetrics::default(),
            concurrent_applies: 8,
        }
    }
}

struct Active {
    stream_id: u64,
    kill: watch::Sender<bool>,
}

/// A zone stream this replica refused (bad or revoked token, disabled or deleted Zone), kept in
/// memory for the console. The zone name of a refused stream is only a claim, so refusals never
/// reach the store, where an unauthenticated peer could fill it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The zone the peer said it was (at most 63 characters of it).
    pub zone: String,
    pub peer: String,
    /// What the zone was told, which names the cause (never the token).
    pub reason: String,
    pub first: DateTime<Utc>,
    pub last: DateTime<Utc>,
    pub count: u64,
}

/// At most this many distinct refusals are kept; the oldest goes first.
const MAX_REFUSALS: usize = 32;

pub(crate) struct Inner {
    store: Arc<dyn ResourceStore>,
    tokens: Tokens,
    cfg: ServerConfig,
    active: Mutex<HashMap<String, Active>>,
    refusals: Mutex<VecDeque<Refusal>>,
    next_id: Mutex<u64>,
    /// Handed to each session so a drain waits for open streams. Taken away once the drain starts,
    /// so the server itself never holds the drain open and refuses new streams while draining.
    drain: Mutex<Option<drain::Watch>>,
    /// `cfg.concurrent_applies` permits, shared by every zone's stream.
    applies: Arc<tokio::sync::Semaphore>,
}

#[derive(Clone)]
pub struct KdsServer {
    inner: Arc<Inner>,
}

impl KdsServer {
    /// Streams refused since start and not followed by a successful connection of the same zone,
    /// newest first.
    pub fn refusals(&self) -> Vec<Refusal> {
        let mut v: Vec<Refusal> = self
            .inner
            .refusals
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .cloned()
            .collect();
        v.reverse();
        v
    }

    pub fn new(store: Arc<dyn ResourceStore>, cfg: ServerConfig, drain: drain::Watch) -> Self {
        let tokens = Tokens::new(store.clone());
        let cfg_applies = cfg.concurrent_applies.max(1);
        let inner = Arc::new(Inner {
            store,
            tokens,
            cfg,
            active: Mutex::default(),
            refusals: Mutex::default(),
            next_id: Mutex::new(0),
            drain: Mutex::new(Some(drain.clone())),
            applies: Arc::new(tokio::sync::Semaphore::new(cfg_applies)),
        });
        let weak = Arc::downgrade(&inner);
        tokio::spawn(async move {
            let _release = drain.signaled().await;
            if let Some(inner) = weak.upgrade() {
                inner
                    .drain
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .take();
            }
        });
        Self { inner }
    }

    /// The tonic service, with gzip both ways and the message limit.
    pub fn service(self) -> proto::kds_sync_server::KdsSyncServer<Self> {
        let max = self.inner.cfg.max_message;
        proto::kds_sync_server::KdsSyncServer::new(self)
            .send_compressed(tonic::codec::CompressionEncoding::Gzip)
            .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
            .max_decoding_message_size(max)
            .max_encoding_message_size(max)
    }

    /// Zones with a stream open on this replica.
    pub fn connected_zones(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .inner
            .active
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .keys()
            .cloned()
            .collect();
        v.sort();
        v
    }
}

impl Inner {
    /// Remembers that `zone`'s stream was refused; the same zone and reason again only counts.
    fn refused(&self, zone: &str, peer: &str, reason: &str) {
        let zone: String = zone.chars().take(63).collect();
        let reason: String = reason.chars().take(512).collect();
        let now = Utc::now();
        let mut list = self
            .refusals
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(i) = list
            .iter()
            .position(|r| r.zone == zone && r.reason == reason)
            && let Some(mut r) = list.remove(i)
        {
            r.last = now;
            r.count += 1;
            r.peer = peer.to_string();
            list.push_back(r);
            return;
        }
        if list.len() >= MAX_REFUSALS {
            list.pop_front();
        }
        list.push_back(Refusal {
            zone,
            peer: peer.to_string(),
            reason,
            first: now,
            last: now,
            count: 1,
        });
    }

    /// A zone that connected is no longer refused.
    fn accepted(&self, zone: &str) {
        self.refusals
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|r| r.zone != zone);
    }

    /// Registers a new stream for `zone`, closing an older one of the same zone on this replica
    /// (a half-open stream behind a proxy would otherwise linger: Kuma PR 12983).
    fn register(&self, zone: &str) -> (u64, watch::Receiver<bool>) {
        let id = {
            let mut n = self
                .next_id
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            *n += 1;
            *n
        };
        let (kill, rx) = watch::channel(false);
        let old = self
            .active
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(
                zone.to_string(),
                Active {
                    stream_id: id,
                    kill,
                },
            );
        self.cfg.metrics.connected.set(
            i64::try_from(
                self.active
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .len(),
            )
            .unwrap_or(0),
        );
        if let Some(old) = old {
            tracing::info!(
                zone,
                old_stream = old.stream_id,
                new_stream = id,
                "closing the older stream of a reconnected zone"
            );
            let _ = old.kill.send(true);
        }
        (id, rx)
    }

    fn unregister(&self, zone: &str, id: u64) {
        let mut active = self
            .active
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if active.get(zone).is_some_and(|a| a.stream_id == id) {
            active.remove(zone);
        }
        self.cfg
            .metrics
            .connected
            .set(i64::try_from(active.len()).unwrap_or(0));
    }
}

fn bearer(req: &Request<Streaming<ZoneMessage>>) -> Option<String> {
    let v = req.metadata().get("authorization")?.to_str().ok()?;
    v.strip_prefix("Bearer ").map(|t| t.trim().to_string())
}

#[tonic::async_trait]
impl proto::kds_sync_server::KdsSync for KdsServer {
    type SyncStream = Pin<Box<dyn Stream<Item = Result<GlobalMessage, Status>> + Send>>;

    async fn sync(
        &self,
        req: Request<Streaming<ZoneMessage>>,
    ) -> Result<Response<Self::SyncStream>, Status> {
        let peer = req.remote_addr().map(|a| a.to_string()).unwrap_or_default();
        let claimed = req
            .metadata()
            .get(ZONE_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let refuse = |status: Status| {
            self.inner.refused(&claimed, &peer, status.message());
            Err(status)
        };
        let Some(token) = bearer(&req) else {
            tracing::warn!(zone = %claimed, %peer, "zone refused: no zone token");
            return refuse(Status::unauthenticated(
                "a zone token is required (authorization: Bearer <token>)",
            ));
        };
        let verified = match self
            .inner
            .tokens
            .verify::<ZoneClaims>(TokenKind::Zone, &token)
            .await
        {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(zone = %claimed, %peer, reason = %e, "zone refused: invalid zone token");
                return refuse(Status::unauthenticated(format!("zone token refused: {e}")));
            }
        };
        if verified.claims.zone != claimed {
            tracing::warn!(zone = %claimed, token_zone = %verified.claims.zone, %peer, "zone refused: token belongs to another zone");
            return refuse(Status::unauthenticated(format!(
                "zone token is for zone {:?}, not {:?}",
                verified.claims.zone, claimed
            )));
        }
        let zone = claimed;
        tracing::info!(zone = %zone, %peer, "zone authenticated");
        let Some(drain) = self
            .inner
            .drain
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
        else {
            return Err(Status::unavailable("global is shutting down"));
        };
        let (tx, rx) = mpsc::channel::<Result<GlobalMessage, Status>>(64);
        let inbound = req.into_inner();
        let inner = self.inner.clone();
        let span = tracing::info_span!("kds_stream", zone = %zone);
        tokio::spawn(tracing::Instrument::instrument(
            session::run(inner, zone, peer, token, inbound, tx, drain),
            span,
        ));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
