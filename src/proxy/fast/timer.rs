//! One timer per client connection for all of its waits (the next request,
//! an instance's answer, each read of a body). A timer made and dropped per
//! wait enters and leaves tokio's timer wheel every time. This one is armed
//! lazily, as nginx arms its timers: a wait that ends later than the armed
//! time only notes its deadline, and when the armed time comes first the
//! timer is re-armed for the deadline then in force. On a busy connection
//! whose waits keep ending later, it is re-armed about once per timeout
//! rather than once per wait.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// The connection's timer.
pub struct ConnectionTimer {
    sleep: Pin<Box<Sleep>>,
    /// When `sleep` fires (never later than `deadline`).
    armed: Instant,
    /// When the current wait ends.
    deadline: Instant,
}

impl ConnectionTimer {
    pub fn new() -> Self {
        let armed = Instant::now() + Duration::from_secs(3600);
        Self {
            sleep: Box::pin(tokio::time::sleep_until(armed)),
            armed,
            deadline: armed,
        }
    }

    /// `work`, given at most `wait` from `since` (zero: no limit); `None`
    /// when the time ran out first. `since` is a clock reading the caller
    /// took anyway (a request's start or end), not a read of its own.
    pub async fn within<F: Future>(&mut self, since: Instant, wait: Duration, work: F) -> Option<F::Output> {
        if wait.is_zero() {
            return Some(work.await);
        }
        self.deadline = since + wait;
        if self.deadline < self.armed {
            self.arm();
        }
        let mut work = std::pin::pin!(work);
        loop {
            tokio::select! {
                biased;
                done = &mut work => return Some(done),
                () = self.sleep.as_mut() => {
                    if Instant::now() >= self.deadline {
                        return None;
                    }
                    // Armed for an earlier wait: on to this one's deadline.
                    self.arm();
                }
            }
        }
    }

    fn arm(&mut self) {
        self.armed = self.deadline;
        self.sleep.as_mut().reset(self.deadline);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn work_finishes_or_time_runs_out_and_the_timer_serves_again() {
        let mut timer = ConnectionTimer::new();
        assert_eq!(
            timer.within(Instant::now(), Duration::from_secs(1), async { 7 }).await,
            Some(7)
        );
        let slow = tokio::time::sleep(Duration::from_secs(5));
        assert_eq!(timer.within(Instant::now(), Duration::from_secs(1), slow).await, None);
        // After it fired, a later deadline holds again.
        let quick = tokio::time::sleep(Duration::from_millis(500));
        assert_eq!(
            timer.within(Instant::now(), Duration::from_secs(1), quick).await,
            Some(())
        );
        // A shorter wait than the last one still ends in time.
        let slow = tokio::time::sleep(Duration::from_secs(30));
        let started = Instant::now();
        assert_eq!(
            timer.within(Instant::now(), Duration::from_millis(100), slow).await,
            None
        );
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!(timer.within(Instant::now(), Duration::ZERO, async { 1 }).await, Some(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_longer_than_the_armed_time_still_gets_its_whole_time() {
        let mut timer = ConnectionTimer::new();
        // Armed for 1 s by a short wait that finished at once.
        assert_eq!(
            timer.within(Instant::now(), Duration::from_secs(1), async { 1 }).await,
            Some(1)
        );
        // A 10 s wait outlives that arming: 5 s of work completes ...
        let started = Instant::now();
        let five = tokio::time::sleep(Duration::from_secs(5));
        assert_eq!(
            timer.within(Instant::now(), Duration::from_secs(10), five).await,
            Some(())
        );
        // ... and 20 s does not, ending at the wait's own deadline.
        let twenty = tokio::time::sleep(Duration::from_secs(20));
        assert_eq!(
            timer.within(Instant::now(), Duration::from_secs(10), twenty).await,
            None
        );
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_secs(15) && waited < Duration::from_secs(16),
            "{waited:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_counts_from_the_reading_it_is_given() {
        let mut timer = ConnectionTimer::new();
        let since = Instant::now();
        tokio::time::advance(Duration::from_secs(3)).await;
        // 5 s from a reading taken 3 s ago: 2 s are left.
        let slow = tokio::time::sleep(Duration::from_secs(30));
        assert_eq!(timer.within(since, Duration::from_secs(5), slow).await, None);
        assert_eq!(since.elapsed(), Duration::from_secs(5));
    }
}
