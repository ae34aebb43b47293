//! A histogram each worker thread records into its own shard of, merged when
//! scraped. prometheus-client's `Histogram` takes one write lock per
//! observation, and every request observes three: with two or more worker
//! threads that lock and the counts behind it moved between cores on every
//! request. Here a thread locks only its own shard (a cache line of its
//! own), so the lock is never contended while threads are no more than
//! shards. A histogram takes ~2 KiB (three per deployment).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use prometheus_client::encoding::{EncodeMetric, MetricEncoder};
use prometheus_client::metrics::{MetricType, TypedMetric};

/// Shards per histogram: threads past this many share them.
const SHARDS: usize = 16;

thread_local! {
    /// This thread's shard.
    static SHARD: usize = {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS
    };
}

/// A Prometheus histogram with per-thread shards; cloning shares it.
#[derive(Debug, Clone)]
pub struct ShardedHistogram {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Upper bounds, ending with `f64::MAX` (`+Inf`).
    bounds: Box<[f64]>,
    shards: Box<[Shard]>,
}

/// One thread's counts, on a cache line of its own.
#[derive(Debug, Default)]
#[repr(align(64))]
struct Shard(Mutex<Counts>);

#[derive(Debug, Default, Clone)]
struct Counts {
    sum: f64,
    count: u64,
    /// Per bucket, not cumulative (as prometheus-client's encoder expects).
    buckets: Vec<u64>,
}

impl ShardedHistogram {
    /// A histogram with these upper bounds, and `+Inf`.
    pub fn new(bounds: impl Iterator<Item = f64>) -> Self {
        let bounds: Box<[f64]> = bounds.chain(std::iter::once(f64::MAX)).collect();
        let shards = (0..SHARDS)
            .map(|_| {
                Shard(Mutex::new(Counts {
                    buckets: vec![0; bounds.len()],
                    ..Counts::default()
                }))
            })
            .collect();
        Self {
            inner: Arc::new(Inner { bounds, shards }),
        }
    }

    pub fn observe(&self, value: f64) {
        let bucket = self.inner.bounds.iter().position(|bound| *bound >= value);
        let shard = &self.inner.shards[SHARD.with(|shard| *shard)];
        let mut counts = shard.0.lock().unwrap_or_else(PoisonError::into_inner);
        counts.sum += value;
        counts.count += 1;
        if let Some(bucket) = bucket {
            counts.buckets[bucket] += 1;
        }
    }

    /// Every shard's counts added up.
    fn merged(&self) -> Counts {
        let mut total = Counts {
            buckets: vec![0; self.inner.bounds.len()],
            ..Counts::default()
        };
        for shard in &self.inner.shards {
            let counts = shard.0.lock().unwrap_or_else(PoisonError::into_inner);
            total.sum += counts.sum;
            total.count += counts.count;
            for (sum, n) in total.buckets.iter_mut().zip(&counts.buckets) {
                *sum += n;
            }
        }
        total
    }
}

impl TypedMetric for ShardedHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for ShardedHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let Counts { sum, count, buckets } = self.merged();
        let buckets: Vec<(f64, u64)> = self.inner.bounds.iter().copied().zip(buckets).collect();
        encoder.encode_histogram::<()>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::histogram::Histogram;
    use prometheus_client::registry::Registry;

    fn exposition(register: impl FnOnce(&mut Registry)) -> String {
        let mut registry = Registry::default();
        register(&mut registry);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
        out
    }

    #[test]
    fn observations_from_many_threads_read_as_prometheus_clients_own_histogram() {
        let bounds = || [0.001, 0.01, 0.1].into_iter();
        let sharded = ShardedHistogram::new(bounds());
        let reference = Histogram::new(bounds());
        // Powers of two: their sums are exact in any order.
        let values = [0.00048828125, 0.0009765625, 0.00390625, 0.0625, 0.25, 4.0];
        // More threads than shards: some share one.
        std::thread::scope(|scope| {
            for _ in 0..SHARDS + 4 {
                scope.spawn(|| values.iter().for_each(|v| sharded.observe(*v)));
            }
        });
        for _ in 0..SHARDS + 4 {
            values.iter().for_each(|v| reference.observe(*v));
        }
        let ours = exposition(|r| r.register("latency", "help", sharded.clone()));
        let theirs = exposition(|r| r.register("latency", "help", reference.clone()));
        assert_eq!(ours, theirs);
        assert!(ours.contains("latency_count 120"), "{ours}");
    }
}
