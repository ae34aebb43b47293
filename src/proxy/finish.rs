//! What happens once a request is answered, on either HTTP/1 path: metrics,
//! durations, the dashboard's recent requests, the logging policy's record
//! and the trace.

use std::time::{Duration, Instant};

use http::HeaderMap;
use pingora_http::RequestHeader;

use super::context::RequestCtx;
use super::forwarding;
use crate::clock::unix_ms_at;
use crate::errors::ErrorCode;
use crate::policy::redact::{redact_query, CredentialNames};
use crate::policy::RequestSummary;
use crate::telemetry::metrics;
use crate::telemetry::recent::{recent, Answered};
use crate::telemetry::traces::{RequestTrace, ServerOutcome};

/// Records the finished request: `status` is what the client was sent (0
/// when the connection failed before a response head went out), with the
/// response's fields when they were kept. Returns when it ended (a clock
/// reading the caller may reuse).
pub fn record(
    request: &RequestHeader,
    status: u16,
    response_headers: Option<&HeaderMap>,
    ctx: &mut RequestCtx,
) -> Instant {
    let ended = Instant::now();
    if ctx.started.is_none() {
        return ended;
    }
    let m = metrics();
    m.record_request(
        ctx.route.as_ref().map(|route| &route.host_label),
        ctx.deployment().map(|d| &d.id),
        status,
        ctx.error.map_or("", ErrorCode::code),
    );
    let total = ctx.total_time(ended);
    let instance = ctx.instance_time(ended);
    match ctx.deployment() {
        Some(deployment) => deployment
            .durations
            .observe(total, ctx.upstream_started.map(|_| instance)),
        None => m.observe_unrouted(total),
    }
    remember(request, ctx, status, ended, total, instance);
    let deployment_id = ctx.route.as_ref().and_then(|r| r.deployment.as_ref()).map(|d| &*d.id);
    ctx.policy.finish(&RequestSummary {
        request,
        request_id: ctx.request_id.as_str(),
        trace_id: ctx.trace.as_ref().map(RequestTrace::trace_id),
        client_ip: ctx.client_ip,
        deployment_id,
        instance: ctx.instance.as_ref().map(|e| &e.target as &dyn std::fmt::Display),
        status,
        response_headers,
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
    ended
}

/// What the process log says about a request when proxying it failed:
/// never a credential from its query (see `policy::redact`).
pub fn summary(request: &RequestHeader, ctx: &RequestCtx) -> String {
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

/// Keeps the request in the dashboard's recent requests: what was asked
/// (the path, never the query), the answer, the caller's subject.
fn remember(
    request: &RequestHeader,
    ctx: &RequestCtx,
    status: u16,
    ended: Instant,
    total: Duration,
    instance: Duration,
) {
    recent().record(&Answered {
        at: unix_ms_at(ended),
        method: request.method.as_str(),
        host: forwarding::original_host(request).unwrap_or_default(),
        path: request.uri.path(),
        status,
        deployment: ctx.deployment().map(|d| (&d.id, d.recent_series())),
        total_us: total.as_micros() as u64,
        instance_us: ctx.upstream_started.map(|_| instance.as_micros() as u64),
        error_code: ctx.error.map(ErrorCode::code),
        subject: ctx.policy.principal().map(|p| p.subject.as_str()),
        request_id: ctx.request_id.as_str(),
    });
}
