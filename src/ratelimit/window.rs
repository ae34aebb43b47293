//! One bucket's sliding window: epoch-aligned windows,
//! the current window's count plus the previous one's, weighted by how much
//! of it the sliding window still covers.

/// Longer windows are treated as this long (about 35 years), so the window
/// arithmetic can never overflow whatever a config or an API call asks for.
const MAX_WINDOW_MS: u64 = 1 << 40;

/// A window length the arithmetic below accepts: 1 ms to [`MAX_WINDOW_MS`].
pub(super) fn clamp(window_ms: u64) -> u64 {
    window_ms.clamp(1, MAX_WINDOW_MS)
}

/// A bucket's counters. In a shared table `current` is the replicas' total
/// as last read from Redis plus what this replica counted since
/// (`pending`, not yet pushed).
#[derive(Debug, Clone)]
pub(super) struct Window {
    pub index: i64,
    pub window_ms: u64,
    pub current: u64,
    pub previous: u64,
    pub pending: u64,
    /// Queued for the next synchronisation (shared tables only).
    pub queued: bool,
    /// When this replica last decided on it (shared tables only).
    pub touched_ms: i64,
}

impl Window {
    pub fn new(window_ms: u64) -> Self {
        Self {
            index: i64::MIN,
            window_ms: clamp(window_ms),
            current: 0,
            previous: 0,
            pending: 0,
            queued: false,
            touched_ms: 0,
        }
    }

    pub fn index_at(window_ms: u64, now_ms: i64) -> i64 {
        now_ms.div_euclid(clamp(window_ms) as i64)
    }

    /// Moves the counters to the window `now_ms` falls in (a skipped window
    /// leaves nothing to weigh). What was not yet pushed of a finished window
    /// stays local: it is only part of `previous` here.
    pub fn roll(&mut self, now_ms: i64) {
        let index = Self::index_at(self.window_ms, now_ms);
        if index != self.index {
            self.previous = if index == self.index.wrapping_add(1) {
                self.current
            } else {
                0
            };
            self.current = 0;
            self.pending = 0;
            self.index = index;
        }
    }

    /// The sliding count at `now_ms` (after [`Self::roll`]).
    pub fn count(&self, now_ms: i64) -> f64 {
        let width = self.window_ms as i64;
        let elapsed = (now_ms - self.index * width) as f64 / width as f64;
        self.current as f64 + self.previous as f64 * (1.0 - elapsed)
    }

    /// Unix ms at the end of the current window.
    pub fn reset_ms(&self) -> i64 {
        (self.index + 1) * self.window_ms as i64
    }

    /// Nothing in it can weigh on a decision at `now_ms` any more.
    pub fn is_spent(&self, now_ms: i64) -> bool {
        Self::index_at(self.window_ms, now_ms) > self.index.saturating_add(1)
    }

    /// Notes a decision at `now_ms`; true when the bucket must join the
    /// synchronisation queue (it was not in it).
    pub fn mark_used(&mut self, now_ms: i64) -> bool {
        self.touched_ms = now_ms;
        !std::mem::replace(&mut self.queued, true)
    }

    pub fn add(&mut self, cost: u64) {
        self.current = self.current.saturating_add(cost);
        self.pending = self.pending.saturating_add(cost);
    }
}
