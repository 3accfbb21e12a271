//! The zone's certificate manager: one worker that issues each dataplane's identity from its Mesh's
//! enabled backend, persists it, renews it before it expires, keeps serving the last valid one through
//! outages, and publishes each mesh's trust bundle. Time is injectable for tests.
#![forbid(unsafe_code)]

pub mod breaker;
pub mod clock;
pub mod config;
pub mod insight;
pub mod issue;
pub mod manager;
pub mod metrics;
pub mod persist;
pub mod registrations;
pub mod schedule;
pub mod state;
pub mod trust;
pub mod watcher;

use std::sync::Arc;

use meshplane_core::{ca::CaRegistry, datasource::DataSourceLoader, store::ResourceStore};

pub use config::ManagerConfig;
pub use manager::CertManager;
pub use persist::{PersistConfig, Persister};
pub use registrations::Registrations;
pub use state::{CertKey, CertState, Identity, MeshTrust, Profile};

/// What the manager works with.
#[derive(Clone)]
pub struct Deps {
    pub store: Arc<dyn ResourceStore>,
    pub ca: CaRegistry,
    pub loader: Arc<dyn DataSourceLoader>,
    pub clock: Arc<dyn clock::Clock>,
    pub metrics: metrics::Metrics,
}
#[cfg(test)]
mod tests;
