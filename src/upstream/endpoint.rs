//! One instance's live state, shared by every request and the health
//! checker: whether active checks pass, passive ejection after repeated
//! connect failures, and requests in flight (for power-of-two-choices).
//! Only atomics: the request path never waits on a checker.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::OnceLock;
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
/// endpoint sits out `ejection`, doubling on each repeat without a success
/// in between (at most 32×).
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

/// How long a trial request holds an endpoint's one trial slot; if it never
/// reports (the client left before connecting), another request may try.
const TRIAL_HOLD: Duration = Duration::from_secs(5);

/// Passive ejection is a circuit breaker. *Admitted*: every request may
/// use the endpoint and connect failures are counted. *Ejected*: no request
/// may, and failures of requests that picked it before the ejection neither
/// extend nor repeat it. *Trial* (half-open, once the back-off has passed):
/// one request at a time may try it; its success re-admits the endpoint and
/// resets the back-off, its failure ejects it again for the next, doubled,
/// back-off. A passing active health check re-admits it at once.
#[derive(Debug)]
pub struct Endpoint {
    pub target: Target,
    healthy: AtomicBool,
    connect_failures: AtomicU32,
    /// Ejections since the last success: the back-off exponent.
    ejections: AtomicU32,
    /// Milliseconds since `born` until which the endpoint is ejected; 0:
    /// admitted. Past it the endpoint is on trial until a request reports.
    ejected_until: AtomicU64,
    /// On trial: milliseconds since `born` until which the trial slot is taken.
    trial_until: AtomicU64,
    /// Changes on every ejection and re-admission, so a failure reported by a
    /// request that picked the endpoint in an earlier state is recognised as stale.
    generation: AtomicU32,
    in_flight: AtomicUsize,
    /// The base of `ejected_until` and `trial_until`.
    born: Instant,
    /// The key of this endpoint's idle HTTP/1 connections in the connection
    /// pool: worked out once, by the proxy (see [`Self::pool_key`]).
    pool_key: OnceLock<u64>,
}

impl Endpoint {
    pub fn new(target: Target) -> Self {
        Self {
            target,
            healthy: AtomicBool::new(true),
            connect_failures: AtomicU32::new(0),
            ejections: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
            trial_until: AtomicU64::new(0),
            generation: AtomicU32::new(0),
            in_flight: AtomicUsize::new(0),
            born: Instant::now(),
            pool_key: OnceLock::new(),
        }
    }

    /// The key of this endpoint's idle HTTP/1 connections in the connection
    /// pool, `compute`d on first use: it hashes the same for every request,
    /// so no request hashes it again.
    pub fn pool_key(&self, compute: impl FnOnce() -> u64) -> u64 {
        *self.pool_key.get_or_init(compute)
    }

    /// Milliseconds since this endpoint was created (never 0, which means "not ejected").
    fn age_ms(&self) -> u64 {
        u64::try_from(self.born.elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    /// Healthy by active checks, and admitted or on trial with the trial slot free.
    pub fn is_available(&self) -> bool {
        if !self.healthy.load(Ordering::Relaxed) {
            return false;
        }
        // Never ejected (the usual case): no clock read.
        let until = self.ejected_until.load(Ordering::Relaxed);
        if until == 0 {
            return true;
        }
        let now = self.age_ms();
        until <= now && self.trial_until.load(Ordering::Relaxed) <= now
    }

    /// Takes the endpoint for a request the picker chose: always granted
    /// when admitted; on trial only to the one request that wins the slot.
    pub fn admit(&self) -> bool {
        let until = self.ejected_until.load(Ordering::Relaxed);
        if until == 0 {
            return true;
        }
        let now = self.age_ms();
        let slot = self.trial_until.load(Ordering::Relaxed);
        until <= now
            && slot <= now
            && self
                .trial_until
                .compare_exchange(
                    slot,
                    now.saturating_add(duration_ms(TRIAL_HOLD)),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
    }

    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Set by the health supervisor (an endpoint no longer checked is healthy).
    pub fn set_healthy(&self, healthy: bool) {
        if self.healthy.swap(healthy, Ordering::Relaxed) != healthy {
            tracing::info!(instance = %self.target, healthy, "instance health changed");
        }
    }

    /// An active health check passed: healthy, and re-admitted if ejected.
    pub fn check_passed(&self) {
        self.set_healthy(true);
        self.readmit("a health check passed");
    }

    /// A connect to this endpoint failed on live traffic; `generation` is
    /// the endpoint's when the request started trying it ([`Self::begin_request`]).
    pub fn connect_failed(&self, policy: &PassivePolicy, generation: u32) {
        if policy.failures == 0 || generation != self.generation.load(Ordering::Relaxed) {
            return;
        }
        if self.ejected_until.load(Ordering::Relaxed) != 0 {
            // The trial request failed: out again, for longer.
            self.eject(policy, "its trial request failed to connect");
            return;
        }
        let failures = self.connect_failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures >= policy.failures {
            self.eject(policy, "consecutive connect failures");
        }
    }

    fn eject(&self, policy: &PassivePolicy, why: &str) {
        let generation = self.generation.load(Ordering::Relaxed);
        // Of requests racing with the same news, the first ejects.
        if self
            .generation
            .compare_exchange(
                generation,
                generation.wrapping_add(1),
                Ordering::Relaxed,
                Ordering::Relaxed,
            )
            .is_err()
        {
            return;
        }
        self.connect_failures.store(0, Ordering::Relaxed);
        let repeats = self.ejections.fetch_add(1, Ordering::Relaxed).min(5);
        let ejection = policy.ejection.saturating_mul(1 << repeats);
        self.trial_until.store(0, Ordering::Relaxed);
        self.ejected_until
            .store(self.age_ms().saturating_add(duration_ms(ejection)), Ordering::Relaxed);
        tracing::warn!(instance = %self.target, ?ejection, "instance ejected: {why}");
    }

    /// A connect succeeded: the failure streak and the back-off reset, and
    /// an ejected endpoint is re-admitted (it answers).
    pub fn connected(&self) {
        self.connect_failures.store(0, Ordering::Relaxed);
        self.readmit("a connect succeeded");
    }

    fn readmit(&self, why: &str) {
        if self.ejected_until.swap(0, Ordering::Relaxed) != 0 {
            self.generation.fetch_add(1, Ordering::Relaxed);
            self.trial_until.store(0, Ordering::Relaxed);
            tracing::info!(instance = %self.target, "instance re-admitted: {why}");
        }
        self.ejections.store(0, Ordering::Relaxed);
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Counts a request against this endpoint until the guard drops; the
    /// guard remembers the endpoint's state generation for [`Self::connect_failed`].
    pub fn begin_request(self: &std::sync::Arc<Self>) -> InFlightGuard {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlightGuard {
            endpoint: self.clone(),
            generation: self.generation.load(Ordering::Relaxed),
        }
    }
}

fn duration_ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX / 2)
}

/// One request in flight on an endpoint.
#[derive(Debug)]
pub struct InFlightGuard {
    endpoint: std::sync::Arc<Endpoint>,
    generation: u32,
}

impl InFlightGuard {
    /// This request's connect to the endpoint failed.
    pub fn connect_failed(&self, policy: &PassivePolicy) {
        self.endpoint.connect_failed(policy, self.generation);
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.endpoint.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::Arc;

    fn endpoint() -> Arc<Endpoint> {
        Arc::new(Endpoint::new(Target::Echo))
    }

    /// A request that tries the endpoint and fails to connect.
    fn fail(ep: &Arc<Endpoint>, policy: &PassivePolicy) {
        ep.begin_request().connect_failed(policy);
    }

    #[test]
    fn ejected_after_consecutive_failures() {
        let ep = endpoint();
        let policy = PassivePolicy {
            failures: 2,
            ejection: Duration::from_secs(60),
        };
        fail(&ep, &policy);
        assert!(ep.is_available());
        fail(&ep, &policy);
        assert!(!ep.is_available());
        assert!(!ep.admit());
        ep.set_healthy(false);
        assert!(!ep.is_healthy());
    }

    #[test]
    fn success_resets_the_streak() {
        let ep = endpoint();
        let policy = PassivePolicy {
            failures: 2,
            ejection: Duration::from_secs(60),
        };
        fail(&ep, &policy);
        ep.connected();
        fail(&ep, &policy);
        assert!(ep.is_available());
    }

    #[test]
    fn failures_while_ejected_neither_extend_nor_repeat_the_ejection() {
        let ep = endpoint();
        let policy = PassivePolicy {
            failures: 3,
            ejection: Duration::from_millis(100),
        };
        // 20 connections in flight when the instance goes away.
        let in_flight: Vec<_> = (0..20).map(|_| ep.begin_request()).collect();
        for guard in &in_flight {
            guard.connect_failed(&policy);
        }
        assert!(!ep.is_available());
        assert_eq!(
            ep.ejections.load(Ordering::Relaxed),
            1,
            "one ejection, not one per failure"
        );
        let until = ep.ejected_until.load(Ordering::Relaxed);
        assert!(until <= ep.age_ms() + 100, "the base back-off, not a doubled one");
    }

    #[test]
    fn after_the_back_off_one_trial_request_decides() {
        let ep = endpoint();
        let policy = PassivePolicy {
            failures: 1,
            ejection: Duration::from_millis(50),
        };
        fail(&ep, &policy);
        assert!(!ep.is_available());
        std::thread::sleep(Duration::from_millis(60));
        // Half-open: available, but to one request at a time.
        assert!(ep.is_available());
        assert!(ep.admit());
        assert!(!ep.admit(), "the trial slot is taken");
        assert!(!ep.is_available());
        // The trial fails: ejected again with the doubled back-off.
        let trial = ep.begin_request();
        trial.connect_failed(&policy);
        assert_eq!(ep.ejections.load(Ordering::Relaxed), 2);
        std::thread::sleep(Duration::from_millis(60));
        assert!(!ep.is_available(), "100 ms this time");
        std::thread::sleep(Duration::from_millis(50));
        assert!(ep.admit());
        // The next trial succeeds: admitted, back-off reset.
        ep.connected();
        assert!(ep.is_available());
        assert!(ep.admit() && ep.admit());
        assert_eq!(ep.ejections.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_failure_from_before_the_ejection_does_not_fail_the_trial() {
        let ep = endpoint();
        let policy = PassivePolicy {
            failures: 1,
            ejection: Duration::from_millis(20),
        };
        let late = ep.begin_request();
        fail(&ep, &policy);
        std::thread::sleep(Duration::from_millis(30));
        assert!(ep.admit());
        late.connect_failed(&policy);
        assert_eq!(ep.ejections.load(Ordering::Relaxed), 1, "stale news is ignored");
    }

    #[test]
    fn a_passing_health_check_readmits_at_once() {
        let ep = endpoint();
        let policy = PassivePolicy {
            failures: 1,
            ejection: Duration::from_secs(60),
        };
        fail(&ep, &policy);
        assert!(!ep.is_available());
        ep.check_passed();
        assert!(ep.is_available());
        assert_eq!(ep.ejections.load(Ordering::Relaxed), 0);
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
