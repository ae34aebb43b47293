//! Bounded waiting. Tests never synchronise on a bare sleep: they poll a
//! condition with a deadline and panic naming what they waited for.

use std::fmt::Display;
use std::future::Future;
use std::time::{Duration, Instant};

/// A saved config file is in effect within 2 s. Polls allow a
/// little slack on top for the poll interval itself.
pub const RELOAD_DEADLINE: Duration = Duration::from_millis(2_500);
/// Generic bound for "eventually" conditions.
pub const WAIT: Duration = Duration::from_secs(10);

/// Polls `f` every 25 ms until it yields `Some`, at most `timeout`; panics
/// naming `what` otherwise.
pub async fn poll_until<T, F, Fut>(what: impl Display, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Polls `f` every 25 ms until it is true, at most `timeout`.
pub async fn wait_for<F, Fut>(what: impl Display, timeout: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    poll_until(what, timeout, || {
        let fut = f();
        async move { fut.await.then_some(()) }
    })
    .await
}
