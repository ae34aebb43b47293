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

use std::mem::MaybeUninit;

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, EXPECT, HOST, TE, TRANSFER_ENCODING, UPGRADE};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use pingora_core::protocols::http::date::get_cached_date;
use pingora_http::{RequestHeader, ResponseHeader, StaticHeaderName};

use crate::proxy::forwarding;
use crate::runtime::Limits;

/// Fields a request head may hold without leaving the fast path. More go
/// to `HttpProxy` (which allows up to `limits.max_headers`).
const MAX_FIELDS: usize = 64;
/// Fields in an instance's response head (the most `limits.max_headers`
/// allows a request); more is a 502.
const MAX_RESPONSE_FIELDS: usize = Limits::MAX_HEADERS_CEILING;

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
    let mut fields = [const { MaybeUninit::uninit() }; MAX_FIELDS];
    let mut request = httparse::Request::new(&mut []);
    let len = match request.parse_with_uninit_headers(buf, &mut fields) {
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

/// An instance's response head as received: its fields are not put in a
/// header map unless the route edits them ([`RawResponse::to_head`]).
pub struct RawResponse {
    pub status: StatusCode,
    pub http10: bool,
    reason: Bytes,
    /// `(name, value)` as received, in order.
    pub fields: Vec<(Bytes, Bytes)>,
    /// Bytes of the head.
    pub len: usize,
}

/// What [`parse_response`] made of the bytes read so far.
pub enum ResponseRead {
    Complete(RawResponse),
    /// Read more.
    Partial,
    /// Not a valid HTTP/1 response head.
    Invalid,
}

/// Parses the response head at the start of `buf`.
pub fn parse_response(buf: &Bytes) -> ResponseRead {
    let mut fields = [const { MaybeUninit::uninit() }; MAX_RESPONSE_FIELDS];
    let mut response = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(&mut response, buf, &mut fields);
    let len = match parsed {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return ResponseRead::Partial,
        Err(_) => return ResponseRead::Invalid,
    };
    let Some(status) = response.code.and_then(|code| StatusCode::from_u16(code).ok()) else {
        return ResponseRead::Invalid;
    };
    let reason = response.reason.map_or_else(Bytes::new, |r| buf.slice_ref(r.as_bytes()));
    let fields = response
        .headers
        .iter()
        .map(|field| (buf.slice_ref(field.name.as_bytes()), buf.slice_ref(field.value)))
        .collect();
    ResponseRead::Complete(RawResponse {
        status,
        http10: response.version == Some(0),
        reason,
        fields,
        len,
    })
}

impl RawResponse {
    /// The values of field `name` (lowercase), as received.
    pub fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + Clone + 'a {
        self.fields
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| &v[..])
    }

    /// Whether a `Connection` field says `close` (or the instance speaks HTTP/1.0).
    pub fn closes(&self) -> bool {
        self.http10
            || self
                .values("connection")
                .any(|v| tokens(v).any(|t| t.eq_ignore_ascii_case(b"close")))
    }

    /// The head in a header map, for the route's edits, with the names as
    /// received; `None` when a field is not valid HTTP.
    pub fn to_head(&self) -> Option<Parsed<ResponseHeader>> {
        let mut head = ResponseHeader::build_no_case(self.status, Some(self.fields.len())).ok()?;
        if self.http10 {
            head.set_version(http::Version::HTTP_10);
        }
        let mut names = Vec::with_capacity(self.fields.len());
        for (name, value) in &self.fields {
            let header = HeaderName::from_bytes(name).ok()?;
            head.append_header(header.clone(), HeaderValue::from_maybe_shared(value.clone()).ok()?)
                .ok()?;
            names.push((header, name.clone()));
        }
        Some(Parsed {
            head,
            names,
            len: self.len,
        })
    }

    /// Appends the head as the client gets it, without a header map: the
    /// status line; the fields as received, less the hop-by-hop ones (and
    /// those `Connection` nominates), `Date`, `Content-Length` beside a
    /// chunked body, and any the gateway sets itself (`own`); then `own`,
    /// `Date`, `Connection: {connection}`.
    pub fn write_passthrough(
        &self,
        out: &mut BytesMut,
        chunked: bool,
        own: &[(&'static StaticHeaderName, HeaderValue)],
        connection: &str,
    ) {
        out.put_slice(b"HTTP/1.1 ");
        out.put_slice(self.status.as_str().as_bytes());
        out.put_u8(b' ');
        match self.reason.is_empty() {
            false => out.put_slice(&self.reason),
            true => out.put_slice(self.status.canonical_reason().unwrap_or("").as_bytes()),
        }
        out.put_slice(b"\r\n");
        let nominated: Vec<&[u8]> = self.values("connection").flat_map(tokens).collect();
        for (name, value) in &self.fields {
            let dropped = forwarding::is_response_hop_by_hop(name)
                || name.eq_ignore_ascii_case(b"date")
                || (chunked && name.eq_ignore_ascii_case(b"content-length"))
                || own
                    .iter()
                    .any(|(o, _)| name.eq_ignore_ascii_case(o.name().as_str().as_bytes()))
                || nominated.iter().any(|n| {
                    name.eq_ignore_ascii_case(n)
                        && !n.eq_ignore_ascii_case(b"content-length")
                        && !n.eq_ignore_ascii_case(b"transfer-encoding")
                });
            if !dropped {
                put_raw(out, name, value);
            }
        }
        for (name, value) in own {
            put_field(out, name.name().as_str().as_bytes(), value);
        }
        put_field(out, b"date", &get_cached_date());
        put_raw(out, b"connection", connection.as_bytes());
        out.put_slice(b"\r\n");
    }
}

/// The comma-separated tokens of a field value, trimmed.
fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|b| *b == b',')
        .map(|t| t.trim_ascii())
        .filter(|t| !t.is_empty())
}

fn put_raw(out: &mut BytesMut, name: &[u8], value: &[u8]) {
    out.put_slice(name);
    out.put_slice(b": ");
    out.put_slice(value);
    out.put_slice(b"\r\n");
}

/// Appends `headers` to `out` in the map's order (the order received, for
/// what was received), each under its name as received when it was,
/// except those `skip` names; then `extra` (the fields set to a value);
/// then the empty line.
pub fn write_fields(
    out: &mut BytesMut,
    headers: &HeaderMap,
    names: &[(HeaderName, Bytes)],
    skip: impl Fn(&HeaderName) -> bool,
    extra: &[(&'static StaticHeaderName, Option<HeaderValue>)],
) {
    // Fields mostly come in the order received: look from where the last one was found.
    let mut hint = 0;
    for (name, value) in headers {
        if skip(name) {
            continue;
        }
        let found = (hint..names.len()).chain(0..hint).find(|&i| names[i].0 == *name);
        let spelled = match found {
            Some(i) => {
                hint = i;
                &names[i].1[..]
            }
            None => name.as_str().as_bytes(),
        };
        put_field(out, spelled, value);
    }
    for (name, value) in extra {
        if let Some(value) = value {
            put_field(out, name.name().as_str().as_bytes(), value);
        }
    }
    out.put_slice(b"\r\n");
}

fn put_field(out: &mut BytesMut, name: &[u8], value: &HeaderValue) {
    put_raw(out, name, value.as_bytes());
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
