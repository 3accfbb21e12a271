//! The multi-zone world of scenarios 3 and 4: an in-process global sync server (the real
//! `KdsServer` over TLS on a loopback port, its store on PostgreSQL so every write goes through
//! commit and NOTIFY as in production) and lightweight zones (the real `client::run` with an
//! in-memory store each), plus a TCP proxy that counts the bytes on the wire.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::Context;
use meshplane_core::{
    runtime::tls,
    store::{ResourceStore, memory::MemoryStore},
    tokens::{TokenKind, Tokens, ZoneClaims},
};
use meshplane_kds::{
    client::{ClientConfig, SyncStatus},
    server::{KdsServer, ServerConfig},
};
use meshplane_store_postgres::{PgOptions, PgStore};
use meshplane_test_support::postgres::TestDatabase;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    sync::watch,
    task::JoinHandle,
};

use crate::env::migrated_db;

pub struct KdsGlobal {
    pub store: Arc<dyn ResourceStore>,
    pub addr: SocketAddr,
    pub ca_pem: Vec<u8>,
    drain: Option<drain::Signal>,
    task: Option<JoinHandle<()>>,
    _db: TestDatabase,
    dir: tempfile::TempDir,
}

impl KdsGlobal {
    pub async fn start() -> anyhow::Result<Self> {
        let db = migrated_db().await?;
        let pg = PgStore::connect(
            &db.url,
            PgOptions {
                max_connections: 10,
                ..PgOptions::default()
            },
        )
        .await?;
        let store: Arc<dyn ResourceStore> = Arc::new(pg);
        let dir = tempfile::tempdir()?;
        let server_tls = tls::autogenerate(store.as_ref(), &tls::KDS, dir.path(), &[]).await?;
        let ca_pem = server_tls
            .ca_pem
            .clone()
            .context("the generated sync TLS has no CA")?
            .into_bytes();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (signal, watch) = drain::channel();
        let server = KdsServer::new(
            store.clone(),
            ServerConfig::new("bench-global"),
            watch.clone(),
        );
        let task = tokio::spawn(async move {
            if let Err(e) = meshplane_kds::serve(
                listener,
                server,
                &server_tls,
                Duration::from_secs(15),
                watch,
            )
            .await
            {
                eprintln!("sync server failed: {e}");
            }
        });
        Ok(Self {
            store,
            addr,
            ca_pem,
            drain: Some(signal),
            task: Some(task),
            _db: db,
            dir,
        })
    }

    pub async fn zone_token(&self, zone: &str) -> anyhow::Result<String> {
        Ok(Tokens::new(self.store.clone())
            .issue(
                TokenKind::Zone,
                ZoneClaims {
                    zone: zone.into(),
                    scope: vec!["cp".into()],
                },
                Duration::from_secs(3600),
            )
            .await?)
    }

    /// Writes zone `name`'s token file once, so starting its client later does no store work.
    pub async fn prepare(&self, name: &str) -> anyhow::Result<std::path::PathBuf> {
        let token_file = self.dir.path().join(format!("{name}.token"));
        if !token_file.exists() {
            std::fs::write(&token_file, self.zone_token(name).await?)?;
        }
        Ok(token_file)
    }

    /// A zone dialing `addr` (global itself, or a proxy in front of it).
    pub async fn zone(
        &self,
        name: &str,
        addr: SocketAddr,
        store: Arc<dyn ResourceStore>,
    ) -> anyhow::Result<LightZone> {
        let token_file = self.prepare(name).await?;
        Ok(LightZone::start(
            name,
            &format!("grpcs://127.0.0.1:{}", addr.port()),
            token_file,
            &self.ca_pem,
            store,
        ))
    }

    pub async fn stop(mut self) {
        if let Some(d) = self.drain.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), d.drain()).await;
        }
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// A zone that only syncs: the real sync client with an in-memory store.
pub struct LightZone {
    pub store: Arc<dyn ResourceStore>,
    pub status: watch::Receiver<SyncStatus>,
    drain: Option<drain::Signal>,
    task: Option<JoinHandle<()>>,
}

impl LightZone {
    /// Starts the real sync client for zone `name` against `global_url`, storing into `store`.
    pub fn start(
        name: &str,
        global_url: &str,
        token_file: std::path::PathBuf,
        ca_pem: &[u8],
        store: Arc<dyn ResourceStore>,
    ) -> Self {
        let mut cfg = ClientConfig::new(name, global_url.to_string(), token_file);
        cfg.ca_pem = Some(ca_pem.to_vec());
        cfg.backoff_base = Duration::from_millis(100);
        cfg.backoff_cap = Duration::from_secs(1);
        let (tx, status) = watch::channel(SyncStatus::default());
        let (signal, w) = drain::channel();
        let s2 = store.clone();
        let task = tokio::spawn(async move { meshplane_kds::client::run(cfg, s2, w, tx).await });
        Self {
            store,
            status,
            drain: Some(signal),
            task: Some(task),
        }
    }

    pub fn memory() -> Arc<dyn ResourceStore> {
        Arc::new(MemoryStore::new())
    }

    pub async fn wait_synced(&mut self, limit: Duration) -> anyhow::Result<()> {
        tokio::time::timeout(limit, self.status.wait_for(|s| s.synced_once))
            .await
            .context("zone did not sync in time")?
            .context("zone stopped")?;
        Ok(())
    }

    pub async fn stop(&mut self) {
        if let Some(d) = self.drain.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), d.drain()).await;
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

/// Bytes seen by the counting proxy in each direction.
#[derive(Default)]
pub struct Counter {
    /// Zone → global.
    pub up: AtomicU64,
    /// Global → zone.
    pub down: AtomicU64,
}

impl Counter {
    pub fn reset(&self) {
        self.up.store(0, Ordering::SeqCst);
        self.down.store(0, Ordering::SeqCst);
    }

    pub fn get(&self) -> (u64, u64) {
        (
            self.up.load(Ordering::SeqCst),
            self.down.load(Ordering::SeqCst),
        )
    }
}

/// A TCP forwarder that counts every byte both ways. Each connection goes to the first of
/// `targets` that accepts it, in order: a load balancer in front of global replicas, failing over
/// when one is gone.
pub async fn proxy(
    targets: Vec<SocketAddr>,
) -> anyhow::Result<(SocketAddr, Arc<Counter>, JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let counter = Arc::new(Counter::default());
    let c = counter.clone();
    let targets = Arc::new(targets);
    let task = tokio::spawn(async move {
        while let Ok((inbound, _)) = listener.accept().await {
            let (c, targets) = (c.clone(), targets.clone());
            tokio::spawn(async move {
                let mut outbound = None;
                for t in targets.iter() {
                    if let Ok(o) = tokio::net::TcpStream::connect(t).await {
                        outbound = Some(o);
                        break;
                    }
                }
                let Some(outbound) = outbound else {
                    return;
                };
                let _ = inbound.set_nodelay(true);
                let _ = outbound.set_nodelay(true);
                let (ri, wi) = inbound.into_split();
                let (ro, wo) = outbound.into_split();
                let up = pipe(ri, wo, c.clone(), true);
                let down = pipe(ro, wi, c, false);
                let _ = tokio::join!(up, down);
            });
        }
    });
    Ok((addr, counter, task))
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    c: Arc<Counter>,
    up: bool,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let field = if up { &c.up } else { &c.down };
        field.fetch_add(n as u64, Ordering::SeqCst);
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}
