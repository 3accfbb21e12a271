//! One zone's stream at global: handshake, initial reconcile, then pushes both ways until the zone
//! goes away, a newer stream of the same zone replaces it, the Zone is deleted or disabled, or global
//! drains.

use std::{sync::Arc, time::Duration};

use chrono::Utc;
use meshplane_core::{
    model::{Meta, Resource, ResourceKey, ResourceKind, Spec, ZoneSpec},
    store::{ChangeOp, Received, ResourceStore, ResourceStoreExt, StoreError, WriteOp},
    tokens::{TokenKind, ZoneClaims},
};
use tokio::sync::mpsc;
use tonic::{Status, Streaming};

use super::{
    Inner,
    insight::Insight,
    sides::{GlobalOutbound, GlobalPolicy, zone_known},
};
use crate::{
    chunk,
    link::{Inbound, Link, LinkConfig, LinkError},
    proto::{self, GlobalMessage, ZoneMessage, global_message, zone_message},
    summary,
};

const HELLO_TIMEOUT: Duration = Duration::from_secs(30);

type Out = Result<GlobalMessage, Status>;

fn wrap_push(p: proto::Push) -> Out {
    Ok(GlobalMessage {
        msg: Some(global_message::Msg::Push(p)),
    })
}

fn wrap_ack(a: proto::Ack) -> Out {
    Ok(GlobalMessage {
        msg: Some(global_message::Msg::Ack(a)),
    })
}

fn store_status(e: StoreError) -> Status {
    Status::unavailable(format!("global's store is unavailable: {e}"))
}

impl From<LinkError> for Status {
    fn from(e: LinkError) -> Self {
        match e {
            LinkError::Store(s) => store_status(s),
            other => Status::unavailable(other.to_string()),
        }
    }
}

pub(super) async fn run(
    inner: Arc<Inner>,
    zone: String,
    peer: String,
    token: String,
    inbound: Streaming<ZoneMessage>,
    tx: mpsc::Sender<Out>,
    drain: drain::Watch,
) {
    let started = std::time::Instant::now();
    match session(&inner, &zone, &token, inbound, &tx, drain).await {
        Ok(()) => tracing::info!(zone, duration = ?started.elapsed(), "zone stream closed"),
        Err(status) => {
            tracing::warn!(zone, code = ?status.code(), reason = status.message(), "zone stream ended");
            // Refusals the zone's operator must act on: a token that stopped being valid, a Zone
            // disabled or deleted at global, a Hello for another zone.
            if matches!(
                status.code(),
                tonic::Code::Unauthenticated | tonic::Code::PermissionDenied
            ) {
                inner.refused(&zone, &peer, status.message());
            }
            let _ = tx.send(Err(status)).await;
        }
    }
}

/// Makes sure the Zone exists (zones appear by connecting, as in Kuma) and is enabled.
async fn ensure_zone(store: &dyn ResourceStore, zone: &str) -> Result<(), Status> {
    let key = ResourceKey::global(ResourceKind::Zone, zone);
    match store.get_resource(&key).await.map_err(store_status)? {
        Some((
            Resource {
                spec: Spec::Zone(z),
                ..
            },
            _,
        )) if !z.is_enabled() => Err(Status::permission_denied(format!(
            "zone {zone:?} is disabled at global"
        ))),
        Some(_) => Ok(()),
        None => {
            let r = Resource::new(
                Meta {
                    name: zone.to_string(),
                    ..Default::default()
                },
                Spec::Zone(ZoneSpec {
                    enabled: Some(true),
                }),
            );
            match store.write(vec![WriteOp::create(&r, None)]).await {
                Ok(_) | Err(StoreError::AlreadyExists(_)) => Ok(()),
                Err(e) => Err(store_status(e)),
            }
        }
    }
}

async fn session(
    inner: &Inner,
    zone: &str,
    token: &str,
    mut inbound: Streaming<ZoneMessage>,
    tx: &mpsc::Sender<Out>,
    drain: drain::Watch,
) -> Result<(), Status> {
    let store = inner.store.clone();
    let mut hello = match handshake_message(&mut inbound, "Hello").await? {
        Some(ZoneMessage {
            msg: Some(zone_message::Msg::Hello(h)),
        }) => h,
        Some(_) => return Err(Status::invalid_argument("the first message must be Hello")),
        None => return Ok(()),
    };
    let mut more = hello.known_continues;
    while more {
        match handshake_message(&mut inbound, "KnownPart").await? {
            Some(ZoneMessage {
                msg: Some(zone_message::Msg::KnownPart(p)),
            }) => {
                hello.known.extend(p.known);
                more = p.continues;
            }
            Some(_) => {
                return Err(Status::invalid_argument(
                    "the Hello said more of its known list follows; expected KnownPart",
                ));
            }
            None => return Ok(()),
        }
    }
    if hello.zone != zone {
        tracing::warn!(zone, hello_zone = %hello.zone, "zone refused: Hello names another zone than its token");
        return Err(Status::unauthenticated(format!(
            "Hello names zone {:?} but the token is for {zone:?}",
            hello.zone
        )));
    }
    ensure_zone(store.as_ref(), zone).await?;
    inner.accepted(zone);
    let (stream_id, mut kill) = inner.register(zone);
    let _unregister = Unregister {
        inner,
        zone,
        id: stream_id,
    };
    // Subscribe before reading any state, so no change between the read and the loop is missed.
    let mut sub = store.subscribe();
    let insight = Insight::new(store.as_ref(), zone);
    insight
        .connect(&inner.cfg.instance_id, &hello.instance_id, &hello.version)
        .await
        .map_err(store_status)?;
    // From here on the insight records the disconnect however the stream ends, the handshake
    // included (a zone can go away while global waits for its KnownRequest).
    let link_stats = crate::link::Stats::default();
    let result: Result<(), Status> = async {
        let known = zone_known(store.as_ref(), zone)
            .await
            .map_err(store_status)?;
        inner.cfg.metrics.handshake_entries.inc_by(hello.known.len() as u64);
        if hello.accepts_summary {
            welcome_with_summary(inner, known, &mut inbound, tx).await?;
        } else {
            welcome_with_list(inner, known, tx).await?;
        }

        let cfg = LinkConfig {
            apply_permits: Some(inner.applies.clone()),
            metrics: inner.cfg.metrics.clone(),
            max_message: inner.cfg.max_message,
            send_timeout: inner.cfg.send_timeout,
            nack_backoff: inner.cfg.nack_backoff,
            peer: format!("zone {zone}"),
        };
        let mut link = Link::new(
            store.clone(),
            Box::new(GlobalOutbound),
            Box::new(GlobalPolicy {
                zone: zone.to_string(),
            }),
            tx.clone(),
            wrap_push,
            wrap_ack,
            cfg,
        );
        link.stats = link_stats.clone();
        let sent = link.initial_sync(&hello.known).await?;
        tracing::info!(zone, zone_instance = %hello.instance_id, held_by_zone = hello.known.len(), changes = sent, "zone connected; initial reconcile sent");
        // The insight reports the first sync as it happens (sent now, acknowledged and received
        // below), not at the first periodic flush: an operator watching a zone come up sees it at once.
        let flush_now = |link: &Link<Out>| {
            link.stats
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone()
        };
        if let Err(e) = insight.heartbeat(&flush_now(&link)).await {
            tracing::warn!(zone, error = %e, "could not refresh the zone insight");
        }
        let mut initial_acked = false;

        // A separate reader takes the zone's messages while we wait to send, and hands its pushes
        // to a separate applier, so the zone's writes (which wait for a share of global's apply
        // permits and for PostgreSQL) never delay what global sends it. The pushes' queue is
        // bounded: a zone pushing faster than its pushes are applied here stops being read, and
        // HTTP/2 flow control holds it back, so global keeps at most IN_QUEUE of its pushes (not a
        // whole fleet's reconnect) in memory. No deadlock: the zone's own reader never stops taking
        // ours.
        let (push_tx, mut push_rx) = mpsc::channel::<proto::Push>(IN_QUEUE);
        let (in_tx, mut in_rx) = mpsc::channel::<Result<Option<ZoneMessage>, Status>>(IN_QUEUE);
        let reader = tokio::spawn(async move {
            loop {
                let m = inbound.message().await;
                let sent = match m {
                    Ok(Some(ZoneMessage {
                        msg: Some(zone_message::Msg::Push(p)),
                    })) => push_tx.send(p).await.is_ok(),
                    m => {
                        let end = !matches!(m, Ok(Some(_)));
                        in_tx.send(m).await.is_ok() && !end
                    }
                };
                if !sent {
                    break;
                }
            }
        });
        let abort_reader = AbortOnDrop(reader);
        let (applied_tx, mut applied_rx) = mpsc::channel::<Result<Inbound, LinkError>>(1);
        let applier = link.applier();
        let applying = AbortOnDrop(tokio::spawn(async move {
            while let Some(p) = push_rx.recv().await {
                let r = applier.apply_push(p).await;
                let failed = r.is_err();
                if applied_tx.send(r).await.is_err() || failed {
                    break;
                }
            }
        }));
        let mut applier_open = true;
        // Set when the zone ended or broke its stream: what it pushed before is still applied.
        let mut zone_ended = false;

        let mut flush = tokio::time::interval(inner.cfg.insight_flush);
        flush.tick().await;
        let drained = drain.signaled();
        tokio::pin!(drained);
        let ended = loop {
            let retry_at = link.next_retry();
            tokio::select! {
                _release = &mut drained => {
                    tracing::info!(zone, "global is shutting down; closing the zone stream");
                    break Ok(());
                }
                _ = kill.changed() => break Err(Status::aborted("a newer stream of this zone replaced this one")),
                ev = sub.recv() => match ev {
                    Received::Event(e) => {
                        // A revocation or a signing-key change applies to streams already open.
                        if e.key.kind == ResourceKind::GlobalSecret && e.key.name.starts_with("zone-token-")
                            && let Err(reason) = inner.tokens.verify::<ZoneClaims>(TokenKind::Zone, token).await
                        {
                            tracing::warn!(zone, reason = %reason, "closing the stream: its zone token is no longer valid");
                            break Err(Status::unauthenticated(format!("zone token refused: {reason}")));
                        }
                        if e.key == ResourceKey::global(ResourceKind::Zone, zone) {
                            if e.op == ChangeOp::Delete {
                                break Err(Status::permission_denied(format!("zone {zone:?} was deleted at global")));
                            }
                            if let Err(s) = ensure_zone(store.as_ref(), zone).await {
                                break Err(s);
                            }
                        }
                        if e.key == ResourceKey::global(ResourceKind::ZoneInsight, zone) && insight.superseded().await.unwrap_or(false) {
                            break Err(Status::aborted("the zone reconnected to another global replica"));
                        }
                        if let Err(e) = link.handle_events(e, &mut sub).await { break Err(e.into()); }
                    }
                    Received::Resync => if let Err(e) = link.resync().await { break Err(e.into()); },
                    Received::Closed => break Err(Status::unavailable("global's store closed")),
                },
                applied = applied_rx.recv(), if applier_open => match applied {
                    Some(Ok(Inbound::InitialDone)) => {
                        if let Err(e) = insight.heartbeat(&flush_now(&link)).await {
                            tracing::warn!(zone, error = %e, "could not refresh the zone insight");
                        }
                    }
                    Some(Ok(Inbound::Nothing)) => {}
                    Some(Err(e)) => break Err(e.into()),
                    // The applier ends after an error (reported above) or with the reader, whose
                    // end arrives below.
                    None => applier_open = false,
                },
                m = in_rx.recv() => match m {
                    Some(Ok(Some(ZoneMessage { msg: Some(zone_message::Msg::Ack(a)) }))) => {
                        link.handle_ack(a);
                        if !initial_acked && link.unacknowledged() == 0 {
                            initial_acked = true;
                            if let Err(e) = insight.heartbeat(&flush_now(&link)).await {
                                tracing::warn!(zone, error = %e, "could not refresh the zone insight");
                            }
                        }
                    }
                    Some(Ok(Some(_))) => break Err(Status::invalid_argument("unexpected message after Hello")),
                    // A clean end from the zone is a disconnect like any other.
                    Some(Ok(None)) | None => {
                        zone_ended = true;
                        break Ok(());
                    }
                    Some(Err(status)) => {
                        tracing::info!(zone, code = ?status.code(), reason = status.message(), "zone stream broke");
                        zone_ended = true;
                        break Ok(());
                    }
                },
                _ = sleep_until(retry_at), if retry_at.is_some() => {
                    if let Err(e) = link.retry_due().await { break Err(e.into()); }
                }
                _ = flush.tick() => {
                    if let Err(reason) = inner.tokens.verify::<ZoneClaims>(TokenKind::Zone, token).await {
                        tracing::warn!(zone, reason = %reason, "closing the stream: its zone token is no longer valid");
                        break Err(Status::unauthenticated(format!("zone token refused: {reason}")));
                    }
                    let stats = link.stats.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
                    if let Err(e) = insight.heartbeat(&stats).await {
                        tracing::warn!(zone, error = %e, "could not refresh the zone insight");
                    }
                }
            }
        };
        // Pushes the zone sent before its own end are applied, as when they were applied in turn
        // with its messages (the reader has stopped, so the applier's queue ends). Any other end
        // (replaced by a newer stream, refused, drained) drops them unacknowledged, as before: a
        // stale push written beside a newer stream's reconcile could outlive it.
        drop(abort_reader);
        if zone_ended {
            applying.finish(APPLY_GRACE).await;
        }
        ended
    }
    .await;
    let stats = link_stats
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    if let Err(e) = insight.disconnect(&stats).await {
        tracing::warn!(zone, error = %e, "could not record the disconnect in the zone insight");
    }
    tracing::debug!(zone, at = %Utc::now(), "zone stream finished");
    result
}

/// The zone's next message during the handshake (`None`: it closed the stream), within
/// HELLO_TIMEOUT; `expected` names it for the timeout's error.
async fn handshake_message(
    inbound: &mut Streaming<ZoneMessage>,
    expected: &str,
) -> Result<Option<ZoneMessage>, Status> {
    match tokio::time::timeout(HELLO_TIMEOUT, inbound.message()).await {
        Ok(m) => m,
        Err(_) => Err(Status::deadline_exceeded(format!(
            "no {expected} within 30s"
        ))),
    }
}

async fn send(tx: &mpsc::Sender<Out>, m: global_message::Msg) -> Result<(), Status> {
    tx.send(Ok(GlobalMessage { msg: Some(m) }))
        .await
        .map_err(|_| Status::cancelled("zone went away"))
}

/// The Welcome for a zone of an earlier release: everything global holds of it, listed.
async fn welcome_with_list(
    inner: &Inner,
    known: Vec<proto::KnownVersion>,
    tx: &mpsc::Sender<Out>,
) -> Result<(), Status> {
    let (known, known_continues, parts) = chunk::handshake_known(known, inner.cfg.max_message);
    let welcome = proto::Welcome {
        global_instance_id: inner.cfg.instance_id.clone(),
        known,
        known_continues,
        summary: None,
    };
    send(tx, global_message::Msg::Welcome(welcome)).await?;
    for p in parts {
        send(tx, global_message::Msg::KnownPart(p)).await?;
    }
    Ok(())
}

/// The Welcome as a summary, then the entries of the buckets the zone found different: the
/// handshake costs what changed while the zone was away, not its whole fleet.
async fn welcome_with_summary(
    inner: &Inner,
    known: Vec<proto::KnownVersion>,
    inbound: &mut Streaming<ZoneMessage>,
    tx: &mpsc::Sender<Out>,
) -> Result<(), Status> {
    let buckets = summary::buckets_for(known.len(), inner.cfg.max_message);
    let digests = summary::Digests::of_known(buckets, &known);
    let welcome = proto::Welcome {
        global_instance_id: inner.cfg.instance_id.clone(),
        known: Vec::new(),
        known_continues: false,
        summary: Some(digests.to_proto()),
    };
    send(tx, global_message::Msg::Welcome(welcome)).await?;
    let request = match handshake_message(inbound, "KnownRequest").await? {
        Some(ZoneMessage {
            msg: Some(zone_message::Msg::KnownRequest(r)),
        }) => r,
        Some(_) => {
            return Err(Status::invalid_argument(
                "the Welcome carried a summary; expected KnownRequest",
            ));
        }
        None => return Err(Status::cancelled("zone went away")),
    };
    if let Some(b) = request.buckets.iter().find(|b| **b >= buckets) {
        return Err(Status::invalid_argument(format!(
            "KnownRequest names bucket {b}; the summary has {buckets}"
        )));
    }
    if request.buckets.is_empty() {
        return Ok(());
    }
    let wanted = request.buckets.into_iter().collect();
    let entries = summary::entries_in(known, buckets, &wanted);
    let parts = chunk::known_parts(entries, inner.cfg.max_message);
    for part in chunk::known_part_messages(parts) {
        send(tx, global_message::Msg::KnownPart(part)).await?;
    }
    Ok(())
}

/// Messages from one zone read ahead of their handling: enough to decode the next push while one
/// is applied. Each can be a push of 1,024 resources, and a registration storm fills every zone's
/// queue at once, so global's memory is zones × this × a push.
const IN_QUEUE: usize = 2;

async fn sleep_until(at: Option<std::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
        None => std::future::pending().await,
    }
}

struct Unregister<'a> {
    inner: &'a Inner,
    zone: &'a str,
    id: u64,
}

impl Drop for Unregister<'_> {
    fn drop(&mut self) {
        self.inner.unregister(self.zone, self.id);
    }
}

/// How long a session that the zone ended waits for its last pushes to be applied: a write stuck
/// on an unavailable store must not hold the session open.
const APPLY_GRACE: Duration = Duration::from_secs(5);

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl AbortOnDrop {
    /// Lets the task run to its end for at most `grace`, then aborts it.
    async fn finish(mut self, grace: Duration) {
        let _ = tokio::time::timeout(grace, &mut self.0).await;
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
