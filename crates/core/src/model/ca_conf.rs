//! Each CA backend type's `conf`: `builtin`, `provided` and `vault` (Kong Mesh's `fromCp`, plus
//! Meshplane's opt-in `csr`), with their decoders; `acmpca`'s lives in `acmpca_conf`. A new backend
//! type adds its conf to `BackendConf`.

use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

pub use super::acmpca_conf::{AcmPcaAuth, AcmPcaConf, AwsCredentials, PcaArn, parse_pca_arn};
use super::mesh::decode_kuma_duration;
use crate::{
    decode::Decoder, duration::KumaDuration, model::datasource::DataSource, template::CnTemplate,
    validation::FieldPath,
};

/// A backend's `conf`, typed by the backend's `type`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum BackendConf {
    Builtin(BuiltinConf),
    Provided(ProvidedConf),
    Vault(VaultConf),
    AcmPca(AcmPcaConf),
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

    pub(super) fn decode(d: &mut Decoder, v: &Value, path: &FieldPath) -> Option<Self> {
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
    pub(super) fn decode(d: &mut Decoder, v: &Value, path: &FieldPath) -> Option<Self> {
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
    pub(super) fn decode(d: &mut Decoder, v: &Value, path: &FieldPath) -> Option<Self> {
        let mut o = d.object(v, path)?;
        let from_cp = o.req_with(d, "fromCp", VaultFromCp::decode);
        o.finish(d);
        Some(Self { from_cp: from_cp? })
    }
}

/// An http(s) URL with a host (empty is passed through for the caller to judge).
pub(super) fn decode_url(d: &mut Decoder, v: &Value, p: &FieldPath) -> Option<String> {
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
            Self::AcmPca(a) => a.data_sources(),
        }
    }
}
