//! Wall-clock time as keygate measures it: unix milliseconds, the unit of
//! key expiry, credit refills and epoch-aligned rate-limit windows.

/// Milliseconds since the unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
