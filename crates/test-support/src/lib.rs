//! Shared test fixtures: PostgreSQL databases, OpenBao servers set up as the seed says, moto as an
//! AWS Private CA API, TLS material, and helpers to run the project's binaries. Used only by tests and benchmarks.
#![forbid(unsafe_code)]

pub mod moto;
pub mod openbao;
pub mod postgres;
pub mod process;
pub mod tls;
