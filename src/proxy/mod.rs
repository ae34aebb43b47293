//! The request lifecycle on pingora, one phase per method, top to bottom:
//! route → policies → instance → forward → response headers. Each phase is a
//! few lines calling into `routing`, `upstream`, `errors`; no business logic
//! lives here.

mod admission;
mod body;
mod context;
mod echo;
mod failure;
mod fast;
mod filters;
mod finish;
pub mod forwarding;
mod respond;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use pingora_core::protocols::http::v1::server::RequestHeadLimits;
use pingora_core::protocols::http::ServerSession as HttpSession;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorSource, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{FailToProxy, ProxyHttp, Session};

use admission::{https_redirect, Admission, Admitted, Entry, Peer};
pub use context::RequestCtx;
pub use fast::FastPath;

use crate::errors::{ErrorCode, GatewayError};
use crate::runtime::{InFlightCounter, Limits, SharedSnapshot};
use crate::telemetry::metrics;
use crate::tls::ChallengeTokens;

/// keygate's proxy: what pingora calls for each request.
#[derive(Clone)]
pub struct Gateway {
    snapshot: SharedSnapshot,
    /// Pending ACME HTTP-01 answers (published by the ACME task).
    challenges: Arc<ChallengeTokens>,
    /// What a graceful shutdown waits for.
    in_flight: InFlightCounter,
}

impl Gateway {
    pub fn new(snapshot: SharedSnapshot, challenges: Arc<ChallengeTokens>, in_flight: InFlightCounter) -> Self {
        Self {
            snapshot,
            challenges,
            in_flight,
        }
    }
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    /// None: pingora's default adds a (disabled) response-compression
    /// module whose context is built for every request; keygate does not
    /// compress what it proxies.
    fn init_downstream_modules(&self, _modules: &mut pingora_core::modules::http::HttpModules) {}

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            in_flight: Some(self.in_flight.start()),
            ..RequestCtx::default()
        }
    }

    /// The `limits` pingora applies while reading an HTTP/1 request head
    /// (before `request_filter`): size (431), field count (431), request
    /// line (414), `read_header_timeout`, and strict framing (bare LF,
    /// Content-Length with Transfer-Encoding → 400).
    fn request_head_limits(&self) -> Option<RequestHeadLimits> {
        let snapshot = self.snapshot.load();
        let limits = &snapshot.limits;
        Some(RequestHeadLimits {
            max_bytes: limits.max_header_bytes,
            max_headers: limits.max_headers,
            max_request_line: Limits::MAX_REQUEST_LINE,
            timeout: (!limits.read_header_timeout.is_zero()).then_some(limits.read_header_timeout),
            strict_framing: true,
        })
    }

    /// What the process log says about a request when proxying it failed:
    /// never a credential from its query (see `policy::redact`).
    fn request_summary(&self, session: &Session, ctx: &RequestCtx) -> String {
        finish::summary(session.req_header(), ctx)
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        self.begin(session, ctx);
        if let Some(answer) = self.challenges.answer(session.req_header().uri.path()) {
            respond::send(session, ctx, 200, "text/plain", answer.into(), false).await?;
            return Ok(true);
        }
        if let Some(location) = https_redirect(session.req_header(), ctx) {
            respond::redirect(session, ctx, 308, &location).await?;
            return Ok(true);
        }
        match Self::admit_session(session, ctx).await? {
            Ok(Admitted::Forward) => {
                Self::start_chunked_body(session, ctx).await?;
                Ok(false)
            }
            Ok(Admitted::Echo) => {
                let mut view = session.req_header().clone();
                forwarding::strip_request_hop_by_hop(&mut view);
                Self::prepare_upstream_request(&mut view, ctx)?;
                let max_body = ctx.snapshot().map_or(0, |s| s.limits.max_request_body);
                echo::respond(session, ctx, &view, max_body).await?;
                Ok(true)
            }
            Ok(Admitted::Redirect(status, location)) => {
                respond::redirect(session, ctx, status, &location).await?;
                Ok(true)
            }
            Err(error) => {
                respond::send_error(session, ctx, &error).await?;
                Ok(true)
            }
        }
    }

    async fn upstream_peer(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<Box<HttpPeer>> {
        let Some(addr) = ctx.next_network_instance() else {
            let mut error = Error::explain(ErrorType::ConnectRefused, "no instance left to try");
            error.esource = ErrorSource::Upstream;
            return Err(error);
        };
        let peer = Self::instance_peer(addr, session.is_upgrade_req(), ctx);
        Ok(Box::new(peer))
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(buffered) = &ctx.request_body {
            body::replay(body, end_of_stream, buffered);
        }
        if let Some(prefix) = ctx.body_prefix.take() {
            body::prepend(body, prefix);
        }
        if let Some(chunk) = body.as_ref() {
            ctx.policy.on_request_body(chunk);
        }
        Ok(())
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        Self::prepare_upstream_request(upstream_request, ctx)
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        ctx.upstream_answered.get_or_insert_with(Instant::now);
        if let Some(trace) = ctx.trace.as_mut() {
            trace.attempt_answered(upstream_response.status.as_u16());
        }
        forwarding::strip_response_hop_by_hop(upstream_response);
        match &ctx.route {
            Some(route) => filters::apply(&route.rule.response_headers, upstream_response),
            None => Ok(()),
        }
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        respond::add_gateway_headers(response, ctx)
    }

    fn response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<Duration>> {
        if let Some(chunk) = body.as_ref() {
            ctx.policy.on_response_body(chunk);
        }
        Ok(None)
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        peer: &HttpPeer,
        ctx: &mut RequestCtx,
        error: Box<Error>,
    ) -> Box<Error> {
        failure::connect_failed(ctx, peer, error)
    }

    async fn connected_to_upstream(
        &self,
        _session: &mut Session,
        reused: bool,
        _peer: &HttpPeer,
        _fd: std::os::unix::io::RawFd,
        _digest: Option<&pingora_core::protocols::Digest>,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(endpoint) = &ctx.instance {
            endpoint.connected();
        }
        metrics().upstream_connection(reused);
        Ok(())
    }

    async fn fail_to_proxy(&self, session: &mut Session, error: &Error, ctx: &mut RequestCtx) -> FailToProxy {
        let code = failure::classify(error);
        if let (Some(trace), ErrorSource::Upstream) = (ctx.trace.as_mut(), error.esource()) {
            trace.attempt_failed(error.etype().as_str(), error);
        }
        match code {
            None => tracing::info!(
                "client closed the connection mid-request: {error}, {}",
                self.request_summary(session, ctx)
            ),
            Some(code) => {
                if session.response_written().is_none() {
                    // pingora drops the connection after a proxy failure: say so.
                    session.set_keepalive(None);
                    if let Err(e) = respond::send_error(session, ctx, &GatewayError::new(code)).await {
                        tracing::debug!(request_id = %ctx.request_id, "could not send the error response: {e}");
                    }
                }
                ctx.error = Some(code);
            }
        }
        FailToProxy {
            error_code: code.map_or(0, ErrorCode::status),
            can_reuse_downstream: false,
        }
    }

    /// A client that hung up is logged (at info) by `fail_to_proxy`, not as
    /// an error: nothing went wrong in the gateway.
    fn suppress_error_log(&self, _session: &Session, _ctx: &RequestCtx, error: &Error) -> bool {
        failure::classify(error).is_none()
    }

    async fn logging(&self, session: &mut Session, _error: Option<&Error>, ctx: &mut RequestCtx) {
        let response = session.response_written();
        let status = response.map_or(0, |r| r.status.as_u16());
        finish::record(session.req_header(), status, response.map(|r| &r.headers), ctx);
    }
}

impl Gateway {
    /// Applies the connection's settings for this request and begins it
    /// (see [`Gateway::begin_request`]).
    fn begin(&self, session: &mut Session, ctx: &mut RequestCtx) {
        let peer = Peer::new(
            session.client_addr().and_then(|a| a.as_inet()).map(|a| a.ip()),
            session.digest().is_some_and(|d| d.ssl_digest.is_some()),
        );
        let snapshot = self.begin_request(session.req_header_mut(), &peer, Entry::AsReceived, ctx);
        let idle = snapshot.limits.idle_timeout.as_secs();
        session.set_keepalive((idle > 0).then_some(idle));
        let body_timeout = snapshot.limits.read_body_timeout;
        session.set_read_timeout((!body_timeout.is_zero()).then_some(body_timeout));
        // A client may send its next requests before reading this answer
        // (RFC 9112 §9.3.2): they are served in order, one after the other,
        // instead of being dropped with the connection.
        if let HttpSession::H1(h1) = session.as_downstream_mut() {
            h1.set_pipelining_enabled(true);
        }
        Self::start_trace(session.req_header(), ctx);
    }

    /// Route → policies (reading the body when one needs it) → redirect or
    /// instance. An inner `Err` is answered as is; an outer one is a failed
    /// client connection.
    async fn admit_session(session: &mut Session, ctx: &mut RequestCtx) -> Result<Result<Admitted, GatewayError>> {
        let deployment = match Self::route(session.req_header(), ctx) {
            Ok(deployment) => deployment,
            Err(error) => return Ok(Err(error)),
        };
        let (deployment, resume) = match Self::admit(session.req_header(), deployment, ctx).await {
            Admission::Decided(decided) => return Ok(decided),
            Admission::NeedsBody { deployment, resume } => (deployment, resume),
        };
        let max = ctx.snapshot().map_or(0, |s| s.limits.max_request_body);
        let body = match body::buffer(session, max).await {
            Ok(bytes) => bytes,
            Err(body::BufferError::TooLarge(error)) => return Ok(Err(error)),
            Err(body::BufferError::Read(error)) => return Err(error),
        };
        let admitted = Self::admit_with_body(&deployment, resume, session.req_header(), &body, ctx).await;
        ctx.request_body = Some(body);
        Ok(admitted)
    }

    /// A chunked body's first piece is read before anything is forwarded:
    /// pingora sends the head upstream first, and a bad first chunk must be
    /// a 400 that no instance ever sees.
    async fn start_chunked_body(session: &mut Session, ctx: &mut RequestCtx) -> Result<()> {
        let chunked = session
            .req_header()
            .headers
            .contains_key(http::header::TRANSFER_ENCODING);
        if !chunked || ctx.request_body.is_some() {
            return Ok(());
        }
        match body::read_first_piece(session).await? {
            body::FirstPiece::Whole(body) => ctx.request_body = Some(body),
            body::FirstPiece::Prefix(prefix) => ctx.body_prefix = Some(prefix),
        }
        Ok(())
    }
}
