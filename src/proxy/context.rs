//! What one request carries between pingora's phases.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::errors::ErrorCode;
use crate::routing::RouteRule;
use crate::runtime::{Deployment, InFlight, Snapshot};
use crate::telemetry::traces::RequestTrace;
use crate::telemetry::RequestId;
use crate::upstream::{Endpoint, InFlightGuard, Picker, Target};

/// Per-request state. The snapshot is loaded once, in `request_filter`, and
/// the request finishes on it even if a reload swaps in another.
#[derive(Default)]
pub struct RequestCtx {
    /// Keeps a graceful shutdown waiting until this request is done.
    pub in_flight: Option<InFlight>,
    pub snapshot: Option<Arc<Snapshot>>,
    pub request_id: RequestId,
    pub started: Option<Instant>,
    /// The TCP peer's address as an X-Forwarded-For value.
    pub peer_forwarded_for: Option<http::HeaderValue>,
    /// The client: the TCP peer, or from a trusted proxy the right-most untrusted X-Forwarded-For address.
    pub client_ip: Option<IpAddr>,
    /// The TCP peer is in `trusted_proxies`.
    pub peer_trusted: bool,
    pub https: bool,
    pub route: Option<RouteInfo>,
    /// The request's view of the deployment's instances and what it tried.
    pub picker: Option<Picker>,
    /// Chosen while admitting the request; the first `upstream_peer` uses it.
    pub first_pick: Option<Arc<Endpoint>>,
    /// The instance being tried (finally: the one that answered).
    pub instance: Option<Arc<Endpoint>>,
    /// Counts this request on `instance` for power-of-two-choices.
    pub instance_load: Option<InFlightGuard>,
    /// When the first byte went to an instance, and when its response head came back.
    pub upstream_started: Option<Instant>,
    pub upstream_answered: Option<Instant>,
    /// What the policy chain decided (Principal, response headers).
    pub policy: crate::policy::PolicyState,
    /// The whole request body, when a policy needed it before forwarding
    /// (`openapi`); replayed upstream by `request_body_filter`.
    pub request_body: Option<bytes::Bytes>,
    /// The first piece of a chunked body, read before forwarding (so a bad
    /// first chunk is refused before an instance sees the head); sent in
    /// front of the next piece by `request_body_filter`.
    pub body_prefix: Option<bytes::Bytes>,
    /// The gateway's own error, when it answered instead of an instance.
    pub error: Option<ErrorCode>,
    /// The request's spans, when tracing is on.
    pub trace: Option<RequestTrace>,
}

/// The route a request resolved to.
pub struct RouteInfo {
    /// The backend chosen for this request; `None` for a redirect route without one.
    pub deployment: Option<Arc<Deployment>>,
    pub host_label: Arc<str>,
    /// The request target to send, when `strip_prefix` or a rewrite changed it.
    pub rewritten_target: Option<String>,
    /// Filters and timeout of the route.
    pub rule: Arc<RouteRule>,
    /// `(status, Location)` when the route answers with a redirect.
    pub redirect: Option<(u16, String)>,
}

impl RequestCtx {
    pub fn snapshot(&self) -> Option<&Snapshot> {
        self.snapshot.as_deref()
    }

    pub fn deployment(&self) -> Option<&Arc<Deployment>> {
        self.route.as_ref().and_then(|r| r.deployment.as_ref())
    }

    /// Time waiting on the instance, as of `now`.
    pub fn instance_time(&self, now: Instant) -> Duration {
        match (self.upstream_started, self.upstream_answered) {
            (Some(start), Some(end)) => end.saturating_duration_since(start),
            (Some(start), None) => now.saturating_duration_since(start),
            _ => Duration::ZERO,
        }
    }

    /// The request's trace id as text (32 hex digits), when tracing is on.
    pub fn trace_id(&self) -> Option<String> {
        self.trace.as_ref().map(|t| t.trace_id().to_string())
    }

    /// When the request was received (the reading its beginning took; now,
    /// for a request that has not begun).
    pub fn received(&self) -> Instant {
        self.started.unwrap_or_else(Instant::now)
    }

    /// Time since the request began, as of `now` (callers pass a clock
    /// reading they need anyway: each read costs as much as a dozen fields).
    pub fn total_time(&self, now: Instant) -> Duration {
        self.started
            .map_or(Duration::ZERO, |s| now.saturating_duration_since(s))
    }

    /// Takes the next instance to try (the one chosen at admission first)
    /// and counts the request on it.
    pub fn next_network_instance(&mut self) -> Option<std::net::SocketAddr> {
        let endpoint = match self.first_pick.take() {
            Some(first) => first,
            None => {
                let strategy = self.deployment()?.selection;
                self.picker.as_mut()?.pick(strategy, true)?
            }
        };
        let Target::Network(addr) = endpoint.target else {
            return None;
        };
        self.instance_load = Some(endpoint.begin_request());
        self.instance = Some(endpoint);
        Some(addr)
    }

    /// Whether a connect failure can move on to another instance.
    pub fn can_retry(&self) -> bool {
        self.picker.as_ref().is_some_and(Picker::has_untried)
    }
}
