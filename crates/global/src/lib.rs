//! The global control plane: owns Meshes, Secrets and Zones in its store, validates CA backends, serves
//! the REST API and (later) syncs zones. This crate is wiring; the logic lives in the library crates.
#![forbid(unsafe_code)]

pub mod args;
mod run;

pub use args::Cli;
pub use run::{main, run};
