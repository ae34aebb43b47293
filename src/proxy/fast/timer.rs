//! One timer per client connection for all of its waits (the next request,
//! an instance's answer, each read of a body). A timer made and dropped per
//! wait enters and leaves tokio's timer wheel under its lock every time;
//! this one enters once, and moving its deadline later — what each new
//! wait does — is a single atomic store.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// The connection's timer.
pub struct ConnectionTimer {
    sleep: Pin<Box<Sleep>>,
}

impl ConnectionTimer {
    pub fn new() -> Self {
        Self {
            sleep: Box::pin(tokio::time::sleep(Duration::from_secs(3600))),
        }
    }

    /// `work`, given at most `wait` from now (zero: no limit); `None` when
    /// the time ran out first.
    pub async fn within<F: Future>(&mut self, wait: Duration, work: F) -> Option<F::Output> {
        if wait.is_zero() {
            return Some(work.await);
        }
        self.sleep.as_mut().reset(Instant::now() + wait);
        tokio::select! {
            biased;
            done = work => Some(done),
            () = self.sleep.as_mut() => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn work_finishes_or_time_runs_out_and_the_timer_serves_again() {
        let mut timer = ConnectionTimer::new();
        assert_eq!(timer.within(Duration::from_secs(1), async { 7 }).await, Some(7));
        let slow = tokio::time::sleep(Duration::from_secs(5));
        assert_eq!(timer.within(Duration::from_secs(1), slow).await, None);
        // After it fired, a later deadline holds again.
        let quick = tokio::time::sleep(Duration::from_millis(500));
        assert_eq!(timer.within(Duration::from_secs(1), quick).await, Some(()));
        // A shorter wait than the last one still ends in time.
        let slow = tokio::time::sleep(Duration::from_secs(30));
        let started = Instant::now();
        assert_eq!(timer.within(Duration::from_millis(100), slow).await, None);
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!(timer.within(Duration::ZERO, async { 1 }).await, Some(1));
    }
}
