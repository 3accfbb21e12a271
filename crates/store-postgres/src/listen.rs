//! The change-event listener: a LISTEN connection per store that turns the `resources` trigger's
//! notifications into `ChangeEvent`s on the store's `EventHub`. It reconnects with jittered backoff
//! and, once listening again, tells every subscriber to resync: notifications sent while nobody
//! listened are gone for good.

use std::{sync::Arc, time::Duration};

use meshplane_core::{
    model::{ResourceKey, ResourceKind},
    runtime::backoff::Backoff,
    store::{ChangeEvent, ChangeOp, EventHub},
};
use serde::Deserialize;
use sqlx::postgres::{PgConnectOptions, PgListener, PgNotification, PgPoolOptions};
use tokio::task::JoinHandle;
use tracing::Instrument;

/// The channel the `resources` trigger notifies on.
pub const CHANNEL: &str = "meshplane_resource_events";

const LISTEN: &str = r#"LISTEN "meshplane_resource_events""#;

/// How often an idle listener checks that its connection still answers. A connection cut without
/// a FIN or RST (a partition, a failed-over address) otherwise looks idle forever.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(30);
const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(10);

const RECONNECT_FIRST: Duration = Duration::from_millis(200);
const RECONNECT_CAP: Duration = Duration::from_secs(30);

/// The listener task; stopped when dropped, so it lives exactly as long as its store.
pub(crate) struct ListenerTask(JoinHandle<()>);

impl Drop for ListenerTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Connects and LISTENs. The connection has a pool of its own so that it never waits behind, or
/// takes a slot from, the store's queries.
pub(crate) async fn open(
    opts: &PgConnectOptions,
    acquire_timeout: Duration,
) -> Result<PgListener, sqlx::Error> {
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .min_connections(0)
        .acquire_timeout(acquire_timeout)
        .max_lifetime(None)
        .idle_timeout(None)
        .connect_lazy_with(opts.clone());
    let mut listener = PgListener::connect_with(&pool).await?;
    // Reconnecting is ours to do, so that we know when to tell subscribers to resync.
    listener.eager_reconnect(false);
    listener.ignore_pool_close_event(true);
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

/// Starts forwarding notifications to `hub`. With `first`, already listening: nothing can have been
/// missed yet. Without it, the task connects itself and its first success counts as a reconnect.
pub(crate) fn spawn(
    opts: PgConnectOptions,
    acquire_timeout: Duration,
    hub: Arc<EventHub>,
    first: Option<PgListener>,
    target: String,
) -> ListenerTask {
    let task = run(opts, acquire_timeout, hub, first)
        .instrument(tracing::info_span!("pg_listener", %target));
    ListenerTask(tokio::spawn(task))
}

async fn run(
    opts: PgConnectOptions,
    acquire_timeout: Duration,
    hub: Arc<EventHub>,
    mut first: Option<PgListener>,
) {
    let mut backoff = Backoff::new(RECONNECT_FIRST, RECONNECT_CAP);
    loop {
        let mut listener = match first.take() {
            Some(l) => l,
            None => match open(&opts, acquire_timeout).await {
                Ok(l) => {
                    backoff.reset();
                    hub.resync();
                    tracing::info!("listening for change events again; subscribers must resync");
                    l
                }
                Err(e) => {
                    let delay = backoff.next_delay();
                    tracing::warn!(error = %e, retry_in = ?delay, "cannot listen for change events");
                    tokio::time::sleep(delay).await;
                    continue;
                }
            },
        };
        let reason = receive(&mut listener, &hub, HEARTBEAT_EVERY).await;
        tracing::warn!(%reason, "lost the change-event connection; reconnecting");
    }
}

enum Next {
    Notification(Result<Option<PgNotification>, sqlx::Error>),
    Heartbeat,
}

/// Forwards notifications until the connection fails; returns why it stopped.
async fn receive(listener: &mut PgListener, hub: &EventHub, every: Duration) -> String {
    let mut heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        // `try_recv` is cancel-safe: a notification half-read when the heartbeat fires stays
        // buffered in the connection for the next call.
        let next = tokio::select! {
            r = listener.try_recv() => Next::Notification(r),
            _ = heartbeat.tick() => Next::Heartbeat,
        };
        match next {
            Next::Notification(Ok(Some(n))) => publish(hub, n.payload()),
            Next::Notification(Ok(None)) => return "the connection was closed".into(),
            Next::Notification(Err(e)) => return e.to_string(),
            Next::Heartbeat => {
                // LISTEN on a channel already listened to is a no-op round trip, and it keeps
                // the connection showing as a LISTEN in pg_stat_activity for operators.
                let ping = sqlx::query(LISTEN).execute(&mut *listener);
                match tokio::time::timeout(HEARTBEAT_TIMEOUT, ping).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return format!("heartbeat failed: {e}"),
                    Err(_) => return format!("heartbeat got no answer in {HEARTBEAT_TIMEOUT:?}"),
                }
            }
        }
    }
}

fn publish(hub: &EventHub, payload: &str) {
    match parse(payload) {
        Ok(Some(e)) => hub.publish(e),
        // A kind only a newer binary knows: nothing here tracks it.
        Ok(None) => tracing::debug!(
            payload,
            "ignoring a change to a resource type this binary does not know"
        ),
        Err(e) => {
            // Something changed and we cannot tell what: subscribers must re-read.
            tracing::warn!(error = %e, "unreadable change notification; subscribers must resync");
            hub.resync();
        }
    }
}

#[derive(Deserialize)]
enum Op {
    #[serde(rename = "INSERT")]
    Insert,
    #[serde(rename = "UPDATE")]
    Update,
    #[serde(rename = "DELETE")]
    Delete,
}

/// The trigger's payload: `{"op": "INSERT|UPDATE|DELETE", "type", "mesh", "name", "version", "at"}` (`at` only keeps payloads distinct).
#[derive(Deserialize)]
struct Payload {
    op: Op,
    #[serde(rename = "type")]
    kind: String,
    mesh: String,
    name: String,
    version: i64,
}

/// The event a payload announces; `None` for a type this binary does not know.
fn parse(payload: &str) -> Result<Option<ChangeEvent>, serde_json::Error> {
    let p: Payload = serde_json::from_str(payload)?;
    let Some(kind) = ResourceKind::from_name(&p.kind) else {
        return Ok(None);
    };
    let op = match p.op {
        Op::Insert => ChangeOp::Create,
        Op::Update => ChangeOp::Update,
        Op::Delete => ChangeOp::Delete,
    };
    Ok(Some(ChangeEvent {
        op,
        key: ResourceKey::in_mesh(kind, p.mesh, p.name),
        version: p.version,
    }))
}

#[cfg(test)]
mod tests {
    use meshplane_core::store::Received;

    use super::*;

    #[test]
    fn parses_trigger_payloads() {
        // As json_build_object prints it.
        let p =
            r#"{"op" : "DELETE", "type" : "Secret", "mesh" : "m", "name" : "s", "version" : 3}"#;
        assert_eq!(
            parse(p).unwrap(),
            Some(ChangeEvent {
                op: ChangeOp::Delete,
                key: ResourceKey::in_mesh(ResourceKind::Secret, "m", "s"),
                version: 3,
            })
        );
        let p = r#"{"op":"INSERT","type":"Mesh","mesh":"","name":"default","version":1}"#;
        assert_eq!(parse(p).unwrap().map(|e| e.op), Some(ChangeOp::Create));
        let p = r#"{"op":"UPDATE","type":"MeshTimeout","mesh":"m","name":"t","version":2}"#;
        assert_eq!(parse(p).unwrap(), None, "unknown kinds are skipped");
        assert!(
            parse(r#"{"op":"TRUNCATE","type":"Mesh","mesh":"","name":"x","version":1}"#).is_err()
        );
        assert!(parse("not json").is_err());
        assert!(LISTEN.contains(CHANNEL));
    }

    /// Heartbeats interleave with notifications without losing any, and a killed connection ends
    /// the session with a reason.
    #[tokio::test]
    async fn heartbeats_keep_notifications_flowing() {
        use meshplane_test_support::postgres::TestDatabase;
        use sqlx::{Executor, PgPool};

        let db = TestDatabase::create().await.unwrap();
        let opts: PgConnectOptions = db.url.parse().unwrap();
        let mut listener = open(&opts, Duration::from_secs(5)).await.unwrap();
        let hub = Arc::new(EventHub::new());
        let mut sub = hub.subscribe();
        let session = {
            let hub = hub.clone();
            tokio::spawn(
                async move { receive(&mut listener, &hub, Duration::from_millis(20)).await },
            )
        };
        let pool = PgPool::connect(&db.url).await.unwrap();
        for i in 0..5 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let payload =
                format!(r#"{{"op":"INSERT","type":"Zone","mesh":"","name":"z{i}","version":1}}"#);
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(CHANNEL)
                .bind(&payload)
                .execute(&pool)
                .await
                .unwrap();
            let got = tokio::time::timeout(Duration::from_secs(10), sub.recv())
                .await
                .unwrap();
            assert!(
                matches!(&got, Received::Event(e) if e.key.name == format!("z{i}")),
                "{got:?}"
            );
        }
        pool.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND query ILIKE 'LISTEN%'",
        )
        .await
        .unwrap();
        let reason = tokio::time::timeout(Duration::from_secs(10), session)
            .await
            .unwrap()
            .unwrap();
        assert!(!reason.is_empty());
    }

    #[tokio::test]
    async fn unreadable_payloads_ask_for_a_resync() {
        let hub = EventHub::new();
        let mut sub = hub.subscribe();
        publish(&hub, "{}");
        assert_eq!(sub.recv().await, Received::Resync);
        publish(
            &hub,
            r#"{"op":"INSERT","type":"Zone","mesh":"","name":"z","version":1}"#,
        );
        assert!(matches!(sub.recv().await, Received::Event(e) if e.key.name == "z"));
    }
}
