//! Token endpoints at global: `POST /tokens/zone`, `/tokens/dataplane`, `/tokens/user` answer the
//! token as text (as Kuma does); `POST /tokens/revocations` revokes one by id or by the token itself.

use std::collections::BTreeMap;

use axum::{
    Router,
    body::Bytes,
    extract::{State, rejection::BytesRejection},
    http::{HeaderMap, header},
    response::{IntoResponse, Response},
    routing::post,
};
use meshplane_core::{
    ValidationError,
    duration::KumaDuration,
    model::names,
    tokens::{DataplaneClaims, TokenKind, Tokens, UserClaims, ZoneClaims, token_id},
};
use serde_json::Value;

use crate::{ApiError, ApiState, body};

fn tokens(s: &ApiState) -> Result<&Tokens, ApiError> {
    s.tokens
        .as_ref()
        .ok_or_else(|| ApiError::not_found("tokens are issued by the global control plane"))
}

fn valid_for(doc: &Value, errs: &mut ValidationError) -> std::time::Duration {
    match doc.get("validFor").and_then(Value::as_str) {
        None => {
            errs.add("validFor", "has to be defined (for example 720h)");
            std::time::Duration::ZERO
        }
        Some(s) => match KumaDuration::parse(s) {
            Ok(d) if !d.as_duration().is_zero() => d.as_duration(),
            Ok(_) => {
                errs.add("validFor", "must be greater than 0");
                std::time::Duration::ZERO
            }
            Err(e) => {
                match e.detail() {
                    Some(detail) => errs.add_detailed("validFor", e.to_string(), detail),
                    None => errs.add("validFor", e.to_string()),
                }
                std::time::Duration::ZERO
            }
        },
    }
}

/// `field` of the body: a name of at most `max` characters (the length rule of what it names).
fn name_field(doc: &Value, field: &str, max: usize, errs: &mut ValidationError) -> String {
    match doc.get(field).and_then(Value::as_str) {
        Some(n) => match names::name_violation(n, max) {
            None => n.to_string(),
            Some(reason) => {
                errs.add(field, reason);
                String::new()
            }
        },
        None => {
            errs.add(field, "has to be defined");
            String::new()
        }
    }
}

fn text(token: String) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], token).into_response()
}

async fn zone(
    State(s): State<ApiState>,
    headers: HeaderMap,
    b: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let doc = body::parse(&headers, b)?;
    let mut errs = ValidationError::new();
    let zone = name_field(&doc, "zone", names::MAX_ZONE_NAME, &mut errs);
    let d = valid_for(&doc, &mut errs);
    let scope: Vec<String> = match doc.get("scope") {
        None | Some(Value::Null) => vec!["cp".into()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        Some(_) => {
            errs.add("scope", "must be a list of strings");
            vec![]
        }
    };
    errs.into_result().map_err(ApiError::invalid)?;
    let t = tokens(&s)?
        .issue(
            TokenKind::Zone,
            ZoneClaims {
                zone: zone.clone(),
                scope,
            },
            d,
        )
        .await
        .map_err(|e| ApiError::unavailable(e.to_string()))?;
    tracing::info!(zone, valid_for = ?d, "issued a zone token");
    Ok(text(t))
}

async fn dataplane(
    State(s): State<ApiState>,
    headers: HeaderMap,
    b: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let doc = body::parse(&headers, b)?;
    let mut errs = ValidationError::new();
    let name = name_field(&doc, "name", names::MAX_NAME, &mut errs);
    let mesh = name_field(&doc, "mesh", names::MAX_MESH_NAME, &mut errs);
    let d = valid_for(&doc, &mut errs);
    let mut tags = BTreeMap::new();
    if let Some(Value::Object(m)) = doc.get("tags") {
        for (k, v) in m {
            // Kuma sends each tag as a list; one value is all a token can bind.
            let value = match v {
                Value::String(s) => Some(s.clone()),
                Value::Array(a) if a.len() == 1 => a[0].as_str().map(str::to_string),
                _ => None,
            };
            match value {
                Some(v) => {
                    tags.insert(k.clone(), v);
                }
                None => errs.add(format!("tags[{k:?}]"), "must be one string value"),
            }
        }
    }
    errs.into_result().map_err(ApiError::invalid)?;
    let claims = DataplaneClaims {
        mesh: mesh.clone(),
        name: name.clone(),
        tags,
    };
    let t = tokens(&s)?
        .issue(TokenKind::Dataplane, claims, d)
        .await
        .map_err(|e| ApiError::unavailable(e.to_string()))?;
    tracing::info!(mesh, dataplane = name, valid_for = ?d, "issued a dataplane token");
    Ok(text(t))
}

async fn user(
    State(s): State<ApiState>,
    headers: HeaderMap,
    b: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let doc = body::parse(&headers, b)?;
    let mut errs = ValidationError::new();
    let name = name_field(&doc, "name", names::MAX_NAME, &mut errs);
    let d = valid_for(&doc, &mut errs);
    let groups: Vec<String> = doc
        .get("groups")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    errs.into_result().map_err(ApiError::invalid)?;
    let t = tokens(&s)?
        .issue(
            TokenKind::User,
            UserClaims {
                name: name.clone(),
                groups,
            },
            d,
        )
        .await
        .map_err(|e| ApiError::unavailable(e.to_string()))?;
    tracing::info!(user = name, valid_for = ?d, "issued a user token");
    Ok(text(t))
}

async fn revoke(
    State(s): State<ApiState>,
    headers: HeaderMap,
    b: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let doc = body::parse(&headers, b)?;
    let mut errs = ValidationError::new();
    let kind = match doc.get("type").and_then(Value::as_str) {
        Some("zone") => Some(TokenKind::Zone),
        Some("dataplane") => Some(TokenKind::Dataplane),
        Some("user") => Some(TokenKind::User),
        _ => {
            errs.add("type", "has to be one of zone, dataplane, user");
            None
        }
    };
    let jti = match (
        doc.get("id").and_then(Value::as_str),
        doc.get("token").and_then(Value::as_str),
    ) {
        (Some(id), _) => Some(id.to_string()),
        (None, Some(t)) => match token_id(t) {
            Ok(j) => Some(j),
            Err(e) => {
                errs.add("token", e.to_string());
                None
            }
        },
        (None, None) => {
            errs.add("id", "either id or token has to be defined");
            None
        }
    };
    errs.into_result().map_err(ApiError::invalid)?;
    let (Some(kind), Some(jti)) = (kind, jti) else {
        return Err(ApiError::bad_request("type and id are required"));
    };
    tokens(&s)?
        .revoke(kind, &jti)
        .await
        .map_err(|e| ApiError::unavailable(e.to_string()))?;
    tracing::info!(token_type = kind.prefix(), id = %jti, "revoked a token");
    Ok(axum::Json(serde_json::json!({"revoked": jti})).into_response())
}

async fn rotate(
    State(s): State<ApiState>,
    headers: HeaderMap,
    b: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let doc = body::parse(&headers, b)?;
    let kind = match doc.get("type").and_then(Value::as_str) {
        Some("zone") => TokenKind::Zone,
        Some("dataplane") => TokenKind::Dataplane,
        Some("user") => TokenKind::User,
        _ => {
            return Err(ApiError::invalid(ValidationError::single(
                "type",
                "has to be one of zone, dataplane, user",
            )));
        }
    };
    let kid = tokens(&s)?
        .rotate_signing_key(kind)
        .await
        .map_err(|e| ApiError::unavailable(e.to_string()))?;
    tracing::info!(token_type = kind.prefix(), kid, "added a token signing key");
    Ok(axum::Json(serde_json::json!({"type": kind.prefix(), "kid": kid, "secret": kind.signing_key_name(kid)})).into_response())
}

/// The token routes (global only).
pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/tokens/zone", post(zone))
        .route("/tokens/dataplane", post(dataplane))
        .route("/tokens/user", post(user))
        .route("/tokens/revocations", post(revoke))
        .route("/tokens/signing-keys", post(rotate))
}
