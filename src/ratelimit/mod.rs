//! Rate limiting (SPEC §3.6, §9.16, §9.18, §9.36): the [`RateLimiter`]
//! every limit goes through — key and identity limits of `keyauth` today —
//! and the response headers a decision produces. [`LocalLimiter`] keeps
//! epoch-aligned sliding windows in this process; a shared backend
//! (`state.redis`) is another implementation of the same trait.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use http::{HeaderName, HeaderValue};

/// One limit to evaluate for a request.
#[derive(Debug, Clone, Copy)]
pub struct LimitRequest<'a> {
    /// The bucket key (already escaped and namespaced by the caller).
    pub bucket: &'a str,
    pub limit: u64,
    pub window_ms: u64,
    pub cost: u64,
}

/// What a limit says about a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub limit: u64,
    /// What is left in the window: after this request when it was counted,
    /// else before it.
    pub remaining: u64,
    /// Unix ms at the end of the current window.
    pub reset_ms: i64,
}

/// Where rate-limit counters live.
#[async_trait]
pub trait RateLimiter: Send + Sync {
    /// Evaluates every request at `now_ms`, one decision each, in order. With
    /// `commit`, the requests are counted — all of them, and only if every
    /// one is allowed: a rejected request does not count (SPEC §9.18).
    async fn check(&self, requests: &[LimitRequest<'_>], commit: bool, now_ms: i64) -> Vec<Decision>;
}

/// A sliding window's two counters (SPEC §3.6).
#[derive(Debug)]
struct Window {
    index: i64,
    current: u64,
    previous: u64,
    window_ms: u64,
}

impl Window {
    /// Rolls the counters to the window `now_ms` falls in; returns the
    /// weighted count and the window's end.
    fn roll(&mut self, now_ms: i64) -> (f64, i64) {
        let width = self.window_ms.max(1) as i64;
        let index = now_ms.div_euclid(width);
        if index != self.index {
            self.previous = if index == self.index + 1 { self.current } else { 0 };
            self.current = 0;
            self.index = index;
        }
        let elapsed = (now_ms - index * width) as f64 / width as f64;
        let count = self.current as f64 + self.previous as f64 * (1.0 - elapsed);
        (count, (index + 1) * width)
    }
}

/// Counters in this process's memory; idle buckets are dropped after two
/// windows (they would count nothing any more).
pub struct LocalLimiter {
    windows: moka::sync::Cache<String, Arc<Mutex<Window>>>,
}

struct IdleAfterTwoWindows;

impl moka::Expiry<String, Arc<Mutex<Window>>> for IdleAfterTwoWindows {
    fn expire_after_create(&self, _key: &String, value: &Arc<Mutex<Window>>, _now: Instant) -> Option<Duration> {
        let window_ms = value.lock().unwrap_or_else(PoisonError::into_inner).window_ms;
        Some(Duration::from_millis(window_ms.saturating_mul(2)))
    }

    fn expire_after_read(
        &self,
        key: &String,
        value: &Arc<Mutex<Window>>,
        now: Instant,
        _remaining: Option<Duration>,
        _last_modified_at: Instant,
    ) -> Option<Duration> {
        self.expire_after_create(key, value, now)
    }
}

impl Default for LocalLimiter {
    fn default() -> Self {
        Self {
            windows: moka::sync::Cache::builder()
                .max_capacity(1_000_000)
                .expire_after(IdleAfterTwoWindows)
                .build(),
        }
    }
}

#[async_trait]
impl RateLimiter for LocalLimiter {
    async fn check(&self, requests: &[LimitRequest<'_>], commit: bool, now_ms: i64) -> Vec<Decision> {
        self.check_now(requests, commit, now_ms)
    }
}

impl LocalLimiter {
    fn check_now(&self, requests: &[LimitRequest<'_>], commit: bool, now_ms: i64) -> Vec<Decision> {
        // Lock each distinct bucket once, in a fixed order (no deadlock between requests).
        let mut buckets: Vec<&str> = requests.iter().map(|r| r.bucket).collect();
        buckets.sort_unstable();
        buckets.dedup();
        let windows: Vec<Arc<Mutex<Window>>> = buckets
            .iter()
            .map(|bucket| {
                let window_ms = requests.iter().find(|r| r.bucket == *bucket).map_or(1000, |r| r.window_ms);
                self.windows.get_with_by_ref(*bucket, || {
                    Arc::new(Mutex::new(Window {
                        index: i64::MIN,
                        current: 0,
                        previous: 0,
                        window_ms,
                    }))
                })
            })
            .collect();
        let mut guards: Vec<_> = windows.iter().map(|w| w.lock().unwrap_or_else(PoisonError::into_inner)).collect();
        let slot = |bucket: &str| buckets.binary_search(&bucket).unwrap_or(0);

        let left = |limit: u64, used: f64| (limit as f64 - used.ceil()).max(0.0) as u64;
        let mut decisions = Vec::with_capacity(requests.len());
        for request in requests {
            let window = &mut guards[slot(request.bucket)];
            window.window_ms = request.window_ms;
            let (count, reset_ms) = window.roll(now_ms);
            decisions.push(Decision {
                allowed: count + request.cost as f64 <= request.limit as f64,
                limit: request.limit,
                remaining: left(request.limit, count),
                reset_ms,
            });
        }
        if commit && decisions.iter().all(|d| d.allowed) {
            for (request, decision) in requests.iter().zip(&mut decisions) {
                let window = &mut guards[slot(request.bucket)];
                window.current += request.cost;
                let (count, _) = window.roll(now_ms);
                decision.remaining = left(request.limit, count);
            }
        }
        decisions
    }
}

/// `X-RateLimit-Limit/Remaining/Reset` (and `Retry-After` when
/// `rate_limited`) from the most restrictive decision: lowest remaining,
/// ties broken by lowest limit (SPEC §4, §9.18).
pub fn headers(decisions: &[Decision], rate_limited: bool, now_ms: i64) -> Vec<(HeaderName, HeaderValue)> {
    let Some(chosen) = decisions.iter().min_by_key(|d| (d.remaining, d.limit)) else {
        return Vec::new();
    };
    let reset_secs = (chosen.reset_ms + 999).div_euclid(1000);
    let mut out = vec![
        (HeaderName::from_static("x-ratelimit-limit"), HeaderValue::from(chosen.limit)),
        (HeaderName::from_static("x-ratelimit-remaining"), HeaderValue::from(chosen.remaining)),
        (HeaderName::from_static("x-ratelimit-reset"), HeaderValue::from(reset_secs)),
    ];
    if rate_limited {
        let wait = ((chosen.reset_ms - now_ms) + 999).div_euclid(1000).max(1);
        out.push((http::header::RETRY_AFTER, HeaderValue::from(wait)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(bucket: &str, limit: u64) -> LimitRequest<'_> {
        LimitRequest {
            bucket,
            limit,
            window_ms: 1000,
            cost: 1,
        }
    }

    #[test]
    fn counts_up_to_the_limit_and_rejected_requests_do_not_count() {
        let limiter = LocalLimiter::default();
        let now = 10_000;
        for left in (0..3).rev() {
            let d = limiter.check_now(&[req("a", 3)], true, now);
            assert!(d[0].allowed);
            assert_eq!(d[0].remaining, left);
            assert_eq!(d[0].reset_ms, 11_000);
        }
        assert!(!limiter.check_now(&[req("a", 3)], true, now)[0].allowed);
        // Half of the next window: the previous count weighs 50%.
        let d = limiter.check_now(&[req("a", 3)], true, 11_500);
        assert!(d[0].allowed, "1.5 + 1 <= 3");
        assert!(!limiter.check_now(&[req("a", 3)], true, 11_500)[0].allowed, "2.5 + 1 > 3");
        assert!(limiter.check_now(&[req("a", 3)], true, 13_000)[0].allowed, "two windows later: empty");
    }

    #[test]
    fn all_or_nothing_and_peek() {
        let limiter = LocalLimiter::default();
        let d = limiter.check_now(&[req("x", 5), req("y", 0)], true, 0);
        assert!(d[0].allowed && !d[1].allowed);
        assert_eq!(limiter.check_now(&[req("x", 5)], false, 0)[0].remaining, 5, "nothing was counted");
        assert_eq!(limiter.check_now(&[req("x", 5)], true, 0)[0].remaining, 4);
        assert_eq!(limiter.check_now(&[req("x", 5)], false, 0)[0].remaining, 4, "a peek does not count");
    }

    #[test]
    fn headers_come_from_the_most_restrictive() {
        let d = |remaining, limit| Decision {
            allowed: true,
            limit,
            remaining,
            reset_ms: 5_500,
        };
        let h = headers(&[d(5, 10), d(2, 100), d(2, 50)], true, 4_000);
        let get = |name: &str| h.iter().find(|(n, _)| n == name).map(|(_, v)| v.to_str().unwrap().to_string());
        assert_eq!(get("x-ratelimit-limit").as_deref(), Some("50"));
        assert_eq!(get("x-ratelimit-remaining").as_deref(), Some("2"));
        assert_eq!(get("x-ratelimit-reset").as_deref(), Some("6"));
        assert_eq!(get("retry-after").as_deref(), Some("2"));
        assert!(headers(&[d(1, 1)], false, 0).iter().all(|(n, _)| n != "retry-after"));
    }
}
