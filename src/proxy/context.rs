//! What one request carries between pingora's phases.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::errors::ErrorCode;
use crate::snapshot::{Deployment, Snapshot};
use crate::upstream::{Attempts, Instance};

/// Per-request state. The snapshot is loaded once, in `request_filter`, and
/// the request finishes on it even if a reload swaps in another.
#[derive(Default)]
pub struct RequestCtx {
    /// Keeps a graceful shutdown waiting until this request is done.
    pub in_flight: Option<crate::app::InFlight>,
    pub snapshot: Option<Arc<Snapshot>>,
    pub request_id: String,
    pub started: Option<Instant>,
    /// The TCP peer.
    pub peer_ip: Option<IpAddr>,
    /// The client as SPEC §4 defines it (trusted-proxy rule applied).
    pub client_ip: Option<IpAddr>,
    /// The TCP peer is in `trusted_proxies`.
    pub peer_trusted: bool,
    pub https: bool,
    pub route: Option<RouteInfo>,
    pub attempts: Attempts,
    pub instance: Option<Instance>,
    /// When the first byte went to an instance, and when its response head came back.
    pub upstream_started: Option<Instant>,
    pub upstream_answered: Option<Instant>,
    /// What the policy chain decided (Principal, response headers).
    pub policy: crate::policy::PolicyState,
    /// The gateway's own error, when it answered instead of an instance.
    pub error: Option<ErrorCode>,
}

/// The route a request resolved to.
pub struct RouteInfo {
    pub deployment: Arc<Deployment>,
    pub host_label: Arc<str>,
    /// The request target to send, when `strip_prefix` changed it.
    pub rewritten_target: Option<String>,
}

impl RequestCtx {
    pub fn snapshot(&self) -> Option<&Snapshot> {
        self.snapshot.as_deref()
    }

    pub fn deployment(&self) -> Option<&Arc<Deployment>> {
        self.route.as_ref().map(|r| &r.deployment)
    }

    /// Time waiting on the instance so far.
    pub fn instance_time(&self) -> Duration {
        match (self.upstream_started, self.upstream_answered) {
            (Some(start), Some(end)) => end.saturating_duration_since(start),
            (Some(start), None) => start.elapsed(),
            _ => Duration::ZERO,
        }
    }

    pub fn total_time(&self) -> Duration {
        self.started.map_or(Duration::ZERO, |s| s.elapsed())
    }

    /// Takes the next instance to try, skipping those answered in-process.
    pub fn next_network_instance(&mut self) -> Option<std::net::SocketAddr> {
        let deployment = self.route.as_ref()?.deployment.clone();
        while let Some(instance) = self.attempts.next(&deployment.instances) {
            if let Instance::Network(addr) = instance {
                self.instance = Some(instance.clone());
                return Some(*addr);
            }
        }
        None
    }

    /// Whether a connect failure can move on to another instance.
    pub fn can_retry(&self) -> bool {
        self.route.as_ref().is_some_and(|r| {
            let instances = &r.deployment.instances;
            self.attempts.remaining(instances)
                && instances.iter().any(|i| matches!(i, Instance::Network(_)))
        })
    }
}
