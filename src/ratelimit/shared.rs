//! Sharing rate-limit counts between replicas through `state.redis`,
//! local-first (Unkey's approach): a decision never waits for Redis. Every
//! `sync_interval` a background thread pushes the counts this replica added
//! since the last push (`INCRBY` on the bucket's window key, which expires
//! two windows later) and reads back the replicas' totals for the window and
//! the one before, which the next decisions weigh.
//!
//! Consistency: a replica sees the others' counts at most one interval (plus
//! a round trip) late, so N replicas can together admit up to
//! `limit + (N − 1) × (what one replica admits in one interval)` — never more
//! than `N × limit` per window. If Redis is unreachable, each replica goes on
//! with its own counts (the sliding window still holds locally), the push is
//! retried every interval and `keygate_ratelimit_backend_errors_total`
//! counts the failures; the held-back counts are pushed when Redis returns.

use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use redis::aio::ConnectionManager;

use super::table::{Pending, Table};

/// Buckets per Redis pipeline.
const BATCH: usize = 512;
/// A Redis call that takes longer than this counts as a failure.
const CALL_TIMEOUT: Duration = Duration::from_millis(500);
/// How often a replica that could not connect at all tries again.
const CONNECT_EVERY: Duration = Duration::from_secs(1);
/// How long a decision on a cold bucket waits for the replicas' totals.
const READ_TIMEOUT: Duration = Duration::from_millis(100);

/// The synchronisation thread's connection to `state.redis`, once it has
/// one: also used by decisions that read a cold bucket's totals first, and
/// by the credits ledger. The thread keeps it up (a `ConnectionManager`
/// reconnects by itself; a first connection is retried every second).
pub type Link = Arc<ArcSwapOption<ConnectionManager>>;

/// `state.redis` and how often counts are exchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedSettings {
    pub url: String,
    pub sync_interval: Duration,
}

/// Starts the synchronisation thread; it ends when the table is dropped.
pub(super) fn start_sync(table: Weak<Table>, settings: SharedSettings) -> std::io::Result<Link> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let link = Link::default();
    let shared = link.clone();
    std::thread::Builder::new()
        .name("keygate-ratelimit-sync".into())
        .spawn(move || runtime.block_on(sync_loop(table, settings, shared)))?;
    Ok(link)
}

async fn sync_loop(table: Weak<Table>, settings: SharedSettings, link: Link) {
    let mut redis: Option<ConnectionManager> = None;
    let mut connect_error = None;
    let mut last_attempt: Option<std::time::Instant> = None;
    let mut healthy = true;
    let mut ticker = tokio::time::interval(settings.sync_interval.max(Duration::from_millis(1)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let Some(table) = table.upgrade() else { return };
        if redis.is_none() && last_attempt.is_none_or(|at| at.elapsed() >= CONNECT_EVERY) {
            last_attempt = Some(std::time::Instant::now());
            match crate::state::connect_redis(&settings.url, CALL_TIMEOUT).await {
                Ok(connection) => {
                    link.store(Some(Arc::new(connection.clone())));
                    redis = Some(connection);
                }
                Err(e) => connect_error = Some(e),
            }
        }
        let pending = table.take_pending(crate::clock::now_ms());
        if pending.is_empty() {
            continue;
        }
        let result = match &mut redis {
            Some(connection) => push(connection, &pending).await,
            None => Err(connect_error
                .take()
                .unwrap_or_else(|| redis::RedisError::from((redis::ErrorKind::IoError, "not connected yet")))),
        };
        match result {
            Ok(totals) => {
                for (pushed, (total, previous)) in pending.iter().zip(totals) {
                    table.merge(pushed, total, previous);
                }
                if !healthy {
                    tracing::info!("state.redis is reachable again: rate-limit counts are shared again");
                    healthy = true;
                }
            }
            Err(e) => {
                crate::telemetry::metrics().ratelimit_backend_errors.inc();
                if healthy {
                    tracing::warn!("state.redis unreachable, rate limits go on with this replica's counts: {e}");
                    healthy = false;
                }
                for pushed in pending {
                    table.requeue(pushed);
                }
            }
        }
    }
}

/// The Redis key of a bucket's window.
fn key(bucket: &str, index: i64) -> String {
    format!("keygate:rl:{bucket}:{index}")
}

/// Pushes the counts; answers `(window total, previous window total)` per bucket.
async fn push(redis: &mut ConnectionManager, pending: &[Pending]) -> redis::RedisResult<Vec<(u64, u64)>> {
    let mut totals = Vec::with_capacity(pending.len());
    for batch in pending.chunks(BATCH) {
        let mut pipe = redis::pipe();
        for p in batch {
            let current = key(&p.bucket, p.index);
            pipe.cmd("INCRBY").arg(&current).arg(p.count);
            pipe.cmd("PEXPIRE")
                .arg(&current)
                .arg(p.window_ms.saturating_mul(2).saturating_add(1000))
                .ignore();
            pipe.cmd("GET").arg(key(&p.bucket, p.index - 1));
        }
        let call = pipe.query_async::<Vec<redis::Value>>(redis);
        let answers = match tokio::time::timeout(CALL_TIMEOUT, call).await {
            Ok(answers) => answers?,
            Err(_) => {
                return Err(redis::RedisError::from((
                    redis::ErrorKind::IoError,
                    "no answer in time",
                )))
            }
        };
        for pair in answers.chunks(2) {
            let [total, previous] = pair else {
                return Err(redis::RedisError::from((
                    redis::ErrorKind::TypeError,
                    "unexpected pipeline answer",
                )));
            };
            let previous: Option<u64> = redis::from_redis_value(previous)?;
            totals.push((redis::from_redis_value(total)?, previous.unwrap_or(0)));
        }
    }
    Ok(totals)
}

/// The replicas' totals of a bucket's window `index` and the one before, or
/// `None` (counted as a backend error) when Redis does not answer in time.
pub(super) async fn read_totals(link: &Link, bucket: &str, index: i64) -> Option<(u64, u64)> {
    let mut redis = ConnectionManager::clone(&*link.load_full()?);
    let mut pipe = redis::pipe();
    pipe.cmd("GET")
        .arg(key(bucket, index))
        .cmd("GET")
        .arg(key(bucket, index - 1));
    match tokio::time::timeout(READ_TIMEOUT, pipe.query_async::<(Option<u64>, Option<u64>)>(&mut redis)).await {
        Ok(Ok((total, previous))) => Some((total.unwrap_or(0), previous.unwrap_or(0))),
        Ok(Err(_)) | Err(_) => {
            crate::telemetry::metrics().ratelimit_backend_errors.inc();
            None
        }
    }
}
