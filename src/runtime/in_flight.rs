//! Requests being served right now: a graceful shutdown stops accepting,
//! then waits for this count to reach zero.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// The process's count of requests in flight; clones share it.
#[derive(Debug, Clone, Default)]
pub struct InFlightCounter(Arc<AtomicUsize>);

impl InFlightCounter {
    /// Counts a request until the returned guard is dropped.
    pub fn start(&self) -> InFlight {
        self.0.fetch_add(1, Ordering::Relaxed);
        InFlight(self.0.clone())
    }

    pub fn current(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

/// One request in flight; dropping it ends the count.
#[derive(Debug)]
pub struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_until_dropped() {
        let counter = InFlightCounter::default();
        let a = counter.start();
        let b = counter.start();
        assert_eq!(counter.current(), 2);
        drop(a);
        assert_eq!(counter.current(), 1);
        drop(b);
        assert_eq!(counter.current(), 0);
    }
}
