//! Logging: text by default or JSON, filtered by `--log-level` (an `EnvFilter` directive); and the
//! one-line error chain that log lines and messages carry.

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Why logging could not start.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("--log-level {0:?} is not a valid filter: {1}")]
    Filter(String, String),
    #[error("logging was already initialised")]
    AlreadyInitialised,
}

/// Installs the global subscriber; logs go to stderr so stdout stays for command output.
pub fn init(format: LogFormat, level: &str) -> Result<(), TelemetryError> {
    let filter = EnvFilter::try_new(level)
        .map_err(|e| TelemetryError::Filter(level.into(), e.to_string()))?;
    let registry = tracing_subscriber::registry().with(filter);
    let result = match format {
        LogFormat::Text => registry
            .with(fmt::layer().with_writer(std::io::stderr).with_target(false))
            .try_init(),
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_writer(std::io::stderr),
            )
            .try_init(),
    };
    result.map_err(|_| TelemetryError::AlreadyInitialised)
}

/// An error and its sources on one line (`outer: inner: root`), for messages that must carry the
/// cause (tonic and reqwest put the useful part in `source()`).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}
