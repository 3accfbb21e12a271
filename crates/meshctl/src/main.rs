//! `meshctl`: kumactl's verbs against Meshplane's REST API (apply, get, delete, inspect, generate).
#![forbid(unsafe_code)]

mod apply;
mod args;
mod client;
mod generate;
mod get;
mod inspect;
mod output;

use std::process::ExitCode;

use clap::Parser;

use crate::{args::Cli, client::CliError};

fn main() -> ExitCode {
    if rustls::crypto::aws_lc_rs::default_provider()
        .install_default()
        .is_err()
    {
        eprintln!("Error: a TLS crypto provider was already installed");
        return ExitCode::FAILURE;
    }
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error: could not start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(args::dispatch(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            print_error(&e);
            ExitCode::FAILURE
        }
    }
}

fn print_error(e: &CliError) {
    match e {
        CliError::Api {
            status,
            detail,
            violations,
            context,
        } => {
            let ctx = context
                .as_deref()
                .map(|c| format!(" ({c})"))
                .unwrap_or_default();
            eprintln!("Error: {detail}{ctx} [HTTP {status}]");
            for (field, reason) in violations {
                if field.is_empty() {
                    eprintln!("* {reason}");
                } else {
                    eprintln!("* {field}: {reason}");
                }
            }
        }
        CliError::Invalid {
            context,
            violations,
        } => {
            eprintln!("Error: Resource is not valid ({context})");
            for (field, reason) in violations {
                if field.is_empty() {
                    eprintln!("* {reason}");
                } else {
                    eprintln!("* {field}: {reason}");
                }
            }
        }
        other => eprintln!("Error: {other}"),
    }
}
