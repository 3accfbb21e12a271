//! An in-process global (sync server over real TLS on a loopback port) and zones dialing it.

#![allow(dead_code)]

use std::{sync::Arc, time::Duration};

use meshplane_core::runtime::tls::{self as tlsgen, ServerTls};
use meshplane_core::{
    model::{Meta, Resource, ResourceKey, ResourceKind, Spec},
    store::{ListQuery, ResourceStore, ResourceStoreExt, WriteOp, memory::MemoryStore},
    tokens::{TokenKind, Tokens, ZoneClaims},
};
use meshplane_kds::{
    client::{ClientConfig, SyncStatus},
    server::{KdsServer, ServerConfig},
};
use serde_json::json;
use tokio::sync::watch;

pub struct Global {
    pub store: Arc<dyn ResourceStore>,
    pub addr: std::net::SocketAddr,
    pub tls: ServerTls,
    pub drain: Option<drain::Signal>,
    pub task: Option<tokio::task::JoinHandle<()>>,
    pub server: KdsServer,
    _dir: tempfile::TempDir,
}

pub fn install_crypto() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

impl Global {
    pub async fn start() -> Self {
        Self::start_on(Arc::new(MemoryStore::new()), None).await
    }

    /// Starts a sync server on `store`, on a given port (to restart on the same address) or a free one.
    pub async fn start_on(store: Arc<dyn ResourceStore>, port: Option<u16>) -> Self {
        Self::start_flushing(store, port, Duration::from_millis(300)).await
    }

    /// Like `start_on`, with the zone insight refreshed every `flush`.
    pub async fn start_flushing(
        store: Arc<dyn ResourceStore>,
        port: Option<u16>,
        flush: Duration,
    ) -> Self {
        Self::start_configured(store, port, |cfg| cfg.insight_flush = flush).await
    }

    /// A sync server whose configuration `tune` adjusts (the flush is 300 ms unless it says).
    pub async fn start_configured(
        store: Arc<dyn ResourceStore>,
        port: Option<u16>,
        tune: impl FnOnce(&mut ServerConfig),
    ) -> Self {
        install_crypto();
        meshplane_test_support::process::init_test_logging();
        let dir = tempfile::tempdir().expect("tempdir");
        let tls = tlsgen::autogenerate(store.as_ref(), &tlsgen::KDS, dir.path(), &[])
            .await
            .expect("tls");
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port.unwrap_or(0)))
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (signal, watch) = drain::channel();
        let mut cfg = ServerConfig::new(format!("global-{}", addr.port()));
        cfg.insight_flush = Duration::from_millis(300);
        cfg.nack_backoff = Duration::from_millis(500);
        tune(&mut cfg);
        let server = KdsServer::new(store.clone(), cfg, watch.clone());
        let task_tls = tls.clone();
        let s2 = server.clone();
        let task = tokio::spawn(async move {
            meshplane_kds::serve(listener, s2, &task_tls, Duration::from_secs(2), watch)
                .await
                .expect("serve");
        });
        Self {
            store,
            addr,
            tls,
            drain: Some(signal),
            task: Some(task),
            server,
            _dir: dir,
        }
    }

    pub async fn stop(&mut self) {
        if let Some(d) = self.drain.take() {
            tokio::time::timeout(Duration::from_secs(10), d.drain())
                .await
                .expect("global drains");
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }

    pub async fn token(&self, zone: &str) -> String {
        Tokens::new(self.store.clone())
            .issue(
                TokenKind::Zone,
                ZoneClaims {
                    zone: zone.into(),
                    scope: vec!["cp".into()],
                },
                Duration::from_secs(3600),
            )
            .await
            .expect("token")
    }

    pub async fn put_mesh(&self, name: &str, skip: bool) {
        let r = Resource::from_universal(
            &json!({"type": "Mesh", "name": name, "mtls": {"skipValidation": skip}}),
        )
        .expect("mesh");
        let key = r.key();
        let op = match self.store.get(&key).await.expect("get") {
            Some(cur) => WriteOp::update(&r, cur.version),
            None => WriteOp::create(&r, None),
        };
        self.store.write(vec![op]).await.expect("write mesh");
    }

    pub async fn delete(&self, key: ResourceKey) {
        delete(&self.store, key).await;
    }
}

/// Deletes `key` from `store`, whatever its version.
pub async fn delete(store: &Arc<dyn ResourceStore>, key: ResourceKey) {
    store
        .write(vec![WriteOp::Delete {
            key,
            expected_version: None,
        }])
        .await
        .expect("delete");
}

pub struct Zone {
    pub name: String,
    pub store: Arc<dyn ResourceStore>,
    pub status: watch::Receiver<SyncStatus>,
    pub drain: Option<drain::Signal>,
    pub task: Option<tokio::task::JoinHandle<()>>,
    pub cfg: ClientConfig,
    _dir: tempfile::TempDir,
}

impl Zone {
    pub async fn config(
        global: &Global,
        name: &str,
        token: &str,
    ) -> (ClientConfig, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tempdir");
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, token).expect("token file");
        let mut cfg = ClientConfig::new(
            name,
            format!("grpcs://127.0.0.1:{}", global.addr.port()),
            token_file,
        );
        cfg.ca_pem = global.tls.ca_pem.clone().map(String::into_bytes);
        cfg.keepalive = Duration::from_secs(2);
        cfg.backoff_base = Duration::from_millis(100);
        cfg.backoff_cap = Duration::from_millis(500);
        cfg.nack_backoff = Duration::from_millis(500);
        (cfg, dir)
    }

    pub async fn start(global: &Global, name: &str) -> Self {
        let token = global.token(name).await;
        Self::start_with(global, name, &token, Arc::new(MemoryStore::new())).await
    }

    pub async fn start_with(
        global: &Global,
        name: &str,
        token: &str,
        store: Arc<dyn ResourceStore>,
    ) -> Self {
        let (cfg, dir) = Self::config(global, name, token).await;
        Self::start_configured(cfg, dir, store).await
    }

    /// Starts zone `name` of `global` on `store`, its configuration changed by `tune` first.
    pub async fn start_tuned(
        global: &Global,
        name: &str,
        token: &str,
        store: Arc<dyn ResourceStore>,
        tune: impl FnOnce(&mut ClientConfig),
    ) -> Self {
        let (mut cfg, dir) = Self::config(global, name, token).await;
        tune(&mut cfg);
        Self::start_configured(cfg, dir, store).await
    }

    /// Starts the sync client with a configuration from `config` (and its directory).
    pub async fn start_configured(
        cfg: ClientConfig,
        dir: tempfile::TempDir,
        store: Arc<dyn ResourceStore>,
    ) -> Self {
        let name = cfg.zone.clone();
        let (tx, rx) = watch::channel(SyncStatus::default());
        let (signal, w) = drain::channel();
        let (c2, s2) = (cfg.clone(), store.clone());
        let task = tokio::spawn(async move { meshplane_kds::client::run(c2, s2, w, tx).await });
        Self {
            name,
            store,
            status: rx,
            drain: Some(signal),
            task: Some(task),
            cfg,
            _dir: dir,
        }
    }

    pub async fn stop(&mut self) {
        if let Some(d) = self.drain.take() {
            tokio::time::timeout(Duration::from_secs(10), d.drain())
                .await
                .expect("zone drains");
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }

    pub async fn wait_synced(&mut self) {
        let ok = tokio::time::timeout(
            Duration::from_secs(15),
            self.status.wait_for(|s| s.synced_once),
        )
        .await
        .is_ok();
        assert!(
            ok,
            "zone {} did not sync; status {:?}",
            self.name,
            *self.status.borrow()
        );
    }

    pub async fn put_dataplane(&self, mesh: &str, name: &str, service: &str) {
        let r = Resource::from_universal(&json!({"type": "Dataplane", "mesh": mesh, "name": name,
            "networking": {"address": "10.0.0.1", "inbound": [{"port": 80, "tags": {"kuma.io/service": service}}]}}))
        .expect("dp");
        let key = r.key();
        let op = match self.store.get(&key).await.expect("get") {
            Some(cur) => WriteOp::update(&r, cur.version),
            None => WriteOp::create(&r, Some(ResourceKey::mesh(mesh))),
        };
        self.store.write(vec![op]).await.expect("write dp");
    }
}

/// Waits until `store` holds `key` (or, with `present = false`, no longer holds it).
pub async fn eventually_present(store: &Arc<dyn ResourceStore>, key: &ResourceKey, present: bool) {
    let what = format!("{key} to be {}", if present { "present" } else { "absent" });
    meshplane_test_support::process::eventually(Duration::from_secs(10), &what, || async {
        let found = store.get(key).await.expect("get").is_some();
        (found == present).then_some(())
    })
    .await
    .expect("eventually");
}

pub async fn zone_insight(
    store: &Arc<dyn ResourceStore>,
    zone: &str,
) -> Option<meshplane_core::model::ZoneInsightSpec> {
    match store
        .get_resource(&ResourceKey::global(ResourceKind::ZoneInsight, zone))
        .await
        .expect("get")
    {
        Some((
            Resource {
                spec: Spec::ZoneInsight(z),
                ..
            },
            _,
        )) => Some(z),
        _ => None,
    }
}

pub fn meta(name: &str) -> Meta {
    Meta {
        name: name.into(),
        ..Default::default()
    }
}

/// How many records of `kind` named `prefix…` `store` holds.
pub async fn count(store: &Arc<dyn ResourceStore>, kind: ResourceKind, prefix: &str) -> usize {
    store
        .list(&ListQuery::all(kind))
        .await
        .expect("list")
        .items
        .iter()
        .filter(|r| r.key.name.starts_with(prefix))
        .count()
}

/// Waits until `store` holds `n` records of `kind` named `prefix…`.
pub async fn until_holds(
    store: &Arc<dyn ResourceStore>,
    kind: ResourceKind,
    prefix: &str,
    n: usize,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let have = count(store, kind, prefix).await;
        if have == n {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{have} of {n} {kind} named {prefix}*"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
