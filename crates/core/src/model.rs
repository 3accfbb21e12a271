//! The resource model in Kuma 2.x's universal format.

pub mod acmpca_conf;
pub mod ca_conf;
pub mod certificate;
pub mod dataplane;
mod dataplane_insight;
mod dataplane_net;
mod dataplane_rules;
#[cfg(test)]
mod dataplane_rules_tests;
#[cfg(test)]
mod dataplane_tests;
pub mod datasource;
pub mod kind;
mod kuma_net;
pub mod mesh;
mod mesh_metrics;
#[cfg(test)]
mod mesh_sections_tests;
mod mesh_settings;
mod mesh_telemetry;
#[cfg(test)]
mod mesh_telemetry_tests;
pub mod mesh_validation;
pub mod names;
pub mod resource;
pub mod secret;
pub mod zone;

#[cfg(test)]
mod tests;

pub use dataplane::{DataplaneIdentity, DataplaneInsightSpec, DataplaneSpec, MtlsInsight, TagSet};
pub use datasource::DataSource;
pub use kind::{Origin, ResourceKey, ResourceKind};
pub use mesh::{Backend, BackendConf, BackendType, MeshSpec};
pub use resource::{Meta, Resource, Spec};
pub use secret::{SecretData, SecretSpec};
pub use zone::{ZONE_INSIGHT_MAX_AGE, ZoneInsightSpec, ZoneSpec};
