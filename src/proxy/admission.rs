//! What the gateway decides about a request from its head alone, whichever
//! HTTP/1 path carries it: who is asking, the route, the policy chain, the
//! instance, and the head an instance receives. Nothing here knows pingora's
//! session, so keygate's own fast path and the `HttpProxy` phases share it.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::HeaderValue;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorType};
use pingora_http::RequestHeader;

use super::context::{RequestCtx, RouteInfo};
use super::{filters, forwarding, Gateway};
use crate::errors::{ErrorCode, GatewayError};
use crate::net::{canonical_ip, IpText};
use crate::policy::{Progress, RequestView};
use crate::routing::filters::RedirectFrom;
use crate::runtime::{Deployment, Snapshot};
use crate::telemetry::traces::{RequestTrace, ServerRequest};
use crate::telemetry::RequestId;
use crate::upstream::{Picker, Protocol, Target};

/// Concurrent HTTP/2 streams per upstream h2c connection.
const H2C_MAX_STREAMS: usize = 100;

/// What the connection says about the request: who sent it, over what.
#[derive(Clone)]
pub struct Peer {
    ip: Option<IpAddr>,
    https: bool,
    /// `ip` as an X-Forwarded-For value, made once per connection.
    forwarded_for: Option<HeaderValue>,
}

impl Peer {
    pub fn new(ip: Option<IpAddr>, https: bool) -> Self {
        let forwarded_for = ip.and_then(|ip| HeaderValue::from_str(IpText::of(canonical_ip(ip)).as_str()).ok());
        Self {
            ip,
            https,
            forwarded_for,
        }
    }
}

/// What the request's header map holds on the way in.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// Every field the client sent.
    AsReceived,
    /// Already without the fields no request keeps past the door
    /// (`forwarding::stripped_on_entry`), and with a `Connection` field
    /// that nominates nothing: the fast path's parser leaves the former out
    /// and takes only `close` and `keep-alive` in the latter.
    Stripped,
}

/// What admission decided.
pub enum Admitted {
    /// Forward to a network instance.
    Forward,
    /// Answer with the built-in echo instance.
    Echo,
    /// Answer with the route's redirect: `(status, Location)`.
    Redirect(u16, String),
}

/// Where the policy chain stopped.
pub enum Admission {
    /// Decided: go on as admitted, or answer with the gateway's error.
    Decided(Result<Admitted, GatewayError>),
    /// A policy needs the request body: read it, then
    /// [`Gateway::admit_with_body`] resumes the chain at `resume`.
    NeedsBody { deployment: Arc<Deployment>, resume: usize },
}

impl Gateway {
    /// Loads the snapshot and works out who is asking; removes headers only
    /// the gateway may set (unless `entry` says they are gone already)
    /// before anything looks at the request. Returns the snapshot so the
    /// caller can apply its connection limits.
    pub(super) fn begin_request(
        &self,
        request: &mut RequestHeader,
        peer: &Peer,
        entry: Entry,
        ctx: &mut RequestCtx,
    ) -> Arc<Snapshot> {
        ctx.started = Some(Instant::now());
        let snapshot = self.snapshot.load_full();
        ctx.peer_trusted = peer.ip.is_some_and(|ip| snapshot.trusted_proxies.contains(ip));
        ctx.https = peer.https;
        if entry == Entry::AsReceived {
            forwarding::strip_on_entry(request, snapshot.limits.allow_underscores_in_headers);
            forwarding::ignore_gateway_header_nominations(request);
        }
        ctx.request_id = ctx
            .peer_trusted
            .then(|| request.headers.get(forwarding::X_REQUEST_ID.name()))
            .flatten()
            .and_then(RequestId::from_trusted)
            .unwrap_or_else(RequestId::generate);
        ctx.client_ip = peer
            .ip
            .map(|ip| forwarding::client_ip(request, ip, &snapshot.trusted_proxies));
        ctx.peer_forwarded_for = peer.forwarded_for.clone();
        ctx.snapshot = Some(snapshot.clone());
        snapshot
    }

    /// Starts the request's spans, when tracing is on.
    pub(super) fn start_trace(request: &RequestHeader, ctx: &mut RequestCtx) {
        let Some(snapshot) = ctx.snapshot.as_ref() else {
            return;
        };
        let (https, client_ip, request_id) = (ctx.https, ctx.client_ip, &ctx.request_id);
        ctx.trace = snapshot.services.tracing.start_request(|| ServerRequest {
            head: request,
            host: forwarding::original_host(request),
            https,
            client_ip,
            request_id: request_id.as_str(),
        });
        if let Some(parent) = ctx.trace.as_ref().and_then(RequestTrace::policy_parent) {
            ctx.policy.trace_policies(parent);
        }
    }

    /// Resolves the request's route, picks its backend and records both in
    /// `ctx` (a redirect route may have no backend).
    pub(super) fn route(
        request: &RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<Option<Arc<Deployment>>, GatewayError> {
        let snapshot = ctx.snapshot.clone().ok_or(ErrorCode::InternalServerError)?;
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

    /// The routed deployment's policy chain up to a policy that needs the
    /// body (so policies in front of it, auth, reject before anything is
    /// buffered), then the redirect or the instance.
    pub(super) async fn admit(
        request: &RequestHeader,
        deployment: Option<Arc<Deployment>>,
        ctx: &mut RequestCtx,
    ) -> Admission {
        if let Some(deployment) = &deployment {
            let view = RequestView::new(request, ctx.client_ip, ctx.received());
            match deployment.policies.evaluate_from(0, &view, &mut ctx.policy).await {
                Ok(Progress::Done) => {}
                Ok(Progress::NeedsBody(resume)) => {
                    return Admission::NeedsBody {
                        deployment: deployment.clone(),
                        resume,
                    }
                }
                Err(error) => return Admission::Decided(Err(error)),
            }
        }
        Admission::Decided(Self::conclude(deployment.as_deref(), ctx))
    }

    /// The rest of the chain once the body is read (see [`Admission::NeedsBody`]).
    pub(super) async fn admit_with_body(
        deployment: &Deployment,
        resume: usize,
        request: &RequestHeader,
        body: &Bytes,
        ctx: &mut RequestCtx,
    ) -> Result<Admitted, GatewayError> {
        let view = RequestView {
            body: Some(body),
            ..RequestView::new(request, ctx.client_ip, ctx.received())
        };
        deployment
            .policies
            .evaluate_from(resume, &view, &mut ctx.policy)
            .await?;
        Self::conclude(Some(deployment), ctx)
    }

    /// After the policies: the route's redirect, else the first instance.
    fn conclude(deployment: Option<&Deployment>, ctx: &mut RequestCtx) -> Result<Admitted, GatewayError> {
        if let Some((status, location)) = ctx.route.as_mut().and_then(|r| r.redirect.take()) {
            return Ok(Admitted::Redirect(status, location));
        }
        match deployment {
            Some(deployment) => Self::choose_instance(deployment, ctx),
            None => Err(ErrorCode::InternalServerError.into()),
        }
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
    pub(super) fn prepare_upstream_request(request: &mut RequestHeader, ctx: &RequestCtx) -> pingora_error::Result<()> {
        let Some(route) = &ctx.route else {
            return Ok(());
        };
        if ctx.deployment().is_none() {
            return Ok(());
        }
        if let Some(target) = &route.rewritten_target {
            let uri = http::Uri::try_from(target.as_str())
                .map_err(|e| Error::because(ErrorType::InternalError, "rewriting the request target", e))?;
            request.set_uri(uri);
        }
        // The route's edits first, so the gateway's own headers below always win.
        filters::apply(&route.rule.request_headers, request)?;
        if let Some(fwd) = Self::forwarding(ctx) {
            forwarding::apply(request, &fwd)?;
        }
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

impl Gateway {
    /// How to reach instance `addr` for this request: connect timeout, the
    /// rest of the route's request timeout for reads and writes, HTTP/2 for
    /// an h2c deployment (unless the request upgrades). Marks when the
    /// attempt started.
    pub(super) fn instance_peer(addr: SocketAddr, upgrade: bool, ctx: &mut RequestCtx) -> HttpPeer {
        let attempt = Self::start_attempt(addr, ctx);
        Self::peer_for(addr, upgrade, &attempt, ctx)
    }

    /// Marks when the attempt to reach `addr` started; its timeouts.
    pub(super) fn start_attempt(addr: SocketAddr, ctx: &mut RequestCtx) -> Attempt {
        let now = Instant::now();
        let (connect, remaining) = match ctx.snapshot() {
            Some(snapshot) => {
                let limits = &snapshot.limits;
                let timeout = ctx
                    .route
                    .as_ref()
                    .and_then(|r| r.rule.timeout)
                    .unwrap_or(limits.request_timeout);
                let remaining = timeout
                    .saturating_sub(ctx.total_time(now))
                    .max(Duration::from_millis(1));
                (Some(limits.connect_timeout), Some(remaining))
            }
            None => (None, None),
        };
        let attempt = Attempt {
            started: now,
            connect,
            remaining,
        };
        ctx.upstream_started = Some(now);
        if let Some(trace) = ctx.trace.as_mut() {
            trace.start_attempt(addr);
        }
        attempt
    }

    /// The peer that reaches `addr` with `attempt`'s timeouts.
    pub(super) fn peer_for(addr: SocketAddr, upgrade: bool, attempt: &Attempt, ctx: &RequestCtx) -> HttpPeer {
        let mut peer = HttpPeer::new(addr, false, String::new());
        peer.options.connection_timeout = attempt.connect;
        peer.options.read_timeout = attempt.remaining;
        peer.options.write_timeout = attempt.remaining;
        let h2c = ctx.deployment().is_some_and(|d| d.protocol == Protocol::H2c);
        if h2c && !upgrade {
            peer.options.set_http_version(2, 2);
            peer.options.max_h2_streams = H2C_MAX_STREAMS;
        }
        peer
    }
}

/// One attempt to reach an instance: when it started, and its timeouts.
#[derive(Debug, Clone, Copy)]
pub(super) struct Attempt {
    pub started: Instant,
    pub connect: Option<Duration>,
    /// What is left of the route's request timeout, for reads and writes.
    pub remaining: Option<Duration>,
}

impl Gateway {
    /// What the forwarding fields are made of, once a deployment was chosen.
    pub(super) fn forwarding(ctx: &RequestCtx) -> Option<forwarding::Forwarding<'_>> {
        let deployment = ctx.deployment()?;
        Some(forwarding::Forwarding {
            peer: ctx.peer_forwarded_for.as_ref(),
            peer_trusted: ctx.peer_trusted,
            https: ctx.https,
            request_id: &ctx.request_id,
            deployment_id: deployment.id_header.as_ref(),
            principal: ctx.policy.principal().map(|p| &p.json),
        })
    }
}

/// Where a plain-HTTP request is sent when `tls.redirect_http` is on: the
/// same host, path and query on https. ACME challenges are
/// never redirected.
pub fn https_redirect(request: &RequestHeader, ctx: &RequestCtx) -> Option<String> {
    let snapshot = ctx.snapshot()?;
    let https = snapshot.listen.https?;
    if ctx.https || !snapshot.tls.redirect_http {
        return None;
    }
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
