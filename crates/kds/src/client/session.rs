//! One connection of a zone to global: Hello, Welcome, initial reconcile both ways, then the link loop.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
    time::Duration,
};

use meshplane_core::{
    model::ResourceKey,
    store::{Received, ResourceStore},
};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;

use super::{ClientConfig, ClientError, SyncStatus, endpoint, sides};
use crate::{
    chunk,
    link::{Inbound, Link, LinkConfig},
    mirror::Mirror,
    proto::{self, GlobalMessage, ZoneMessage, global_message, zone_message},
    server::ZONE_HEADER,
    summary,
    view::{Item, key_of},
};

const WELCOME_TIMEOUT: Duration = Duration::from_secs(30);

fn wrap_push(p: proto::Push) -> ZoneMessage {
    ZoneMessage {
        msg: Some(zone_message::Msg::Push(p)),
    }
}

fn wrap_ack(a: proto::Ack) -> ZoneMessage {
    ZoneMessage {
        msg: Some(zone_message::Msg::Ack(a)),
    }
}

fn read_token(cfg: &ClientConfig) -> Result<String, ClientError> {
    let err = |reason: String| ClientError::Token {
        path: cfg.token_file.display().to_string(),
        reason,
    };
    let t = std::fs::read_to_string(&cfg.token_file).map_err(|e| err(e.to_string()))?;
    let t = t.trim().to_string();
    if t.is_empty() {
        return Err(err("the file is empty".into()));
    }
    Ok(t)
}

/// Why connecting failed: for a refused certificate, what is wrong with global's in words first,
/// then the transport's own chain (which names rustls' code, such as `CaUsedAsEndEntity`).
fn connect_reason(e: &tonic::transport::Error) -> String {
    use meshplane_core::runtime::{telemetry::error_chain, tls_refusal};
    let chain = error_chain(e);
    let global = tls_refusal::Server {
        name: "global",
        cert_flag: "global's --kds-tls-cert-file",
        san_flag: "global's --kds-tls-san",
        ca_flag: "--kds-ca-file",
        address_flag: "--global-address",
    };
    match tls_refusal::explain(e, &global) {
        Some(words) => format!("{words} ({chain})"),
        None => chain,
    }
}

/// Connects and syncs until the stream ends. `Ok` means global closed it cleanly.
pub(super) async fn connect_and_sync(
    cfg: &ClientConfig,
    store: Arc<dyn ResourceStore>,
    status: &watch::Sender<SyncStatus>,
) -> Result<(), ClientError> {
    let token = read_token(cfg)?;
    let channel = endpoint(cfg)?
        .connect()
        .await
        .map_err(|e| ClientError::Connect {
            address: cfg.global_address.clone(),
            reason: connect_reason(&e),
        })?;
    let mut client = proto::kds_sync_client::KdsSyncClient::new(channel)
        .send_compressed(tonic::codec::CompressionEncoding::Gzip)
        .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
        .max_decoding_message_size(cfg.max_message)
        .max_encoding_message_size(cfg.max_message);

    // Subscribe before reading what we hold, so nothing committed in between is missed.
    let mut sub = store.subscribe();
    let known = sides::held_from_global(store.as_ref())
        .await
        .map_err(|e| ClientError::Stream(e.to_string()))?;
    let (known, known_continues, parts) = chunk::handshake_known(known, cfg.max_message);
    // Room for the Hello and all its parts: they are queued before the stream starts.
    let (out_tx, out_rx) = mpsc::channel::<ZoneMessage>(64 + parts.len());
    let hello = proto::Hello {
        zone: cfg.zone.clone(),
        instance_id: cfg.instance_id.clone(),
        version: cfg.version.clone(),
        known,
        known_continues,
        accepts_summary: cfg.accept_summary,
    };
    let messages = std::iter::once(ZoneMessage {
        msg: Some(zone_message::Msg::Hello(hello)),
    })
    .chain(parts.into_iter().map(|p| ZoneMessage {
        msg: Some(zone_message::Msg::KnownPart(p)),
    }));
    for m in messages {
        out_tx
            .send(m)
            .await
            .map_err(|_| ClientError::Stream("could not queue Hello".into()))?;
    }

    let mut req = tonic::Request::new(ReceiverStream::new(out_rx));
    let auth = format!("Bearer {token}")
        .parse()
        .map_err(|_| ClientError::Token {
            path: cfg.token_file.display().to_string(),
            reason: "not a valid header value".into(),
        })?;
    req.metadata_mut().insert("authorization", auth);
    req.metadata_mut().insert(
        ZONE_HEADER,
        cfg.zone.parse().map_err(|_| {
            ClientError::Address(
                cfg.zone.clone(),
                "zone name is not a valid header value".into(),
            )
        })?,
    );
    let mut inbound = client
        .sync(req)
        .await
        .map_err(ClientError::Refused)?
        .into_inner();

    let mut welcome = match tokio::time::timeout(WELCOME_TIMEOUT, inbound.message()).await {
        Ok(Ok(Some(GlobalMessage {
            msg: Some(global_message::Msg::Welcome(w)),
        }))) => w,
        Ok(Ok(Some(_))) => {
            return Err(ClientError::Stream(
                "global did not start with Welcome".into(),
            ));
        }
        Ok(Ok(None)) => return Ok(()),
        Ok(Err(s)) => return Err(ClientError::Refused(s)),
        Err(_) => return Err(ClientError::Stream("no Welcome within 30s".into())),
    };
    let mut more = welcome.known_continues;
    while more {
        let p = known_part(
            &mut inbound,
            "the Welcome said more of its known list follows",
        )
        .await?;
        welcome.known.extend(p.known);
        more = p.continues;
    }
    cfg.metrics.connected.set(1);
    let _connected = ConnectedGauge(cfg.metrics.connected.clone());
    status.send_modify(|s| {
        s.connected = true;
        s.connects += 1;
        s.last_error = None;
        s.last_error_time = None;
        s.connected_since = Some(chrono::Utc::now());
        s.global_instance = Some(welcome.global_instance_id.clone());
    });
    tracing::info!(zone = %cfg.zone, global = %welcome.global_instance_id, "connected to global");

    let lcfg = LinkConfig {
        apply_permits: None,
        metrics: cfg.metrics.clone(),
        max_message: cfg.max_message,
        send_timeout: cfg.send_timeout,
        nack_backoff: cfg.nack_backoff,
        peer: "global".into(),
    };
    let mut link = Link::new(
        store.clone(),
        Box::new(sides::ZoneOutbound {
            zone: cfg.zone.clone(),
        }),
        Box::new(sides::ZonePolicy),
        out_tx.clone(),
        wrap_push,
        wrap_ack,
        lcfg,
    );
    let stream_err = |e: crate::link::LinkError| ClientError::Stream(e.to_string());
    match welcome.summary.take() {
        Some(s) => {
            let theirs = summary::Digests::from_proto(&s).map_err(ClientError::Stream)?;
            let current = link
                .full()
                .await
                .map_err(|e| ClientError::Stream(e.to_string()))?;
            let held = held_from_summary(&theirs, &current, &out_tx, &mut inbound).await?;
            cfg.metrics.handshake_entries.inc_by(held.listed as u64);
            link.initial_sync_from(Mirror::from_held(held.held), current)
                .await
                .map_err(stream_err)?;
        }
        None => {
            cfg.metrics
                .handshake_entries
                .inc_by(welcome.known.len() as u64);
            link.initial_sync(&welcome.known)
                .await
                .map_err(stream_err)?;
        }
    }

    // Unbounded on purpose: global bounds what it reads from us (server/session.rs), so one side
    // must always take what the other sends or both could wait on each other. What global
    // sends a zone is bounded by its view for the zone.
    let (in_tx, mut in_rx) = mpsc::unbounded_channel();
    let reader = tokio::spawn(async move {
        loop {
            let m = inbound.message().await;
            let end = !matches!(m, Ok(Some(_)));
            if in_tx.send(m).is_err() || end {
                break;
            }
        }
    });
    let _abort = AbortOnDrop(reader);
    loop {
        let retry_at = link.next_retry();
        tokio::select! {
            m = in_rx.recv() => match m {
                Some(Ok(Some(GlobalMessage { msg: Some(global_message::Msg::Push(p)) }))) => {
                    let initial = p.initial;
                    let handled = link.handle_push(p).await.map_err(|e| ClientError::Stream(e.to_string()))?;
                    status.send_modify(|s| s.last_sync = Some(chrono::Utc::now()));
                    match handled {
                        Inbound::InitialDone => {
                            status.send_modify(|s| {
                                s.synced_once = true;
                                s.synced_connection = s.connects;
                            });
                            tracing::info!(zone = %cfg.zone, "in sync with global");
                        }
                        Inbound::Nothing if initial => {}
                        Inbound::Nothing => {}
                    }
                }
                Some(Ok(Some(GlobalMessage { msg: Some(global_message::Msg::Ack(a)) }))) => link.handle_ack(a),
                Some(Ok(Some(_))) => return Err(ClientError::Stream("unexpected message from global".into())),
                Some(Ok(None)) | None => return Ok(()),
                Some(Err(s)) => return Err(ClientError::Stream(format!("{:?}: {}", s.code(), s.message()))),
            },
            ev = sub.recv() => match ev {
                Received::Event(e) => link.handle_events(e, &mut sub).await.map_err(|e| ClientError::Stream(e.to_string()))?,
                Received::Resync => link.resync().await.map_err(|e| ClientError::Stream(e.to_string()))?,
                Received::Closed => return Err(ClientError::Stream("the zone's store closed".into())),
            },
            _ = sleep_until(retry_at), if retry_at.is_some() => link.retry_due().await.map_err(|e| ClientError::Stream(e.to_string()))?,
        }
    }
}

/// The next KnownPart of the handshake; `after` says what announced it, for the error.
async fn known_part(
    inbound: &mut tonic::Streaming<GlobalMessage>,
    after: &str,
) -> Result<proto::KnownPart, ClientError> {
    match tokio::time::timeout(WELCOME_TIMEOUT, inbound.message()).await {
        Ok(Ok(Some(GlobalMessage {
            msg: Some(global_message::Msg::KnownPart(p)),
        }))) => Ok(p),
        Ok(Ok(Some(_))) => Err(ClientError::Stream(format!("{after}; expected KnownPart"))),
        Ok(Ok(None)) => Err(ClientError::Stream(format!(
            "{after}, but global closed the stream"
        ))),
        Ok(Err(s)) => Err(ClientError::Refused(s)),
        Err(_) => Err(ClientError::Stream("no KnownPart within 30s".into())),
    }
}

struct Held {
    held: HashMap<ResourceKey, String>,
    /// Entries global listed (those of the buckets that differed).
    listed: usize,
}

/// What global holds, from its summary: our own versions where a bucket's digests agree, and
/// global's entries, asked for, where they differ.
async fn held_from_summary(
    theirs: &summary::Digests,
    current: &BTreeMap<ResourceKey, Item>,
    out_tx: &mpsc::Sender<ZoneMessage>,
    inbound: &mut tonic::Streaming<GlobalMessage>,
) -> Result<Held, ClientError> {
    let buckets = theirs.buckets();
    let bucket = |k: &ResourceKey| summary::bucket_of(k.kind.name(), &k.mesh, &k.name, buckets);
    let ours = summary::Digests::new(
        buckets,
        current.values().map(|i| {
            (
                i.key.kind.name(),
                i.key.mesh.as_str(),
                i.key.name.as_str(),
                i.version.as_str(),
            )
        }),
    );
    let differing = ours.differing(theirs);
    let mut wanted: Vec<u32> = differing.iter().copied().collect();
    wanted.sort_unstable();
    let request = ZoneMessage {
        msg: Some(zone_message::Msg::KnownRequest(proto::KnownRequest {
            buckets: wanted,
        })),
    };
    out_tx
        .send(request)
        .await
        .map_err(|_| ClientError::Stream("could not queue KnownRequest".into()))?;
    let mut held: HashMap<ResourceKey, String> = current
        .iter()
        .filter(|(k, _)| !differing.contains(&bucket(k)))
        .map(|(k, i)| (k.clone(), i.version.clone()))
        .collect();
    let mut listed = 0;
    let mut more = !differing.is_empty();
    while more {
        let p = known_part(inbound, "global answers a KnownRequest").await?;
        listed += p.known.len();
        for k in p.known {
            let Some(key) = k.r#ref.as_ref().and_then(|r| key_of(r).ok()) else {
                continue;
            };
            // Versions come shortened: the one we hold where it matches, else one matching
            // nothing, so the diff sends ours.
            let version = match current.get(&key) {
                Some(i) if summary::is_listed_version(&i.version, &k.version) => i.version.clone(),
                _ => k.version,
            };
            held.insert(key, version);
        }
        more = p.continues;
    }
    Ok(Held { held, listed })
}

async fn sleep_until(at: Option<std::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
        None => std::future::pending().await,
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Sets the connected gauge back to 0 however the session ends.
struct ConnectedGauge(prometheus_client::metrics::gauge::Gauge);

impl Drop for ConnectedGauge {
    fn drop(&mut self) {
        self.0.set(0);
    }
}
