//! Responses the gateway writes itself, and the headers every response gets
//! (X-Request-Id, Server-Timing).

use std::time::Instant;

use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE};
use pingora_http::{RequestHeader, ResponseHeader, StaticHeaderName};
use pingora_proxy::Session;

use super::context::RequestCtx;
use crate::errors::{self, GatewayError, Representation, DEFAULT_DOCS_BASE};
use crate::proxy::forwarding::{value_of, X_REQUEST_ID};
use crate::stack_text::StackText;

static SERVER_TIMING: StaticHeaderName = StaticHeaderName::lowercase("server-timing");

/// Adds the headers every response carries (replacing any of the same name).
pub fn add_gateway_headers(response: &mut ResponseHeader, ctx: &RequestCtx) -> pingora_error::Result<()> {
    let mut invalid = None;
    gateway_fields(ctx, |name, value| match value_of(value) {
        Ok(value) => response.insert_static_header(name, value),
        Err(error) => invalid = Some(error),
    });
    invalid.map_or(Ok(()), Err)
}

/// The fields every response carries, to `field` in order: X-Request-Id,
/// the policies' (rate limits), Server-Timing. Each value is bytes
/// formatted on the stack, so the fast path writes it out without a header
/// value or an allocation.
pub fn gateway_fields(ctx: &RequestCtx, mut field: impl FnMut(&'static StaticHeaderName, &[u8])) {
    field(&X_REQUEST_ID, ctx.request_id.value().as_bytes());
    ctx.policy.response_fields(ctx.error, &mut field);
    // Written as the instance's answer arrives: the time it did stands for now.
    let now = ctx.upstream_answered.unwrap_or_else(Instant::now);
    let instance = ctx.instance_time(now);
    let gateway = ctx.total_time(now).saturating_sub(instance);
    let mut timing = Timing::default();
    timing.push(b"gateway;dur=");
    push_ms(&mut timing, gateway);
    if ctx.upstream_started.is_some() {
        timing.push(b", instance;dur=");
        push_ms(&mut timing, instance);
    }
    field(&SERVER_TIMING, timing.as_bytes());
}

/// Whether the gateway sets a response field named `name` (as received, in
/// any case): an instance's field of that name gives way to the gateway's.
pub fn sets_gateway_field(ctx: &RequestCtx, name: &[u8]) -> bool {
    let is = |field: &StaticHeaderName| name.eq_ignore_ascii_case(field.name().as_str().as_bytes());
    is(&X_REQUEST_ID) || is(&SERVER_TIMING) || ctx.policy.sets_response_field(ctx.error, name)
}

/// The Server-Timing value: room for both durations at their longest (20
/// digits each). Written on the stack and handed on whole: copying it out
/// piece by piece cost more than formatting it.
type Timing = StackText<96>;

/// Appends milliseconds with three decimals (`1.234`), without float
/// formatting or the `fmt` machinery (this runs on every response).
fn push_ms(timing: &mut Timing, duration: std::time::Duration) {
    let micros = u64::try_from(duration.as_micros()).unwrap_or(u64::MAX);
    timing.push(itoa::Buffer::new().format(micros / 1000).as_bytes());
    let fraction = micros % 1000;
    let digit = |place: u64| b'0' + (fraction / place % 10) as u8;
    timing.push(&[b'.', digit(100), digit(10), digit(1)]);
}

/// The gateway's own answer `error`, in the shape of every gateway error
/// (JSON or problem+json, as the request's `Accept` asks): head and body.
pub fn error_response(
    request: &RequestHeader,
    ctx: &mut RequestCtx,
    error: &GatewayError,
) -> pingora_error::Result<(ResponseHeader, Bytes)> {
    ctx.error = Some(error.code);
    let docs_base = ctx.snapshot().map_or(DEFAULT_DOCS_BASE, |s| &s.docs_base);
    let accept = request.headers.get(ACCEPT).and_then(|v| v.to_str().ok());
    let trace_id = ctx.trace_id();
    let rendered = errors::render(
        error,
        ctx.request_id.as_str(),
        trace_id.as_deref(),
        docs_base,
        Representation::for_accept(accept),
    );
    let body = Bytes::from(rendered.body);
    let head = complete_response(ctx, rendered.status, rendered.content_type, &body, true)?;
    Ok((head, body))
}

/// The head of a redirect to `location` (no body).
pub fn redirect_response(ctx: &RequestCtx, status: u16, location: &str) -> pingora_error::Result<ResponseHeader> {
    let mut response = ResponseHeader::build(status, Some(4))?;
    response.insert_header(http::header::LOCATION, location)?;
    response.insert_header(CONTENT_LENGTH, 0)?;
    add_gateway_headers(&mut response, ctx)?;
    Ok(response)
}

/// The head of a complete response the gateway writes itself. `is_error`
/// marks it as the gateway's own error.
pub fn complete_response(
    ctx: &mut RequestCtx,
    status: u16,
    content_type: &str,
    body: &Bytes,
    is_error: bool,
) -> pingora_error::Result<ResponseHeader> {
    let mut response = ResponseHeader::build(status, Some(6))?;
    response.insert_header(CONTENT_TYPE, content_type)?;
    response.insert_header(CONTENT_LENGTH, body.len())?;
    if is_error {
        response.insert_header("x-unkey-error-source", "gateway")?;
    } else if let Some(route) = &ctx.route {
        // An answer of the built-in echo instance: the route's filters apply as to any instance's.
        super::filters::apply(&route.rule.response_headers, &mut response)?;
    }
    add_gateway_headers(&mut response, ctx)?;
    ctx.policy.on_response_body(body);
    Ok(response)
}

/// Answers the request with `error` (see [`error_response`]).
pub async fn send_error(
    session: &mut Session,
    ctx: &mut RequestCtx,
    error: &GatewayError,
) -> pingora_error::Result<()> {
    let (response, body) = error_response(session.req_header(), ctx, error)?;
    write(session, response, body).await
}

/// Answers with a redirect to `location` (no body).
pub async fn redirect(
    session: &mut Session,
    ctx: &mut RequestCtx,
    status: u16,
    location: &str,
) -> pingora_error::Result<()> {
    let response = redirect_response(ctx, status, location)?;
    write(session, response, Bytes::new()).await
}

/// Writes a complete response (see [`complete_response`]).
pub async fn send(
    session: &mut Session,
    ctx: &mut RequestCtx,
    status: u16,
    content_type: &str,
    body: Bytes,
    is_error: bool,
) -> pingora_error::Result<()> {
    let response = complete_response(ctx, status, content_type, &body, is_error)?;
    write(session, response, body).await
}

/// Writes a head and its whole body; a request body left unread means the
/// connection is not reused.
async fn write(session: &mut Session, response: ResponseHeader, body: Bytes) -> pingora_error::Result<()> {
    if !session.is_body_done() {
        session.set_keepalive(None);
    }
    let head_only = session.req_header().method == http::Method::HEAD || body.is_empty();
    session.write_response_header(Box::new(response), head_only).await?;
    if !head_only {
        session.write_response_body(Some(body), true).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{push_ms, Timing};
    use std::time::Duration;

    #[test]
    fn milliseconds_with_three_decimals() {
        for (micros, text) in [(1_234, "1.234"), (5, "0.005"), (0, "0.000"), (61_000_070, "61000.070")] {
            let mut timing = Timing::default();
            push_ms(&mut timing, Duration::from_micros(micros));
            assert_eq!(timing.as_bytes(), text.as_bytes());
        }
    }

    #[test]
    fn the_longest_timing_fits() {
        let mut timing = Timing::default();
        timing.push(b"gateway;dur=");
        push_ms(&mut timing, Duration::MAX);
        timing.push(b", instance;dur=");
        push_ms(&mut timing, Duration::MAX);
        let text = String::from_utf8(timing.as_bytes().to_vec()).unwrap();
        assert_eq!(text.matches(&u64::MAX.to_string()[..17]).count(), 2, "{text}");
    }
}
