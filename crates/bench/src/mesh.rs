//! The resources the scenarios write: a Mesh whose enabled backend is Vault (Kong Mesh's `fromCp`
//! shape, token from a mesh Secret), its token Secret, and dataplanes with one inbound each.

use anyhow::bail;
use base64::Engine;
use meshplane_core::model::{DataplaneIdentity, MeshSpec, Resource, Spec};
use serde_json::{Value, json};

use crate::{
    env::{KeyKind, Pki},
    vault_raw::{CN_TEMPLATE, Mode, service_of},
};

pub const BACKEND: &str = "vault-1";
pub const TOKEN_SECRET: &str = "vault-token";

/// The Mesh in universal JSON.
pub fn vault_mesh(pki: &Pki, kind: KeyKind, mode: Mode) -> Value {
    let mut from_cp = json!({
        "address": pki.addr,
        "pki": pki.mount,
        "role": pki.role(kind),
        "commonName": CN_TEMPLATE,
        "auth": {"token": {"secret": TOKEN_SECRET}},
    });
    if mode == Mode::Csr {
        from_cp["csr"] = match kind {
            KeyKind::Ec => json!({"keyType": "ec", "keyBits": 256}),
            KeyKind::Rsa => json!({"keyType": "rsa", "keyBits": 2048}),
        };
    }
    json!({
        "type": "Mesh",
        "name": pki.mesh,
        "mtls": {
            "enabledBackend": BACKEND,
            "backends": [{
                "name": BACKEND,
                "type": "vault",
                "dpCert": {"rotation": {"expiration": "1d"}},
                "conf": {"fromCp": from_cp},
            }],
        },
    })
}

pub fn token_secret(pki: &Pki) -> Value {
    json!({
        "type": "Secret",
        "mesh": pki.mesh,
        "name": TOKEN_SECRET,
        "data": base64::engine::general_purpose::STANDARD.encode(&pki.token),
    })
}

/// Dataplane `i` in universal JSON: one inbound whose service is `service_of(i)`.
pub fn dataplane(mesh: &str, i: usize) -> Value {
    json!({
        "type": "Dataplane",
        "mesh": mesh,
        "name": dataplane_name(i),
        "networking": {
            "address": format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255),
            "inbound": [{"port": 8080, "tags": {"kuma.io/service": service_of(i)}}],
        },
    })
}

pub fn dataplane_name(i: usize) -> String {
    format!("dp-{i}")
}

pub fn mesh_spec(v: &Value) -> anyhow::Result<MeshSpec> {
    match Resource::from_universal(v)
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .spec
    {
        Spec::Mesh(m) => Ok(m),
        _ => bail!("not a Mesh"),
    }
}

/// The identity a Dataplane resource carries, as the zone's watcher derives it.
pub fn dataplane_identity(v: &Value) -> anyhow::Result<DataplaneIdentity> {
    let r = Resource::from_universal(v).map_err(|e| anyhow::anyhow!("{e}"))?;
    match &r.spec {
        Spec::Dataplane(d) => Ok(DataplaneIdentity::of(&r.meta.name, d, &r.meta.labels)),
        _ => bail!("not a Dataplane"),
    }
}

pub fn resource(v: &Value) -> anyhow::Result<Resource> {
    Resource::from_universal(v).map_err(|e| anyhow::anyhow!("{e}"))
}
