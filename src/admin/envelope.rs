//! The admin API's wire shape: answers are `{meta: {requestId}, data,
//! pagination?}`, errors are rendered by `errors` (the same body as the
//! gateway's own errors, as `application/json` — Unkey's SDKs pick their
//! typed errors by content type, see [`crate::admin::rpc::Op::error_representation`]),
//! health endpoints answer plain text.

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde_json::{json, Value};

use crate::errors::{render, ErrorCode, GatewayError, Representation};

/// Request bodies larger than this are refused.
const MAX_BODY: usize = 1 << 20;

/// A successful answer: `data`, and `pagination` for lists.
#[derive(Debug)]
pub struct Reply {
    pub data: Value,
    pub pagination: Option<Value>,
    /// 200, but 201 for Unkey's creates and 202 for its asynchronous actions.
    pub status: StatusCode,
}

impl Reply {
    pub fn data(data: Value) -> Self {
        Self {
            data,
            pagination: None,
            status: StatusCode::OK,
        }
    }

    /// One page of a list; `next` is the cursor of the following page.
    pub fn page(items: Vec<Value>, next: Option<String>) -> Self {
        let mut pagination = json!({"hasMore": next.is_some()});
        if let Some(cursor) = next {
            pagination["cursor"] = json!(cursor);
        }
        Self {
            pagination: Some(pagination),
            ..Self::data(Value::Array(items))
        }
    }

    pub fn with_status(self, status: StatusCode) -> Self {
        Self { status, ..self }
    }
}

/// A 400 `invalid_input` with this detail.
pub fn invalid_input(detail: impl Into<String>) -> GatewayError {
    GatewayError::with_detail(ErrorCode::InvalidInput, detail)
}

/// Reads a JSON request body of at most [`MAX_BODY`] bytes.
pub async fn read_body(request: Request<Incoming>) -> Result<Bytes, GatewayError> {
    match Limited::new(request.into_body(), MAX_BODY).collect().await {
        Ok(body) => Ok(body.to_bytes()),
        Err(e) => Err(invalid_input(format!("cannot read the request body: {e}"))),
    }
}

/// `{meta, data, pagination?}`, with the reply's status.
pub fn ok(request_id: &str, reply: Reply) -> Response<Full<Bytes>> {
    let mut out = json!({"meta": {"requestId": request_id}, "data": reply.data});
    if let Some(pagination) = reply.pagination {
        out["pagination"] = pagination;
    }
    json_response(reply.status, out.to_string(), "application/json")
}

/// An error in the shape every keygate error has, as `representation`.
pub fn error(
    request_id: &str,
    docs_base: &str,
    error: &GatewayError,
    representation: Representation,
) -> Response<Full<Bytes>> {
    let rendered = render(error, request_id, None, docs_base, representation);
    let status = StatusCode::from_u16(rendered.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(status, rendered.body, rendered.content_type)
}

pub fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    with_content_type(status, body.into(), "text/plain; charset=utf-8")
}

fn json_response(status: StatusCode, body: String, content_type: &'static str) -> Response<Full<Bytes>> {
    with_content_type(status, Bytes::from(body), content_type)
}

fn with_content_type(status: StatusCode, body: Bytes, content_type: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static(content_type));
    response
}
