//! Wall-clock time as keygate measures it: unix milliseconds, the unit of
//! key expiry, credit refills and epoch-aligned rate-limit windows.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::LazyLock;
use std::time::Instant;

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
    let at = ms_since_origin(instant);
    if at.saturating_sub(OFFSET_TAKEN.load(Ordering::Relaxed)) >= OFFSET_REFRESH_MS {
        let now = Instant::now();
        let taken = ms_since_origin(now);
        // Two stores a reader may see apart: either offset is at most a
        // refresh period old, which is all this promises.
        OFFSET.store(now_ms() - taken, Ordering::Relaxed);
        OFFSET_TAKEN.store(taken, Ordering::Relaxed);
    }
    at + OFFSET.load(Ordering::Relaxed)
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
    use std::time::Duration;

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
}
