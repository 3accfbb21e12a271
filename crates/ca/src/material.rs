//! Reading CA material through a mesh's DataSources, and turning load, PEM and signing failures into
//! `CaError`s that say which mesh, backend and piece of material failed.

use meshplane_core::{
    ca::{CaError, MeshCa},
    datasource::LoadError,
    model::DataSource,
};

use crate::leaf::{CaMaterialError, LeafError};

/// The bytes behind `source`, or `None` when it names a Secret that does not exist.
pub(crate) async fn load_optional(
    ca: &MeshCa<'_>,
    backend: &str,
    source: &DataSource,
) -> Result<Option<Vec<u8>>, CaError> {
    match ca.loader.load(ca.mesh, source).await {
        Ok(bytes) => Ok(Some(bytes)),
        Err(LoadError::SecretNotFound { .. }) => Ok(None),
        Err(e) => Err(load_error(ca.mesh, backend, e)),
    }
}

/// A store that cannot answer may recover; a missing secret, unreadable file or bad base64 will not.
pub(crate) fn load_error(mesh: &str, backend: &str, e: LoadError) -> CaError {
    match e {
        LoadError::Store { .. } => CaError::transient(mesh, backend, e.to_string()),
        _ => CaError::config(mesh, backend, e.to_string()),
    }
}

pub(crate) fn material_error(mesh: &str, backend: &str, e: &CaMaterialError) -> CaError {
    CaError::config(
        mesh,
        backend,
        match e.detail() {
            Some(d) => format!(
                "the CA certificate and key cannot be used: {}: {e} ({d})",
                e.field()
            ),
            None => format!(
                "the CA certificate and key cannot be used: {}: {e}",
                e.field()
            ),
        },
    )
}

/// Signing fails for reasons in the CA material, except when the blocking task itself died.
pub(crate) fn leaf_error(mesh: &str, backend: &str, e: LeafError) -> CaError {
    match e {
        LeafError::Task(_) => CaError::transient(mesh, backend, e.to_string()),
        _ => CaError::config(mesh, backend, e.to_string()),
    }
}

/// A request for another mesh would get a certificate from the wrong trust domain.
pub(crate) fn check_mesh(ca: &MeshCa<'_>, backend: &str, requested: &str) -> Result<(), CaError> {
    if requested == ca.mesh {
        Ok(())
    } else {
        Err(CaError::config(
            ca.mesh,
            backend,
            format!("BUG: a leaf for mesh {requested:?} was requested from this mesh's CA"),
        ))
    }
}

/// What a backend signs with its own CA material (builtin and provided alike).
pub(crate) enum Profile<'a> {
    /// Kuma's mesh certificate for the request's tags.
    Mesh,
    /// An X.509-SVID for one service.
    Svid(&'a str),
}

/// Signs a leaf for `req` with `signing`, the same way for every backend that holds its CA key.
pub(crate) async fn sign(
    signing: crate::leaf::SigningCa,
    ca: &meshplane_core::ca::MeshCa<'_>,
    backend: &str,
    req: &meshplane_core::ca::LeafRequest,
    profile: Profile<'_>,
) -> Result<meshplane_core::ca::IssuedCert, CaError> {
    check_mesh(ca, backend, &req.mesh)?;
    let signing = std::sync::Arc::new(signing);
    let cert = match profile {
        Profile::Mesh => {
            crate::leaf::sign_dataplane_cert(signing, ca.mesh, &req.tags, req.validity).await
        }
        Profile::Svid(service) => {
            crate::leaf::sign_svid(signing, ca.mesh, service, req.validity).await
        }
    }
    .map_err(|e| leaf_error(ca.mesh, backend, e))?;
    tracing::debug!(mesh = ca.mesh, backend, dataplane = %req.dataplane, serial = %cert.serial_hex, "issued a dataplane certificate");
    Ok(cert)
}
