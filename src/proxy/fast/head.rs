//! Request and response heads on the fast path: parsed with `httparse` into
//! the `pingora_http` heads the rest of the gateway edits, and written back
//! with each field's name as it arrived, in the order it arrived (what the
//! gateway added comes last).
//!
//! The fast path takes only requests whose framing leaves nothing to
//! decide: `GET` or `HEAD`, HTTP/1.1, one `Host`, no body fields
//! (`Content-Length`, `Transfer-Encoding`), no `Upgrade`/`Expect`/`TE`, CRLF
//! line ends, within the head limits. Anything else — including what is
//! malformed — goes to `HttpProxy`, which applies every framing rule and
//! answers errors, so this parser never has to.

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, EXPECT, HOST, TE, TRANSFER_ENCODING, UPGRADE};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use pingora_http::{RequestHeader, ResponseHeader};

use crate::runtime::Limits;

/// Fields a request head may hold without leaving the fast path. More go
/// to `HttpProxy` (which allows up to `limits.max_headers`).
const MAX_FIELDS: usize = 64;

/// A head and the names of its fields as received, in order.
pub struct Parsed<H> {
    pub head: H,
    /// Raw names, parallel to the fields as received (`names[i].0` is the
    /// lowercase name the head's map uses).
    pub names: Vec<(HeaderName, Bytes)>,
    /// Bytes of the head, request line through the empty line.
    pub len: usize,
}

/// A request the fast path can take.
pub struct FastRequest {
    pub parsed: Parsed<RequestHeader>,
    /// The client asked to close the connection after the response.
    pub close: bool,
}

/// What [`parse_request`] made of the bytes read so far.
// Made once per request and taken apart at once: boxing the large variant
// would only add an allocation.
#[allow(clippy::large_enum_variant)]
pub enum RequestRead {
    Fast(FastRequest),
    /// Not whole, or not for the fast path: `HttpProxy` reads it.
    Handoff,
}

/// Parses the request head at the start of `buf` (see the module docs for
/// what qualifies).
pub fn parse_request(buf: &Bytes, limits: &Limits) -> RequestRead {
    let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
    let mut request = httparse::Request::new(&mut fields);
    let len = match request.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        _ => return RequestRead::Handoff,
    };
    let (Some(method), Some(path), Some(1)) = (request.method, request.path, request.version) else {
        return RequestRead::Handoff;
    };
    let method = match method {
        "GET" => Method::GET,
        "HEAD" => Method::HEAD,
        _ => return RequestRead::Handoff,
    };
    let request_line = method.as_str().len() + path.len() + " HTTP/1.1\r\n".len() + 1;
    if len > limits.max_header_bytes
        || request.headers.len() > limits.max_headers
        || request_line > Limits::MAX_REQUEST_LINE
        || !path.starts_with('/')
        || has_bare_lf(&buf[..len])
    {
        return RequestRead::Handoff;
    }
    let Ok(mut head) = RequestHeader::build_no_case(method, path.as_bytes(), Some(request.headers.len())) else {
        return RequestRead::Handoff;
    };
    let mut names = Vec::with_capacity(request.headers.len());
    let mut hosts = 0;
    let mut close = false;
    for field in request.headers.iter() {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(field.name.as_bytes()),
            HeaderValue::from_maybe_shared(buf.slice_ref(field.value)),
        ) else {
            return RequestRead::Handoff;
        };
        if name == CONTENT_LENGTH || name == TRANSFER_ENCODING || name == UPGRADE || name == EXPECT || name == TE {
            return RequestRead::Handoff;
        }
        if name == HOST {
            hosts += 1;
        }
        if name == CONNECTION {
            match connection_asks_close(&value) {
                Some(asks) => close |= asks,
                None => return RequestRead::Handoff,
            }
        }
        if head.append_header(name.clone(), value).is_err() {
            return RequestRead::Handoff;
        }
        names.push((name, buf.slice_ref(field.name.as_bytes())));
    }
    if hosts != 1 {
        return RequestRead::Handoff;
    }
    RequestRead::Fast(FastRequest {
        parsed: Parsed { head, names, len },
        close,
    })
}

/// `Some(true)` for `close`, `Some(false)` for `keep-alive`; `None` when the
/// field nominates other fields (`HttpProxy` handles those).
fn connection_asks_close(value: &HeaderValue) -> Option<bool> {
    let mut close = false;
    for token in value.to_str().ok()?.split(',') {
        let token = token.trim();
        if token.eq_ignore_ascii_case("close") {
            close = true;
        } else if !token.eq_ignore_ascii_case("keep-alive") {
            return None;
        }
    }
    Some(close)
}

/// A line feed without its carriage return (refused by the strict parser).
fn has_bare_lf(head: &[u8]) -> bool {
    memchr::memchr_iter(b'\n', head).any(|at| at == 0 || head[at - 1] != b'\r')
}

/// What [`parse_response`] made of the bytes read so far.
// See `RequestRead`.
#[allow(clippy::large_enum_variant)]
pub enum ResponseRead {
    Complete(Parsed<ResponseHeader>),
    /// Read more.
    Partial,
    /// Not a valid HTTP/1 response head.
    Invalid,
}

/// Parses the response head at the start of `buf`.
pub fn parse_response(buf: &Bytes, max_fields: usize) -> ResponseRead {
    let mut fields = vec![httparse::EMPTY_HEADER; max_fields];
    let mut response = httparse::Response::new(&mut fields);
    let len = match response.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return ResponseRead::Partial,
        Err(_) => return ResponseRead::Invalid,
    };
    let Some(code) = response.code else {
        return ResponseRead::Invalid;
    };
    let Ok(mut head) = ResponseHeader::build_no_case(code, Some(response.headers.len())) else {
        return ResponseRead::Invalid;
    };
    if response.version == Some(0) {
        head.set_version(http::Version::HTTP_10);
    }
    if let Some(reason) = response.reason.filter(|r| !r.is_empty()) {
        if head.set_reason_phrase(Some(reason)).is_err() {
            return ResponseRead::Invalid;
        }
    }
    let mut names = Vec::with_capacity(response.headers.len());
    for field in response.headers.iter() {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(field.name.as_bytes()),
            HeaderValue::from_maybe_shared(buf.slice_ref(field.value)),
        ) else {
            return ResponseRead::Invalid;
        };
        if head.append_header(name.clone(), value).is_err() {
            return ResponseRead::Invalid;
        }
        names.push((name, buf.slice_ref(field.name.as_bytes())));
    }
    ResponseRead::Complete(Parsed { head, names, len })
}

/// Appends `headers` to `out`: first under the names as received (every
/// value the field still has, where it first appeared), then the fields the
/// gateway added, then the empty line.
pub fn write_fields(out: &mut BytesMut, headers: &HeaderMap, names: &[(HeaderName, Bytes)]) {
    for (i, (name, raw)) in names.iter().enumerate() {
        if names[..i].iter().any(|(seen, _)| seen == name) {
            continue;
        }
        for value in headers.get_all(name) {
            put_field(out, raw, value);
        }
    }
    for name in headers.keys() {
        if names.iter().any(|(received, _)| received == name) {
            continue;
        }
        for value in headers.get_all(name) {
            put_field(out, name.as_str().as_bytes(), value);
        }
    }
    out.put_slice(b"\r\n");
}

fn put_field(out: &mut BytesMut, name: &[u8], value: &HeaderValue) {
    out.put_slice(name);
    out.put_slice(b": ");
    out.put_slice(value.as_bytes());
    out.put_slice(b"\r\n");
}

/// Appends the request line for `head`, with `target` as the request target.
pub fn write_request_line(out: &mut BytesMut, head: &RequestHeader, target: &[u8]) {
    out.put_slice(head.method.as_str().as_bytes());
    out.put_u8(b' ');
    out.put_slice(target);
    out.put_slice(b" HTTP/1.1\r\n");
}

/// Appends the status line for `head`.
pub fn write_status_line(out: &mut BytesMut, head: &ResponseHeader) {
    out.put_slice(b"HTTP/1.1 ");
    out.put_slice(head.status.as_str().as_bytes());
    out.put_u8(b' ');
    let reason = head
        .get_reason_phrase()
        .or_else(|| head.status.canonical_reason())
        .unwrap_or("");
    out.put_slice(reason.as_bytes());
    out.put_slice(b"\r\n");
}
