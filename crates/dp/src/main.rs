//! `meshplane-dp`: the dataplane agent.
#![forbid(unsafe_code)]

mod args;
mod authority;
mod client;
mod files;
mod metrics;
mod workload;

use std::{process::ExitCode, sync::Arc, time::Duration};

use anyhow::Context;
use meshplane_core::runtime::{
    config,
    critical::{self, CriticalError, CriticalTasks},
    signal,
};
use tokio::sync::watch;

use crate::args::{Command, RunArgs};

/// How long deregistering may take on shutdown.
const DEREGISTER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the servers may take to close their connections once deregistered.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

fn main() -> ExitCode {
    if rustls::crypto::aws_lc_rs::default_provider()
        .install_default()
        .is_err()
    {
        eprintln!("error: a TLS crypto provider was already installed");
        return ExitCode::FAILURE;
    }
    let cli = config::parse::<args::Cli>().unwrap_or_else(|e| e.exit());
    let Command::Run(args) = cli.command;
    let common = args.common.clone();
    critical::run_main("meshplane-dp", &common, run(args))
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    // Refuse bad input up front, naming the flag, instead of retrying it forever.
    let text = std::fs::read_to_string(&args.dataplane_file)
        .with_context(|| format!("--dataplane-file {}", args.dataplane_file.display()))?;
    let doc = meshplane_core::format::parse_yaml(&text)
        .with_context(|| format!("--dataplane-file {}", args.dataplane_file.display()))?;
    meshplane_core::model::Resource::from_universal(&doc)
        .map_err(|e| anyhow::anyhow!("--dataplane-file {}: {e}", args.dataplane_file.display()))?;
    let ca = std::fs::read(&args.cp_ca_file)
        .with_context(|| format!("--cp-ca-file {}", args.cp_ca_file.display()))?;
    tracing::info!(config = %serde_json::to_string(&args).unwrap_or_default(), "starting meshplane-dp");

    // Listen before anything runs, so that a listener that cannot start stops the start.
    let workload_socket = args
        .workload_api_socket
        .as_deref()
        .map(|p| workload::bind(p, args.workload_api_socket_mode.0))
        .transpose()?;
    let metrics_listener = match args.metrics_addr {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("--metrics-addr {addr}: cannot listen"))?,
        ),
        None => None,
    };

    let mut registry =
        meshplane_core::runtime::metrics::root_registry("meshplane-dp", env!("CARGO_PKG_VERSION"));
    let metrics = metrics::Metrics::register(registry.sub_registry_with_prefix("meshplane"));
    let (state_tx, state_rx) = watch::channel(None);
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = move || {
        let mut stop = stop_rx.clone();
        async move {
            let _ = stop.wait_for(|s| *s).await;
        }
    };
    // Everything here must run for the agent's whole life: if one ends, the agent exits non-zero.
    let mut critical: CriticalTasks<anyhow::Error> = Default::default();
    if let Some(listener) = metrics_listener {
        let (reg, state, stopped) = (Arc::new(registry), state_rx.clone(), stopped());
        critical.spawn(async move {
            (
                "metrics server",
                metrics::serve(listener, reg, state, stopped).await,
            )
        });
    }
    if let Some(socket) = workload_socket {
        let (state, stopped) = (state_rx.clone(), stopped());
        critical.spawn(async move {
            (
                "Workload API server",
                workload::serve(socket, state, stopped).await,
            )
        });
    }
    drop(state_rx);
    let link = Arc::new(client::Link { args, ca, metrics });
    let link_task = {
        let link = link.clone();
        critical.spawn(async move {
            link.run(state_tx).await;
            ("identity link", Ok(()))
        })
    };

    tokio::select! {
        biased;
        _ = signal::shutdown() => {}
        Some(done) = critical.join_next() => {
            let (name, result) = done.map_err(CriticalError::<anyhow::Error>::Panicked)?;
            return Err(match result {
                Ok(()) => CriticalError::Stopped(name),
                Err(e) => CriticalError::Failed(name, e),
            }
            .into());
        }
    }
    // Stop watching (which ends the Workload API's streams), stop the servers, deregister.
    link_task.abort();
    let _ = stop_tx.send(true);
    match tokio::time::timeout(DEREGISTER_TIMEOUT, link.deregister()).await {
        Ok(Ok(())) => tracing::info!("deregistered"),
        Ok(Err(e)) => tracing::warn!(error = format!("{e:#}"), "could not deregister"),
        Err(_) => tracing::warn!("deregistering timed out"),
    }
    let mut failed = None;
    let all_stopped = tokio::time::timeout(STOP_TIMEOUT, async {
        while let Some(done) = critical.join_next().await {
            match done {
                Ok((name, Err(e))) => {
                    failed.get_or_insert(CriticalError::Failed(name, e));
                }
                Err(e) if e.is_panic() => {
                    failed.get_or_insert(CriticalError::Panicked(e));
                }
                Ok((_, Ok(()))) | Err(_) => {}
            }
        }
    })
    .await;
    if all_stopped.is_err() {
        tracing::warn!("shutdown timeout reached with connections still open");
    }
    match failed {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}
