//! What this replica answered lately, for the dashboard: the last 1,000
//! requests in a ring, and per deployment a minute-by-minute series of the
//! last hour (requests, errors, latency percentiles). Always on, so both
//! are cheap: a request takes one slot lock nobody else holds (slots are
//! handed out round-robin), copies its text into the slot's own buffers
//! (no allocation once they are warm) and does a few atomic adds; readers
//! copy.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwap;
use serde::Serialize;

/// Requests kept.
pub const RING_SIZE: usize = 1_000;
/// Minutes of per-deployment history.
const MINUTES: usize = 60;
/// Deployments' series by id: looked up on every request.
type HashMap<K, V> = std::collections::HashMap<K, V, ahash::RandomState>;

/// Latency buckets: upper bounds in milliseconds (the last one open).
const LATENCY_BOUNDS_MS: [u64; 16] = [
    1,
    2,
    5,
    10,
    20,
    50,
    100,
    200,
    500,
    1_000,
    2_000,
    5_000,
    10_000,
    30_000,
    60_000,
    u64::MAX,
];

/// One answered request as the dashboard shows it: never a body, a query
/// string or a header value.
#[derive(Debug, Clone, Serialize)]
pub struct RecentRequest {
    pub seq: u64,
    /// Unix milliseconds.
    pub at: i64,
    pub method: String,
    pub host: String,
    /// The path only (a query string may carry a credential).
    pub path: String,
    pub status: u16,
    #[serde(serialize_with = "shared_text")]
    pub deployment: Option<Arc<str>>,
    pub total_us: u64,
    pub instance_us: Option<u64>,
    pub error_code: Option<&'static str>,
    /// The Principal's subject (a key or token id, never the credential).
    pub subject: Option<String>,
    pub request_id: String,
}

/// What the proxy reports of one answered request, borrowed from it:
/// [`Recent::record`] copies it into a ring slot.
#[derive(Debug, Clone, Copy)]
pub struct Answered<'a> {
    /// Unix milliseconds.
    pub at: i64,
    pub method: &'a str,
    pub host: &'a str,
    /// The path only.
    pub path: &'a str,
    pub status: u16,
    /// The deployment's id and its series here (see [`Recent::series_of`]).
    pub deployment: Option<(&'a Arc<str>, &'a Series)>,
    pub total_us: u64,
    pub instance_us: Option<u64>,
    pub error_code: Option<&'static str>,
    pub subject: Option<&'a str>,
    pub request_id: &'a str,
}

impl RecentRequest {
    /// An empty slot (`seq` 0: never filled).
    fn empty() -> Self {
        Self {
            seq: 0,
            at: 0,
            method: String::new(),
            host: String::new(),
            path: String::new(),
            status: 0,
            deployment: None,
            total_us: 0,
            instance_us: None,
            error_code: None,
            subject: None,
            request_id: String::new(),
        }
    }

    /// Becomes `answered`, reusing its own text buffers.
    fn overwrite(&mut self, seq: u64, answered: &Answered<'_>) {
        self.seq = seq;
        self.at = answered.at;
        replace_text(&mut self.method, answered.method);
        replace_text(&mut self.host, answered.host);
        replace_text(&mut self.path, answered.path);
        self.status = answered.status;
        match answered.deployment.map(|(id, _)| id) {
            Some(id) if self.deployment.as_ref().is_some_and(|kept| Arc::ptr_eq(kept, id)) => {}
            other => self.deployment = other.cloned(),
        }
        self.total_us = answered.total_us;
        self.instance_us = answered.instance_us;
        self.error_code = answered.error_code;
        match (answered.subject, &mut self.subject) {
            (Some(subject), Some(kept)) => replace_text(kept, subject),
            (subject, kept) => *kept = subject.map(str::to_owned),
        }
        replace_text(&mut self.request_id, answered.request_id);
    }
}

fn replace_text(buffer: &mut String, text: &str) {
    buffer.clear();
    buffer.push_str(text);
}

fn shared_text<S: serde::Serializer>(text: &Option<Arc<str>>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_some(&text.as_deref())
}

/// The process's recent requests and series.
pub fn recent() -> &'static Recent {
    static RECENT: OnceLock<Recent> = OnceLock::new();
    RECENT.get_or_init(Recent::default)
}

pub struct Recent {
    slots: Box<[Mutex<RecentRequest>]>,
    next: AtomicU64,
    series: ArcSwap<HashMap<Arc<str>, Arc<Series>>>,
    /// Serialises adding a deployment's series (rare), never recording.
    adding: Mutex<()>,
}

impl Default for Recent {
    fn default() -> Self {
        Self {
            slots: (0..RING_SIZE).map(|_| Mutex::new(RecentRequest::empty())).collect(),
            next: AtomicU64::new(1),
            series: ArcSwap::default(),
            adding: Mutex::new(()),
        }
    }
}

impl Recent {
    /// Records an answered request (its `seq` is assigned here).
    pub fn record(&self, request: &Answered<'_>) {
        if let Some((_, series)) = request.deployment {
            // Server errors, and requests that got no answer at all.
            let error = request.status >= 500 || request.status == 0;
            series.record(request.at, Duration::from_micros(request.total_us), error);
        }
        let seq = self.next.fetch_add(1, Ordering::Relaxed);
        let slot = &self.slots[(seq % RING_SIZE as u64) as usize];
        slot.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .overwrite(seq, request);
    }

    /// The kept requests after `seq`, oldest first, and the newest seq.
    pub fn after(&self, seq: u64) -> (Vec<RecentRequest>, u64) {
        let mut found: Vec<RecentRequest> = self
            .slots
            .iter()
            .filter_map(|slot| {
                let kept = slot.lock().unwrap_or_else(PoisonError::into_inner);
                (kept.seq > seq).then(|| kept.clone())
            })
            .collect();
        found.sort_by_key(|r| r.seq);
        let last = found
            .last()
            .map_or(seq.max(self.next.load(Ordering::Relaxed).saturating_sub(1)), |r| r.seq);
        (found, last)
    }

    /// Every deployment's last hour, minute by minute (oldest first).
    pub fn series(&self, now_ms: i64) -> Vec<(Arc<str>, Vec<MinuteStats>)> {
        let mut all: Vec<_> = self
            .series
            .load()
            .iter()
            .map(|(id, series)| (id.clone(), series.minutes(now_ms)))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// When `deployment` last answered a request in this process (unix ms).
    pub fn last_request(&self, deployment: &str) -> Option<i64> {
        let last = self.series.load().get(deployment)?.last.load(Ordering::Relaxed);
        (last > 0).then_some(last)
    }

    /// `deployment`'s series, added on its first call. A deployment keeps
    /// what this returns, so a request records into it without a lookup.
    pub fn series_of(&self, deployment: &Arc<str>) -> Arc<Series> {
        if let Some(series) = self.series.load().get(deployment) {
            return series.clone();
        }
        let _adding = self.adding.lock().unwrap_or_else(PoisonError::into_inner);
        let current = self.series.load_full();
        if let Some(series) = current.get(deployment) {
            return series.clone();
        }
        let series = Arc::new(Series::default());
        let mut next = HashMap::clone(&current);
        next.insert(deployment.clone(), series.clone());
        self.series.store(Arc::new(next));
        series
    }
}

/// One deployment's minutes, in a ring indexed by minute.
pub struct Series {
    minutes: [Minute; MINUTES],
    /// When its last request was answered (unix ms; 0: none yet), for
    /// archiving idle previews.
    last: AtomicI64,
}

impl Default for Minute {
    fn default() -> Self {
        Self {
            minute: AtomicI64::new(i64::MIN),
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            latency: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl std::fmt::Debug for Series {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Series")
            .field("last", &self.last)
            .finish_non_exhaustive()
    }
}

impl Default for Series {
    fn default() -> Self {
        Self {
            minutes: std::array::from_fn(|_| Minute::default()),
            last: AtomicI64::new(0),
        }
    }
}

struct Minute {
    /// Which minute (unix ms / 60,000) the counts belong to; `i64::MIN`: none yet.
    minute: AtomicI64,
    requests: AtomicU64,
    errors: AtomicU64,
    latency: [AtomicU64; LATENCY_BOUNDS_MS.len()],
}

/// One minute of one deployment.
#[derive(Debug, Clone, Serialize)]
pub struct MinuteStats {
    /// Start of the minute, unix ms.
    pub at: i64,
    pub requests: u64,
    pub errors: u64,
    /// Upper bound of the bucket holding the median / 99th percentile.
    pub p50_ms: u64,
    pub p99_ms: u64,
}

impl Series {
    fn record(&self, at_ms: i64, latency: Duration, error: bool) {
        self.last.fetch_max(at_ms, Ordering::Relaxed);
        let minute = at_ms.div_euclid(60_000);
        let slot = &self.minutes[minute.rem_euclid(MINUTES as i64) as usize];
        let seen = slot.minute.load(Ordering::Acquire);
        if seen != minute
            && slot
                .minute
                .compare_exchange(seen, minute, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            // This request opens the minute: last hour's counts go.
            slot.requests.store(0, Ordering::Release);
            slot.errors.store(0, Ordering::Release);
            for bucket in &slot.latency {
                bucket.store(0, Ordering::Release);
            }
        }
        slot.requests.fetch_add(1, Ordering::Relaxed);
        if error {
            slot.errors.fetch_add(1, Ordering::Relaxed);
        }
        let ms = latency.as_millis() as u64;
        let bucket = LATENCY_BOUNDS_MS
            .iter()
            .position(|bound| ms < *bound)
            .unwrap_or(LATENCY_BOUNDS_MS.len() - 1);
        slot.latency[bucket].fetch_add(1, Ordering::Relaxed);
    }

    fn minutes(&self, now_ms: i64) -> Vec<MinuteStats> {
        let now = now_ms.div_euclid(60_000);
        let mut minutes: Vec<MinuteStats> = self
            .minutes
            .iter()
            .filter(|slot| {
                let minute = slot.minute.load(Ordering::Acquire);
                minute > now - MINUTES as i64 && minute <= now
            })
            .map(|slot| {
                let counts: Vec<u64> = slot.latency.iter().map(|b| b.load(Ordering::Relaxed)).collect();
                MinuteStats {
                    at: slot.minute.load(Ordering::Acquire) * 60_000,
                    requests: slot.requests.load(Ordering::Relaxed),
                    errors: slot.errors.load(Ordering::Relaxed),
                    p50_ms: percentile(&counts, 0.5),
                    p99_ms: percentile(&counts, 0.99),
                }
            })
            .collect();
        minutes.sort_by_key(|m| m.at);
        minutes
    }
}

/// The bucket bound below which `q` of the counted requests fall (the
/// open bucket reports the last finite bound).
fn percentile(counts: &[u64], q: f64) -> u64 {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return 0;
    }
    let wanted = ((total as f64) * q).ceil() as u64;
    let mut seen = 0;
    for (count, bound) in counts.iter().zip(LATENCY_BOUNDS_MS) {
        seen += count;
        if seen >= wanted {
            return bound.min(LATENCY_BOUNDS_MS[LATENCY_BOUNDS_MS.len() - 2]);
        }
    }
    LATENCY_BOUNDS_MS[LATENCY_BOUNDS_MS.len() - 2]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request<'a>(host: &'a str, deployment: Option<(&'a Arc<str>, &'a Series)>, status: u16) -> Answered<'a> {
        Answered {
            at: 120_000,
            method: "GET",
            host,
            path: "/",
            status,
            deployment,
            total_us: 3_000,
            instance_us: Some(2_000),
            error_code: None,
            subject: None,
            request_id: "req_1",
        }
    }

    #[test]
    fn the_ring_keeps_the_last_thousand_in_order() {
        let recent = Recent::default();
        for i in 0..1_500 {
            recent.record(&request(&format!("h{i}"), None, 200));
        }
        let (all, last) = recent.after(0);
        assert_eq!(all.len(), RING_SIZE);
        assert_eq!(all[0].host, "h500");
        assert_eq!(last, 1_500);
        let (newer, _) = recent.after(1_499);
        assert_eq!(newer.iter().map(|r| r.host.as_str()).collect::<Vec<_>>(), ["h1499"]);
    }

    /// A slot reused for another request keeps nothing of the previous one.
    #[test]
    fn a_reused_slot_holds_only_the_new_request() {
        let recent = Recent::default();
        let dep: Arc<str> = Arc::from("dep");
        let series = recent.series_of(&dep);
        let first = Answered {
            subject: Some("key_first"),
            error_code: Some("RATE_LIMITED"),
            request_id: "req_first_long_id",
            ..request("first.example", Some((&dep, &series)), 429)
        };
        recent.record(&first);
        for _ in 0..RING_SIZE {
            recent.record(&request("b", None, 200));
        }
        let (all, _) = recent.after(0);
        assert_eq!(all.len(), RING_SIZE);
        assert!(all.iter().all(|r| r.host == "b"
            && r.subject.is_none()
            && r.deployment.is_none()
            && r.error_code.is_none()
            && r.request_id == "req_1"
            && r.status == 200));
        recent.record(&Answered {
            subject: Some("key_2"),
            ..request("c", Some((&dep, &series)), 200)
        });
        let (newest, _) = recent.after(RING_SIZE as u64 + 1);
        assert_eq!(newest.len(), 1);
        assert_eq!(
            (
                newest[0].host.as_str(),
                newest[0].subject.as_deref(),
                newest[0].deployment.as_deref()
            ),
            ("c", Some("key_2"), Some("dep"))
        );
    }

    #[test]
    fn series_count_requests_errors_and_latency_per_minute() {
        let recent = Recent::default();
        let dep: Arc<str> = Arc::from("dep");
        assert!(
            recent.series(150_000).is_empty(),
            "no series before its deployment asks for one"
        );
        let series = recent.series_of(&dep);
        assert!(
            Arc::ptr_eq(&series, &recent.series_of(&dep)),
            "one series per deployment"
        );
        recent.record(&request("a", Some((&dep, &series)), 200));
        recent.record(&request("a", Some((&dep, &series)), 502));
        let series = recent.series(150_000);
        assert_eq!(series.len(), 1);
        let minutes = &series[0].1;
        assert_eq!((minutes[0].at, minutes[0].requests, minutes[0].errors), (120_000, 2, 1));
        assert_eq!(minutes[0].p50_ms, 5, "3 ms falls in the ≤5 ms bucket");
        assert!(
            recent.series(120_000 + 3_600_000).iter().all(|(_, m)| m.is_empty()),
            "an hour later it is gone"
        );
    }
}
