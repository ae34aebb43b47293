//! Root-key authentication for the admin API and its error answers
//! (`err:unkey:*` codes, SPEC §9.25, in the SPEC §5 shape).

use bytes::Bytes;
use http::{HeaderMap, Response, StatusCode};
use http_body_util::Full;

use crate::reload::Reloader;

/// An admin API failure.
#[derive(Debug)]
pub struct AdminError {
    status: StatusCode,
    code: &'static str,
    detail: String,
    /// Field-level validation errors (`{location, message, fix?}`), Unkey's `error.errors`.
    errors: Vec<serde_json::Value>,
}

impl AdminError {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            code,
            detail: detail.into(),
            errors: Vec::new(),
        }
    }

    pub fn invalid_input(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "err:unkey:application:invalid_input", detail)
    }

    pub fn with_errors(mut self, errors: Vec<serde_json::Value>) -> Self {
        self.errors = errors;
        self
    }


    pub fn into_response(self, request_id: &str) -> Response<Full<Bytes>> {
        let mut body = serde_json::json!({
            "meta": {"requestId": request_id},
            "error": {
                "code": self.code,
                "title": self.status.canonical_reason().unwrap_or("Error"),
                "detail": self.detail,
                "status": self.status.as_u16(),
                "type": format!("https://unkey.com/docs/errors/{}", self.code.trim_start_matches("err:").replace(':', "/")),
            }
        });
        if !self.errors.is_empty() {
            body["error"]["errors"] = serde_json::Value::Array(self.errors);
        }
        let mut response = super::json(self.status, body);
        response
            .headers_mut()
            .insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/problem+json"));
        response
    }
}

/// Accepts `Authorization: Bearer <root key>` for a key in `admin.root_keys`:
/// 401 when missing, 403 when wrong (or when no root key is configured).
pub fn require_root_key(reloader: &Reloader, headers: &HeaderMap) -> Result<(), AdminError> {
    let presented = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, key)| key.trim())
        .filter(|key| !key.is_empty());
    let Some(presented) = presented else {
        return Err(AdminError::new(
            StatusCode::UNAUTHORIZED,
            "err:unkey:authentication:missing",
            "Authorization: Bearer <root key> is required.",
        ));
    };
    let snapshot = reloader.snapshot().load();
    if snapshot.root_keys.iter().any(|key| constant_time_eq(key.as_bytes(), presented.as_bytes())) {
        Ok(())
    } else {
        Err(AdminError::new(
            StatusCode::FORBIDDEN,
            "err:unkey:authorization:forbidden",
            "The root key is not valid.",
        ))
    }
}

/// Compares without leaking where the first difference is.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
