//! One request's spans: the server span (continuing the caller's W3C trace
//! context), the child spans of the policies that ran and of each upstream
//! attempt, and the `traceparent` the instance receives. Attributes follow
//! OpenTelemetry's HTTP semantic conventions, plus `keygate.*` ones.

use std::fmt::Display;
use std::net::{IpAddr, SocketAddr};

use opentelemetry::propagation::{Injector, TextMapPropagator};
use opentelemetry::trace::{SpanKind, Status, TraceContextExt, TraceId, Tracer};
use opentelemetry::{Context, KeyValue};
use opentelemetry_http::HeaderExtractor;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracer;

use super::export::Pipeline;

/// What the server span records of a request when it starts.
pub struct ServerRequest<'a> {
    pub head: &'a http::request::Parts,
    /// The Host the client asked for (`host[:port]`).
    pub host: Option<&'a str>,
    pub https: bool,
    pub client_ip: Option<IpAddr>,
    pub request_id: &'a str,
}

/// What the server span records of a request when it ends.
pub struct ServerOutcome<'a> {
    /// The response status; 0 when none was written (the client left).
    pub status: u16,
    pub deployment_id: Option<&'a str>,
    /// The gateway's own error code, when it answered with one.
    pub error_code: Option<&'static str>,
}

impl Pipeline {
    pub(super) fn start_request(&self, request: &ServerRequest<'_>) -> RequestTrace {
        let head = request.head;
        let caller =
            TraceContextPropagator::new().extract_with_context(&Context::new(), &HeaderExtractor(&head.headers));
        let mut attributes = Vec::with_capacity(9);
        let method = known_method(&head.method);
        attributes.push(KeyValue::new("http.request.method", method.unwrap_or("_OTHER")));
        if method.is_none() {
            attributes.push(KeyValue::new(
                "http.request.method_original",
                head.method.as_str().to_owned(),
            ));
        }
        attributes.push(KeyValue::new("url.path", head.uri.path().to_owned()));
        attributes.push(KeyValue::new(
            "url.scheme",
            if request.https { "https" } else { "http" },
        ));
        if let Some(authority) = request.host.and_then(|h| h.parse::<http::uri::Authority>().ok()) {
            attributes.push(KeyValue::new("server.address", authority.host().to_owned()));
            if let Some(port) = authority.port_u16() {
                attributes.push(KeyValue::new("server.port", i64::from(port)));
            }
        }
        if let Some(ip) = request.client_ip {
            attributes.push(KeyValue::new("client.address", ip.to_string()));
        }
        attributes.push(KeyValue::new("keygate.request.id", request.request_id.to_owned()));
        let span = self
            .tracer
            .span_builder(method.unwrap_or("HTTP"))
            .with_kind(SpanKind::Server)
            .with_attributes(attributes)
            .start_with_context(&self.tracer, &caller);
        RequestTrace {
            server: SpanParent {
                tracer: self.tracer.clone(),
                cx: caller.with_span(span),
            },
            attempt: None,
        }
    }
}

/// The method's name when it is one of HTTP's own (the semantic conventions
/// report any other as `_OTHER`, keeping span names few); no allocation.
fn known_method(method: &http::Method) -> Option<&'static str> {
    const KNOWN: [&str; 9] = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
    ];
    KNOWN.into_iter().find(|known| *known == method.as_str())
}

/// A request's trace while it is served (kept in the proxy's request context).
pub struct RequestTrace {
    server: SpanParent,
    /// The upstream attempt in progress, as the parent of the instance's spans.
    attempt: Option<Context>,
}

impl RequestTrace {
    pub fn trace_id(&self) -> TraceId {
        self.server.cx.span().span_context().trace_id()
    }

    /// Where policy spans hang; `None` when this trace is not sampled (its
    /// child spans would be dropped anyway).
    pub fn policy_parent(&self) -> Option<SpanParent> {
        self.is_sampled().then(|| self.server.clone())
    }

    fn is_sampled(&self) -> bool {
        self.server.cx.span().span_context().is_sampled()
    }

    /// Starts the span of one attempt to reach an instance (a retry starts another).
    pub fn start_attempt(&mut self, instance: SocketAddr) {
        self.end_attempt();
        if !self.is_sampled() {
            return;
        }
        let tracer = &self.server.tracer;
        let span = tracer
            .span_builder("upstream")
            .with_kind(SpanKind::Client)
            .with_attributes([
                KeyValue::new("server.address", instance.ip().to_string()),
                KeyValue::new("server.port", i64::from(instance.port())),
            ])
            .start_with_context(tracer, &self.server.cx);
        self.attempt = Some(self.server.cx.with_span(span));
    }

    /// The attempt failed (`kind` is a short error type, e.g. `ConnectRefused`): ends its span.
    pub fn attempt_failed(&mut self, kind: &str, error: &dyn Display) {
        if let Some(attempt) = self.attempt.take() {
            let span = attempt.span();
            span.set_attribute(KeyValue::new("error.type", kind.to_owned()));
            span.set_status(Status::error(error.to_string()));
            span.end();
        }
    }

    /// The instance answered with `status` (the attempt's span ends with the response).
    pub fn attempt_answered(&mut self, status: u16) {
        if let Some(attempt) = &self.attempt {
            let span = attempt.span();
            span.set_attribute(KeyValue::new("http.response.status_code", i64::from(status)));
            if status >= 400 {
                span.set_status(Status::error(""));
            }
        }
    }

    fn end_attempt(&mut self) {
        if let Some(attempt) = self.attempt.take() {
            attempt.span().end();
        }
    }

    /// Writes `traceparent` (and `tracestate`) naming keygate's span — the
    /// attempt's, else the server span — as the parent; an empty value
    /// means the header must be removed.
    pub fn inject(&self, headers: &mut dyn Injector) {
        let cx = self.attempt.as_ref().unwrap_or(&self.server.cx);
        TraceContextPropagator::new().inject_context(cx, headers);
    }

    /// Ends the attempt's span and the server span with the request's outcome.
    pub fn finish(mut self, outcome: &ServerOutcome<'_>) {
        self.end_attempt();
        let span = self.server.cx.span();
        if outcome.status > 0 {
            span.set_attribute(KeyValue::new("http.response.status_code", i64::from(outcome.status)));
        }
        if let Some(deployment) = outcome.deployment_id {
            span.set_attribute(KeyValue::new("keygate.deployment.id", deployment.to_owned()));
        }
        if let Some(code) = outcome.error_code {
            span.set_attribute(KeyValue::new("keygate.error.code", code));
        }
        if outcome.status >= 500 || outcome.error_code.is_some() {
            span.set_status(Status::error(outcome.error_code.unwrap_or_default()));
        }
        span.end();
    }
}

/// Where a request's child spans hang: its server span and the tracer.
#[derive(Clone)]
pub struct SpanParent {
    tracer: SdkTracer,
    cx: Context,
}

impl std::fmt::Debug for SpanParent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpanParent").finish_non_exhaustive()
    }
}

impl SpanParent {
    /// Starts the span of one policy (`policy <id>`).
    pub fn policy_span(&self, policy_id: &str, policy_type: &'static str) -> PolicySpan {
        let span = self
            .tracer
            .span_builder(format!("policy {policy_id}"))
            .with_kind(SpanKind::Internal)
            .with_attributes([
                KeyValue::new("keygate.policy.id", policy_id.to_owned()),
                KeyValue::new("keygate.policy.type", policy_type),
            ])
            .start_with_context(&self.tracer, &self.cx);
        PolicySpan(span)
    }
}

/// The span of one policy's evaluation.
pub struct PolicySpan(opentelemetry_sdk::trace::Span);

impl PolicySpan {
    /// Ends it with the policy's `decision` (`allow`, `deny`) and, for a
    /// rejection, the error code it answered with.
    pub fn end(mut self, decision: &'static str, error_code: Option<&'static str>) {
        use opentelemetry::trace::Span as _;
        self.0.set_attribute(KeyValue::new("keygate.policy.decision", decision));
        if let Some(code) = error_code {
            self.0.set_attribute(KeyValue::new("keygate.error.code", code));
        }
        self.0.end();
    }
}

#[cfg(test)]
mod tests {
    use super::known_method;

    #[test]
    fn methods_of_http_are_known_others_are_not() {
        assert_eq!(known_method(&http::Method::GET), Some("GET"));
        assert_eq!(known_method(&http::Method::PATCH), Some("PATCH"));
        assert_eq!(known_method(&http::Method::from_bytes(b"PROPFIND").unwrap()), None);
    }
}
