//! Wall-clock time as keygate measures it: unix milliseconds, the unit of
//! key expiry, credit refills and epoch-aligned rate-limit windows; and the
//! HTTP `Date` field. A request reads the monotonic clock when it arrives
//! and when it ends; these turn those readings into wall-clock time.

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::LazyLock;
use std::time::{Duration, Instant, UNIX_EPOCH};

use http::HeaderValue;

/// Milliseconds since the unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// How often [`unix_ms_at`] re-reads the wall clock: a stepped wall clock
/// shows there at most this late.
const OFFSET_REFRESH_MS: i64 = 1_000;

/// What monotonic readings are counted from.
static ORIGIN: LazyLock<Instant> = LazyLock::new(Instant::now);
/// Unix milliseconds minus milliseconds since [`ORIGIN`], as last measured.
static OFFSET: AtomicI64 = AtomicI64::new(0);
/// When (milliseconds since [`ORIGIN`]) [`OFFSET`] was measured.
static OFFSET_TAKEN: AtomicI64 = AtomicI64::new(i64::MIN);

/// Unix milliseconds at `instant`, a monotonic reading the caller took
/// anyway. A request reads the clock when it ends for its duration; this
/// turns that reading into the time it is listed under, without a second
/// clock read per request (the wall clock is read once a second).
pub fn unix_ms_at(instant: Instant) -> i64 {
    if let Some((last, ms)) = LAST.get() {
        if last == instant {
            return ms;
        }
    }
    let at = ms_since_origin(instant);
    if at.saturating_sub(OFFSET_TAKEN.load(Ordering::Relaxed)) >= OFFSET_REFRESH_MS {
        let now = Instant::now();
        let taken = ms_since_origin(now);
        // Two stores a reader may see apart: either offset is at most a
        // refresh period old, which is all this promises.
        OFFSET.store(now_ms() - taken, Ordering::Relaxed);
        OFFSET_TAKEN.store(taken, Ordering::Relaxed);
    }
    let ms = at + OFFSET.load(Ordering::Relaxed);
    LAST.set(Some((instant, ms)));
    ms
}

/// The `Date` field for the second `instant` falls in, from a reading the
/// caller took anyway: each thread formats it once a second.
pub fn http_date_at(instant: Instant) -> HeaderValue {
    let second = unix_ms_at(instant).div_euclid(1000);
    DATE.with_borrow_mut(|(shown, date)| {
        if *shown != second {
            let at = UNIX_EPOCH + Duration::from_secs(u64::try_from(second).unwrap_or(0));
            if let Ok(formatted) = HeaderValue::try_from(httpdate::fmt_http_date(at)) {
                (*shown, *date) = (second, formatted);
            }
        }
        date.clone()
    })
}

thread_local! {
    /// The reading this thread last turned into unix milliseconds, and
    /// those: a request's policies ask for the same one (keyauth, then
    /// ratelimit).
    static LAST: Cell<Option<(Instant, i64)>> = const { Cell::new(None) };
    /// The unix second last formatted by [`http_date_at`] on this thread, and its text.
    static DATE: RefCell<(i64, HeaderValue)> = const { RefCell::new((i64::MIN, HeaderValue::from_static(""))) };
}

/// Signed milliseconds from [`ORIGIN`] to `instant`.
fn ms_since_origin(instant: Instant) -> i64 {
    let origin = *ORIGIN;
    match instant.checked_duration_since(origin) {
        Some(after) => after.as_millis() as i64,
        None => -(origin.duration_since(instant).as_millis() as i64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    #[test]
    fn a_monotonic_reading_maps_to_the_wall_clock() {
        let earlier = Instant::now();
        std::thread::sleep(Duration::from_millis(20));
        let now = Instant::now();
        let wall = now_ms();
        let mapped = unix_ms_at(now);
        assert!((mapped - wall).abs() <= 2, "{mapped} vs {wall}");
        let before = unix_ms_at(earlier);
        assert!((18..=23).contains(&(mapped - before)), "{}", mapped - before);
        // Readings from before the first call map too (counted back from it).
        if let Some(a_minute_ago) = now.checked_sub(Duration::from_secs(60)) {
            assert!((59_998..=60_002).contains(&(mapped - unix_ms_at(a_minute_ago))));
        }
    }

    #[test]
    fn the_date_field_is_the_second_the_reading_falls_in() {
        let now = Instant::now();
        let shown = httpdate::parse_http_date(http_date_at(now).to_str().unwrap()).unwrap();
        let wall = SystemTime::now();
        let behind = wall.duration_since(shown).unwrap();
        assert!(behind < Duration::from_millis(1_100), "{behind:?}");
        // A reading a minute later is a minute later, though this thread
        // formatted the first one a moment ago.
        let later = httpdate::parse_http_date(http_date_at(now + Duration::from_secs(60)).to_str().unwrap()).unwrap();
        let apart = later.duration_since(shown).unwrap().as_secs();
        assert!((59..=61).contains(&apart), "{apart} s");
        assert_eq!(http_date_at(now), http_date_at(now), "one second, one text");
    }
}
