//! Start-up, serving and shutdown of the global control plane.

use std::{process::ExitCode, sync::Arc};

use anyhow::Context;
use meshplane_api::{ApiState, ServerInfo};
use meshplane_core::{
    datasource::StoreLoader,
    manager::{Mode, ResourceManager},
    runtime::{critical, host, readiness::Readiness},
    tokens::Tokens,
};
use meshplane_kds::server::{KdsServer, ServerConfig};

use crate::args::{Cli, Command, RunArgs};
use meshplane_core::runtime::store_args::{MigrateArgs, MigrateCommand};

/// Entry point: builds the runtime, runs the command, maps the outcome to an exit code.
pub fn main(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Run(args) => {
            let common = args.common.clone();
            critical::run_main("meshplane-global", &common, run(args))
        }
        Command::Migrate(MigrateCommand::Up(args)) => {
            let common = args.common.clone();
            critical::run_main("meshplane-global", &common, migrate_up(args))
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

/// Runs until SIGTERM/SIGINT, or until a critical task fails.
pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    tracing::info!(config = %serde_json::to_string(&args).unwrap_or_default(), version = env!("CARGO_PKG_VERSION"), "starting meshplane-global");
    let file_dirs = args.datasource.file_dirs().map_err(anyhow::Error::msg)?;
    // The operator's certificates, checked before the store is touched.
    let api_tls = meshplane_api::tls::load(&args.api_tls)?;
    let operator_tls = match (&args.kds_tls_cert_file, &args.kds_tls_key_file) {
        (Some(c), Some(k)) => Some(meshplane_core::runtime::tls::from_files(
            &meshplane_core::runtime::tls::KDS,
            c,
            k,
            &args.kds_tls_san,
        )?),
        _ => None,
    };
    let readiness = Readiness::new();
    let store_ready = readiness.register("store");
    // Build info and process metrics at the root, Meshplane's own families under `meshplane_`.
    let mut root = meshplane_core::runtime::metrics::root_registry(
        "meshplane-global",
        env!("CARGO_PKG_VERSION"),
    );
    let registry = root.sub_registry_with_prefix("meshplane");
    let store_metrics = meshplane_core::store::metered::StoreMetrics::register(registry);
    meshplane_ca::vault::metrics::register(registry);

    let (store, store_desc) = meshplane_store_postgres::open_store(&args.store, "meshplane-global")
        .await
        .context("opening the store")?;
    let store: Arc<dyn meshplane_core::store::ResourceStore> = Arc::new(
        meshplane_core::store::metered::MeteredStore::new(store, store_metrics),
    );
    drop(store_ready);

    let loader = Arc::new(StoreLoader::with_file_dirs(store.clone(), file_dirs));
    let ca = meshplane_ca::registry();
    let manager = Arc::new(
        ResourceManager::new(store.clone(), ca, loader, Mode::Global)
            .with_strict_names(args.names.strict_names),
    );
    if !args.skip_default_mesh
        && manager
            .ensure_default_mesh()
            .await
            .context("creating the default Mesh")?
    {
        tracing::info!("created the default Mesh");
    }
    // Reported, never repaired: a regenerated CA would break every dataplane's trust.
    meshplane_core::manager::invariants::check_and_report(store.as_ref(), manager.ca(), "global")
        .await
        .context("checking that every Mesh has its CA Secrets")?;

    let instance = args
        .instance_id
        .clone()
        .unwrap_or_else(|| host::instance_id(&host::hostname("global")));
    let api_metrics = meshplane_api::metrics::ApiMetrics::register(registry);
    let kds_metrics = meshplane_kds::metrics::KdsMetrics::register(registry, true);
    let info = ServerInfo {
        product: "Meshplane",
        version: env!("CARGO_PKG_VERSION"),
        instance_id: instance.clone(),
        mode: "global",
        zone: None,
        store: store_desc,
    };
    let tokens = Tokens::new(store.clone());
    let metrics_registry = Arc::new(root);
    let state = ApiState {
        manager: manager.clone(),
        info: Arc::new(info),
        readiness: readiness.clone(),
        metrics: metrics_registry.clone(),
        api_metrics,
        tokens: Some(tokens.clone()),
        verifier: tokens,
        access: meshplane_api::auth::AccessConfig {
            localhost_is_admin: args.api_localhost_is_admin,
        },
    };
    let (drain_tx, drain_rx) = drain::channel();
    // Created before the router: the console lists the zone streams it refused.
    let kds_server = {
        let mut cfg = ServerConfig::new(instance);
        cfg.metrics = kds_metrics;
        cfg.insight_flush = args.kds_insight_flush;
        cfg.max_message = args.kds_max_message_size;
        KdsServer::new(store.clone(), cfg, drain_rx.clone())
    };
    let console = meshplane_api::gui::Console::new(Arc::new(ConsoleSync(kds_server.clone())));
    let router = meshplane_api::router(
        state,
        meshplane_api::tokens::routes().merge(meshplane_api::gui::routes(console)),
    );
    let metrics_listener = match args.metrics.metrics_addr {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("--metrics-addr {addr}: cannot listen"))?,
        ),
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(args.api_addr)
        .await
        .with_context(|| format!("--api-addr {}: cannot listen", args.api_addr))?;
    let https = meshplane_api::tls::bind(&args.api_tls, api_tls).await?;

    let tls = match operator_tls {
        Some(tls) => tls,
        None => {
            let dir = args.work_dir.clone().unwrap_or_else(host::default_work_dir);
            let tls = meshplane_core::runtime::tls::autogenerate(
                store.as_ref(),
                &meshplane_core::runtime::tls::KDS,
                &dir,
                &args.kds_tls_san,
            )
            .await
            .context("preparing the sync server's TLS certificate")?;
            if let Some(f) = &tls.ca_file {
                tracing::info!(ca_file = %f.display(), "zones must trust this CA: pass it as --kds-ca-file");
            }
            tls
        }
    };
    let kds_listener = tokio::net::TcpListener::bind(args.kds_addr)
        .await
        .with_context(|| format!("--kds-addr {}: cannot listen", args.kds_addr))?;

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
                meshplane_api::serve(listener, https, router, drain)
                    .await
                    .map_err(Into::into),
            )
        });
    }
    {
        let server = kds_server;
        let drain = drain_rx.clone();
        let keepalive = args.kds_keepalive;
        tracing::info!(addr = %args.kds_addr, "zone sync server listening");
        critical.spawn(async move {
            (
                "zone sync server",
                meshplane_kds::serve(kds_listener, server, &tls, keepalive, drain)
                    .await
                    .map_err(Into::into),
            )
        });
    }
    drop(drain_rx);
    critical::supervise(critical, drain_tx, args.shutdown_timeout).await?;
    Ok(())
}

/// The console's view of zone sync at global: the streams this replica refused.
struct ConsoleSync(KdsServer);

impl meshplane_api::gui::SyncSource for ConsoleSync {
    fn refusals(&self) -> Vec<meshplane_api::gui::ZoneRefusal> {
        self.0
            .refusals()
            .into_iter()
            .map(|r| meshplane_api::gui::ZoneRefusal {
                zone: r.zone,
                peer: r.peer,
                reason: r.reason,
                first: r.first,
                last: r.last,
                count: r.count,
            })
            .collect()
    }
}
