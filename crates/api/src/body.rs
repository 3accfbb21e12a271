//! Request bodies: JSON or YAML by `Content-Type` and nothing else, size-limited, never a 500 on
//! bad input.

use axum::{
    body::{Bytes, HttpBody},
    extract::{Request, rejection::BytesRejection},
    http::{HeaderMap, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use serde_json::Value;

use crate::{ApiError, MAX_BODY_BYTES};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Json,
    Yaml,
}

/// The media types a body may be written in. Nothing a browser can send cross-site without a CORS
/// preflight (`text/plain`, the form encodings) is among them, which is what makes a forged write
/// from a web page impossible even where the Origin checks do not reach.
const ACCEPTED: [(&str, Format); 4] = [
    ("application/json", Format::Json),
    ("application/yaml", Format::Yaml),
    ("application/x-yaml", Format::Yaml),
    ("text/yaml", Format::Yaml),
];

const ACCEPTED_LIST: &str = "application/json, application/yaml, application/x-yaml or text/yaml";

/// The body's format from `Content-Type` (parameters such as `charset` aside); `None` when there is
/// no `Content-Type`.
fn format(headers: &HeaderMap) -> Result<Option<Format>, ApiError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(None);
    };
    let text = String::from_utf8_lossy(value.as_bytes());
    let essence = text.split(';').next().unwrap_or("").trim();
    ACCEPTED
        .iter()
        .find(|(name, _)| essence.eq_ignore_ascii_case(name))
        .map(|(_, f)| Some(*f))
        .ok_or_else(|| {
            ApiError::unsupported_media_type(format!(
                "Content-Type {text:?} is not accepted for a request body; send {ACCEPTED_LIST}"
            ))
        })
}

/// Refuses a write that carries a body in anything but JSON or YAML (or with no `Content-Type`)
/// before any handler sees it, whichever route it is for.
pub async fn require_document_type(req: Request, next: Next) -> Response {
    let body = req.body();
    let has_body = !body.is_end_stream() && body.size_hint().exact() != Some(0);
    // The console's login form is the one body in a form encoding; the console reads it itself.
    if has_body && !crate::auth::is_read(req.method()) && !crate::auth::is_console(req.uri().path())
    {
        match format(req.headers()) {
            Ok(Some(_)) => {}
            Ok(None) => {
                return ApiError::unsupported_media_type(format!(
                    "a request body needs a Content-Type; send {ACCEPTED_LIST}"
                ))
                .into_response();
            }
            Err(e) => return e.into_response(),
        }
    }
    next.run(req).await
}

/// Parses a request body as JSON (`application/json`) or YAML (`application/yaml`,
/// `application/x-yaml`, `text/yaml`). Without a `Content-Type` (only an empty body gets here
/// without one) it is read as JSON, so the client hears what JSON would have needed.
pub fn parse(headers: &HeaderMap, body: Result<Bytes, BytesRejection>) -> Result<Value, ApiError> {
    let format = format(headers)?.unwrap_or(Format::Json);
    let bytes = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::too_large(MAX_BODY_BYTES)
        } else {
            ApiError::bad_request(format!("could not read the request body: {e}"))
        }
    })?;
    let parsed = match format {
        Format::Yaml => {
            let text = std::str::from_utf8(&bytes)
                .map_err(|_| ApiError::bad_request("the request body is not valid UTF-8"))?;
            meshplane_core::format::parse_yaml(text)
        }
        Format::Json => meshplane_core::format::parse_json(&bytes),
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

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn typed(ctype: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
        h
    }

    #[test]
    fn only_json_and_yaml_media_types_are_bodies() {
        assert_eq!(format(&HeaderMap::new()).ok(), Some(None));
        for (ctype, want) in [
            ("application/json", Format::Json),
            ("application/json; charset=utf-8", Format::Json),
            ("Application/JSON", Format::Json),
            ("application/yaml", Format::Yaml),
            ("application/x-yaml", Format::Yaml),
            ("text/yaml;charset=UTF-8", Format::Yaml),
        ] {
            assert_eq!(format(&typed(ctype)).ok(), Some(Some(want)), "{ctype}");
        }
        for ctype in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/jsonp",
            "application/vnd.yaml",
            "",
        ] {
            let e = format(&typed(ctype)).expect_err(ctype);
            assert_eq!(e.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{ctype}");
            assert!(e.detail.contains(&format!("{ctype:?}")), "{}", e.detail);
            assert!(e.detail.contains(ACCEPTED_LIST), "{}", e.detail);
        }
    }
}
