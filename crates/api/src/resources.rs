//! CRUD handlers for every user-facing kind, generic over kind and scope.

use axum::{
    Json,
    body::Bytes,
    extract::{Query, State, rejection::BytesRejection},
    http::{HeaderMap, HeaderValue, StatusCode, Uri, header},
    response::{IntoResponse, Response},
};
use meshplane_core::{
    ValidationError,
    manager::{Applied, ApplyOptions, DeleteOptions},
    model::{Resource, ResourceKey, ResourceKind},
    store::ListQuery,
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{
    ApiError, ApiState, body,
    list::{PageParams, next_url},
};

fn etag(version: i64) -> HeaderValue {
    // A decimal number in quotes is always a valid header value.
    HeaderValue::from_str(&format!("\"{version}\"")).unwrap_or(HeaderValue::from_static("\"0\""))
}

pub async fn get_one(state: &ApiState, key: ResourceKey) -> Result<Response, ApiError> {
    match state.manager.get(&key).await? {
        Some((r, version)) => {
            let mut resp = Json(r.to_universal()).into_response();
            resp.headers_mut().insert(header::ETAG, etag(version));
            Ok(resp)
        }
        None => Err(ApiError::not_found(format!("{key} not found"))),
    }
}

pub async fn list(
    state: &ApiState,
    kind: ResourceKind,
    mesh: Option<String>,
    page: &PageParams,
    headers: &HeaderMap,
    uri: &Uri,
) -> Result<Response, ApiError> {
    let (size, offset) = page.parse()?;
    let result = state
        .manager
        .list(&ListQuery {
            kind,
            mesh,
            offset,
            limit: Some(size),
        })
        .await?;
    let mut items = Vec::with_capacity(result.items.len());
    for rec in &result.items {
        let r = rec
            .to_resource()
            .map_err(meshplane_core::manager::ManagerError::from)?;
        // Listings never carry secret data, not even for admins: only a secret's own path does.
        items.push(r.to_universal_redacted());
    }
    let next = next_url(headers, uri, offset, size, result.total);
    Ok(Json(json!({"total": result.total, "items": items, "next": next})).into_response())
}

/// Fills `type`, `name` and `mesh` from the path when the body leaves them out, and reports every
/// field where the body and the path disagree (as Kuma does).
fn reconcile_with_path(doc: &mut Value, key: &ResourceKey) -> Result<(), ApiError> {
    let Value::Object(map) = doc else {
        return Err(ApiError::invalid(ValidationError::single(
            "",
            "must be an object",
        )));
    };
    let mut errs = ValidationError::new();
    let mut check = |field: &str, want: &str| match map.get(field) {
        None | Some(Value::Null) => {
            map.insert(field.to_string(), Value::String(want.to_string()));
        }
        Some(Value::String(s)) if s == want => {}
        Some(_) => errs.add(
            field,
            format!("{field} from the URL has to be the same as in body"),
        ),
    };
    check("type", key.kind.name());
    check("name", &key.name);
    if key.kind.is_mesh_scoped() {
        check("mesh", &key.mesh);
    }
    errs.into_result().map_err(ApiError::invalid)
}

pub async fn put(
    state: &ApiState,
    key: ResourceKey,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    // Refuse writes this control plane does not own before reading anything else.
    state.manager.check_writable(key.kind)?;
    let mut doc = body::parse(headers, body)?;
    reconcile_with_path(&mut doc, &key)?;
    let resource = Resource::from_universal(&doc).map_err(ApiError::invalid)?;
    let expected_version = body::if_match(headers)?;
    let span = tracing::info_span!("apply", kind = %key.kind, mesh = %key.mesh, name = %key.name);
    let (applied, warnings) = tracing::Instrument::instrument(
        state
            .manager
            .apply(resource, ApplyOptions { expected_version }),
        span,
    )
    .await?;
    let status = match &applied {
        Applied::Created(_) => StatusCode::CREATED,
        Applied::Updated(_) => StatusCode::OK,
    };
    tracing::info!(kind = %key.kind, mesh = %key.mesh, name = %key.name, version = applied.record().version, created = status == StatusCode::CREATED, "resource applied");
    let mut resp = (status, Json(json!({"warnings": warnings}))).into_response();
    resp.headers_mut()
        .insert(header::ETAG, etag(applied.record().version));
    Ok(resp)
}

#[derive(Debug, Default, Deserialize)]
pub struct DeleteParams {
    pub force: Option<bool>,
}

pub async fn delete(
    state: &ApiState,
    key: ResourceKey,
    headers: &HeaderMap,
    params: &DeleteParams,
) -> Result<Response, ApiError> {
    let expected_version = body::if_match(headers)?;
    let force = params.force.unwrap_or(false);
    state
        .manager
        .delete(
            &key,
            DeleteOptions {
                expected_version,
                force,
            },
        )
        .await?;
    tracing::info!(kind = %key.kind, mesh = %key.mesh, name = %key.name, force, "resource deleted");
    Ok(Json(json!({})).into_response())
}

/// Axum handler plumbing: `(State, headers, uri, query, body)` for each verb and scope.
pub mod handlers {
    use axum::extract::Path;

    use super::*;

    pub async fn get_global(
        kind: ResourceKind,
        State(s): State<ApiState>,
        Path(name): Path<String>,
    ) -> Result<Response, ApiError> {
        get_one(&s, ResourceKey::global(kind, name)).await
    }

    pub async fn get_meshed(
        kind: ResourceKind,
        State(s): State<ApiState>,
        Path((mesh, name)): Path<(String, String)>,
    ) -> Result<Response, ApiError> {
        get_one(&s, ResourceKey::in_mesh(kind, mesh, name)).await
    }

    pub async fn list_global(
        kind: ResourceKind,
        State(s): State<ApiState>,
        Query(p): Query<PageParams>,
        headers: HeaderMap,
        uri: Uri,
    ) -> Result<Response, ApiError> {
        list(&s, kind, None, &p, &headers, &uri).await
    }

    pub async fn list_meshed(
        kind: ResourceKind,
        State(s): State<ApiState>,
        Path(mesh): Path<String>,
        Query(p): Query<PageParams>,
        headers: HeaderMap,
        uri: Uri,
    ) -> Result<Response, ApiError> {
        list(&s, kind, Some(mesh), &p, &headers, &uri).await
    }

    pub async fn put_global(
        kind: ResourceKind,
        State(s): State<ApiState>,
        Path(name): Path<String>,
        headers: HeaderMap,
        body: Result<Bytes, BytesRejection>,
    ) -> Result<Response, ApiError> {
        put(&s, ResourceKey::global(kind, name), &headers, body).await
    }

    pub async fn put_meshed(
        kind: ResourceKind,
        State(s): State<ApiState>,
        Path((mesh, name)): Path<(String, String)>,
        headers: HeaderMap,
        body: Result<Bytes, BytesRejection>,
    ) -> Result<Response, ApiError> {
        put(&s, ResourceKey::in_mesh(kind, mesh, name), &headers, body).await
    }

    pub async fn delete_global(
        kind: ResourceKind,
        State(s): State<ApiState>,
        Path(name): Path<String>,
        Query(p): Query<DeleteParams>,
        headers: HeaderMap,
    ) -> Result<Response, ApiError> {
        delete(&s, ResourceKey::global(kind, name), &headers, &p).await
    }

    pub async fn delete_meshed(
        kind: ResourceKind,
        State(s): State<ApiState>,
        Path((mesh, name)): Path<(String, String)>,
        Query(p): Query<DeleteParams>,
        headers: HeaderMap,
    ) -> Result<Response, ApiError> {
        delete(&s, ResourceKey::in_mesh(kind, mesh, name), &headers, &p).await
    }
}
