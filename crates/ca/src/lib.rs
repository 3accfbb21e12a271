//! Meshplane's CA backends: `builtin` (a generated root kept in Secrets), `provided` (a user's CA bundle),
//! `vault` (HashiCorp Vault / OpenBao PKI) and `acmpca` (AWS Private CA), plus the leaf signing the
//! first two share and the local key + CSR the last two send.
#![forbid(unsafe_code)]

use std::sync::Arc;

use meshplane_core::ca::CaRegistry;

pub mod acmpca;
pub mod builtin;
mod csr;
pub mod leaf;
mod material;
pub mod pem_util;
pub mod provided;
pub mod vault;

/// Every installed backend type, one registration each.
pub fn registry() -> CaRegistry {
    let mut r = CaRegistry::new();
    r.register(Arc::new(builtin::BuiltinCa::new()));
    r.register(Arc::new(provided::ProvidedCa::new()));
    r.register(Arc::new(vault::VaultCa::new()));
    r.register(Arc::new(acmpca::AcmPcaCa::new()));
    r
}
