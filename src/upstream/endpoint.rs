//! One instance's live state, shared by every request and the health
//! checker: whether active checks pass, passive ejection after repeated
//! connect failures, and requests in flight (for power-of-two-choices).
//! Only atomics: the request path never waits on a checker.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Where an endpoint is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    Network(SocketAddr),
    /// Answered inside the gateway (see `proxy::echo`).
    Echo,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Self::Network(addr) => write!(f, "{addr}"),
            Self::Echo => f.write_str("builtin:echo"),
        }
    }
}

/// Passive ejection: after `failures` consecutive connect failures an
/// endpoint sits out `ejection`, doubling on each repeat (at most 32×).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PassivePolicy {
    pub failures: u32,
    pub ejection: Duration,
}

impl Default for PassivePolicy {
    fn default() -> Self {
        Self {
            failures: 3,
            ejection: Duration::from_secs(10),
        }
    }
}

#[derive(Debug)]
pub struct Endpoint {
    pub target: Target,
    healthy: AtomicBool,
    connect_failures: AtomicU32,
    ejections: AtomicU32,
    /// Milliseconds since `born` until which the endpoint is ejected (0: never was).
    ejected_until: AtomicU64,
    in_flight: AtomicUsize,
    /// The base of `ejected_until`.
    born: Instant,
}

impl Endpoint {
    pub fn new(target: Target) -> Self {
        Self {
            target,
            healthy: AtomicBool::new(true),
            connect_failures: AtomicU32::new(0),
            ejections: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            born: Instant::now(),
        }
    }

    /// Milliseconds since this endpoint was created.
    fn age_ms(&self) -> u64 {
        u64::try_from(self.born.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Healthy by active checks and not passively ejected.
    pub fn is_available(&self) -> bool {
        // Never ejected (the usual case): no clock read.
        let until = self.ejected_until.load(Ordering::Relaxed);
        self.healthy.load(Ordering::Relaxed) && (until == 0 || until <= self.age_ms())
    }

    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Set by the active health checker.
    pub fn set_healthy(&self, healthy: bool) {
        if self.healthy.swap(healthy, Ordering::Relaxed) != healthy {
            tracing::info!(instance = %self.target, healthy, "instance health changed");
        }
    }

    /// A connect to this endpoint failed on live traffic.
    pub fn connect_failed(&self, policy: &PassivePolicy) {
        let failures = self.connect_failures.fetch_add(1, Ordering::Relaxed) + 1;
        if policy.failures == 0 || failures < policy.failures {
            return;
        }
        self.connect_failures.store(0, Ordering::Relaxed);
        let repeats = self.ejections.fetch_add(1, Ordering::Relaxed).min(5);
        let ejection = policy.ejection.saturating_mul(1 << repeats);
        let until = self.age_ms().saturating_add(u64::try_from(ejection.as_millis()).unwrap_or(u64::MAX / 2)).max(1);
        self.ejected_until.store(until, Ordering::Relaxed);
        tracing::warn!(instance = %self.target, ?ejection, "instance ejected after {failures} connect failures");
    }

    /// A connect succeeded: the failure streak and ejection back-off reset.
    pub fn connected(&self) {
        self.connect_failures.store(0, Ordering::Relaxed);
        self.ejections.store(0, Ordering::Relaxed);
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Counts a request against this endpoint until the guard drops.
    pub fn begin_request(self: &std::sync::Arc<Self>) -> InFlightGuard {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlightGuard(self.clone())
    }
}

/// One request in flight on an endpoint.
#[derive(Debug)]
pub struct InFlightGuard(std::sync::Arc<Endpoint>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ejected_after_consecutive_failures_and_back_after_success() {
        let ep = Endpoint::new(Target::Echo);
        let policy = PassivePolicy { failures: 2, ejection: Duration::from_secs(60) };
        ep.connect_failed(&policy);
        assert!(ep.is_available());
        ep.connect_failed(&policy);
        assert!(!ep.is_available());
        ep.set_healthy(false);
        assert!(!ep.is_healthy());
    }

    #[test]
    fn success_resets_the_streak() {
        let ep = Endpoint::new(Target::Echo);
        let policy = PassivePolicy { failures: 2, ejection: Duration::from_secs(60) };
        ep.connect_failed(&policy);
        ep.connected();
        ep.connect_failed(&policy);
        assert!(ep.is_available());
    }

    #[test]
    fn in_flight_counts_guards() {
        let ep = std::sync::Arc::new(Endpoint::new(Target::Echo));
        let a = ep.begin_request();
        let b = ep.begin_request();
        assert_eq!(ep.in_flight(), 2);
        drop(a);
        drop(b);
        assert_eq!(ep.in_flight(), 0);
    }
}
