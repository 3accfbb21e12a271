//! Meshplane's core: the resource model and its validation, the store abstraction, the CA backend
//! boundary, and the runtime pieces shared by every binary. No gRPC, SQL or Vault types live here.
#![forbid(unsafe_code)]

pub mod ca;
pub mod datasource;
pub mod decode;
pub mod duration;
pub mod format;
pub mod manager;
pub mod model;
pub mod runtime;
pub mod store;
pub mod template;
pub mod tokens;
pub mod validation;

pub use validation::{FieldPath, ValidationError, Violation};
