//! A Mesh's `logging` and `tracing` sections: typed backends, their decoders, and Kuma's rules and
//! messages for them, plus the backend-name rules `metrics` shares.

use std::{collections::HashSet, sync::LazyLock};

use serde::Serialize;
use serde_json::{Map, Number, Value};

use super::kuma_net;
use crate::{
    decode::{Decoder, Obj},
    validation::FieldPath,
};

/// A section of backends of which one, named by `defaultBackend`, is the default.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DefaultedBackends<B> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_backend: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backends: Option<Vec<B>>,
}

impl<B> Default for DefaultedBackends<B> {
    fn default() -> Self {
        Self {
            default_backend: None,
            backends: None,
        }
    }
}

pub type Logging = DefaultedBackends<LoggingBackend>;
pub type Tracing = DefaultedBackends<TracingBackend>;

/// A backend type of a `DefaultedBackends` section.
pub(super) trait SectionBackend: Sized {
    /// Kuma's reason when `defaultBackend` names no backend.
    const DEFAULT_REASON: &'static str;
    fn decode(d: &mut Decoder, v: &Value, path: &FieldPath) -> Option<Self>;
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LoggingBackend {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    #[serde(rename = "type")]
    pub backend_type: LoggingType,
    pub conf: LoggingConf,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LoggingType {
    File,
    Tcp,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum LoggingConf {
    File(FileLoggingConf),
    Tcp(TcpLoggingConf),
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FileLoggingConf {
    pub path: String,
    /// Keys Kuma keeps in a backend's `conf` without reading them.
    #[serde(flatten)]
    pub unread: Map<String, Value>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TcpLoggingConf {
    pub address: String,
    #[serde(flatten)]
    pub unread: Map<String, Value>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TracingBackend {
    pub name: String,
    /// Percent of requests traced, 0 to 100; kept as written (`80` stays `80`, not `80.0`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sampling: Option<Number>,
    #[serde(rename = "type")]
    pub backend_type: TracingType,
    pub conf: TracingConf,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TracingType {
    Zipkin,
    Datadog,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum TracingConf {
    Zipkin(ZipkinConf),
    Datadog(DatadogConf),
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ZipkinConf {
    pub url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id128bit: Option<bool>,
    /// One of `ZIPKIN_API_VERSIONS`, or empty for Envoy's default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shared_span_context: Option<bool>,
    #[serde(flatten)]
    pub unread: Map<String, Value>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DatadogConf {
    pub address: String,
    pub port: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub split_service: Option<bool>,
    #[serde(flatten)]
    pub unread: Map<String, Value>,
}

pub const ZIPKIN_API_VERSIONS: [&str; 3] = ["httpJsonV1", "httpJson", "httpProto"];

/// Kuma's reason for a port outside what TCP can use.
pub const PORT_RANGE: &str = "port must be in the range [1, 65535]";

static EMPTY_CONF: LazyLock<Value> = LazyLock::new(|| Value::Object(Map::new()));

/// How Kuma judges a section's backend names: which key names the default backend, what it says
/// when that names none, and whether a backend's name is judged before its other fields.
pub(super) struct NameRules {
    pub default_key: &'static str,
    pub default_reason: &'static str,
    pub name_first: bool,
}

/// A section made of a default backend's name and a list of backends (`logging`, `tracing`,
/// `metrics`), with Kuma's name rules: each name once (a missing name counts as `""`), and the
/// default naming one of them. Judged on the raw names, so a backend that failed to decode still
/// counts, as it does in Kuma.
pub(super) fn decode_section<B>(
    d: &mut Decoder,
    v: &Value,
    path: &FieldPath,
    rules: &NameRules,
    mut backend: impl FnMut(&mut Decoder, &Value, &FieldPath) -> Option<B>,
) -> Option<(Option<String>, Option<Vec<B>>)> {
    let mut o = d.object(v, path)?;
    let default = o.opt_string(d, rules.default_key);
    let mut seen = HashSet::new();
    let mut record = |d: &mut Decoder, v: &Value, p: &FieldPath| {
        if !v.is_object() {
            // Already reported as not an object; it has no name to compare.
            return;
        }
        let name = match v.get("name") {
            None | Some(Value::Null) => "",
            Some(Value::String(s)) => s.as_str(),
            // Not a string: already reported as such; no name to compare.
            Some(_) => return,
        };
        if !seen.insert(name.to_string()) {
            d.violation(
                &p.field("name"),
                format!("{name:?} name is already used for another backend"),
            );
        }
    };
    let backends = o.opt_list(d, "backends", |d, v, p| {
        if rules.name_first {
            record(d, v, p);
        }
        let b = backend(d, v, p);
        if !rules.name_first {
            record(d, v, p);
        }
        b
    });
    let listed = v
        .get("backends")
        .is_none_or(|b| b.is_null() || b.is_array());
    if let Some(name) = default.as_deref()
        && !name.is_empty()
        && listed
        && !seen.contains(name)
    {
        d.violation(&path.field(rules.default_key), rules.default_reason);
    }
    o.finish(d);
    Some((default, backends))
}

/// A backend's `type`, refused with Kuma's list of the available ones when absent or unknown.
pub(super) fn decode_type<T: Copy>(
    d: &mut Decoder,
    o: &mut Obj<'_>,
    known: &[(&str, T)],
) -> Option<T> {
    let path = o.path().field("type");
    let name = match o.field("type") {
        Some((v, p)) => d.string(v, &p)?,
        None => String::new(),
    };
    let found = known.iter().find(|(n, _)| *n == name).map(|(_, t)| *t);
    if found.is_none() {
        let names: Vec<String> = known.iter().map(|(n, _)| format!("{n:?}")).collect();
        d.violation(
            &path,
            format!(
                "unknown backend type. Available backends: {}",
                names.join(", ")
            ),
        );
    }
    found
}

/// A string enum field: one of `known`, refused as Meshplane words it for every enum.
pub(super) fn decode_enum<T: Copy>(
    d: &mut Decoder,
    v: &Value,
    p: &FieldPath,
    known: &[(&str, T)],
) -> Option<T> {
    let s = d.string(v, p)?;
    let found = known.iter().find(|(n, _)| *n == s).map(|(_, t)| *t);
    if found.is_none() {
        let names: Vec<&str> = known.iter().map(|(n, _)| *n).collect();
        d.violation(p, format!("has to be one of {}", names.join(", ")));
    }
    found
}

/// A backend's name where Kuma only forbids it empty (logging and tracing).
fn decode_nonempty_name(d: &mut Decoder, o: &mut Obj<'_>) -> Option<String> {
    o.req_string_or(d, "name", "cannot be empty")
}

/// Opens a logging or tracing backend's `conf` (absent reads as empty, as in Kuma, and then fails
/// on its first required field) at the path Kuma reports its violations under: `config`, although
/// the field is `conf`.
fn open_conf<'v>(d: &mut Decoder, o: &mut Obj<'v>) -> Option<Obj<'v>> {
    let path = o.path().field("config");
    match o.field("conf") {
        Some((v, _)) => d.object(v, &path),
        None => d.object(&EMPTY_CONF, &path),
    }
}

/// Decodes `logging` or `tracing`, as `B` says.
pub(super) fn decode_defaulted<B: SectionBackend>(
    d: &mut Decoder,
    v: &Value,
    path: &FieldPath,
) -> Option<DefaultedBackends<B>> {
    let rules = NameRules {
        default_key: "defaultBackend",
        default_reason: B::DEFAULT_REASON,
        name_first: false,
    };
    let (default_backend, backends) = decode_section(d, v, path, &rules, B::decode)?;
    Some(DefaultedBackends {
        default_backend,
        backends,
    })
}

impl SectionBackend for LoggingBackend {
    const DEFAULT_REASON: &'static str = "has to be set to one of the logging backend in mesh";

    fn decode(d: &mut Decoder, v: &Value, path: &FieldPath) -> Option<Self> {
        let mut o = d.object(v, path)?;
        let name = decode_nonempty_name(d, &mut o);
        let format = o.opt_string(d, "format");
        let known = [("tcp", LoggingType::Tcp), ("file", LoggingType::File)];
        let backend_type = decode_type(d, &mut o, &known);
        let conf = match backend_type {
            Some(t) => open_conf(d, &mut o).and_then(|mut c| match t {
                LoggingType::File => c.req_string_or(d, "path", "cannot be empty").map(|path| {
                    LoggingConf::File(FileLoggingConf {
                        path,
                        unread: c.take_unread(),
                    })
                }),
                LoggingType::Tcp => {
                    let address = c.req_string_or(d, "address", "cannot be empty");
                    if let Some(a) = &address
                        && !kuma_net::is_host_port(a)
                    {
                        d.violation(
                            &c.path().field("address"),
                            "has to be in format of HOST:PORT",
                        );
                    }
                    address.map(|address| {
                        LoggingConf::Tcp(TcpLoggingConf {
                            address,
                            unread: c.take_unread(),
                        })
                    })
                }
            }),
            None => {
                o.ignore("conf");
                None
            }
        };
        o.finish(d);
        Some(Self {
            name: name?,
            format,
            backend_type: backend_type?,
            conf: conf?,
        })
    }
}

impl SectionBackend for TracingBackend {
    const DEFAULT_REASON: &'static str = "has to be set to one of the tracing backend in mesh";

    fn decode(d: &mut Decoder, v: &Value, path: &FieldPath) -> Option<Self> {
        let mut o = d.object(v, path)?;
        let name = decode_nonempty_name(d, &mut o);
        let sampling = o.opt_with(d, "sampling", |d, v, p| {
            let n = d.number(v, p)?;
            if !n.as_f64().is_some_and(|f| (0.0..=100.0).contains(&f)) {
                d.violation(p, "has to be in [0.0 - 100.0] range");
                return None;
            }
            Some(n)
        });
        let known = [
            ("zipkin", TracingType::Zipkin),
            ("datadog", TracingType::Datadog),
        ];
        let backend_type = decode_type(d, &mut o, &known);
        let conf = match backend_type {
            Some(t) => open_conf(d, &mut o).and_then(|mut c| match t {
                TracingType::Zipkin => ZipkinConf::decode(d, &mut c).map(TracingConf::Zipkin),
                TracingType::Datadog => DatadogConf::decode(d, &mut c).map(TracingConf::Datadog),
            }),
            None => {
                o.ignore("conf");
                None
            }
        };
        o.finish(d);
        Some(Self {
            name: name?,
            sampling,
            backend_type: backend_type?,
            conf: conf?,
        })
    }
}

impl ZipkinConf {
    fn decode(d: &mut Decoder, c: &mut Obj<'_>) -> Option<Self> {
        let path = c.path().clone();
        let trace_id128bit = c.opt_bool(d, "traceId128bit");
        let api_version = c.opt_string(d, "apiVersion");
        let api_ok = api_version
            .as_deref()
            .is_none_or(|a| a.is_empty() || ZIPKIN_API_VERSIONS.contains(&a));
        if !api_ok {
            d.violation(
                &path.field("apiVersion"),
                format!(
                    "has invalid value. Allowed values: {}",
                    ZIPKIN_API_VERSIONS.join(", ")
                ),
            );
        }
        let shared_span_context = c.opt_bool(d, "sharedSpanContext");
        let url = c.req_string_or(d, "url", "cannot be empty");
        let url_ok = match url.as_deref().map(kuma_net::request_uri_port) {
            None => false,
            Some(None) => {
                d.violation(&path.field("url"), "invalid URL");
                false
            }
            Some(Some("")) => {
                d.violation(&path.field("url"), "port has to be explicitly specified");
                false
            }
            Some(Some(_)) => true,
        };
        if !(api_ok && url_ok) {
            return None;
        }
        Some(Self {
            url: url?,
            trace_id128bit,
            api_version,
            shared_span_context,
            unread: c.take_unread(),
        })
    }
}

impl DatadogConf {
    fn decode(d: &mut Decoder, c: &mut Obj<'_>) -> Option<Self> {
        let path = c.path().clone();
        let address = c.req_string_or(d, "address", "cannot be empty");
        let port = match c.field("port") {
            Some((v, p)) => d.u32(v, &p),
            None => Some(0),
        };
        let port = port.filter(|p| {
            let ok = (1..=65535).contains(p);
            if !ok {
                d.violation(&path.field("port"), PORT_RANGE);
            }
            ok
        });
        let split_service = c.opt_bool(d, "splitService");
        Some(Self {
            address: address?,
            port: port?,
            split_service,
            unread: c.take_unread(),
        })
    }
}
