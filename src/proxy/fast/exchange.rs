//! One request's trip to an instance on the fast path, and the answers the
//! gateway writes itself there: the head goes out, the response head is
//! read and edited like `HttpProxy`'s (hop-by-hop fields, the route's
//! response headers, the gateway's), and the body is passed through as it
//! arrives, framing untouched.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::header::{CONNECTION, DATE};
use http::HeaderValue;
use pingora_core::protocols::l4::socket::SocketAddr as PeerAddr;
use pingora_core::protocols::Stream;
use pingora_core::upstreams::peer::{HttpPeer, Peer as _};
use pingora_error::{Error, ErrorSource, ErrorType};
use pingora_http::{RequestHeader, ResponseHeader};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::fitted;
use super::framing::{self, ChunkedEnd, Framing};
use super::head::{self, Parsed, RawResponse, ResponseRead, Role};
#[cfg(target_os = "linux")]
use super::splice;
use super::timer::ConnectionTimer;
use super::FastPath;
use crate::errors::{ErrorCode, GatewayError};
use crate::proxy::context::RequestCtx;
use crate::proxy::{failure, filters, finish, forwarding, respond, Gateway};
use crate::telemetry::metrics;

/// Room for an instance's response head; a larger one is a 502.
const MAX_RESPONSE_HEAD: usize = 64 << 10;
/// How long an instance may take when its peer has no read timeout.
const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Bytes of a pipelined request read while the previous one waits.
const EARLY_LIMIT: usize = 64 << 10;
/// Bytes read from an instance at a time.
const READ_SIZE: usize = 16 << 10;
/// Bytes of a body read from an instance at a time, once it did not all
/// come with the head (a large body moves in few system calls).
const BODY_READ_SIZE: usize = 64 << 10;

/// What the client got.
pub struct Answer {
    /// The status sent; 0 when no response went out.
    pub status: u16,
    /// The head sent, when it was built in a header map (the gateway's own
    /// answers, edited responses); a response passed through has none.
    /// (Boxed: rare, and an answer is handed up through three calls.)
    pub head: Option<Box<ResponseHeader>>,
    /// The client connection is in a state to read its next request.
    pub reusable: bool,
}

impl Answer {
    /// Nothing went out; the connection is done.
    const NONE: Answer = Answer {
        status: 0,
        head: None,
        reusable: false,
    };
}

/// The client's request as the fast path forwards it.
pub struct Request<'a> {
    pub head: &'a RequestHeader,
    /// The fields an instance may get, with their lines as received (see
    /// `head::Parsed::fields`).
    pub fields: &'a [(http::HeaderName, &'a [u8])],
    /// The client connection may serve another request after this one.
    pub keep_alive: bool,
}

/// Forwards the request to the chosen instance (then to others while a
/// connect fails and one is left) and relays the answer.
pub async fn forward(
    fast: &FastPath,
    client: &mut Stream,
    request: &Request<'_>,
    early: &mut BytesMut,
    timer: &mut ConnectionTimer,
    ctx: &mut RequestCtx,
) -> Answer {
    let head = request.head;
    let out = match upstream_head(head, request.fields, ctx) {
        Ok(out) => out,
        Err(error) => return failed(client, head, &error, ctx).await,
    };
    // The exchange first: once it is done the client's socket is not polled
    // again (each poll goes through every layer of its stream).
    let waited = tokio::select! {
        biased;
        exchanged = exchange(fast, &out, timer, ctx) => Some(exchanged),
        () = hang_up(client, early) => None,
    };
    let exchanged = match waited {
        Some(Ok(exchanged)) => exchanged,
        Some(Err(error)) => return failed(client, head, &error, ctx).await,
        None => {
            tracing::info!(
                "client closed the connection mid-request: waiting for the instance, {}",
                finish::summary(head, ctx)
            );
            return Answer::NONE;
        }
    };
    relay(fast, client, exchanged, request, timer, ctx).await
}

/// The head the instance gets. When the route edits nothing but the
/// forwarding fields (no header edits, rewrite, trace context or credential
/// to strip), it is written straight from the client's lines that may go on
/// (see `head::Parsed::fields`) and the forwarding fields; otherwise
/// through a header map, as `HttpProxy` builds it.
fn upstream_head(
    head: &RequestHeader,
    received: &[(http::HeaderName, &[u8])],
    ctx: &RequestCtx,
) -> pingora_error::Result<Bytes> {
    let mut out = BytesMut::with_capacity(1024);
    let plain = ctx.route.as_ref().is_some_and(|route| {
        route.rewritten_target.is_none()
            && route.rule.request_headers.is_empty()
            && route.rule.rewrite.as_ref().is_none_or(|r| r.hostname.is_none())
    }) && ctx.trace.is_none()
        && ctx.policy.credential_to_strip().is_none();
    match Gateway::forwarding(ctx).filter(|_| plain) {
        Some(fwd) => {
            let edits = forwarding::edits(head, &fwd)?;
            head::write_request_line(&mut out, head, head.raw_path());
            let replaced = |name: &http::HeaderName| {
                forwarding::may_be_edited(name) && edits.iter().any(|(edited, _)| edited.name() == name)
            };
            head::write_received_fields(&mut out, received, replaced, &edits);
        }
        None => {
            let mut upstream = head.clone();
            forwarding::strip_request_hop_by_hop(&mut upstream);
            Gateway::prepare_upstream_request(&mut upstream, ctx)?;
            head::write_request_line(&mut out, &upstream, upstream.raw_path());
            head::write_fields(&mut out, &upstream.headers, received, |_| false, &[]);
        }
    }
    Ok(out.freeze())
}

/// Resolves when the client closes its connection (or it fails) while its
/// request waits for the instance, so the exchange is abandoned at once.
/// What the client sends meanwhile (its next, pipelined request) is kept in
/// `early`; past [`EARLY_LIMIT`] bytes it is left unread.
async fn hang_up(client: &mut Stream, early: &mut BytesMut) {
    while early.len() < EARLY_LIMIT {
        match client.read_buf(early).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
    std::future::pending().await
}

/// An instance's connection, what the pool and the body's reads need to
/// know of how it was reached, its response head and what was read with it.
struct Exchanged {
    instance: Stream,
    reached: Reached,
    response: RawResponse,
    read: Bytes,
}

/// How a connection was reached: the key it goes back to the pool under,
/// and how long a read may wait.
struct Reached {
    pool_key: u64,
    read_timeout: Duration,
}

/// Sends the head to an instance and reads its response head, trying the
/// next instance while connecting fails.
async fn exchange(
    fast: &FastPath,
    out: &Bytes,
    timer: &mut ConnectionTimer,
    ctx: &mut RequestCtx,
) -> Result<Exchanged, Box<Error>> {
    loop {
        let Some(addr) = ctx.next_network_instance() else {
            return Err(upstream_error(ErrorType::ConnectRefused, "no instance left to try"));
        };
        let attempt = Gateway::start_attempt(addr, ctx);
        let pool_key = match &ctx.instance {
            Some(endpoint) => endpoint.pool_key(|| pool_key_of(addr)),
            None => pool_key_of(addr),
        };
        // The peer (~700 bytes) is built only to open a connection.
        let connect = |ctx: &RequestCtx| {
            let peer = Gateway::peer_for(addr, false, &attempt, ctx);
            async move { Box::pin(fast.instances().new_stream(&peer)).await }
        };
        let (mut instance, reused) = match fast.instances().reused_stream_by_key(pool_key, &PeerAddr::Inet(addr)) {
            Some(pooled) => (pooled, true),
            None => match connect(ctx).await {
                Ok(connected) => (connected, false),
                Err(error) => {
                    let error = failure::connect_failed(ctx, &addr, error.into_up());
                    if error.retry() {
                        continue;
                    }
                    return Err(error);
                }
            },
        };
        if let Some(endpoint) = &ctx.instance {
            endpoint.connected();
        }
        metrics().upstream_connection(reused);
        let wait = attempt.remaining.unwrap_or(DEFAULT_READ_TIMEOUT);
        // The instance's time counts from when it was chosen, connecting included.
        let since = attempt.started;
        let mut answer = round_trip(&mut instance, out, since, wait, timer).await;
        if reused && matches!(&answer, Err(RoundTrip::Closed)) {
            // The instance closed the pooled connection as it was taken:
            // the request never reached it, so a new connection may carry it.
            instance = connect(ctx)
                .await
                .map_err(|e| failure::connect_failed(ctx, &addr, e.into_up()))?;
            metrics().upstream_connection(false);
            answer = round_trip(&mut instance, out, since, wait, timer).await;
        }
        let (response, read) = answer.map_err(|e| e.into_error(addr))?;
        return Ok(Exchanged {
            instance,
            reached: Reached {
                pool_key,
                read_timeout: wait,
            },
            response,
            read,
        });
    }
}

/// The key the connection pool keeps `addr`'s HTTP/1 connections under:
/// the hash of the peer [`Gateway::peer_for`] builds for it, which `HttpProxy`
/// uses too (timeouts are not part of it), so both paths share them.
fn pool_key_of(addr: SocketAddr) -> u64 {
    HttpPeer::new(addr, false, String::new()).reuse_hash()
}

/// Why a round trip failed.
enum RoundTrip {
    /// Closed (or reset) before a byte of the response came back.
    Closed,
    Failed(Box<Error>),
}

impl RoundTrip {
    fn into_error(self, addr: SocketAddr) -> Box<Error> {
        match self {
            RoundTrip::Closed => upstream_error(ErrorType::ConnectionClosed, format!("{addr} closed the connection")),
            RoundTrip::Failed(error) => error,
        }
    }
}

/// Writes the request head and reads the response head (skipping `100
/// Continue` and other interim answers), within `wait` from `since`.
async fn round_trip(
    instance: &mut Stream,
    out: &Bytes,
    since: Instant,
    wait: Duration,
    timer: &mut ConnectionTimer,
) -> Result<(RawResponse, Bytes), RoundTrip> {
    let trip = async {
        if instance.write_all(out).await.is_err() || instance.flush().await.is_err() {
            return Err(RoundTrip::Closed);
        }
        // The start of a response head that did not come in one read.
        let mut head_so_far = BytesMut::new();
        loop {
            let chunk = match fitted::read(instance, READ_SIZE).await {
                Ok(chunk) => chunk,
                Err(_) if head_so_far.is_empty() => return Err(RoundTrip::Closed),
                Err(e) => {
                    return Err(RoundTrip::Failed(
                        Error::because(ErrorType::ReadError, "reading the response", e).into_up(),
                    ))
                }
            };
            if chunk.is_empty() {
                return Err(match head_so_far.is_empty() {
                    true => RoundTrip::Closed,
                    false => RoundTrip::Failed(upstream_error(ErrorType::ConnectionClosed, "response head cut short")),
                });
            }
            let mut read = match head_so_far.is_empty() {
                true => chunk,
                false => {
                    head_so_far.extend_from_slice(&chunk);
                    std::mem::take(&mut head_so_far).freeze()
                }
            };
            loop {
                match head::parse_response(&read) {
                    ResponseRead::Complete(parsed) if parsed.status.is_informational() && parsed.status != 101 => {
                        read = read.slice(parsed.len..);
                    }
                    ResponseRead::Complete(parsed) => return Ok((parsed, read)),
                    ResponseRead::Partial if read.len() < MAX_RESPONSE_HEAD => {
                        head_so_far.extend_from_slice(&read);
                        break;
                    }
                    _ => {
                        return Err(RoundTrip::Failed(upstream_error(
                            ErrorType::InvalidHTTPHeader,
                            "invalid response head",
                        )))
                    }
                }
            }
        }
    };
    match timer.within(since.into(), wait, trip).await {
        Some(result) => result,
        None => Err(RoundTrip::Failed(upstream_error(
            ErrorType::ReadTimedout,
            "no response in time",
        ))),
    }
}

/// Sends the response head and passes the body through; the instance's
/// connection goes back to the pool when the body ended where its framing
/// says.
async fn relay(
    fast: &FastPath,
    client: &mut Stream,
    exchanged: Exchanged,
    forwarded: &Request<'_>,
    timer: &mut ConnectionTimer,
    ctx: &mut RequestCtx,
) -> Answer {
    let Exchanged {
        mut instance,
        reached,
        response,
        read,
    } = exchanged;
    let request = forwarded.head;
    let answered = *ctx.upstream_answered.get_or_insert_with(Instant::now);
    if let Some(trace) = ctx.trace.as_mut() {
        trace.attempt_answered(response.status.as_u16());
    }
    let Some(framing) = framing::of_response(&request.method, &response) else {
        let error = upstream_error(ErrorType::InvalidHTTPHeader, "ambiguous response framing");
        return failed(client, request, &error, ctx).await;
    };
    if response.status == 101 {
        let error = upstream_error(ErrorType::InvalidHTTPHeader, "101 without an upgrade");
        return failed(client, request, &error, ctx).await;
    }
    let keep_alive = forwarded.keep_alive && framing != Framing::UntilClose;
    let connection = if keep_alive { "keep-alive" } else { "close" };
    let len = response.len;
    let mut out = BytesMut::with_capacity(len + 512);
    let date = crate::clock::http_date_at(answered);
    let edits = ctx.route.as_ref().map_or(&[][..], |r| &r.rule.response_headers[..]);
    let kept = match edits.is_empty() {
        // Nothing to edit: the fields go out as they came, without a header map.
        true => {
            response.write_passthrough(
                &mut out,
                framing == Framing::Chunked,
                |name| respond::sets_gateway_field(ctx, name),
                |out| {
                    respond::gateway_fields(ctx, |name, value| {
                        head::put_raw(out, name.name().as_str().as_bytes(), value)
                    })
                },
                &date,
                connection,
            );
            Ok(None)
        }
        false => {
            edited_head(&response, framing, edits, &date, connection, ctx).map(|Parsed { head, fields, .. }| {
                head::write_status_line(&mut out, &head);
                head::write_fields(&mut out, &head.headers, &fields, |_| false, &[]);
                Some(Box::new(head))
            })
        }
    };
    let kept = match kept {
        Ok(kept) => kept,
        Err(error) => return failed(client, request, &error, ctx).await,
    };
    let body = read.slice(len..);
    let mut body_end = BodyEnd::new(framing);
    let (first, done, extra) = match body_end.take(&body) {
        Ok(taken) => taken,
        Err(()) => (body.len(), true, true),
    };
    out.extend_from_slice(&body[..first]);
    let sent = write_all(client, &out).await;
    // A chunked response that also declared a length is read as chunked, but
    // its connection is not trusted with another request (RFC 9112 §6.3).
    let declared_both = framing == Framing::Chunked && response.values(Role::ContentLength).next().is_some();
    let mut instance_reusable = !extra && !declared_both && !response.closes() && framing != Framing::UntilClose;
    let mut client_reusable = sent && keep_alive;
    let mut body_done = done;
    if sent && !done {
        match pass_body(client, &mut instance, &mut body_end, reached.read_timeout, timer).await {
            Passed::Done { extra } => {
                instance_reusable &= !extra;
                body_done = true;
            }
            Passed::ClientGone => client_reusable = false,
            Passed::InstanceEnded => client_reusable = false,
        }
    }
    if body_done && instance_reusable {
        // No deadline of its own, as for `HttpProxy`'s peers: the pool's
        // sweep closes what the instance closed.
        fast.instances().release_stream(instance, reached.pool_key, None);
    }
    Answer {
        status: response.status.as_u16(),
        head: kept,
        reusable: client_reusable,
    }
}

/// The response head with the route's edits applied, like `HttpProxy`'s
/// (hop-by-hop fields removed, the route's response headers, the
/// gateway's), and the names as received.
fn edited_head<'a>(
    response: &'a RawResponse,
    framing: Framing,
    edits: &[crate::routing::filters::HeaderFilter],
    date: &HeaderValue,
    connection: &'static str,
    ctx: &RequestCtx,
) -> pingora_error::Result<Parsed<'a, ResponseHeader>> {
    let Some(mut parsed) = response.to_head() else {
        return Err(upstream_error(ErrorType::InvalidHTTPHeader, "invalid response field"));
    };
    let edited = &mut parsed.head;
    if framing == Framing::Chunked {
        edited.remove_header(&http::header::CONTENT_LENGTH);
    }
    forwarding::strip_response_hop_by_hop(edited);
    filters::apply(edits, edited)?;
    respond::add_gateway_headers(edited, ctx)?;
    edited.insert_header(DATE, date.clone())?;
    edited.insert_header(CONNECTION, connection)?;
    Ok(parsed)
}

/// How the rest of a body went.
enum Passed {
    /// It ended where the framing says; `extra`: the instance sent more.
    Done {
        extra: bool,
    },
    ClientGone,
    /// The instance closed, failed or went quiet before the framing's end
    /// (for a body delimited by the connection's end: that is its end).
    InstanceEnded,
}

/// Reads the body's remainder from the instance and writes it to the client.
async fn pass_body(
    client: &mut Stream,
    instance: &mut Stream,
    end: &mut BodyEnd,
    wait: Duration,
    timer: &mut ConnectionTimer,
) -> Passed {
    #[cfg(target_os = "linux")]
    if let Some(passed) = pass_body_in_kernel(client, instance, end, wait, timer).await {
        return passed;
    }
    let mut buf = BytesMut::with_capacity(BODY_READ_SIZE);
    loop {
        buf.clear();
        let n = match timer
            .within(Instant::now().into(), wait, instance.read_buf(&mut buf))
            .await
        {
            Some(Ok(n)) if n > 0 => n,
            _ => return Passed::InstanceEnded,
        };
        let (take, done, extra) = match end.take(&buf[..n]) {
            Ok(taken) => taken,
            Err(()) => return Passed::InstanceEnded,
        };
        if !write_all(client, &buf[..take]).await {
            return Passed::ClientGone;
        }
        if done {
            return Passed::Done { extra };
        }
    }
}

/// A large body of known length between plain TCP sockets, spliced (see
/// [`splice`]); `None` when it is not one (nothing was read). Bytes the
/// instance sent past the body stay in its socket, where the pool's test
/// of a connection it hands out finds them.
#[cfg(target_os = "linux")]
async fn pass_body_in_kernel(
    client: &Stream,
    instance: &Stream,
    end: &BodyEnd,
    wait: Duration,
    timer: &mut ConnectionTimer,
) -> Option<Passed> {
    let &BodyEnd::Left(left) = end else {
        return None;
    };
    if left < splice::MIN_LEFT {
        return None;
    }
    let (to, from) = (splice::plain_tcp(client)?, splice::plain_tcp(instance)?);
    Some(match splice::body(to, from, left, wait, timer).await? {
        splice::Spliced::Done => Passed::Done { extra: false },
        splice::Spliced::ClientGone => Passed::ClientGone,
        splice::Spliced::InstanceEnded => Passed::InstanceEnded,
    })
}

/// Where the body being relayed ends.
enum BodyEnd {
    Left(u64),
    Chunked(ChunkedEnd),
    UntilClose,
}

impl BodyEnd {
    fn new(framing: Framing) -> Self {
        match framing {
            Framing::Empty => BodyEnd::Left(0),
            Framing::Length(n) => BodyEnd::Left(n),
            Framing::Chunked => BodyEnd::Chunked(ChunkedEnd::default()),
            Framing::UntilClose => BodyEnd::UntilClose,
        }
    }

    /// Of `data`, how much belongs to the body, whether the body is then
    /// complete, and whether bytes past its end arrived. `Err`: the
    /// framing is broken.
    fn take(&mut self, data: &[u8]) -> Result<(usize, bool, bool), ()> {
        match self {
            BodyEnd::Left(left) => {
                let take = (*left).min(data.len() as u64);
                *left -= take;
                let take = take as usize;
                Ok((take, *left == 0, take < data.len()))
            }
            BodyEnd::Chunked(scanner) => match scanner.feed(data).map_err(|_| ())? {
                Some(end) => Ok((end, true, end < data.len())),
                None => Ok((data.len(), false, false)),
            },
            BodyEnd::UntilClose => Ok((data.len(), false, false)),
        }
    }
}

/// Answers with the gateway's own error.
pub async fn gateway_error(
    client: &mut Stream,
    request: &RequestHeader,
    error: &GatewayError,
    keep_alive: bool,
    ctx: &mut RequestCtx,
) -> Answer {
    match respond::error_response(request, ctx, error) {
        Ok((response, body)) => {
            let body = if request.method == http::Method::HEAD {
                Bytes::new()
            } else {
                body
            };
            send(client, response, body, keep_alive).await
        }
        Err(_) => Answer::NONE,
    }
}

/// Answers a failure to proxy as `HttpProxy` does: the error's status, and
/// the connection closes.
async fn failed(client: &mut Stream, request: &RequestHeader, error: &Error, ctx: &mut RequestCtx) -> Answer {
    if let (Some(trace), ErrorSource::Upstream) = (ctx.trace.as_mut(), error.esource()) {
        trace.attempt_failed(error.etype().as_str(), error);
    }
    let code = failure::classify(error).unwrap_or(ErrorCode::BadGateway);
    tracing::error!("Fail to proxy: {error}, {}", finish::summary(request, ctx));
    gateway_error(client, request, &GatewayError::new(code), false, ctx).await
}

/// Writes a complete response of the gateway's own.
async fn send(client: &mut Stream, mut response: ResponseHeader, body: Bytes, keep_alive: bool) -> Answer {
    let _ = response.insert_header(DATE, crate::clock::http_date_at(Instant::now()));
    let _ = response.insert_header(CONNECTION, if keep_alive { "keep-alive" } else { "close" });
    let mut out = BytesMut::with_capacity(512 + body.len());
    head::write_status_line(&mut out, &response);
    head::write_fields(&mut out, &response.headers, &[], |_| false, &[]);
    out.extend_from_slice(&body);
    let sent = write_all(client, &out).await;
    Answer {
        status: response.status.as_u16(),
        head: Some(Box::new(response)),
        reusable: sent && keep_alive,
    }
}

/// Writes and flushes; false when the client is gone.
async fn write_all(client: &mut Stream, bytes: &[u8]) -> bool {
    client.write_all(bytes).await.is_ok() && client.flush().await.is_ok()
}

fn upstream_error(kind: ErrorType, context: impl Into<pingora_error::ImmutStr>) -> Box<Error> {
    let mut error = Error::explain(kind, context);
    error.esource = ErrorSource::Upstream;
    error
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use pingora_core::upstreams::peer::Peer as _;

    use super::pool_key_of;
    use crate::proxy::admission::Attempt;
    use crate::proxy::context::RequestCtx;
    use crate::proxy::Gateway;

    #[test]
    fn the_pool_key_is_the_hash_of_the_peer_a_request_connects_with() {
        let addr = "127.0.0.1:8080".parse().unwrap();
        let attempt = Attempt {
            started: std::time::Instant::now(),
            connect: Some(Duration::from_secs(1)),
            remaining: Some(Duration::from_millis(1234)),
        };
        let peer = Gateway::peer_for(addr, false, &attempt, &RequestCtx::default());
        assert_eq!(pool_key_of(addr), peer.reuse_hash());
        assert_ne!(pool_key_of(addr), pool_key_of("127.0.0.1:8081".parse().unwrap()));
    }
}
