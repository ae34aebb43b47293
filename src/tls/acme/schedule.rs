//! When the ACME task acts: renewal once a certificate enters its renewal
//! window, and retries after failures with exponential backoff and jitter
//! that never undercut the CA's own `Retry-After`. Pure arithmetic, so the
//! timing rules are tested here rather than against a CA.

use std::time::{Duration, SystemTime};

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};

/// The first retry waits about this long unless `KEYGATE_ACME_RETRY_BASE`
/// says otherwise; it doubles per consecutive failure.
pub const DEFAULT_RETRY_BASE: Duration = Duration::from_secs(60);
/// Retries are never further apart than this…
const MAX_RETRY: Duration = Duration::from_secs(6 * 3600);
/// …unless the CA asks for it, up to a day.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// Unix seconds now.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// When a certificate valid from `not_before` to `not_after` (unix seconds)
/// should be renewed: `renew_before` ahead of expiry, but never earlier
/// than half-way through its life — a short-lived certificate would
/// otherwise be re-ordered in a loop.
pub fn renew_at(not_before: i64, not_after: i64, renew_before: Duration) -> i64 {
    let lifetime = (not_after - not_before).max(0);
    let ahead = i64::try_from(renew_before.as_secs())
        .unwrap_or(i64::MAX)
        .min(lifetime / 2);
    not_after - ahead
}

/// One host's consecutive failed orders and the waits between its tries:
/// `base` doubled per failure up to a cap, with "equal jitter" (half fixed,
/// half random) so replicas and hosts that failed together spread out, and
/// at least until the CA's `Retry-After`.
pub struct Retries {
    failures: u32,
    delays: ExponentialBackoff,
}

impl Retries {
    pub fn new(base: Duration) -> Self {
        // backon's jitter adds up to the delay again: starting from half of
        // `base` (capped at half of the cap) gives a wait within
        // [base·2ⁿ⁻¹ / 2, base·2ⁿ⁻¹].
        let delays = ExponentialBuilder::new()
            .with_min_delay(base / 2)
            .with_max_delay(MAX_RETRY / 2)
            .with_factor(2.0)
            .with_jitter()
            .without_max_times()
            .build();
        Self { failures: 0, delays }
    }

    /// Counts a failure; returns the wait before the next try, at least
    /// until the CA's `retry_after` (up to a day).
    pub fn failed(&mut self, retry_after: Option<SystemTime>) -> Duration {
        self.failures = self.failures.saturating_add(1);
        // Without a maximum number of tries the delays never run out.
        let backoff = self.delays.next().unwrap_or(MAX_RETRY);
        let asked = retry_after
            .and_then(|at| at.duration_since(SystemTime::now()).ok())
            .map_or(Duration::ZERO, |d| d.min(MAX_RETRY_AFTER));
        backoff.max(asked)
    }

    /// Consecutive failures so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

/// `KEYGATE_ACME_RETRY_BASE` (a humantime duration), for test CAs that
/// should see retries within seconds.
pub fn retry_base() -> Duration {
    match std::env::var("KEYGATE_ACME_RETRY_BASE") {
        Ok(text) => match humantime::parse_duration(text.trim()) {
            Ok(base) if !base.is_zero() => base,
            _ => {
                tracing::warn!(
                    "KEYGATE_ACME_RETRY_BASE={text:?} is not a positive duration; using {DEFAULT_RETRY_BASE:?}"
                );
                DEFAULT_RETRY_BASE
            }
        },
        Err(_) => DEFAULT_RETRY_BASE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 24 * 3600;

    #[test]
    fn renews_renew_before_ahead_of_expiry() {
        assert_eq!(renew_at(0, 90 * DAY, Duration::from_secs(30 * DAY as u64)), 60 * DAY);
    }

    #[test]
    fn short_lived_certificates_renew_half_way() {
        assert_eq!(renew_at(0, 6 * DAY, Duration::from_secs(30 * DAY as u64)), 3 * DAY);
        assert_eq!(renew_at(100, 100, Duration::from_secs(60)), 100);
    }

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        let base = Duration::from_secs(10);
        let mut retries = Retries::new(base);
        for failures in 1..=5u32 {
            let full = base * (1 << (failures - 1));
            let d = retries.failed(None);
            assert_eq!(retries.failures(), failures);
            assert!(
                d >= full / 2 && d <= full,
                "failure {failures}: {d:?} not within [{:?}, {full:?}]",
                full / 2
            );
        }
        for _ in 6..40 {
            retries.failed(None);
        }
        let d = retries.failed(None);
        assert!(d >= MAX_RETRY / 2 && d <= MAX_RETRY, "{d:?}");
    }

    #[test]
    fn retry_after_is_honoured_but_bounded() {
        let base = Duration::from_secs(1);
        let later = SystemTime::now() + Duration::from_secs(600);
        assert!(Retries::new(base).failed(Some(later)) > Duration::from_secs(590));
        let absurd = SystemTime::now() + Duration::from_secs(365 * 24 * 3600);
        assert_eq!(Retries::new(base).failed(Some(absurd)), MAX_RETRY_AFTER);
        let past = SystemTime::now() - Duration::from_secs(5);
        assert!(Retries::new(base).failed(Some(past)) <= base);
    }
}
