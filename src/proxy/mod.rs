//! The request lifecycle on pingora, one phase per method, top to bottom:
//! route → policies → instance → forward → response headers. Each phase is a
//! few lines calling into `routing`, `upstream`, `errors`; no business logic
//! lives here.

mod body;
mod context;
mod echo;
mod failure;
mod filters;
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

pub use context::RequestCtx;
use context::RouteInfo;

use crate::clock::now_ms;
use crate::errors::{ErrorCode, GatewayError};
use crate::policy::redact::{redact_query, CredentialNames};
use crate::policy::{Progress, RequestSummary, RequestView};
use crate::routing::filters::RedirectFrom;
use crate::runtime::{Deployment, InFlightCounter, Limits, SharedSnapshot};
use crate::telemetry::recent::{recent, Answered};
use crate::telemetry::traces::{RequestTrace, ServerOutcome, ServerRequest};
use crate::telemetry::{metrics, new_request_id, Label, RequestLabels};
use crate::tls::ChallengeTokens;
use crate::upstream::{Picker, Protocol, Target};

/// Concurrent HTTP/2 streams per upstream h2c connection.
const H2C_MAX_STREAMS: usize = 100;

/// keygate's proxy: what pingora calls for each request.
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

/// What `request_filter` decided.
enum Admitted {
    /// Forward to a network instance.
    Forward,
    /// Answer with the built-in echo instance.
    Echo,
    /// Answer with the route's redirect: `(status, Location)`.
    Redirect(u16, String),
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
        let request = session.req_header();
        let credentials = ctx.deployment().map(|d| d.policies.credentials());
        let query = request.uri.query().map(|query| {
            redact_query(query, |name| {
                credentials.map_or_else(
                    || CredentialNames::default().is_likely_credential_param(name),
                    |c| c.is_likely_credential_param(name),
                )
            })
        });
        format!(
            "{} {}{}{}, Host: {}, request id: {}",
            request.method,
            request.uri.path(),
            if query.is_some() { "?" } else { "" },
            query.unwrap_or_default(),
            forwarding::original_host(request).unwrap_or("-"),
            ctx.request_id,
        )
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        self.begin(session, ctx);
        if let Some(answer) = self.challenges.answer(session.req_header().uri.path()) {
            respond::send(session, ctx, 200, "text/plain", answer.into(), false).await?;
            return Ok(true);
        }
        if let Some(location) = https_redirect(session, ctx) {
            respond::redirect(session, ctx, 308, &location).await?;
            return Ok(true);
        }
        match self.admit(session, ctx).await? {
            Ok(Admitted::Forward) => {
                Self::start_chunked_body(session, ctx).await?;
                Ok(false)
            }
            Ok(Admitted::Echo) => {
                let mut view = session.req_header().clone();
                forwarding::strip_request_hop_by_hop(&mut view);
                self.prepare_upstream_request(&mut view, ctx)?;
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
        let mut peer = HttpPeer::new(addr, false, String::new());
        if let Some(snapshot) = ctx.snapshot() {
            let limits = &snapshot.limits;
            let timeout = ctx
                .route
                .as_ref()
                .and_then(|r| r.rule.timeout)
                .unwrap_or(limits.request_timeout);
            let remaining = timeout.saturating_sub(ctx.total_time()).max(Duration::from_millis(1));
            peer.options.connection_timeout = Some(limits.connect_timeout);
            peer.options.read_timeout = Some(remaining);
            peer.options.write_timeout = Some(remaining);
        }
        let h2c = ctx.deployment().is_some_and(|d| d.protocol == Protocol::H2c);
        if h2c && !session.is_upgrade_req() {
            peer.options.set_http_version(2, 2);
            peer.options.max_h2_streams = H2C_MAX_STREAMS;
        }
        ctx.upstream_started = Some(Instant::now());
        if let Some(trace) = ctx.trace.as_mut() {
            trace.start_attempt(addr);
        }
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
        self.prepare_upstream_request(upstream_request, ctx)
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
        mut error: Box<Error>,
    ) -> Box<Error> {
        metrics().upstream_connect_failures.inc();
        if let (Some(attempt), Some(deployment)) = (&ctx.instance_load, ctx.deployment()) {
            attempt.connect_failed(&deployment.passive);
        }
        tracing::warn!(request_id = %ctx.request_id, instance = %peer, "connect to instance failed: {error}");
        if let Some(trace) = ctx.trace.as_mut() {
            trace.attempt_failed(error.etype().as_str(), &error);
        }
        if failure::is_connect_failure(&error) && ctx.can_retry() {
            error.set_retry(true);
        }
        error
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
        if ctx.started.is_none() {
            return;
        }
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        let (host, deployment) = match &ctx.route {
            Some(route) => (
                Label(Some(route.host_label.clone())),
                Label(route.deployment.as_ref().map(|d| d.id.clone())),
            ),
            None => (Label::default(), Label::default()),
        };
        let m = metrics();
        m.record_request(&RequestLabels {
            host,
            deployment: deployment.clone(),
            status,
            error_code: ctx.error.map_or("", ErrorCode::code),
        });
        let total = ctx.total_time();
        let instance = ctx.instance_time();
        match ctx.deployment() {
            Some(deployment) => deployment
                .durations
                .observe(total, ctx.upstream_started.map(|_| instance)),
            None => m.observe_unrouted(total),
        }
        remember(session, ctx, status, total, instance);
        let deployment_id = ctx.route.as_ref().and_then(|r| r.deployment.as_ref()).map(|d| &*d.id);
        ctx.policy.finish(&RequestSummary {
            request: session.req_header(),
            request_id: &ctx.request_id,
            trace_id: ctx.trace.as_ref().map(RequestTrace::trace_id),
            client_ip: ctx.client_ip,
            deployment_id,
            instance: ctx.instance.as_ref().map(|e| &e.target as &dyn std::fmt::Display),
            status,
            response_headers: session.response_written().map(|r| &r.headers),
            total,
            instance_time: instance,
        });
        if let Some(trace) = ctx.trace.take() {
            trace.finish(&ServerOutcome {
                status,
                deployment_id,
                error_code: ctx.error.map(ErrorCode::code),
            });
        }
    }
}

/// Keeps the request in the dashboard's recent requests: what was asked
/// (the path, never the query), the answer, the caller's subject.
fn remember(session: &Session, ctx: &RequestCtx, status: u16, total: Duration, instance: Duration) {
    let request = session.req_header();
    recent().record(&Answered {
        at: now_ms(),
        method: request.method.as_str(),
        host: forwarding::original_host(request).unwrap_or_default(),
        path: request.uri.path(),
        status,
        deployment: ctx.route.as_ref().and_then(|r| r.deployment.as_ref()).map(|d| &d.id),
        total_us: total.as_micros() as u64,
        instance_us: ctx.upstream_started.map(|_| instance.as_micros() as u64),
        error_code: ctx.error.map(ErrorCode::code),
        subject: ctx.policy.principal().map(|p| p.subject.as_str()),
        request_id: &ctx.request_id,
    });
}

/// Where a plain-HTTP request is sent when `tls.redirect_http` is on: the
/// same host, path and query on https. ACME challenges are
/// never redirected.
fn https_redirect(session: &Session, ctx: &RequestCtx) -> Option<String> {
    let snapshot = ctx.snapshot()?;
    let https = snapshot.listen.https?;
    if ctx.https || !snapshot.tls.redirect_http {
        return None;
    }
    let request = session.req_header();
    if request.uri.path().starts_with("/.well-known/acme-challenge/") {
        return None;
    }
    let host = crate::routing::normalize_request_host(forwarding::original_host(request)?);
    let port = match https.port() {
        443 => String::new(),
        port => format!(":{port}"),
    };
    let target = request.uri.path_and_query().map_or("/", |pq| pq.as_str());
    Some(format!("https://{host}{port}{target}"))
}

impl Gateway {
    /// Loads the snapshot and works out who is asking; removes headers only
    /// the gateway may set before anything looks at the request.
    fn begin(&self, session: &mut Session, ctx: &mut RequestCtx) {
        ctx.started = Some(Instant::now());
        let snapshot = self.snapshot.load_full();
        let peer = session.client_addr().and_then(|a| a.as_inet()).map(|a| a.ip());
        ctx.peer_trusted = peer.is_some_and(|ip| snapshot.trusted_proxies.contains(ip));
        ctx.https = session.digest().is_some_and(|d| d.ssl_digest.is_some());
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

        let request = session.req_header_mut();
        if !snapshot.limits.allow_underscores_in_headers {
            forwarding::drop_underscored_headers(request);
        }
        forwarding::strip_spoofable(request);
        forwarding::ignore_gateway_header_nominations(request);
        ctx.request_id = ctx
            .peer_trusted
            .then(|| forwarding::trusted_request_id(request))
            .flatten()
            .unwrap_or_else(new_request_id);
        ctx.client_ip = peer.map(|ip| forwarding::client_ip(request, ip, &snapshot.trusted_proxies));
        ctx.peer_ip = peer;
        ctx.trace = snapshot.services.tracing.start_request(&ServerRequest {
            head: request,
            host: forwarding::original_host(request),
            https: ctx.https,
            client_ip: ctx.client_ip,
            request_id: &ctx.request_id,
        });
        if let Some(parent) = ctx.trace.as_ref().and_then(RequestTrace::policy_parent) {
            ctx.policy.trace_policies(parent);
        }
        ctx.snapshot = Some(snapshot);
    }

    /// Route → policies → redirect or instance choice. An inner `Err` is
    /// answered as is; an outer one is a failed client connection.
    async fn admit(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<Result<Admitted, GatewayError>> {
        let deployment = match self.route(session, ctx) {
            Ok(deployment) => deployment,
            Err(error) => return Ok(Err(error)),
        };
        if let Some(deployment) = &deployment {
            if let Err(error) = Self::run_policies(deployment, session, ctx).await? {
                return Ok(Err(error));
            }
        }
        if let Some((status, location)) = ctx.route.as_mut().and_then(|r| r.redirect.take()) {
            return Ok(Ok(Admitted::Redirect(status, location)));
        }
        match deployment {
            Some(deployment) => Ok(Self::choose_instance(&deployment, ctx)),
            None => Ok(Err(ErrorCode::InternalServerError.into())),
        }
    }

    /// The deployment's policy chain. When a policy needs the body (`openapi`),
    /// it is buffered at that point and the chain resumes there.
    async fn run_policies(
        deployment: &Deployment,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Result<(), GatewayError>> {
        let request = RequestView::new(session.req_header(), ctx.client_ip);
        let resume = match deployment.policies.evaluate_from(0, &request, &mut ctx.policy).await {
            Ok(Progress::Done) => return Ok(Ok(())),
            Ok(Progress::NeedsBody(resume)) => resume,
            Err(error) => return Ok(Err(error)),
        };
        let max = ctx.snapshot().map_or(0, |s| s.limits.max_request_body);
        ctx.request_body = match body::buffer(session, max).await {
            Ok(bytes) => Some(bytes),
            Err(body::BufferError::TooLarge(error)) => return Ok(Err(error)),
            Err(body::BufferError::Read(error)) => return Err(error),
        };
        let request = RequestView {
            body: ctx.request_body.as_ref(),
            ..RequestView::new(session.req_header(), ctx.client_ip)
        };
        Ok(deployment
            .policies
            .evaluate_from(resume, &request, &mut ctx.policy)
            .await
            .map(|_| ()))
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

    /// Resolves the request's route, picks its backend and records both in
    /// `ctx` (a redirect route may have no backend).
    fn route(&self, session: &Session, ctx: &mut RequestCtx) -> Result<Option<Arc<Deployment>>, GatewayError> {
        let snapshot = ctx.snapshot.clone().ok_or(ErrorCode::InternalServerError)?;
        let request = session.req_header();
        let host = forwarding::original_host(request).unwrap_or("");
        let routed = snapshot
            .routes
            .resolve(host, request)
            .ok_or(ErrorCode::ConfigNotFound)?;
        let target = request.uri.path_and_query().map_or("/", |pq| pq.as_str());
        let redirect = routed.rule.redirect.as_ref().map(|redirect| {
            let from = RedirectFrom {
                https: ctx.https,
                host,
                target,
            };
            (redirect.status, redirect.location(&routed.prefix, &from))
        });
        let rewritten_target = match routed.upstream_target(target) {
            std::borrow::Cow::Owned(rewritten) => Some(rewritten),
            std::borrow::Cow::Borrowed(_) => None,
        };
        let deployment = routed.target.choose().cloned();
        ctx.route = Some(RouteInfo {
            deployment: deployment.clone(),
            host_label: routed.target.host_label.clone(),
            rewritten_target,
            rule: routed.rule.clone(),
            redirect,
        });
        if let Some(refusal) = routed.target.refusal {
            return Err(refusal.into());
        }
        Ok(deployment)
    }

    /// Picks the first instance to try among the available ones (see
    /// `upstream::select`); none available is `no_running_instances`.
    fn choose_instance(deployment: &Deployment, ctx: &mut RequestCtx) -> Result<Admitted, GatewayError> {
        let mut picker = Picker::new(deployment.instances.current());
        let first = picker
            .pick(deployment.selection, false)
            .ok_or(ErrorCode::NoRunningInstances)?;
        let admitted = match first.target {
            Target::Echo => Admitted::Echo,
            Target::Network(_) => Admitted::Forward,
        };
        ctx.instance = Some(first.clone());
        ctx.first_pick = Some(first);
        ctx.picker = Some(picker);
        Ok(admitted)
    }

    /// The request as the instance gets it: forwarding headers, stripped prefix.
    fn prepare_upstream_request(&self, request: &mut RequestHeader, ctx: &RequestCtx) -> Result<()> {
        let (Some(route), Some(deployment)) = (&ctx.route, ctx.deployment()) else {
            return Ok(());
        };
        if let Some(target) = &route.rewritten_target {
            let uri = http::Uri::try_from(target.as_str())
                .map_err(|e| Error::because(ErrorType::InternalError, "rewriting the request target", e))?;
            request.set_uri(uri);
        }
        // The route's edits first, so the gateway's own headers below always win.
        filters::apply(&route.rule.request_headers, request)?;
        forwarding::apply(
            request,
            &forwarding::Forwarding {
                peer: ctx.peer_ip,
                peer_trusted: ctx.peer_trusted,
                https: ctx.https,
                request_id: &ctx.request_id,
                deployment_id: &deployment.id,
                principal: ctx.policy.principal().map(|p| p.json.as_str()),
            },
        )?;
        // After forwarding: X-Forwarded-Host keeps the host the client asked for.
        if let Some(hostname) = route.rule.rewrite.as_ref().and_then(|r| r.hostname.as_ref()) {
            request.insert_header(http::header::HOST, hostname.clone())?;
        }
        if let Some(trace) = &ctx.trace {
            trace.inject(&mut forwarding::TraceHeaders(request));
        }
        match ctx.policy.credential_to_strip() {
            Some(location) => forwarding::strip_credential(request, location),
            None => Ok(()),
        }
    }
}
