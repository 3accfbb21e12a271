//! The `Mesh` resource: its spec, its `mtls` block and each CA backend's typed `conf`; the other
//! sections live in `mesh_telemetry`, `mesh_metrics` and `mesh_settings`.

use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

pub use super::ca_conf::*;
pub use super::mesh_metrics::*;
pub use super::mesh_settings::*;
use super::mesh_telemetry::decode_defaulted;
pub use super::mesh_telemetry::{
    DatadogConf, DefaultedBackends, FileLoggingConf, Logging, LoggingBackend, LoggingConf,
    LoggingType, TcpLoggingConf, Tracing, TracingBackend, TracingConf, TracingType, ZipkinConf,
};
use crate::{
    decode::{Decoder, Obj},
    duration::{KumaDuration, Timeout, TimeoutError},
    model::names,
    validation::FieldPath,
};

/// Kuma's default dataplane certificate lifetime in every 2.x release.
pub const DEFAULT_DP_CERT_EXPIRATION: Duration = Duration::from_secs(24 * 3600);
/// Kuma's default for `rootChain.requestTimeout`.
pub const DEFAULT_ROOT_CHAIN_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MeshSpec {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mtls: Option<Mtls>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tracing: Option<Tracing>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logging: Option<Logging>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics: Option<Metrics>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub networking: Option<Networking>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub routing: Option<Routing>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub constraints: Option<Constraints>,
    /// Kuma's default policies not to create with the Mesh; `*` means none of them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skip_creating_initial_policies: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mesh_services: Option<MeshServices>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Mtls {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled_backend: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skip_validation: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backends: Option<Vec<Backend>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendType {
    Builtin,
    Provided,
    Vault,
    #[serde(rename = "acmpca")]
    AcmPca,
}

impl BackendType {
    pub const ALL: [BackendType; 4] = [Self::Builtin, Self::Provided, Self::Vault, Self::AcmPca];

    pub fn name(self) -> &'static str {
        match self {
            Self::Builtin => "builtin",
            Self::Provided => "provided",
            Self::Vault => "vault",
            Self::AcmPca => "acmpca",
        }
    }

    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name() == s)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum MtlsMode {
    #[serde(rename = "STRICT")]
    Strict,
    #[serde(rename = "PERMISSIVE")]
    Permissive,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Backend {
    pub name: String,
    #[serde(rename = "type")]
    pub backend_type: BackendType,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<MtlsMode>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dp_cert: Option<DpCert>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub root_chain: Option<RootChain>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conf: Option<BackendConf>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DpCert {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rotation: Option<Rotation>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_timeout: Option<Timeout>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Rotation {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expiration: Option<KumaDuration>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RootChain {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_timeout: Option<Timeout>,
}

// === impl MeshSpec ===

impl MeshSpec {
    /// The enabled backend, when mTLS is on.
    pub fn enabled_backend(&self) -> Option<&Backend> {
        let mtls = self.mtls.as_ref()?;
        let name = mtls.enabled_backend.as_deref().filter(|n| !n.is_empty())?;
        mtls.backends().iter().find(|b| b.name == name)
    }

    pub fn backends(&self) -> &[Backend] {
        self.mtls.as_ref().map(Mtls::backends).unwrap_or_default()
    }

    pub fn skip_validation(&self) -> bool {
        self.mtls
            .as_ref()
            .and_then(|m| m.skip_validation)
            .unwrap_or(false)
    }

    /// Decodes the spec's sections in the order Kuma validates them, so violations are listed as
    /// `kumactl` users know them.
    pub(crate) fn decode(d: &mut Decoder, o: &mut Obj<'_>) -> Option<Self> {
        let spec = Self {
            mtls: o.opt_with(d, "mtls", Mtls::decode),
            logging: o.opt_with(d, "logging", decode_defaulted::<LoggingBackend>),
            tracing: o.opt_with(d, "tracing", decode_defaulted::<TracingBackend>),
            metrics: o.opt_with(d, "metrics", Metrics::decode),
            constraints: o.opt_with(d, "constraints", Constraints::decode),
            networking: o.opt_with(d, "networking", Networking::decode),
            routing: o.opt_with(d, "routing", Routing::decode),
            mesh_services: o.opt_with(d, "meshServices", MeshServices::decode),
            skip_creating_initial_policies: o.opt_list(
                d,
                "skipCreatingInitialPolicies",
                |d, v, p| d.string(v, p),
            ),
        };
        let zone_egress = spec.routing.as_ref().and_then(|r| r.zone_egress) == Some(true);
        if zone_egress && !spec.mtls_enabled() {
            d.violation(
                &FieldPath::root().field("mtls"),
                "has to be set when zoneEgress enabled",
            );
        }
        (!d.has_errors()).then_some(spec)
    }

    /// Kuma's `MTLSEnabled`: an `enabledBackend` is named.
    pub fn mtls_enabled(&self) -> bool {
        self.mtls
            .as_ref()
            .and_then(|m| m.enabled_backend.as_deref())
            .is_some_and(|n| !n.is_empty())
    }
}

impl Mtls {
    pub fn backends(&self) -> &[Backend] {
        self.backends.as_deref().unwrap_or_default()
    }

    fn decode(d: &mut Decoder, v: &Value, path: &FieldPath) -> Option<Self> {
        let mut o = d.object(v, path)?;
        let enabled_backend = o.opt_string(d, "enabledBackend");
        let skip_validation = o.opt_bool(d, "skipValidation");
        let backends = o.opt_list(d, "backends", Backend::decode);
        o.finish(d);

        // Judged on the raw names, so duplicates are reported even when another backend failed to
        // decode: every violation comes back at once.
        let raw_names = v.get("backends").and_then(Value::as_array).map(|items| {
            items
                .iter()
                .map(|b| b.get("name").and_then(Value::as_str))
                .collect::<Vec<_>>()
        });
        let mut seen = std::collections::HashSet::new();
        for (i, name) in raw_names.iter().flatten().enumerate() {
            if let Some(name) = name
                && !seen.insert(*name)
            {
                d.violation(
                    &path.field("backends").index(i).field("name"),
                    format!("{name:?} name is already used for another backend"),
                );
            }
        }
        if let Some(enabled) = enabled_backend.as_deref().filter(|e| !e.is_empty()) {
            let known = backends
                .as_ref()
                .is_some_and(|l| l.iter().any(|b| b.name == enabled));
            // When a backend failed to decode its name is unknown here; only judge a fully decoded list.
            let list_decoded = backends.is_some() || !o_has_backends(v);
            if !known && list_decoded {
                d.violation(
                    &path.field("enabledBackend"),
                    "has to be set to one of the backends in the mesh",
                );
            }
        }
        Some(Self {
            enabled_backend,
            skip_validation,
            backends,
        })
    }
}

fn o_has_backends(v: &Value) -> bool {
    v.get("backends").is_some_and(|b| !b.is_null())
}

impl Backend {
    /// The dataplane certificate lifetime (`dpCert.rotation.expiration`, default 24h).
    pub fn dp_cert_expiration(&self) -> Duration {
        self.dp_cert
            .as_ref()
            .and_then(|c| c.rotation.as_ref())
            .and_then(|r| r.expiration.as_ref())
            .map_or(DEFAULT_DP_CERT_EXPIRATION, KumaDuration::as_duration)
    }

    /// The timeout for issuing one dataplane certificate, when set.
    pub fn dp_cert_request_timeout(&self) -> Option<Duration> {
        self.dp_cert
            .as_ref()
            .and_then(|c| c.request_timeout.as_ref())
            .map(Timeout::as_duration)
    }

    pub fn root_chain_request_timeout(&self) -> Duration {
        self.root_chain
            .as_ref()
            .and_then(|r| r.request_timeout.as_ref())
            .map_or(DEFAULT_ROOT_CHAIN_TIMEOUT, Timeout::as_duration)
    }

    fn decode(d: &mut Decoder, v: &Value, path: &FieldPath) -> Option<Self> {
        let mut o = d.object(v, path)?;
        let name = o.req_string(d, "name");
        if let Some(n) = &name {
            if n.len() > 255 {
                d.violation(
                    &path.field("name"),
                    "Backend name is too long. Max length: 255",
                );
            } else if !names::is_dns_name(n) {
                d.violation(
                    &path.field("name"),
                    format!("{n:?} name must be valid dns name"),
                );
            }
        }
        let backend_type = match o.field("type") {
            None => {
                d.violation(&path.field("type"), "has to be defined");
                None
            }
            Some((tv, tp)) => d.string(tv, &tp).and_then(|t| {
                let found = BackendType::from_name(&t);
                if found.is_none() {
                    d.violation(&tp, "could not find installed plugin for this type");
                }
                found
            }),
        };
        let mode = o.opt_with(d, "mode", |d, v, p| match d.string(v, p)?.as_str() {
            "STRICT" => Some(MtlsMode::Strict),
            "PERMISSIVE" => Some(MtlsMode::Permissive),
            _ => {
                d.violation(p, "has to be one of STRICT, PERMISSIVE");
                None
            }
        });
        let dp_cert = o.opt_with(d, "dpCert", DpCert::decode);
        let root_chain = o.opt_with(d, "rootChain", RootChain::decode);
        let conf = match backend_type {
            Some(t) => decode_conf(d, &mut o, t, &path.field("conf")),
            None => {
                o.ignore("conf");
                None
            }
        };
        o.finish(d);
        Some(Self {
            name: name?,
            backend_type: backend_type?,
            mode,
            dp_cert,
            root_chain,
            conf,
        })
    }
}

pub(super) fn decode_conf(
    d: &mut Decoder,
    o: &mut Obj<'_>,
    t: BackendType,
    path: &FieldPath,
) -> Option<BackendConf> {
    let field = o.field("conf");
    match (t, field) {
        (BackendType::Builtin, None) => None,
        (BackendType::Builtin, Some((v, p))) => {
            BuiltinConf::decode(d, v, &p).map(BackendConf::Builtin)
        }
        (_, None) => {
            d.violation(path, "has to be defined");
            None
        }
        (BackendType::Provided, Some((v, p))) => {
            ProvidedConf::decode(d, v, &p).map(BackendConf::Provided)
        }
        (BackendType::Vault, Some((v, p))) => VaultConf::decode(d, v, &p).map(BackendConf::Vault),
        (BackendType::AcmPca, Some((v, p))) => {
            AcmPcaConf::decode(d, v, &p).map(BackendConf::AcmPca)
        }
    }
}

pub(super) fn decode_kuma_duration(
    d: &mut Decoder,
    v: &Value,
    p: &FieldPath,
) -> Option<KumaDuration> {
    let s = d.string(v, p)?;
    match KumaDuration::parse(&s) {
        Ok(k) if k.as_duration().is_zero() => {
            d.violation(p, "must be greater than 0");
            None
        }
        Ok(k) => Some(k),
        Err(e) => {
            match e.detail() {
                Some(detail) => d.violation_detailed(p, e.to_string(), detail),
                None => d.violation(p, e.to_string()),
            }
            None
        }
    }
}

fn decode_timeout(d: &mut Decoder, v: &Value, p: &FieldPath) -> Option<Timeout> {
    let s = d.string(v, p)?;
    match Timeout::parse(&s) {
        Ok(t) => Some(t),
        Err(e @ TimeoutError::Format(_)) => {
            d.violation_detailed(p, e.to_string(), crate::duration::GO_GRAMMAR);
            None
        }
        Err(e) => {
            d.violation(p, e.to_string());
            None
        }
    }
}

impl DpCert {
    fn decode(d: &mut Decoder, v: &Value, path: &FieldPath) -> Option<Self> {
        let mut o = d.object(v, path)?;
        let rotation = o.opt_with(d, "rotation", |d, v, p| {
            let mut o = d.object(v, p)?;
            let expiration = o.opt_with(d, "expiration", decode_kuma_duration);
            o.finish(d);
            Some(Rotation { expiration })
        });
        let request_timeout = o.opt_with(d, "requestTimeout", decode_timeout);
        o.finish(d);
        Some(Self {
            rotation,
            request_timeout,
        })
    }
}

impl RootChain {
    fn decode(d: &mut Decoder, v: &Value, path: &FieldPath) -> Option<Self> {
        let mut o = d.object(v, path)?;
        let request_timeout = o.opt_with(d, "requestTimeout", decode_timeout);
        o.finish(d);
        Some(Self { request_timeout })
    }
}
