//! `builtin:echo`: an instance inside the gateway that answers with the
//! request it received — method, path, query, headers (as an instance would
//! see them, forwarding headers included) and body — as JSON. The newcomer's
//! first upstream and a debugging aid.

use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use pingora_http::RequestHeader;
use pingora_proxy::Session;
use serde_json::{Map, Value};

use super::context::RequestCtx;
use super::respond;
use crate::errors::{ErrorCode, GatewayError};

/// Reads the request body (up to `max_body`; or takes the one a policy
/// already buffered) and answers with the JSON echo. `upstream_view` is the
/// request head as it would go to an instance.
pub async fn respond(
    session: &mut Session,
    ctx: &mut RequestCtx,
    upstream_view: &RequestHeader,
    max_body: u64,
) -> pingora_error::Result<()> {
    let mut body = BytesMut::new();
    if let Some(buffered) = &ctx.request_body {
        body.extend_from_slice(buffered);
    }
    while let Some(chunk) = session.read_request_body().await? {
        if body.len() as u64 + chunk.len() as u64 > max_body {
            let error = GatewayError::new(ErrorCode::RequestTooLarge);
            return respond::send_error(session, ctx, &error).await;
        }
        body.extend_from_slice(&chunk);
    }
    ctx.policy.on_request_body(&body);
    let json = describe(upstream_view, &body);
    respond::send(
        session,
        ctx,
        200,
        "application/json",
        Bytes::from(json.to_string()),
        false,
    )
    .await
}

fn describe(request: &RequestHeader, body: &[u8]) -> Value {
    let mut headers = Map::new();
    for (name, value) in request.headers.iter() {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        match headers.get_mut(name.as_str()) {
            Some(Value::String(existing)) => {
                existing.push_str(", ");
                existing.push_str(&value);
            }
            _ => {
                headers.insert(name.as_str().to_string(), Value::String(value));
            }
        }
    }
    let mut out = Map::new();
    out.insert("method".into(), request.method.as_str().into());
    out.insert("path".into(), request.uri.path().into());
    out.insert("query".into(), request.uri.query().unwrap_or("").into());
    out.insert("headers".into(), Value::Object(headers));
    match std::str::from_utf8(body) {
        Ok(text) => {
            out.insert("body".into(), text.into());
        }
        Err(_) => {
            out.insert(
                "body".into(),
                base64::engine::general_purpose::STANDARD.encode(body).into(),
            );
            out.insert("body_encoding".into(), "base64".into());
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_request() {
        let mut req = RequestHeader::build("POST", b"/a/b?x=1&y=%20", None).unwrap();
        req.append_header("X-Multi", "1").unwrap();
        req.append_header("x-multi", "2").unwrap();
        let v = describe(&req, b"hello");
        assert_eq!(v["method"], "POST");
        assert_eq!(v["path"], "/a/b");
        assert_eq!(v["query"], "x=1&y=%20");
        assert_eq!(v["headers"]["x-multi"], "1, 2");
        assert_eq!(v["body"], "hello");
        let v = describe(&req, &[0xff, 0xfe]);
        assert_eq!(v["body_encoding"], "base64");
        assert_eq!(v["body"], "//4=");
    }
}
