//! keygate's own HTTP/1 path for the common request: a `GET` or `HEAD`
//! whose head arrived whole, to a deployment of HTTP/1.1 instances. It
//! parses the head once (`httparse`), runs the same admission as every
//! request (route, policies, instance; see `proxy::admission`), writes the
//! instance's head straight from the parsed fields and passes the response
//! through, over pingora's pool of instance connections. Per request it
//! skips what `HttpProxy` pays for generality: a new session and buffers,
//! header maps kept twice, body channels, a dozen boxed phase futures.
//!
//! Everything else — a body, an upgrade, HTTP/1.0, HTTP/2, an ACME
//! challenge, a redirect, `builtin:echo`, h2c instances, a chain that logs
//! bodies, anything malformed — is handed to `HttpProxy` with the bytes
//! already read ([`rewind::Rewind`]), one request at a time; the
//! connection comes back afterwards.

mod exchange;
mod fitted;
mod framing;
mod head;
mod names;
mod rewind;
#[cfg(target_os = "linux")]
mod splice;
mod timer;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use pingora_core::apps::{HttpServerApp, ServerApp};
use pingora_core::connectors::TransportConnector;
use pingora_core::protocols::http::ServerSession;
use pingora_core::protocols::{Stream, ALPN};
use pingora_core::server::ShutdownWatch;
use pingora_proxy::{HttpProxy, ProxyHttp};

use super::admission::{https_redirect, Admission, Admitted, Entry, Peer};
use super::{finish, Gateway, RequestCtx};
use crate::errors::ErrorCode;
use crate::runtime::Deployment;
use crate::telemetry::metrics;
use crate::upstream::{Protocol, Target};
use exchange::Answer;
use head::{FastRequest, RequestRead};
use rewind::Rewind;
use timer::ConnectionTimer;

/// Room for a request head read in one go (larger heads go to `HttpProxy`).
const READ_SIZE: usize = 4096;

/// The listeners' application: the fast path, with `HttpProxy` behind it.
pub struct FastPath {
    gateway: Gateway,
    full: Arc<HttpProxy<Gateway>>,
}

impl FastPath {
    pub fn new(gateway: Gateway, full: HttpProxy<Gateway>) -> Self {
        Self {
            gateway,
            full: Arc::new(full),
        }
    }

    /// Connections to instances: `HttpProxy`'s pool, so a connection either
    /// path opened serves both.
    fn instances(&self) -> &TransportConnector {
        self.full.upstream_transport()
    }
}

/// What happens to the client connection after a request.
enum Next {
    KeepAlive,
    Close,
    /// The request is `HttpProxy`'s: nothing was done with it.
    Handoff,
}

#[async_trait]
impl ServerApp for FastPath {
    async fn process_new(self: &Arc<Self>, stream: Stream, shutdown: &ShutdownWatch) -> Option<Stream> {
        if matches!(stream.selected_alpn_proto(), Some(ALPN::H2)) {
            return self.full.process_new(stream, shutdown).await;
        }
        self.serve(stream, shutdown).await;
        None
    }

    async fn cleanup(&self) {
        self.full.http_cleanup().await;
    }
}

impl FastPath {
    /// Serves the connection's requests in order until it closes.
    async fn serve(self: &Arc<Self>, mut client: Stream, shutdown: &ShutdownWatch) {
        let peer = Peer::new(
            client
                .get_socket_digest()
                .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).map(|a| a.ip())),
            client.get_ssl_digest().is_some(),
        );
        let mut pending = Bytes::new();
        let mut first = true;
        let mut timer = ConnectionTimer::new();
        // The latest clock reading: the next request's wait counts from it.
        let mut last = Instant::now();
        loop {
            if pending.is_empty() {
                let limits = &self.gateway.snapshot.load().limits;
                let wait = if first {
                    limits.read_header_timeout
                } else {
                    limits.idle_timeout
                };
                match read_some(&mut client, last, wait, &mut timer).await {
                    Some(read) => pending = read,
                    None => return,
                }
            }
            let parsed = head::parse_request(&pending, &self.gateway.snapshot.load().limits);
            let next = match parsed {
                RequestRead::Fast(request) => {
                    let rest = pending.slice(request.parsed.len..);
                    let mut early = BytesMut::new();
                    match self
                        .serve_request(&mut client, &peer, request, &mut early, &mut timer, shutdown)
                        .await
                    {
                        (Next::Handoff, _) => Next::Handoff,
                        (next, ended) => {
                            pending = joined(rest, early.freeze());
                            last = ended;
                            next
                        }
                    }
                }
                RequestRead::Handoff => Next::Handoff,
            };
            match next {
                Next::KeepAlive => {}
                Next::Close => {
                    client.shutdown().await;
                    return;
                }
                Next::Handoff => match self
                    .hand_off(client, std::mem::take(&mut pending), first, shutdown)
                    .await
                {
                    Some((stream, unread)) => {
                        client = stream;
                        pending = unread;
                        last = Instant::now();
                    }
                    None => return,
                },
            }
            first = false;
        }
    }

    /// `HttpProxy` serves one request from `read` and the connection; the
    /// connection comes back with what was read past that request.
    async fn hand_off(
        self: &Arc<Self>,
        client: Stream,
        read: Bytes,
        first: bool,
        shutdown: &ShutdownWatch,
    ) -> Option<(Stream, Bytes)> {
        metrics().http1_request(false);
        let mut session = ServerSession::new_http1(Box::new(Rewind::new(read, client)));
        session.set_keepalive(if *shutdown.borrow() { None } else { Some(60) });
        if let Some(limits) = self.full.h1_head_limits() {
            session.set_head_limits(limits, first);
        }
        let (stream, settings) = self.full.process_new_http(session, shutdown).await?.consume();
        let (unread, client) = stream.into_any().downcast::<Rewind>().ok()?.into_parts();
        let pipelined = settings.and_then(|mut s| s.take_pipelined_prefix()).unwrap_or_default();
        Some((client, joined(pipelined.freeze(), unread)))
    }

    /// One request, start to end, or [`Next::Handoff`] before anything
    /// was done with it; with when it ended.
    async fn serve_request(
        &self,
        client: &mut Stream,
        peer: &Peer,
        request: FastRequest<'_>,
        early: &mut BytesMut,
        timer: &mut ConnectionTimer,
        shutdown: &ShutdownWatch,
    ) -> (Next, Instant) {
        let FastRequest { parsed, close } = request;
        let mut head = parsed.head;
        let mut ctx = self.gateway.new_ctx();
        // The parser left out what the gateway strips on entry.
        let snapshot = self.gateway.begin_request(&mut head, peer, Entry::Stripped, &mut ctx);
        let Some(deployment) = self.takes(&head, &mut ctx) else {
            return (Next::Handoff, Instant::now());
        };
        metrics().http1_request(true);
        Gateway::start_trace(&head, &mut ctx);
        let admitted = match Gateway::admit(&head, Some(deployment), &mut ctx).await {
            Admission::Decided(decided) => decided,
            Admission::NeedsBody { deployment, resume } => {
                let empty = Bytes::new();
                Gateway::admit_with_body(&deployment, resume, &head, &empty, &mut ctx).await
            }
        };
        let keep_alive = !close && !snapshot.limits.idle_timeout.is_zero() && !*shutdown.borrow();
        let answer = match admitted {
            Ok(Admitted::Forward) => {
                let request = exchange::Request {
                    head: &head,
                    fields: &parsed.fields,
                    keep_alive,
                };
                exchange::forward(self, client, &request, early, timer, &mut ctx).await
            }
            // `takes` leaves redirect routes and echo instances to `HttpProxy`.
            Ok(Admitted::Redirect(..) | Admitted::Echo) => {
                let error = ErrorCode::InternalServerError.into();
                exchange::gateway_error(client, &head, &error, keep_alive, &mut ctx).await
            }
            Err(error) => exchange::gateway_error(client, &head, &error, keep_alive, &mut ctx).await,
        };
        let Answer {
            status,
            head: sent,
            reusable,
        } = answer;
        let ended = finish::record(&head, status, sent.as_ref().map(|h| &h.headers), &mut ctx);
        let next = if reusable && keep_alive {
            Next::KeepAlive
        } else {
            Next::Close
        };
        (next, ended)
    }

    /// The deployment, when the fast path serves this request; `None` for
    /// what only `HttpProxy` answers (decided before any policy runs).
    fn takes(&self, head: &pingora_http::RequestHeader, ctx: &mut RequestCtx) -> Option<Arc<Deployment>> {
        if self.gateway.challenges.answer(head.uri.path()).is_some() || https_redirect(head, ctx).is_some() {
            return None;
        }
        let deployment = Gateway::route(head, ctx).ok()??;
        let plain = ctx.route.as_ref().is_some_and(|r| r.redirect.is_none())
            && deployment.protocol == Protocol::Http1
            && !deployment.policies.records_bodies()
            && deployment.instances.current().iter().all(|e| e.target != Target::Echo);
        plain.then_some(deployment)
    }
}

/// `first` then `then`, copied only when both hold bytes.
fn joined(first: Bytes, then: Bytes) -> Bytes {
    if then.is_empty() {
        return first;
    }
    if first.is_empty() {
        return then;
    }
    let mut both = BytesMut::with_capacity(first.len() + then.len());
    both.extend_from_slice(&first);
    both.extend_from_slice(&then);
    both.freeze()
}

/// Waits for bytes from the client (at most `wait` from `since`, when it is
/// not zero). `None`: closed, failed or timed out — nothing to answer.
async fn read_some(client: &mut Stream, since: Instant, wait: Duration, timer: &mut ConnectionTimer) -> Option<Bytes> {
    let read = timer
        .within(since.into(), wait, fitted::read(client, READ_SIZE))
        .await?
        .ok()?;
    (!read.is_empty()).then_some(read)
}
