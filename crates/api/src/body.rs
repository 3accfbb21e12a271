//! Request bodies: JSON or YAML by `Content-Type`, size-limited, never a 500 on bad input.

use axum::{
    body::Bytes,
    extract::rejection::BytesRejection,
    http::{HeaderMap, StatusCode, header},
};
use serde_json::Value;

use crate::{ApiError, MAX_BODY_BYTES};

/// Parses a request body as JSON (`application/json`, the default) or YAML (`application/yaml`,
/// `application/x-yaml`, `text/yaml`).
pub fn parse(headers: &HeaderMap, body: Result<Bytes, BytesRejection>) -> Result<Value, ApiError> {
    let bytes = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::too_large(MAX_BODY_BYTES)
        } else {
            ApiError::bad_request(format!("could not read the request body: {e}"))
        }
    })?;
    let ctype = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    let is_yaml = ctype.contains("yaml");
    let parsed = if is_yaml {
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| ApiError::bad_request("the request body is not valid UTF-8"))?;
        meshplane_core::format::parse_yaml(text)
    } else {
        meshplane_core::format::parse_json(&bytes)
    };
    parsed.map_err(|e| ApiError::bad_request(format!("could not parse the request body: {e}")))
}

/// The version in an `If-Match: "<version>"` header, if present.
pub fn if_match(headers: &HeaderMap) -> Result<Option<i64>, ApiError> {
    let Some(v) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let s = v
        .to_str()
        .unwrap_or("")
        .trim()
        .trim_start_matches("W/")
        .trim_matches('"');
    s.parse::<i64>().map(Some).map_err(|_| {
        ApiError::bad_request(format!(
            "If-Match must be a version as returned in ETag, such as \"3\"; got {v:?}"
        ))
    })
}
