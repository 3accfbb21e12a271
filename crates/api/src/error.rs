//! Errors in Kuma's REST shape: `{type, status, title, detail, invalid_parameters}`, plus the
//! deprecated `details`/`causes` mirrors Kuma still sends, so existing clients keep working.

use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
};
use meshplane_core::{ValidationError, manager::ManagerError};
use serde_json::json;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub title: &'static str,
    pub detail: String,
    pub invalid: Option<ValidationError>,
}

impl ApiError {
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            title: "Could not process a resource",
            detail: detail.into(),
            invalid: None,
        }
    }

    pub fn invalid(v: ValidationError) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            title: "Could not process a resource",
            detail: "Resource is not valid".into(),
            invalid: Some(v),
        }
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            title: "Not found",
            detail: detail.into(),
            invalid: None,
        }
    }

    pub fn too_large(limit: usize) -> Self {
        Self {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            title: "Payload too large",
            detail: format!("the request body is larger than {limit} bytes"),
            invalid: None,
        }
    }

    pub fn unauthenticated(detail: impl Into<String>) -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            title: "Unauthenticated",
            detail: detail.into(),
            invalid: None,
        }
    }

    /// Kuma answers 403 with this title when a caller may not do what it asked.
    pub fn access_denied(detail: impl Into<String>) -> Self {
        Self {
            status: StatusCode::FORBIDDEN,
            title: "Access Denied",
            detail: detail.into(),
            invalid: None,
        }
    }

    pub fn unsupported_media_type(detail: impl Into<String>) -> Self {
        Self {
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            title: "Unsupported Media Type",
            detail: detail.into(),
            invalid: None,
        }
    }

    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self {
            status: StatusCode::SERVICE_UNAVAILABLE,
            title: "Service unavailable",
            detail: detail.into(),
            invalid: None,
        }
    }
}

impl From<ManagerError> for ApiError {
    fn from(e: ManagerError) -> Self {
        match e {
            ManagerError::Invalid(v) => Self::invalid(v),
            ManagerError::NotFound(k) => Self::not_found(format!("{k} not found")),
            ManagerError::Conflict(d) => Self {
                status: StatusCode::CONFLICT,
                title: "Conflict",
                detail: d,
                invalid: None,
            },
            ManagerError::ReadOnly(d) => Self {
                status: StatusCode::METHOD_NOT_ALLOWED,
                title: "Method not allowed",
                detail: d,
                invalid: None,
            },
            ManagerError::Unavailable(d) => Self::unavailable(d),
            ManagerError::Internal(d) => {
                // The cause goes to the log; the client gets no internals.
                tracing::error!(error = %d, "internal error");
                Self {
                    status: StatusCode::INTERNAL_SERVER_ERROR,
                    title: "Internal server error",
                    detail: "an internal error occurred; see the control plane's log".into(),
                    invalid: None,
                }
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let params: Vec<_> = self
            .invalid
            .as_ref()
            .map(|v| {
                v.violations
                    .iter()
                    .map(|v| {
                        let mut p = json!({"field": v.field, "reason": v.reason});
                        if let Some(d) = &v.detail {
                            p["detail"] = d.as_str().into();
                        }
                        p
                    })
                    .collect()
            })
            .unwrap_or_default();
        let causes: Vec<_> = self
            .invalid
            .as_ref()
            .map(|v| {
                v.violations
                    .iter()
                    .map(|v| json!({"field": v.field, "message": v.reason}))
                    .collect()
            })
            .unwrap_or_default();
        let mut body = json!({
            "type": "/std-errors",
            "status": self.status.as_u16(),
            "title": self.title,
            "detail": self.detail,
            "details": self.detail,
        });
        if !params.is_empty() {
            body["invalid_parameters"] = params.into();
            body["causes"] = causes.into();
        }
        let mut resp = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::PAYLOAD_TOO_LARGE {
            // The rest of the body is never read: say so, or a keep-alive client reuses a connection
            // the server is about to drop.
            resp.headers_mut().insert(
                axum::http::header::CONNECTION,
                axum::http::HeaderValue::from_static("close"),
            );
        }
        resp
    }
}
