//! Start-up, serving and shutdown of a zone control plane.

use std::{process::ExitCode, sync::Arc};

use anyhow::{Context, bail};
use meshplane_api::{ApiState, ServerInfo};
use meshplane_core::{
    datasource::StoreLoader,
    manager::{Mode, ResourceManager},
    runtime::{critical, host, readiness::Readiness, tls},
    tokens::Tokens,
};
use meshplane_identity::{CertManager, Deps, ManagerConfig, clock::SystemClock};
use meshplane_kds::client::{ClientConfig, SyncStatus};
use tokio::sync::watch;

use crate::args::{Cli, Command, RunArgs};
use meshplane_core::runtime::store_args::{MigrateArgs, MigrateCommand};

pub fn main(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Run(args) => {
            let common = args.common.clone();
            critical::run_main("meshplane-zone", &common, run(*args))
        }
        Command::Migrate(MigrateCommand::Up(args)) => {
            let common = args.common.clone();
            critical::run_main("meshplane-zone", &common, migrate_up(args))
        }
    }
}

async fn migrate_up(args: MigrateArgs) -> anyhow::Result<()> {
    let report = meshplane_store_postgres::migrate_up_command(&args.db)
        .await
        .context("applying migrations")?;
    println!("{report}");
    Ok(())
}

/// The sync client's settings from the flags, or `None` for a standalone zone.
fn kds_config(args: &RunArgs, instance_id: &str) -> anyhow::Result<Option<ClientConfig>> {
    let Some(address) = args.global_address.clone() else {
        return Ok(None);
    };
    let zone = args
        .zone
        .clone()
        .context("--zone is required with --global-address")?;
    {
        use meshplane_core::model::names;
        if let Some(reason) = names::name_violation(&zone, names::MAX_ZONE_NAME) {
            bail!("--zone {zone:?}: {reason}");
        }
        if let Some(reason) = names::rfc1035_violation(&zone) {
            if args.names.strict_names {
                bail!("--zone {zone:?}: {reason} (--strict-names is on)");
            }
            tracing::warn!(
                "{}",
                names::rfc1035_warning(meshplane_core::model::ResourceKind::Zone, &zone)
                    .unwrap_or_default()
            );
        }
    }
    let token_file = args
        .zone_token_file
        .clone()
        .context("--zone-token-file is required with --global-address")?;
    let mut cfg = ClientConfig::new(zone, address, token_file);
    if let Some(ca) = &args.kds_ca_file {
        cfg.ca_pem =
            Some(std::fs::read(ca).with_context(|| format!("--kds-ca-file {}", ca.display()))?);
    }
    cfg.instance_id = instance_id.to_string();
    cfg.keepalive = args.kds_keepalive;
    cfg.max_message = args.kds_max_message_size;
    cfg.backoff_base = args.kds_reconnect_base;
    cfg.backoff_cap = args.kds_reconnect_max;
    // Fail fast on an address that can never work, instead of retrying it forever.
    meshplane_kds::client::endpoint(&cfg)?;
    Ok(Some(cfg))
}

pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    tracing::info!(config = %serde_json::to_string(&args).unwrap_or_default(), version = env!("CARGO_PKG_VERSION"), "starting meshplane-zone");
    let zone_name = args.zone.clone().unwrap_or_else(|| "standalone".into());
    let instance_id = args
        .instance_id
        .clone()
        .unwrap_or_else(|| host::instance_id(&format!("{zone_name}-{}", host::hostname("zone"))));
    let kds = kds_config(&args, &instance_id)?;
    let mode = if kds.is_some() {
        Mode::FederatedZone
    } else {
        Mode::StandaloneZone
    };

    let file_dirs = args.datasource.file_dirs().map_err(anyhow::Error::msg)?;
    // The operator's certificates, checked before the store is touched.
    let api_tls = meshplane_api::tls::load(&args.api_tls)?;
    let operator_tls = match (&args.dp_server_tls_cert_file, &args.dp_server_tls_key_file) {
        (Some(c), Some(k)) => Some(tls::from_files(
            &tls::DP_SERVER,
            c,
            k,
            &args.dp_server_tls_san,
        )?),
        _ => None,
    };
    let readiness = Readiness::new();
    let store_ready = readiness.register("store");
    // Build info and process metrics at the root, Meshplane's own families under `meshplane_`.
    let mut root = meshplane_core::runtime::metrics::root_registry(
        "meshplane-zone",
        env!("CARGO_PKG_VERSION"),
    );
    let registry = root.sub_registry_with_prefix("meshplane");
    let store_metrics = meshplane_core::store::metered::StoreMetrics::register(registry);
    meshplane_ca::vault::metrics::register(registry);
    let (store, store_desc) = meshplane_store_postgres::open_store(&args.store, "meshplane-zone")
        .await
        .context("opening the store")?;
    let store: Arc<dyn meshplane_core::store::ResourceStore> = Arc::new(
        meshplane_core::store::metered::MeteredStore::new(store, store_metrics),
    );
    drop(store_ready);

    let loader = Arc::new(StoreLoader::with_file_dirs(store.clone(), file_dirs));
    // One registry for validation and issuance, so both share Vault sessions (and token renewal).
    let ca = meshplane_ca::registry();
    let manager = Arc::new(
        ResourceManager::new(store.clone(), ca.clone(), loader.clone(), mode)
            .with_strict_names(args.names.strict_names)
            .with_zone(zone_name.clone()),
    );
    if mode == Mode::StandaloneZone
        && !args.skip_default_mesh
        && manager
            .ensure_default_mesh()
            .await
            .context("creating the default Mesh")?
    {
        tracing::info!("created the default Mesh");
    }
    if mode == Mode::StandaloneZone {
        // A standalone zone is its own source of Meshes; a federated one checks after its first
        // sync, once it holds what global sent.
        meshplane_core::manager::invariants::check_and_report(store.as_ref(), &ca, "zone")
            .await
            .context("checking that every Mesh has its CA Secrets")?;
    }

    let api_metrics = meshplane_api::metrics::ApiMetrics::register(registry);
    let id_metrics = meshplane_identity::metrics::Metrics::register(registry);
    let kds_metrics = meshplane_kds::metrics::KdsMetrics::register(registry, false);
    let info = ServerInfo {
        product: "Meshplane",
        version: env!("CARGO_PKG_VERSION"),
        instance_id: instance_id.clone(),
        mode: "zone",
        zone: Some(zone_name.clone()),
        store: store_desc,
    };
    // A standalone zone issues its own tokens; a federated one only verifies global's.
    let tokens = Tokens::new(store.clone());
    let issuer = (mode == Mode::StandaloneZone).then(|| tokens.clone());
    let extra = if issuer.is_some() {
        meshplane_api::tokens::routes()
    } else {
        axum::Router::new()
    };
    let metrics_registry = Arc::new(root);
    let state = ApiState {
        manager: manager.clone(),
        info: Arc::new(info),
        readiness: readiness.clone(),
        metrics: metrics_registry.clone(),
        api_metrics,
        tokens: issuer,
        verifier: tokens.clone(),
        access: meshplane_api::auth::AccessConfig {
            localhost_is_admin: args.api_localhost_is_admin,
        },
    };
    // Created before the router: the console shows the link to global.
    let (status_tx, status_rx) = watch::channel(SyncStatus::default());
    let console = meshplane_api::gui::Console::new(Arc::new(ConsoleSync {
        status: kds.as_ref().map(|_| status_rx.clone()),
        address: kds
            .as_ref()
            .map(|c| c.global_address.clone())
            .unwrap_or_default(),
    }));
    let router = meshplane_api::router(state, extra.merge(meshplane_api::gui::routes(console)));
    let metrics_listener = match args.metrics.metrics_addr {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("--metrics-addr {addr}: cannot listen"))?,
        ),
        None => None,
    };
    let api_listener = tokio::net::TcpListener::bind(args.api_addr)
        .await
        .with_context(|| format!("--api-addr {}: cannot listen", args.api_addr))?;
    let https = meshplane_api::tls::bind(&args.api_tls, api_tls).await?;

    let dp_tls = match operator_tls {
        Some(t) => t,
        None => {
            let dir = args.work_dir.clone().unwrap_or_else(host::default_work_dir);
            let t = tls::autogenerate(
                store.as_ref(),
                &tls::DP_SERVER,
                &dir,
                &args.dp_server_tls_san,
            )
            .await
            .context("preparing the dataplane server's TLS certificate")?;
            if let Some(f) = &t.ca_file {
                tracing::info!(ca_file = %f.display(), "dataplanes must trust this CA: pass it to meshplane-dp as --cp-ca-file");
            }
            t
        }
    };
    let dp_listener = tokio::net::TcpListener::bind(args.dp_server_addr)
        .await
        .with_context(|| format!("--dp-server-addr {}: cannot listen", args.dp_server_addr))?;

    let (drain_tx, drain_rx) = drain::channel();
    let mut critical: critical::CriticalTasks<anyhow::Error> = Default::default();
    if let Some(listener) = metrics_listener {
        let (drain, reg) = (drain_rx.clone(), metrics_registry.clone());
        critical.spawn(async move {
            (
                "metrics server",
                meshplane_api::serve_metrics(listener, reg, drain)
                    .await
                    .map_err(Into::into),
            )
        });
    }
    {
        let drain = drain_rx.clone();
        critical.spawn(async move {
            (
                "API server",
                meshplane_api::serve(api_listener, https, router, drain)
                    .await
                    .map_err(Into::into),
            )
        });
    }
    if let Some(mut cfg) = kds {
        cfg.metrics = kds_metrics;
        let mut status_rx = status_rx;
        let synced = readiness.register("initial sync with global");
        let (sync_store, store) = (store.clone(), store.clone());
        let drain = drain_rx.clone();
        tracing::info!(zone = %cfg.zone, global = %cfg.global_address, "federated with global");
        critical.spawn(async move {
            meshplane_kds::client::run(cfg, sync_store, drain, status_tx).await;
            ("sync with global", Ok(()))
        });
        let ca = ca.clone();
        tokio::spawn(async move {
            while status_rx.changed().await.is_ok() {
                if status_rx.borrow().synced_once {
                    drop(synced);
                    // What global sent is now here: check it, and report (never repair) a Mesh
                    // whose CA material is missing.
                    let check = meshplane_core::manager::invariants::check_and_report(
                        store.as_ref(),
                        &ca,
                        "zone",
                    );
                    if let Err(e) = check.await {
                        tracing::warn!(error = %e, "could not check the Meshes' CA Secrets");
                    }
                    return;
                }
            }
        });
    }

    // Certificates: one manager for the zone, fed by the store, serving the dataplane server.
    let manager_cfg = ManagerConfig {
        concurrency: args.issuance_concurrency.max(1),
        backoff_base: args.cert_backoff_base,
        backoff_max: args.cert_backoff_max,
        breaker_min_failures: args.cert_breaker_min_failures,
        ..ManagerConfig::default()
    };
    let deps = Deps {
        store: store.clone(),
        ca: ca.clone(),
        loader,
        clock: Arc::new(SystemClock),
        metrics: id_metrics.clone(),
    };
    let (certs, worker) = CertManager::spawn(manager_cfg, deps, Some(drain_rx.clone()));
    critical.spawn(async move {
        let r = worker.await;
        (
            "certificate manager",
            r.map_err(|e| anyhow::anyhow!("panicked: {e}")),
        )
    });
    {
        let ready = readiness.register("certificate manager");
        let (store, certs) = (store.clone(), certs.clone());
        critical.spawn(async move {
            meshplane_identity::watcher::run(store, certs, Some(ready)).await;
            ("store watcher", Ok(()))
        });
    }
    tokio::spawn(meshplane_identity::metrics::watch_credentials(
        ca,
        id_metrics,
        std::time::Duration::from_secs(10),
    ));
    {
        let server = meshplane_dp_server::DpServer::new(
            zone_name.clone(),
            instance_id.clone(),
            manager.clone(),
            certs,
            tokens,
            drain_rx.clone(),
        );
        let drain = drain_rx.clone();
        tracing::info!(addr = %args.dp_server_addr, "dataplane server listening");
        critical.spawn(async move {
            (
                "dataplane server",
                server
                    .serve(dp_listener, &dp_tls, drain)
                    .await
                    .map_err(Into::into),
            )
        });
    }
    drop(drain_rx);
    critical::supervise(critical, drain_tx, args.shutdown_timeout).await?;
    Ok(())
}

/// The console's view of sync at a zone: its link to global (none when standalone).
struct ConsoleSync {
    status: Option<watch::Receiver<SyncStatus>>,
    address: String,
}

impl meshplane_api::gui::SyncSource for ConsoleSync {
    fn global_link(&self) -> Option<meshplane_api::gui::GlobalLink> {
        let s = self.status.as_ref()?.borrow().clone();
        Some(meshplane_api::gui::GlobalLink {
            address: self.address.clone(),
            connected: s.connected,
            connected_since: s.connected_since,
            global_instance: s.global_instance,
            synced_once: s.synced_once,
            last_sync: s.last_sync,
            connects: s.connects,
            last_error: s.last_error,
            last_error_time: s.last_error_time,
        })
    }
}
