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
use std::ops::Range;

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, EXPECT, HOST, TE, TRANSFER_ENCODING, UPGRADE};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use pingora_http::{RequestHeader, ResponseHeader};

use super::names;
use crate::proxy::forwarding::{self, EntryRole, FieldEdit};
use crate::runtime::Limits;

/// Fields a request head may hold without leaving the fast path. More go
/// to `HttpProxy` (which allows up to `limits.max_headers`).
const MAX_FIELDS: usize = 64;
/// Fields in an instance's response head (the most `limits.max_headers`
/// allows a request); more is a 502.
const MAX_RESPONSE_FIELDS: usize = Limits::MAX_HEADERS_CEILING;

/// A head and its fields as received, in order.
pub struct Parsed<'a, H> {
    pub head: H,
    /// The fields as received: the lowercase name the head's map uses, and
    /// the field's bytes from its name on (see [`spelled`]), borrowed from
    /// the bytes read. For a request: only those an instance may get (not
    /// hop-by-hop, not stripped on entry), each with its whole line
    /// through CRLF.
    pub fields: Vec<(HeaderName, &'a [u8])>,
    /// Bytes of the head, request line through the empty line.
    pub len: usize,
}

/// A request the fast path can take.
pub struct FastRequest<'a> {
    pub parsed: Parsed<'a, RequestHeader>,
    /// The client asked to close the connection after the response.
    pub close: bool,
}

/// What [`parse_request`] made of the bytes read so far.
// Made once per request and taken apart at once: boxing the large variant
// would only add an allocation.
#[allow(clippy::large_enum_variant)]
pub enum RequestRead<'a> {
    Fast(FastRequest<'a>),
    /// Not whole, or not for the fast path: `HttpProxy` reads it.
    Handoff,
}

/// Parses the request head at the start of `buf` (see the module docs for
/// what qualifies).
pub fn parse_request<'a>(buf: &'a Bytes, limits: &Limits) -> RequestRead<'a> {
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
        // The request line ends at least this far in: where it does when
        // single spaces separate its parts (the only spelling accepted).
        || crlf_after(&buf[..len], request_line - 2).is_none()
        || !buf[..len].ends_with(b"\r\n")
    {
        return RequestRead::Handoff;
    }
    // Origin-form only (a fragment is for `HttpProxy` to strip); the target
    // shares the read buffer.
    if path.as_bytes().contains(&b'#') {
        return RequestRead::Handoff;
    }
    let Ok(uri) = http::Uri::from_maybe_shared(buf.slice_ref(path.as_bytes())) else {
        return RequestRead::Handoff;
    };
    // Room for the fields the gateway adds on the way to the instance.
    let mut headers = HeaderMap::with_capacity(request.headers.len() + 8);
    let mut fields = Vec::with_capacity(request.headers.len());
    let mut hosts = 0;
    let mut close = false;
    for field in request.headers.iter() {
        let (Some((name, role)), Ok(value)) = (
            names::parse(field.name.as_bytes(), limits.allow_underscores_in_headers),
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
        let Some(line_end) = crlf_after(&buf[..len], span(buf, field.value).end) else {
            return RequestRead::Handoff;
        };
        match role {
            // What `begin_request` would strip is left out here already.
            EntryRole::Stripped => continue,
            EntryRole::HopByHop => {}
            EntryRole::Forwarded => {
                let from = span(buf, field.name.as_bytes()).start;
                fields.push((name.clone(), &buf[from..line_end]));
            }
        }
        if headers.try_append(name, value).is_err() {
            return RequestRead::Handoff;
        }
    }
    if hosts != 1 {
        return RequestRead::Handoff;
    }
    let (mut parts, ()) = http::Request::new(()).into_parts();
    parts.method = method;
    parts.uri = uri;
    parts.headers = headers;
    let head = RequestHeader::from(parts);
    RequestRead::Fast(FastRequest {
        parsed: Parsed { head, fields, len },
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

/// Where the line holding `at` ends, just past its CRLF; `None` for a bare
/// LF (the strict parser refuses it, so such a request is `HttpProxy`'s to
/// answer).
fn crlf_after(buf: &[u8], at: usize) -> Option<usize> {
    // A field's value mostly ends right at its CRLF: no search for that.
    if crlf_at(buf, at) {
        return Some(at + 2);
    }
    let lf = at + memchr::memchr(b'\n', buf.get(at..)?)?;
    (lf > 0 && buf[lf - 1] == b'\r').then_some(lf + 1)
}

/// Whether a CRLF starts at `at`.
fn crlf_at(buf: &[u8], at: usize) -> bool {
    buf.get(at..at + 2) == Some(b"\r\n")
}

/// An instance's response head as received: its fields are not put in a
/// header map unless the route edits them ([`RawResponse::to_head`]).
pub struct RawResponse {
    pub status: StatusCode,
    pub http10: bool,
    /// The bytes read, which the spans below index.
    read: Bytes,
    reason: Range<usize>,
    /// As received, in order.
    fields: Vec<ResponseField>,
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

/// A response field: where its name and value lie in the bytes read, and
/// what the fast path does with it.
struct ResponseField {
    role: Role,
    name: Range<usize>,
    value: Range<usize>,
}

/// What a response field is to the fast path, told from its name once, as
/// the head is parsed: the framing, the connection's fate and the
/// pass-through all look at every field.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Role {
    ContentLength,
    TransferEncoding,
    Connection,
    Date,
    /// Another hop-by-hop field (never passed on).
    HopByHop,
    Other,
}

impl Role {
    fn of(name: &[u8]) -> Self {
        // By length first: most names are none of these.
        let is = |known: &[u8]| name.eq_ignore_ascii_case(known);
        match name.len() {
            4 if is(b"date") => Role::Date,
            10 if is(b"connection") => Role::Connection,
            14 if is(b"content-length") => Role::ContentLength,
            17 if is(b"transfer-encoding") => Role::TransferEncoding,
            _ if forwarding::is_response_hop_by_hop(name) => Role::HopByHop,
            _ => Role::Other,
        }
    }
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
    let reason = response.reason.map_or(0..0, |r| span(buf, r.as_bytes()));
    let fields = response
        .headers
        .iter()
        .map(|field| ResponseField {
            role: Role::of(field.name.as_bytes()),
            name: span(buf, field.name.as_bytes()),
            value: span(buf, field.value),
        })
        .collect();
    ResponseRead::Complete(RawResponse {
        status,
        http10: response.version == Some(0),
        read: buf.clone(),
        reason,
        fields,
        len,
    })
}

/// Where `part`, a slice of `buf`, lies in it.
fn span(buf: &[u8], part: &[u8]) -> Range<usize> {
    let start = part.as_ptr() as usize - buf.as_ptr() as usize;
    start..start + part.len()
}

impl RawResponse {
    /// The values of the fields of `role` (not `Other` or `HopByHop`,
    /// which are many names), as received.
    pub fn values(&self, role: Role) -> impl Iterator<Item = &[u8]> + Clone {
        self.fields
            .iter()
            .filter(move |field| field.role == role)
            .map(|field| &self.read[field.value.clone()])
    }

    /// Whether a `Connection` field says `close` (or the instance speaks HTTP/1.0).
    pub fn closes(&self) -> bool {
        self.http10
            || self
                .values(Role::Connection)
                .any(|v| tokens(v).any(|t| t.eq_ignore_ascii_case(b"close")))
    }

    /// The head in a header map, for the route's edits, with the names as
    /// received; `None` when a field is not valid HTTP.
    pub fn to_head(&self) -> Option<Parsed<'_, ResponseHeader>> {
        let mut head = ResponseHeader::build_no_case(self.status, Some(self.fields.len())).ok()?;
        if self.http10 {
            head.set_version(http::Version::HTTP_10);
        }
        let mut fields = Vec::with_capacity(self.fields.len());
        for ResponseField { name, value, .. } in &self.fields {
            let header = HeaderName::from_bytes(&self.read[name.clone()]).ok()?;
            let field = HeaderValue::from_maybe_shared(self.read.slice(value.clone())).ok()?;
            head.append_header(header.clone(), field).ok()?;
            fields.push((header, &self.read[name.start..value.end]));
        }
        Some(Parsed {
            head,
            fields,
            len: self.len,
        })
    }

    /// Appends the head as the client gets it, without a header map: the
    /// status line; the fields as received, less the hop-by-hop ones (and
    /// those `Connection` nominates), `Date`, `Content-Length` beside a
    /// chunked body, and any the gateway sets itself (`replaced` names
    /// them); then what `own` writes, `date`, `Connection: {connection}`.
    pub fn write_passthrough(
        &self,
        out: &mut BytesMut,
        chunked: bool,
        replaced: impl Fn(&[u8]) -> bool,
        own: impl FnOnce(&mut BytesMut),
        date: &HeaderValue,
        connection: &str,
    ) {
        out.put_slice(b"HTTP/1.1 ");
        out.put_slice(self.status.as_str().as_bytes());
        out.put_u8(b' ');
        match self.reason.is_empty() {
            false => out.put_slice(&self.read[self.reason.clone()]),
            true => out.put_slice(self.status.canonical_reason().unwrap_or("").as_bytes()),
        }
        out.put_slice(b"\r\n");
        // Names `Connection` nominates, never the framing fields (those have
        // roles of their own below).
        let nominated: Vec<&[u8]> = self.values(Role::Connection).flat_map(tokens).collect();
        for field in &self.fields {
            let name = &self.read[field.name.clone()];
            let kept = match field.role {
                Role::Connection | Role::HopByHop | Role::Date => false,
                Role::ContentLength => !chunked,
                Role::TransferEncoding => true,
                Role::Other => !replaced(name) && !nominated.iter().any(|n| name.eq_ignore_ascii_case(n)),
            };
            if !kept {
                continue;
            }
            // The line as received when it ends right after the value (one
            // copy); else rewritten, ending in CRLF.
            let end = field.value.end;
            match crlf_at(&self.read, end) {
                true => out.put_slice(&self.read[field.name.start..end + 2]),
                false => put_raw(out, name, &self.read[field.value.clone()]),
            }
        }
        own(out);
        put_field(out, b"date", date);
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

/// Appends a field from its name and value bytes.
pub fn put_raw(out: &mut BytesMut, name: &[u8], value: &[u8]) {
    out.put_slice(name);
    out.put_slice(b": ");
    out.put_slice(value);
    out.put_slice(b"\r\n");
}

/// A field's name as received, from its entry in [`Parsed::fields`].
fn spelled<'a>((name, from_name): &(HeaderName, &'a [u8])) -> &'a [u8] {
    &from_name[..name.as_str().len()]
}

/// Appends `headers` to `out` in the map's order (the order received, for
/// what was received), each under its name as received when it was,
/// except those `skip` names; then `extra` (the fields set to a value);
/// then the empty line.
pub fn write_fields(
    out: &mut BytesMut,
    headers: &HeaderMap,
    received: &[(HeaderName, &[u8])],
    skip: impl Fn(&HeaderName) -> bool,
    extra: &[FieldEdit<'_>],
) {
    // Fields mostly come in the order received: look from where the last one was found.
    let mut hint = 0;
    for (name, value) in headers {
        if skip(name) {
            continue;
        }
        let found = (hint..received.len()).chain(0..hint).find(|&i| received[i].0 == *name);
        let spelled = match found {
            Some(i) => {
                hint = i;
                spelled(&received[i])
            }
            None => name.as_str().as_bytes(),
        };
        put_field(out, spelled, value);
    }
    write_extra(out, extra);
}

/// Appends a request's fields exactly as received — each line as it came,
/// in the order it came — except those `skip` names; then `extra`; then
/// the empty line. Only for a head nothing edited since it was parsed.
pub fn write_received_fields(
    out: &mut BytesMut,
    received: &[(HeaderName, &[u8])],
    skip: impl Fn(&HeaderName) -> bool,
    extra: &[FieldEdit<'_>],
) {
    for (name, line) in received {
        if !skip(name) {
            out.put_slice(line);
        }
    }
    write_extra(out, extra);
}

fn write_extra(out: &mut BytesMut, extra: &[FieldEdit<'_>]) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::forwarding::X_REQUEST_ID;
    use std::time::Duration;

    /// The kept lines `(name, line)`, the names in the map, and `close`.
    type Taken = (Vec<(String, String)>, Vec<String>, bool);

    fn parse(text: &str) -> Option<Taken> {
        let buf = Bytes::copy_from_slice(text.as_bytes());
        let limits = Limits {
            request_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(5),
            read_header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_request_body: 1 << 20,
            read_body_timeout: Duration::from_secs(10),
            max_header_bytes: 64 << 10,
            max_headers: 100,
            max_connections: 100,
            allow_underscores_in_headers: false,
        };
        match parse_request(&buf, &limits) {
            RequestRead::Fast(request) => {
                let fields = request
                    .parsed
                    .fields
                    .iter()
                    .map(|(name, line)| (name.to_string(), String::from_utf8_lossy(line).into_owned()))
                    .collect();
                let map = request.parsed.head.headers.keys().map(|n| n.to_string()).collect();
                Some((fields, map, request.close))
            }
            RequestRead::Handoff => None,
        }
    }

    #[test]
    fn lines_an_instance_may_get_are_kept_whole_and_the_rest_only_in_the_map_or_nowhere() {
        let (fields, map, close) = parse(
            "GET /a?b=1 HTTP/1.1\r\nHost: x\r\nX-Kept:  spaced \r\nConnection: close\r\n\
             X_Under: 1\r\nX-Unkey-Principal: {}\r\nKeep-Alive: 5\r\n\r\n",
        )
        .expect("taken");
        let expected = [("host", "Host: x\r\n"), ("x-kept", "X-Kept:  spaced \r\n")];
        assert_eq!(fields, expected.map(|(n, l)| (n.to_string(), l.to_string())));
        // Hop-by-hop fields stay in the map for the gateway to read; what
        // the gateway strips on entry is not there at all.
        assert_eq!(map, ["host", "x-kept", "connection", "keep-alive"]);
        assert!(close);
    }

    #[test]
    fn a_bare_lf_anywhere_or_a_fragment_leaves_the_request_to_the_full_proxy() {
        for text in [
            "GET / HTTP/1.1\nHost: x\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\n\n",
            "GET / HTTP/1.1\r\nX-A: 1\r\nHost: x\n\n",
            "GET /#frag HTTP/1.1\r\nHost: x\r\n\r\n",
        ] {
            assert!(parse(text).is_none(), "{text:?}");
        }
        assert!(parse("GET / HTTP/1.1\r\nHost: x\r\n\r\n").is_some());
    }

    fn passed_through(text: &str, chunked: bool) -> String {
        let ResponseRead::Complete(response) = parse_response(&Bytes::copy_from_slice(text.as_bytes())) else {
            panic!("not a complete response head: {text:?}");
        };
        let own = X_REQUEST_ID.name().as_str().as_bytes();
        let mut out = BytesMut::new();
        response.write_passthrough(
            &mut out,
            chunked,
            |name| name.eq_ignore_ascii_case(own),
            |out| put_raw(out, own, b"req_1"),
            &HeaderValue::from_static("Mon, 07 Dec 2026 06:00:00 GMT"),
            "keep-alive",
        );
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn a_passed_through_field_keeps_its_line_or_is_rewritten_to_end_in_crlf() {
        let out = passed_through(
            "HTTP/1.1 200 OK\r\nX-Spaced:   v\r\nX-Trailing: w \t\r\nX-Bare: b\nX-Empty:\r\n\r\n",
            false,
        );
        let lines: Vec<&str> = out.split("\r\n").collect();
        assert_eq!(
            lines[1..5],
            ["X-Spaced:   v", "X-Trailing: w", "X-Bare: b", "X-Empty:"],
            "{out:?}"
        );
    }

    #[test]
    fn a_passed_through_head_loses_hop_by_hop_nominated_and_own_fields_whatever_their_case() {
        let out = passed_through(
            "HTTP/1.1 200 OK\r\nCONNECTION: x-secret, Content-Length\r\nX-Secret: 1\r\nkeep-alive: 5\r\n\
             DATE: old\r\nx-request-id: theirs\r\nContent-Length: 2\r\nX-Kept: yes\r\nUpgrade: h2c\r\n\r\n",
            false,
        );
        let lines: Vec<&str> = out.split("\r\n").collect();
        assert_eq!(lines[0], "HTTP/1.1 200 OK");
        // Content-Length stays although nominated: framing is never a Connection option.
        assert_eq!(lines[1..4], ["Content-Length: 2", "X-Kept: yes", "x-request-id: req_1"]);
        assert!(lines[4].starts_with("date: ") && lines[4] != "date: old", "{out}");
        assert_eq!(lines[5..], ["connection: keep-alive", "", ""]);
    }

    #[test]
    fn a_chunked_head_keeps_its_coding_and_drops_a_length_beside_it() {
        let out = passed_through(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 9\r\nTe: x\r\n\r\n",
            true,
        );
        assert!(out.contains("Transfer-Encoding: chunked\r\n"), "{out}");
        assert!(!out.contains("Content-Length") && !out.contains("Te:"), "{out}");
    }
}
