// keygate patch 9: an idle-connection pool without a task per request.
//
// pingora's `ConnectionPool` parks every released upstream connection behind
// an `Arc<Mutex>`, an LRU node, a oneshot and a `Notify`, and spawns a task
// per release that watches the idle socket until it is reused (waking that
// task again on reuse). On a keep-alive proxy that is a spawn and several
// wake-ups per request. This pool keeps idle streams in a vector per peer
// hash under one short lock: a release pushes, a reuse pops the most recent
// one and checks it (deadline passed, closed by the server, or unexpected
// data: dropped and the next one tried), and one sweeper task per pool —
// started on the first release — closes expired and server-closed
// connections once a second, so their descriptors do not linger.

use super::{test_reusable_stream, PoolCallback};
use crate::protocols::Stream;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// How often the sweeper looks at idle connections.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

struct Idle {
    stream: Stream,
    since: Instant,
    deadline: Option<Instant>,
}

impl Idle {
    fn expired(&self, now: Instant) -> bool {
        self.deadline.is_some_and(|d| now >= d)
    }
}

/// keygate patch 28: a connection is parked under the worker thread that
/// released it as well as its peer, and only that thread takes it again.
/// Each of a no-steal server's threads runs its own tokio runtime, and a
/// socket stays registered with the runtime that opened it: taken by
/// another thread, its every readiness event came through the opener's
/// I/O driver and a cross-thread wake-up. Like nginx's per-worker
/// keep-alive caches, each thread now keeps its own.
type SlotKey = (u64, u64);

thread_local! {
    /// This thread's number among those that used a pool.
    static WORKER: u64 = {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        NEXT.fetch_add(1, Ordering::Relaxed)
    };
}

/// `key` as this thread parks and takes it.
fn slot_key(key: u64) -> SlotKey {
    (WORKER.with(|worker| *worker), key)
}

#[derive(Default)]
struct Slots {
    /// Keyed by the worker thread and the peer's reuse hash, looked up twice
    /// per proxied request: hashed with ahash rather than the standard
    /// library's SipHash.
    by_key: HashMap<SlotKey, Vec<Idle>, ahash::RandomState>,
    count: usize,
}

/// Idle upstream connections by peer hash, at most `capacity` in total.
pub(crate) struct IdlePool {
    capacity: usize,
    slots: Mutex<Slots>,
    sweeper: AtomicBool,
    unexpected_data: Arc<AtomicU64>,
    callback: Option<PoolCallback>,
}

impl IdlePool {
    pub(crate) fn new(
        capacity: usize,
        unexpected_data: Arc<AtomicU64>,
        callback: Option<PoolCallback>,
    ) -> Self {
        IdlePool {
            capacity,
            slots: Mutex::new(Slots::default()),
            sweeper: AtomicBool::new(false),
            unexpected_data,
            callback,
        }
    }

    /// Parks `stream` (already checked reusable) for reuse under `key`.
    pub(crate) fn put(self: &Arc<Self>, key: u64, stream: Stream, idle_timeout: Option<Duration>) {
        if self.capacity == 0 {
            return;
        }
        let now = Instant::now();
        let idle = Idle {
            stream,
            since: now,
            deadline: idle_timeout.map(|t| now + t),
        };
        let evicted = {
            let mut slots = self.slots.lock();
            let evicted = if slots.count >= self.capacity {
                slots.evict_oldest()
            } else {
                None
            };
            slots.by_key.entry(slot_key(key)).or_default().push(idle);
            slots.count += 1;
            evicted
        };
        if let Some(evicted) = evicted {
            self.left_unused(&evicted);
        }
        self.start_sweeper();
    }

    /// The most recently parked usable stream of `key`, if any.
    pub(crate) fn take(&self, key: u64) -> Option<Stream> {
        loop {
            let mut idle = {
                let mut slots = self.slots.lock();
                // keygate patch 26: an emptied list stays (the sweep removes
                // it), so the next release of this key does not allocate one.
                let idle = slots.by_key.get_mut(&slot_key(key))?.pop()?;
                slots.count -= 1;
                idle
            };
            if !idle.expired(Instant::now())
                && test_reusable_stream(&mut idle.stream, &self.unexpected_data)
            {
                return Some(idle.stream);
            }
            self.left_unused(&idle);
        }
    }

    /// Closes expired and server-closed connections.
    fn sweep(&self) {
        let now = Instant::now();
        let mut gone = Vec::new();
        {
            let mut slots = self.slots.lock();
            let Slots { by_key, count } = &mut *slots;
            for list in by_key.values_mut() {
                let mut i = 0;
                while i < list.len() {
                    let keep = !list[i].expired(now)
                        && test_reusable_stream(&mut list[i].stream, &self.unexpected_data);
                    if keep {
                        i += 1;
                    } else {
                        gone.push(list.remove(i));
                        *count -= 1;
                    }
                }
            }
            by_key.retain(|_, list| !list.is_empty());
        }
        for idle in &gone {
            self.left_unused(idle);
        }
    }

    fn left_unused(&self, idle: &Idle) {
        if let Some(callback) = &self.callback {
            callback(idle.since.elapsed());
        }
    }

    fn start_sweeper(self: &Arc<Self>) {
        // keygate patch 26: a plain load on every release; the swap only once.
        if self.sweeper.load(Ordering::Relaxed) || self.sweeper.swap(true, Ordering::Relaxed) {
            return;
        }
        let pool: Weak<Self> = Arc::downgrade(self);
        pingora_runtime::current_handle().spawn(async move {
            loop {
                tokio::time::sleep(SWEEP_EVERY).await;
                match pool.upgrade() {
                    Some(pool) => pool.sweep(),
                    None => return,
                }
            }
        });
    }
}

impl Slots {
    /// Removes the connection idle the longest, of any peer.
    fn evict_oldest(&mut self) -> Option<Idle> {
        let key = self
            .by_key
            .iter()
            .filter_map(|(key, list)| list.first().map(|idle| (idle.since, *key)))
            .min()?
            .1;
        let list = self.by_key.get_mut(&key)?;
        let oldest = list.remove(0);
        if list.is_empty() {
            self.by_key.remove(&key);
        }
        self.count -= 1;
        Some(oldest)
    }
}

