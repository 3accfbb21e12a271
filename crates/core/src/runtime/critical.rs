//! Supervision shared by the server binaries: build the runtime and map the outcome to an exit code,
//! and run critical tasks until SIGTERM/SIGINT, then drain. A critical task must never end on its own:
//! if one does, the process goes down loudly instead of limping on without it.

use std::{fmt::Display, future::Future, process::ExitCode, time::Duration};

use tokio::task::{JoinError, JoinSet};

use super::{config::CommonArgs, signal, telemetry};

/// Why supervision ended with an error.
#[derive(Debug, thiserror::Error)]
pub enum CriticalError<E: Display> {
    #[error("{0} stopped unexpectedly")]
    Stopped(&'static str),
    #[error("{0} failed: {1:#}")]
    Failed(&'static str, E),
    #[error("a critical task panicked: {0}")]
    Panicked(JoinError),
}

/// Tasks that must run for the whole life of the process, each with a name for the logs.
pub type CriticalTasks<E> = JoinSet<(&'static str, Result<(), E>)>;

/// Waits for a shutdown signal (then drains, bounded by `timeout`) or for a critical task to end
/// (then returns the error without draining: the process is exiting anyway).
pub async fn supervise<E: Display + Send + 'static>(
    mut critical: CriticalTasks<E>,
    drain: drain::Signal,
    timeout: Duration,
) -> Result<(), CriticalError<E>> {
    tokio::select! {
        biased;
        _ = signal::shutdown() => {}
        Some(done) = critical.join_next() => {
            let (name, result) = done.map_err(CriticalError::Panicked)?;
            return Err(match result {
                Ok(()) => CriticalError::Stopped(name),
                Err(e) => CriticalError::Failed(name, e),
            });
        }
    }
    tracing::info!(timeout = ?timeout, "draining");
    if tokio::time::timeout(timeout, drain.drain()).await.is_err() {
        tracing::warn!("shutdown timeout reached with work still in flight");
    }
    tracing::info!("stopped");
    Ok(())
}

/// Starts logging and a multi-threaded runtime, runs `work`, and turns its outcome into an exit
/// code: 0 on success, 1 on failure (logged and printed), 2 when logging cannot start.
pub fn run_main<E: Display>(
    binary: &str,
    common: &CommonArgs,
    work: impl Future<Output = Result<(), E>>,
) -> ExitCode {
    if let Err(e) = telemetry::init(common.log_format, &common.log_level) {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: could not start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(work) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "{binary} failed");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Parses a duration flag in Kuma's grammar (`30s`, `5m`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    crate::duration::KumaDuration::parse(s)
        .map(|d| d.as_duration())
        .map_err(|e| match e.detail() {
            Some(detail) => format!("{e}: {detail}"),
            None => e.to_string(),
        })
}

/// Serializes a duration flag back in Kuma's grammar, for the configuration logged at start.
pub fn ser_duration<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(crate::duration::KumaDuration::from_duration(*d).as_str())
}
