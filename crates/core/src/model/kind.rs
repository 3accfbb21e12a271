//! The resource kinds Meshplane knows, their scope, their REST paths, and which way they sync.

use std::fmt;

/// Every kind of resource Meshplane stores.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResourceKind {
    Mesh,
    Secret,
    GlobalSecret,
    Zone,
    ZoneInsight,
    Dataplane,
    DataplaneInsight,
    /// A dataplane's issued certificate and (encrypted) key, kept by the zone so that a restart
    /// re-issues nothing still valid. Never served by the API and never synced.
    DataplaneCertificate,
    /// How each CA backend of a Mesh fared at its last validation, kept by the control plane that
    /// validates Meshes for its console. Never served by the API and never synced.
    MeshValidation,
}

/// Which control plane authors a kind, and so which way it flows over the sync protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Written at global, sent to zones, read-only in a federated zone.
    Global,
    /// Written in a zone, reported to global, read-only at global.
    Zone,
    /// Local to one control plane; never synced.
    Local,
}

impl ResourceKind {
    pub const ALL: [ResourceKind; 9] = [
        Self::Mesh,
        Self::Secret,
        Self::GlobalSecret,
        Self::Zone,
        Self::ZoneInsight,
        Self::Dataplane,
        Self::DataplaneInsight,
        Self::DataplaneCertificate,
        Self::MeshValidation,
    ];

    /// The `type` field of the universal format.
    pub fn name(self) -> &'static str {
        match self {
            Self::Mesh => "Mesh",
            Self::Secret => "Secret",
            Self::GlobalSecret => "GlobalSecret",
            Self::Zone => "Zone",
            Self::ZoneInsight => "ZoneInsight",
            Self::Dataplane => "Dataplane",
            Self::DataplaneInsight => "DataplaneInsight",
            Self::DataplaneCertificate => "DataplaneCertificate",
            Self::MeshValidation => "MeshValidation",
        }
    }

    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == s)
    }

    /// Mesh-scoped kinds live under `/meshes/{mesh}/…` and are deleted with their Mesh.
    pub fn is_mesh_scoped(self) -> bool {
        matches!(
            self,
            Self::Secret | Self::Dataplane | Self::DataplaneInsight | Self::DataplaneCertificate
        )
    }

    /// The plural path segment of the REST API (`meshes`, `global-secrets`, …).
    pub fn path_segment(self) -> &'static str {
        match self {
            Self::Mesh => "meshes",
            Self::Secret => "secrets",
            Self::GlobalSecret => "global-secrets",
            Self::Zone => "zones",
            Self::ZoneInsight => "zone-insights",
            Self::Dataplane => "dataplanes",
            Self::DataplaneInsight => "dataplane-insights",
            Self::DataplaneCertificate => "dataplane-certificates",
            Self::MeshValidation => "mesh-validations",
        }
    }

    /// Secret kinds have their data hidden from listings and encrypted at rest.
    pub fn is_secret(self) -> bool {
        matches!(
            self,
            Self::Secret | Self::GlobalSecret | Self::DataplaneCertificate
        )
    }

    /// Whether users write this kind through the API (as opposed to the control plane itself).
    pub fn is_user_writable(self) -> bool {
        matches!(
            self,
            Self::Mesh | Self::Secret | Self::GlobalSecret | Self::Zone | Self::Dataplane
        )
    }

    pub fn origin(self) -> Origin {
        match self {
            Self::Mesh | Self::Secret | Self::GlobalSecret => Origin::Global,
            Self::Dataplane | Self::DataplaneInsight => Origin::Zone,
            Self::Zone | Self::ZoneInsight | Self::DataplaneCertificate | Self::MeshValidation => {
                Origin::Local
            }
        }
    }
}

impl fmt::Display for ResourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The identity of one stored resource: kind, mesh (empty for global-scoped kinds) and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourceKey {
    pub kind: ResourceKind,
    pub mesh: String,
    pub name: String,
}

impl ResourceKey {
    pub fn global(kind: ResourceKind, name: impl Into<String>) -> Self {
        Self {
            kind,
            mesh: String::new(),
            name: name.into(),
        }
    }

    pub fn in_mesh(kind: ResourceKind, mesh: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            kind,
            mesh: mesh.into(),
            name: name.into(),
        }
    }

    pub fn mesh(name: impl Into<String>) -> Self {
        Self::global(ResourceKind::Mesh, name)
    }
}

impl fmt::Display for ResourceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.mesh.is_empty() {
            write!(f, "{} {:?}", self.kind, self.name)
        } else {
            write!(f, "{} {:?} in mesh {:?}", self.kind, self.name, self.mesh)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for k in ResourceKind::ALL {
            assert_eq!(ResourceKind::from_name(k.name()), Some(k));
        }
        assert_eq!(ResourceKind::from_name("TrafficRoute"), None);
    }
}
