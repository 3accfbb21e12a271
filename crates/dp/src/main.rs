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
use clap::Parser;
use meshplane_core::runtime::{signal, telemetry};
use tokio::sync::watch;

use crate::args::{Cli, Command, RunArgs};

fn main() -> ExitCode {
    if rustls::crypto::aws_lc_rs::default_provider()
        .install_default()
        .is_err()
    {
        eprintln!("error: a TLS crypto provider was already installed");
        return ExitCode::FAILURE;
    }
    let Command::Run(args) = Cli::parse().command;
    if let Err(e) = telemetry::init(args.log_format, &args.log_level) {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "meshplane-dp failed");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
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

    let mut registry = prometheus_client::registry::Registry::with_prefix("meshplane");
    let metrics = metrics::Metrics::register(&mut registry);
    if let Some(addr) = args.metrics_addr {
        let reg = Arc::new(registry);
        tokio::spawn(async move {
            if let Err(e) = metrics::serve(addr, reg).await {
                tracing::error!(error = %e, "metrics server failed");
            }
        });
    }
    let (state_tx, state_rx) = watch::channel(None);
    let (stop_tx, stop_rx) = watch::channel(false);
    let workload = args.workload_api_socket.clone().map(|path| {
        let mut stop = stop_rx.clone();
        let state = state_rx.clone();
        tokio::spawn(async move {
            let shutdown = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            workload::serve(&path, state, shutdown).await
        })
    });
    let link = client::Link { args, ca, metrics };
    tokio::select! {
        _ = link.run(state_tx) => {}
        _ = signal::shutdown() => {}
    }
    let _ = stop_tx.send(true);
    match tokio::time::timeout(Duration::from_secs(10), link.deregister()).await {
        Ok(Ok(())) => tracing::info!("deregistered"),
        Ok(Err(e)) => tracing::warn!(error = format!("{e:#}"), "could not deregister"),
        Err(_) => tracing::warn!("deregistering timed out"),
    }
    if let Some(w) = workload {
        match w.await {
            Ok(Err(e)) => return Err(e),
            Err(e) => tracing::warn!(error = %e, "workload API task ended abnormally"),
            Ok(Ok(())) => {}
        }
    }
    drop(state_rx);
    Ok(())
}
