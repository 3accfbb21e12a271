//! The zone control plane: keeps a copy of global's Meshes and Secrets (or owns them when standalone),
//! registers its dataplanes, issues their certificates, and reports them to global. Wiring only.
#![forbid(unsafe_code)]

pub mod args;
mod run;

pub use args::Cli;
pub use run::{main, run};
