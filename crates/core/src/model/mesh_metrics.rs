//! A Mesh's `metrics` section: `prometheus` backends with their typed `conf`, and Kuma's rules and
//! messages for them.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use super::mesh_telemetry::{NameRules, PORT_RANGE, decode_enum, decode_section, decode_type};
use crate::{decode::Decoder, validation::FieldPath};

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Metrics {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled_backend: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backends: Option<Vec<MetricsBackend>>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MetricsBackend {
    /// Kuma does not require one; two unnamed backends are duplicates.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(rename = "type")]
    pub backend_type: MetricsType,
    /// Absent means Kuma's defaults (port 5670, path `/metrics`); Meshplane stores what was
    /// applied and does not write the defaults in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conf: Option<PrometheusConf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricsType {
    Prometheus,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PrometheusConf {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<BTreeMap<String, String>>,
    #[serde(rename = "skipMTLS", skip_serializing_if = "Option::is_none")]
    pub skip_mtls: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aggregate: Option<Vec<PrometheusAggregate>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub envoy: Option<PrometheusEnvoy>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<PrometheusTls>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct PrometheusAggregate {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PrometheusEnvoy {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filter_regex: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub used_only: Option<bool>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct PrometheusTls {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<PrometheusTlsMode>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum PrometheusTlsMode {
    #[serde(rename = "activeMTLSBackend")]
    ActiveMtlsBackend,
    #[serde(rename = "providedTLS")]
    ProvidedTls,
    #[serde(rename = "disabled")]
    Disabled,
}

const TLS_MODES: [(&str, PrometheusTlsMode); 3] = [
    ("activeMTLSBackend", PrometheusTlsMode::ActiveMtlsBackend),
    ("providedTLS", PrometheusTlsMode::ProvidedTls),
    ("disabled", PrometheusTlsMode::Disabled),
];

impl Metrics {
    pub(super) fn decode(d: &mut Decoder, v: &Value, path: &FieldPath) -> Option<Self> {
        // Kuma judges a metrics backend's name before its type and conf.
        let rules = NameRules {
            default_key: "enabledBackend",
            default_reason: "has to be set to one of the backends in the mesh",
            name_first: true,
        };
        let (enabled_backend, backends) =
            decode_section(d, v, path, &rules, MetricsBackend::decode)?;
        Some(Self {
            enabled_backend,
            backends,
        })
    }
}

impl MetricsBackend {
    pub(super) fn decode(d: &mut Decoder, v: &Value, path: &FieldPath) -> Option<Self> {
        let mut o = d.object(v, path)?;
        let name = o.opt_string(d, "name");
        let backend_type = decode_type(d, &mut o, &[("prometheus", MetricsType::Prometheus)]);
        let conf = match (backend_type, o.field("conf")) {
            (Some(_), Some((v, p))) => Some(PrometheusConf::decode(d, v, &p)),
            (_, _) => None,
        };
        o.finish(d);
        Some(Self {
            name,
            backend_type: backend_type?,
            conf: conf.map_or(Some(None), |c| c.map(Some))?,
        })
    }
}

/// A port Prometheus listens on: 0 means Kuma's default; above 65535 is refused (Kuma has no
/// check, but no socket can use it).
fn decode_listen_port(d: &mut Decoder, v: &Value, p: &FieldPath) -> Option<u32> {
    let port = d.u32(v, p)?;
    if port > 65535 {
        d.violation(p, PORT_RANGE);
        return None;
    }
    Some(port)
}

impl PrometheusConf {
    fn decode(d: &mut Decoder, v: &Value, path: &FieldPath) -> Option<Self> {
        let mut o = d.object(v, path)?;
        let port = o.opt_with(d, "port", decode_listen_port);
        let path_ = o.opt_string(d, "path");
        let tags = o.opt_with(d, "tags", |d, v, p| d.string_map(v, p));
        let skip_mtls = o.opt_bool(d, "skipMTLS");
        let aggregate = o.opt_list(d, "aggregate", PrometheusAggregate::decode);
        let envoy = o.opt_with(d, "envoy", |d, v, p| {
            let mut o = d.object(v, p)?;
            let filter_regex = o.opt_string(d, "filterRegex");
            let used_only = o.opt_bool(d, "usedOnly");
            o.finish(d);
            Some(PrometheusEnvoy {
                filter_regex,
                used_only,
            })
        });
        let tls = o.opt_with(d, "tls", |d, v, p| {
            let mut o = d.object(v, p)?;
            let mode = o.opt_with(d, "mode", |d, v, p| decode_enum(d, v, p, &TLS_MODES));
            o.finish(d);
            Some(PrometheusTls { mode })
        });
        o.finish(d);
        let conf = Self {
            port,
            path: path_,
            tags,
            skip_mtls,
            aggregate,
            envoy,
            tls,
        };
        conf.check(d, path).then_some(conf)
    }

    /// Kuma's rules over a decoded conf, in its order; like Kuma, the first two stop the rest.
    fn check(&self, d: &mut Decoder, path: &FieldPath) -> bool {
        if let (Some(skip), Some(tls)) = (self.skip_mtls, &self.tls) {
            let mode = tls.mode.unwrap_or(PrometheusTlsMode::ActiveMtlsBackend);
            // Kuma's REST API validates before its defaulter drops skipMTLS next to providedTLS,
            // so that pair is refused too.
            let agree = match mode {
                PrometheusTlsMode::ActiveMtlsBackend => !skip,
                PrometheusTlsMode::Disabled => skip,
                PrometheusTlsMode::ProvidedTls => false,
            };
            if !agree {
                d.violation(
                    path,
                    "skipMTLS and tls configuration cannot be defined together",
                );
                return false;
            }
        }
        if let Some(re) = self.envoy.as_ref().and_then(|e| e.filter_regex.as_deref())
            && let Err(e) = regex_syntax::Parser::new().parse(re)
        {
            let kind = match &e {
                regex_syntax::Error::Parse(p) => p.kind().to_string(),
                regex_syntax::Error::Translate(t) => t.kind().to_string(),
                other => other.to_string(),
            };
            d.violation(
                &path.field("envoy").field("filterRegex"),
                format!("provided regexp isn't correct: error parsing regexp: {kind}: `{re}`"),
            );
            return false;
        }
        let mut ok = true;
        let mut seen = std::collections::HashSet::new();
        for (i, a) in self.aggregate.iter().flatten().enumerate() {
            let name = a.name.as_deref().unwrap_or_default();
            if !seen.insert(name) {
                ok = false;
                d.violation(
                    &path.field("aggregate").index(i).field("name"),
                    format!("duplicate entry: {name}, values have to be unique"),
                );
            }
        }
        ok
    }
}

impl PrometheusAggregate {
    fn decode(d: &mut Decoder, v: &Value, path: &FieldPath) -> Option<Self> {
        let mut o = d.object(v, path)?;
        let a = Self {
            name: o.opt_string(d, "name"),
            port: o.opt_with(d, "port", decode_listen_port),
            path: o.opt_string(d, "path"),
            enabled: o.opt_bool(d, "enabled"),
            address: o.opt_string(d, "address"),
        };
        o.finish(d);
        Some(a)
    }
}
