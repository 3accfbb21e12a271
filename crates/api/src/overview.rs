//! Overviews: a resource joined with its insight, as Kuma's `_overview` endpoints answer
//! (`ZoneOverview`, `DataplaneOverview`).

use axum::{
    Json,
    extract::{Path, Query, State},
    http::{HeaderMap, Uri},
    response::{IntoResponse, Response},
};
use meshplane_core::{
    manager::ManagerError,
    model::{Resource, ResourceKey, ResourceKind},
    store::ListQuery,
};
use serde_json::{Map, Value, json};

use crate::{
    ApiError, ApiState,
    list::{PageParams, next_url},
};

/// Which resource/insight pair an overview joins.
#[derive(Clone, Copy)]
pub struct Join {
    pub kind: ResourceKind,
    pub insight: ResourceKind,
    pub overview_type: &'static str,
    pub resource_field: &'static str,
    pub insight_field: &'static str,
}

pub const ZONES: Join = Join {
    kind: ResourceKind::Zone,
    insight: ResourceKind::ZoneInsight,
    overview_type: "ZoneOverview",
    resource_field: "zone",
    insight_field: "zoneInsight",
};

pub const DATAPLANES: Join = Join {
    kind: ResourceKind::Dataplane,
    insight: ResourceKind::DataplaneInsight,
    overview_type: "DataplaneOverview",
    resource_field: "dataplane",
    insight_field: "dataplaneInsight",
};

async fn overview(s: &ApiState, join: Join, r: &Resource) -> Result<Value, ApiError> {
    let key = ResourceKey {
        kind: join.insight,
        mesh: r.meta.mesh.clone(),
        name: r.meta.name.clone(),
    };
    let insight = s
        .manager
        .get(&key)
        .await?
        .map(|(i, _)| i.spec.to_json())
        .unwrap_or_else(|| json!({}));
    let full = r.to_universal();
    let mut out = Map::new();
    out.insert("type".into(), json!(join.overview_type));
    let mut spec = Map::new();
    if let Value::Object(fields) = full {
        for (k, v) in fields {
            match k.as_str() {
                "mesh" | "name" | "creationTime" | "modificationTime" | "labels" => {
                    out.insert(k, v);
                }
                "type" => {}
                _ => {
                    spec.insert(k, v);
                }
            }
        }
    }
    out.insert(join.resource_field.into(), Value::Object(spec));
    out.insert(join.insight_field.into(), insight);
    Ok(Value::Object(out))
}

pub async fn one(s: &ApiState, join: Join, key: ResourceKey) -> Result<Response, ApiError> {
    let Some((r, _)) = s.manager.get(&key).await? else {
        return Err(ApiError::not_found(format!("{key} not found")));
    };
    Ok(Json(overview(s, join, &r).await?).into_response())
}

pub async fn many(
    s: &ApiState,
    join: Join,
    mesh: Option<String>,
    page: &PageParams,
    headers: &HeaderMap,
    uri: &Uri,
) -> Result<Response, ApiError> {
    let (size, offset) = page.parse()?;
    let result = s
        .manager
        .list(&ListQuery {
            kind: join.kind,
            mesh,
            offset,
            limit: Some(size),
        })
        .await?;
    let mut items = Vec::with_capacity(result.items.len());
    for rec in &result.items {
        let r = rec.to_resource().map_err(ManagerError::from)?;
        items.push(overview(s, join, &r).await?);
    }
    let next = next_url(headers, uri, offset, size, result.total);
    Ok(Json(json!({"total": result.total, "items": items, "next": next})).into_response())
}

pub async fn zone(
    State(s): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    one(&s, ZONES, ResourceKey::global(ResourceKind::Zone, name)).await
}

pub async fn zones(
    State(s): State<ApiState>,
    Query(p): Query<PageParams>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, ApiError> {
    many(&s, ZONES, None, &p, &headers, &uri).await
}

pub async fn dataplane(
    State(s): State<ApiState>,
    Path((mesh, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    one(
        &s,
        DATAPLANES,
        ResourceKey::in_mesh(ResourceKind::Dataplane, mesh, name),
    )
    .await
}

pub async fn dataplanes(
    State(s): State<ApiState>,
    Path(mesh): Path<String>,
    Query(p): Query<PageParams>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, ApiError> {
    many(&s, DATAPLANES, Some(mesh), &p, &headers, &uri).await
}
