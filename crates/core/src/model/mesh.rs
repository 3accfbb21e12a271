//! The `Mesh` resource: its `mtls` block and each CA backend's typed `conf`.

use std::time::Duration;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::{
    decode::{Decoder, Obj},
    duration::{KumaDuration, Timeout},
    model::{datasource::DataSource, names},
    template::CnTemplate,
    validation::FieldPath,
};

/// Kuma's default dataplane certificate lifetime in every 2.x release.
pub const DEFAULT_DP_CERT_EXPIRATION: Duration = Duration::from_secs(24 * 3600);
/// Kuma's default for `rootChain.requestTimeout`.
pub const DEFAULT_ROOT_CHAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Mesh fields of Kuma 2.x that Meshplane does not interpret but keeps, so users' YAML round-trips.
const OPAQUE_MESH_FIELDS: [&str; 8] = [
    "logging",
    "tracing",
    "metrics",
    "networking",
    "routing",
    "constraints",
    "skipCreatingInitialPolicies",
    "meshServices",
];

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MeshSpec {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mtls: Option<Mtls>,
    /// Kuma Mesh fields outside Meshplane's scope, kept verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
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
}

impl BackendType {
    pub const ALL: [BackendType; 3] = [Self::Builtin, Self::Provided, Self::Vault];

    pub fn name(self) -> &'static str {
        match self {
            Self::Builtin => "builtin",
            Self::Provided => "provided",
            Self::Vault => "vault",
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

/// A backend's `conf`, typed by the backend's `type`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum BackendConf {
    Builtin(BuiltinConf),
    Provided(ProvidedConf),
    Vault(VaultConf),
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BuiltinConf {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<BuiltinCaCert>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct BuiltinCaCert {
    #[serde(rename = "RSAbits", skip_serializing_if = "Option::is_none")]
    pub rsa_bits: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expiration: Option<KumaDuration>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ProvidedConf {
    pub cert: DataSource,
    pub key: DataSource,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VaultConf {
    pub from_cp: VaultFromCp,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VaultFromCp {
    pub address: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub pki: String,
    pub role: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub common_name: Option<CnTemplate>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<VaultTls>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth: Option<VaultAuth>,
    /// Meshplane's opt-in CSR mode: the leaf key is made locally and `<pki>/sign/<role>` signs it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub csr: Option<CsrConf>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VaultTls {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<DataSource>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skip_verify: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum VaultAuth {
    Token(DataSource),
    Tls(VaultTlsAuth),
    Aws(VaultAwsAuth),
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VaultTlsAuth {
    pub client_key: DataSource,
    pub client_cert: DataSource,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VaultAwsAuth {
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub auth_type: Option<AwsAuthType>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iam_server_id_header: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum AwsAuthType {
    #[serde(rename = "IAM")]
    Iam,
    #[serde(rename = "EC2")]
    Ec2,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CsrConf {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_type: Option<KeyType>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_bits: Option<u32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyType {
    Rsa,
    Ec,
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

    pub(crate) fn decode(d: &mut Decoder, o: &mut Obj<'_>) -> Option<Self> {
        let mtls = o.opt_with(d, "mtls", Mtls::decode);
        let extra = o.take_rest(&OPAQUE_MESH_FIELDS);
        let failed = d.has_errors();
        if failed {
            None
        } else {
            Some(Self { mtls, extra })
        }
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

        if let Some(list) = &backends {
            let mut seen = std::collections::HashSet::new();
            for (i, b) in list.iter().enumerate() {
                if !seen.insert(b.name.as_str()) {
                    d.violation(
                        &path.field("backends").index(i).field("name"),
                        format!("{:?} name is already used for another backend", b.name),
                    );
                }
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

fn decode_conf(
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
    }
}

fn decode_kuma_duration(d: &mut Decoder, v: &Value, p: &FieldPath) -> Option<KumaDuration> {
    let s = d.string(v, p)?;
    match KumaDuration::parse(&s) {
        Ok(k) if k.as_duration().is_zero() => {
            d.violation(p, "must be greater than 0");
            None
        }
        Ok(k) => Some(k),
        Err(e) => {
            d.violation(p, e.to_string());
            None
        }
    }
}

fn decode_timeout(d: &mut Decoder, v: &Value, p: &FieldPath) -> Option<Timeout> {
    let s = d.string(v, p)?;
    match Timeout::parse(&s) {
        Ok(t) => Some(t),
        Err(_) => {
            d.violation(p, "has to be a valid duration such as 10s or 0.5s");
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

/// RSA sizes the builtin CA accepts (0 or absent means 2048, as in Kuma).
pub const BUILTIN_RSA_BITS: [u32; 3] = [2048, 3072, 4096];

impl BuiltinConf {
    pub fn rsa_bits(&self) -> u32 {
        self.ca_cert
            .as_ref()
            .and_then(|c| c.rsa_bits)
            .filter(|b| *b != 0)
            .unwrap_or(2048)
    }

    pub fn expiration(&self) -> Duration {
        self.ca_cert
            .as_ref()
            .and_then(|c| c.expiration.as_ref())
            .map_or(
                Duration::from_secs(10 * 365 * 24 * 3600),
                KumaDuration::as_duration,
            )
    }

    fn decode(d: &mut Decoder, v: &Value, path: &FieldPath) -> Option<Self> {
        let mut o = d.object(v, path)?;
        let ca_cert = o.opt_with(d, "caCert", |d, v, p| {
            let mut o = d.object(v, p)?;
            let rsa_bits = o.opt_u32(d, "RSAbits");
            if let Some(bits) = rsa_bits.filter(|b| *b != 0 && !BUILTIN_RSA_BITS.contains(b)) {
                d.violation(
                    &p.field("RSAbits"),
                    format!("must be one of 2048, 3072 or 4096, not {bits}"),
                );
            }
            let expiration = o.opt_with(d, "expiration", decode_kuma_duration);
            o.finish(d);
            Some(BuiltinCaCert {
                rsa_bits,
                expiration,
            })
        });
        o.finish(d);
        Some(Self { ca_cert })
    }
}

impl ProvidedConf {
    fn decode(d: &mut Decoder, v: &Value, path: &FieldPath) -> Option<Self> {
        let mut o = d.object(v, path)?;
        let cert = o.req_with(d, "cert", DataSource::decode);
        let key = o.req_with(d, "key", DataSource::decode);
        o.finish(d);
        Some(Self {
            cert: cert?,
            key: key?,
        })
    }
}

impl VaultConf {
    fn decode(d: &mut Decoder, v: &Value, path: &FieldPath) -> Option<Self> {
        let mut o = d.object(v, path)?;
        let from_cp = o.req_with(d, "fromCp", VaultFromCp::decode);
        o.finish(d);
        Some(Self { from_cp: from_cp? })
    }
}

fn decode_url(d: &mut Decoder, v: &Value, p: &FieldPath) -> Option<String> {
    let s = d.string(v, p)?;
    if s.is_empty() {
        return Some(s);
    }
    match url::Url::parse(&s) {
        Ok(u) if (u.scheme() == "http" || u.scheme() == "https") && u.host().is_some() => Some(s),
        Ok(_) => {
            d.violation(p, "must be an http:// or https:// URL with a host");
            None
        }
        Err(e) => {
            d.violation(p, format!("must be a valid URL: {e}"));
            None
        }
    }
}

impl VaultFromCp {
    /// True when requests go through a Vault agent, which authenticates on Meshplane's behalf.
    pub fn uses_agent(&self) -> bool {
        self.agent_address.as_deref().is_some_and(|a| !a.is_empty())
    }

    fn decode(d: &mut Decoder, v: &Value, path: &FieldPath) -> Option<Self> {
        let mut o = d.object(v, path)?;
        let address = match o.field("address") {
            Some((v, p)) => decode_url(d, v, &p).filter(|s| {
                if s.is_empty() {
                    d.violation(&p, "has to be defined");
                }
                !s.is_empty()
            }),
            None => {
                d.violation(&path.field("address"), "has to be defined");
                None
            }
        };
        let agent_address = o.opt_with(d, "agentAddress", decode_url);
        let namespace = o.opt_string(d, "namespace");
        let pki = o.req_string(d, "pki");
        if let Some(p) = &pki
            && (p.starts_with('/') || p.contains("..") || p.contains("//"))
        {
            d.violation(
                &path.field("pki"),
                "must be a mount path without a leading '/' or '..'",
            );
        }
        let role = o.req_string(d, "role");
        if let Some(r) = &role
            && r.contains('/')
        {
            d.violation(&path.field("role"), "must be a role name without '/'");
        }
        let common_name = o.opt_with(d, "commonName", |d, v, p| {
            let s = d.string(v, p)?;
            match CnTemplate::parse(&s) {
                Ok(t) => Some(t),
                Err(e) => {
                    d.violation(p, e.to_string());
                    None
                }
            }
        });
        let tls = o.opt_with(d, "tls", |d, v, p| {
            let mut o = d.object(v, p)?;
            let ca_cert = o.opt_with(d, "caCert", DataSource::decode);
            let skip_verify = o.opt_bool(d, "skipVerify");
            let server_name = o.opt_string(d, "serverName");
            o.finish(d);
            Some(VaultTls {
                ca_cert,
                skip_verify,
                server_name,
            })
        });
        let uses_agent = agent_address.as_deref().is_some_and(|a| !a.is_empty());
        let auth = match o.field("auth") {
            Some((v, p)) => VaultAuth::decode(d, v, &p),
            None if uses_agent => None,
            None => {
                d.violation(
                    &path.field("auth"),
                    "has to be defined (or set agentAddress to go through a Vault agent)",
                );
                None
            }
        };
        let csr = o.opt_with(d, "csr", CsrConf::decode);
        o.finish(d);
        Some(Self {
            address: address?,
            agent_address,
            namespace,
            pki: pki?,
            role: role?,
            common_name,
            tls,
            auth,
            csr,
        })
    }
}

impl VaultAuth {
    fn decode(d: &mut Decoder, v: &Value, path: &FieldPath) -> Option<Self> {
        let mut o = d.object(v, path)?;
        let set: Vec<&str> = ["token", "tls", "aws"]
            .into_iter()
            .filter(|k| o.contains(k))
            .collect();
        let out = match set.as_slice() {
            [] => {
                d.violation(
                    path,
                    "one auth method has to be chosen. Available methods: token, tls, aws",
                );
                None
            }
            ["token"] => o.opt_with(d, "token", DataSource::decode).map(Self::Token),
            ["tls"] => o
                .opt_with(d, "tls", |d, v, p| {
                    let mut o = d.object(v, p)?;
                    let client_key = o.req_with(d, "clientKey", DataSource::decode);
                    let client_cert = o.req_with(d, "clientCert", DataSource::decode);
                    o.finish(d);
                    Some(VaultTlsAuth {
                        client_key: client_key?,
                        client_cert: client_cert?,
                    })
                })
                .map(Self::Tls),
            ["aws"] => o
                .opt_with(d, "aws", |d, v, p| {
                    let mut o = d.object(v, p)?;
                    let auth_type =
                        o.opt_with(d, "type", |d, v, p| match d.string(v, p)?.as_str() {
                            "IAM" | "iam" => Some(AwsAuthType::Iam),
                            "EC2" | "ec2" => Some(AwsAuthType::Ec2),
                            _ => {
                                d.violation(p, "has to be one of IAM, EC2");
                                None
                            }
                        });
                    let role = o.opt_string(d, "role");
                    let iam_server_id_header = o.opt_string(d, "iamServerIdHeader");
                    o.finish(d);
                    Some(VaultAwsAuth {
                        auth_type,
                        role,
                        iam_server_id_header,
                    })
                })
                .map(Self::Aws),
            many => {
                for k in many {
                    o.ignore(k);
                }
                d.violation(
                    path,
                    format!(
                        "only one auth method can be set, found: {}",
                        many.join(", ")
                    ),
                );
                None
            }
        };
        o.finish(d);
        out
    }

    /// Secrets referenced by the auth method.
    pub fn data_sources(&self) -> Vec<&DataSource> {
        match self {
            Self::Token(t) => vec![t],
            Self::Tls(t) => vec![&t.client_key, &t.client_cert],
            Self::Aws(_) => vec![],
        }
    }
}

impl CsrConf {
    pub fn key_type(&self) -> KeyType {
        self.key_type.unwrap_or(KeyType::Rsa)
    }

    pub fn key_bits(&self) -> u32 {
        self.key_bits.unwrap_or(match self.key_type() {
            KeyType::Rsa => 2048,
            KeyType::Ec => 256,
        })
    }

    fn decode(d: &mut Decoder, v: &Value, path: &FieldPath) -> Option<Self> {
        let mut o = d.object(v, path)?;
        let key_type = o.opt_with(d, "keyType", |d, v, p| match d.string(v, p)?.as_str() {
            "rsa" => Some(KeyType::Rsa),
            "ec" => Some(KeyType::Ec),
            _ => {
                d.violation(p, "has to be one of rsa, ec");
                None
            }
        });
        let key_bits = o.opt_u32(d, "keyBits");
        o.finish(d);
        let conf = Self { key_type, key_bits };
        let ok = match conf.key_type() {
            KeyType::Rsa => [2048, 3072, 4096].contains(&conf.key_bits()),
            KeyType::Ec => [256, 384].contains(&conf.key_bits()),
        };
        if !ok {
            let allowed = match conf.key_type() {
                KeyType::Rsa => "2048, 3072 or 4096",
                KeyType::Ec => "256 or 384",
            };
            d.violation(
                &path.field("keyBits"),
                format!("must be {allowed} for keyType {:?}", conf.key_type()),
            );
        }
        Some(conf)
    }
}

impl BackendConf {
    /// Every DataSource the conf references, with its field path relative to `conf`.
    pub fn data_sources(&self) -> Vec<(String, &DataSource)> {
        match self {
            Self::Builtin(_) => vec![],
            Self::Provided(p) => vec![("cert".into(), &p.cert), ("key".into(), &p.key)],
            Self::Vault(v) => {
                let mut out = Vec::new();
                if let Some(ca) = v.from_cp.tls.as_ref().and_then(|t| t.ca_cert.as_ref()) {
                    out.push(("fromCp.tls.caCert".into(), ca));
                }
                match &v.from_cp.auth {
                    Some(VaultAuth::Token(t)) => out.push(("fromCp.auth.token".into(), t)),
                    Some(VaultAuth::Tls(t)) => {
                        out.push(("fromCp.auth.tls.clientKey".into(), &t.client_key));
                        out.push(("fromCp.auth.tls.clientCert".into(), &t.client_cert));
                    }
                    Some(VaultAuth::Aws(_)) | None => {}
                }
                out
            }
        }
    }
}
