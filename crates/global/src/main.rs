//! `meshplane-global`: the global control plane binary.
#![forbid(unsafe_code)]

// glibc's malloc spent a third of the zone's CPU serving a fleet (docs/benchmarks.md).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    if rustls::crypto::aws_lc_rs::default_provider()
        .install_default()
        .is_err()
    {
        eprintln!("error: a TLS crypto provider was already installed");
        return std::process::ExitCode::FAILURE;
    }
    let cli = meshplane_core::runtime::config::parse::<meshplane_global::Cli>()
        .unwrap_or_else(|e| e.exit());
    meshplane_global::main(cli)
}
