//! Rate limiting: the [`RateLimiter`]
//! every limit goes through — `ratelimit` policies, key and identity limits
//! of `keyauth`, and the admin API's `ratelimit.limit` — and the response
//! headers its decisions produce — and the [`overrides`] that change a
//! namespace's limit for some identifiers.
//!
//! Decisions are always local: a sharded in-memory [`table`] of
//! epoch-aligned sliding windows answers in well under a microsecond. With
//! `state.redis`, [`shared`] pushes what this replica counted to Redis every
//! `state.sync_interval` and merges the replicas' totals back, so replicas
//! agree on counts within one interval; when Redis is unreachable the local
//! counts carry on alone and are pushed once it is back.

pub mod overrides;
mod shared;
mod table;
mod window;

use std::sync::Arc;
use std::time::Duration;

use pingora_http::StaticHeaderName;

use overrides::Overrides;
pub use shared::{Link as RedisLink, SharedSettings};
use table::Table;

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

/// The process's rate-limit counters (one per process, shared by every
/// snapshot so a reload keeps the counts); clones share them.
#[derive(Clone)]
pub struct RateLimiter {
    table: Arc<Table>,
    /// With `state.redis`: where cold buckets' totals are read.
    link: Option<shared::Link>,
    overrides: Arc<Overrides>,
}

impl Default for RateLimiter {
    /// In memory only.
    fn default() -> Self {
        Self {
            table: Arc::new(Table::new(table::DEFAULT_CAPACITY, false)),
            link: None,
            overrides: Arc::default(),
        }
    }
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter").finish_non_exhaustive()
    }
}

impl RateLimiter {
    /// Counters shared through Redis: synchronised by a background thread
    /// that lives as long as the limiter.
    pub fn shared(settings: SharedSettings) -> std::io::Result<Self> {
        let table = Arc::new(Table::new(table::DEFAULT_CAPACITY, true));
        let link = shared::start_sync(Arc::downgrade(&table), settings)?;
        Ok(Self {
            table,
            link: Some(link),
            overrides: Arc::default(),
        })
    }

    /// The overrides in force for `ratelimit.limit` namespaces and `ratelimit` policies.
    pub fn overrides(&self) -> &Overrides {
        &self.overrides
    }

    /// With shared counters, call before deciding: a bucket this replica has
    /// not used for a second gets the replicas' totals read first (one round
    /// trip, at most 100 ms), so a cold replica does not admit a whole limit
    /// on its own. Hot buckets, and in-memory limiters, return at once.
    pub async fn prime(&self, requests: &[LimitRequest<'_>], now_ms: i64) {
        let Some(link) = &self.link else { return };
        for request in requests {
            if self.table.is_cold(request.bucket, now_ms) {
                let index = window::Window::index_at(request.window_ms, now_ms);
                // Unanswered: decide locally, and do not ask again for a second.
                let (total, previous) = shared::read_totals(link, request.bucket, index).await.unwrap_or((0, 0));
                self.table.warm(request, now_ms, total, previous);
            }
        }
    }

    /// The connection to `state.redis` this limiter keeps up, for the credits ledger.
    pub fn redis_link(&self) -> Option<RedisLink> {
        self.link.clone()
    }

    /// Evaluates one limit at `now_ms`; with `commit`, counts the request when allowed.
    pub fn check_one(&self, request: &LimitRequest<'_>, commit: bool, now_ms: i64) -> Decision {
        self.table.check_one(request, commit, now_ms)
    }

    /// Evaluates every request at `now_ms`, one decision each, in order. With
    /// `commit`, the requests are counted — all of them, and only if every
    /// one is allowed: a rejected request does not count.
    pub fn check(&self, requests: &[LimitRequest<'_>], commit: bool, now_ms: i64) -> Vec<Decision> {
        self.table.check(requests, commit, now_ms)
    }

    /// Buckets currently held in memory.
    pub fn buckets(&self) -> usize {
        self.table.len()
    }
}

/// Keeps `a:b`+`c` and `a`+`b:c` in different buckets: every `:` inside a
/// part is escaped, so `:` only ever separates parts.
pub fn push_part(bucket: &mut String, part: &str) {
    bucket.push(':');
    let mut rest = part;
    // A byte search: parts are short, and a char-set `find` is a general
    // pattern search (this runs for every rate-limited request).
    while let Some(at) = rest.bytes().position(|b| b == b':' || b == b'\\') {
        bucket.push_str(&rest[..at]);
        bucket.push('\\');
        bucket.push_str(&rest[at..=at]);
        rest = &rest[at + 1..];
    }
    bucket.push_str(rest);
}

/// The identifier of a bucket whose parts follow `:` (what [`push_part`]
/// wrote): the parts unescaped and joined by `:`, as overrides match them.
pub fn identifier_of(parts: &str) -> String {
    let mut out = String::with_capacity(parts.len());
    let mut chars = parts.strip_prefix(':').unwrap_or(parts).chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            other => out.push(other),
        }
    }
    out
}

/// A window length in ms for the limiter (at least 1).
pub fn window_ms(window: Duration) -> u64 {
    (window.as_millis() as u64).max(1)
}

/// `X-RateLimit-Limit/Remaining/Reset` from the most restrictive decision
/// (lowest remaining, ties broken by lowest limit), and `Retry-After` when
/// the request was refused as rate limited at `refused_at_ms` (the clock is
/// read only for those), each passed to `field` with its value as digits.
/// Nothing is allocated: this runs for every rate-limited response.
pub fn fields(
    decisions: &[Decision],
    refused_at_ms: Option<i64>,
    mut field: impl FnMut(&'static StaticHeaderName, &[u8]),
) {
    let Some(chosen) = decisions.iter().min_by_key(|d| (d.remaining, d.limit)) else {
        return;
    };
    let mut digits = itoa::Buffer::new();
    field(&LIMIT, digits.format(chosen.limit).as_bytes());
    field(&REMAINING, digits.format(chosen.remaining).as_bytes());
    let reset_secs = (chosen.reset_ms + 999).div_euclid(1000);
    field(&RESET, digits.format(reset_secs).as_bytes());
    if let Some(now_ms) = refused_at_ms {
        let wait = ((chosen.reset_ms - now_ms) + 999).div_euclid(1000).max(1);
        field(&RETRY_AFTER, digits.format(wait).as_bytes());
    }
}

/// Whether [`fields`] sets a field named `name` (any case) for these
/// decisions, `refused` or not: an instance's field of that name gives way.
pub fn sets_field(decisions: &[Decision], refused: bool, name: &[u8]) -> bool {
    let is = |field: &StaticHeaderName| name.eq_ignore_ascii_case(field.name().as_str().as_bytes());
    !decisions.is_empty() && (is(&LIMIT) || is(&REMAINING) || is(&RESET) || (refused && is(&RETRY_AFTER)))
}

static LIMIT: StaticHeaderName = StaticHeaderName::lowercase("x-ratelimit-limit");
static REMAINING: StaticHeaderName = StaticHeaderName::lowercase("x-ratelimit-remaining");
static RESET: StaticHeaderName = StaticHeaderName::lowercase("x-ratelimit-reset");
static RETRY_AFTER: StaticHeaderName = StaticHeaderName::lowercase("retry-after");

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
        let limiter = RateLimiter::default();
        let now = 10_000;
        for left in (0..3).rev() {
            let d = limiter.check(&[req("a", 3)], true, now);
            assert!(d[0].allowed);
            assert_eq!(d[0].remaining, left);
            assert_eq!(d[0].reset_ms, 11_000);
        }
        assert!(!limiter.check(&[req("a", 3)], true, now)[0].allowed);
        // Half of the next window: the previous count weighs 50%.
        let d = limiter.check(&[req("a", 3)], true, 11_500);
        assert!(d[0].allowed, "1.5 + 1 <= 3");
        assert!(!limiter.check(&[req("a", 3)], true, 11_500)[0].allowed, "2.5 + 1 > 3");
        assert!(
            limiter.check(&[req("a", 3)], true, 13_000)[0].allowed,
            "two windows later: empty"
        );
    }

    #[test]
    fn identifiers_are_the_parts_unescaped() {
        let mut bucket = String::new();
        push_part(&mut bucket, "1.2.3.4");
        push_part(&mut bucket, "a:b\\c");
        assert_eq!(identifier_of(&bucket), "1.2.3.4:a:b\\c");
        assert_eq!(identifier_of(":solo"), "solo");
    }

    #[test]
    fn extreme_windows_and_costs_do_not_overflow() {
        let limiter = RateLimiter::default();
        for window_ms in [0, 1, u64::MAX] {
            let huge = LimitRequest {
                bucket: "w",
                limit: u64::MAX,
                window_ms,
                cost: u64::MAX / 2,
            };
            let d = limiter.check_one(&huge, true, i64::MAX / 2);
            assert!(d.reset_ms > 0, "{window_ms}: {d:?}");
        }
    }

    #[test]
    fn all_or_nothing_and_peek() {
        let limiter = RateLimiter::default();
        let d = limiter.check(&[req("x", 5), req("y", 0)], true, 0);
        assert!(d[0].allowed && !d[1].allowed);
        assert_eq!(
            limiter.check(&[req("x", 5)], false, 0)[0].remaining,
            5,
            "nothing was counted"
        );
        assert_eq!(limiter.check(&[req("x", 5)], true, 0)[0].remaining, 4);
        assert_eq!(
            limiter.check(&[req("x", 5)], false, 0)[0].remaining,
            4,
            "a peek does not count"
        );
    }

    #[test]
    fn fields_come_from_the_most_restrictive_and_name_what_they_set() {
        let d = |remaining, limit| Decision {
            allowed: true,
            limit,
            remaining,
            reset_ms: 5_500,
        };
        let collect = |decisions: &[Decision], refused_at_ms| {
            let mut out = Vec::new();
            fields(decisions, refused_at_ms, |name, value| {
                out.push((
                    name.name().as_str().to_string(),
                    String::from_utf8(value.to_vec()).unwrap(),
                ))
            });
            out
        };
        let decisions = [d(5, 10), d(2, 100), d(2, 50)];
        let set = collect(&decisions, Some(4_000));
        let get = |name: &str| set.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
        assert_eq!(get("x-ratelimit-limit"), Some("50"));
        assert_eq!(get("x-ratelimit-remaining"), Some("2"));
        assert_eq!(get("x-ratelimit-reset"), Some("6"));
        assert_eq!(get("retry-after"), Some("2"));
        for (name, _) in &set {
            assert!(
                sets_field(&decisions, true, name.to_ascii_uppercase().as_bytes()),
                "{name}"
            );
        }
        let allowed = collect(&[d(1, 1)], None);
        assert!(allowed.iter().all(|(n, _)| n != "retry-after"));
        assert!(!sets_field(&[d(1, 1)], false, b"Retry-After"));
        assert!(collect(&[], None).is_empty());
        assert!(!sets_field(&[], false, b"x-ratelimit-limit"));
    }
}
