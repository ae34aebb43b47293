//! The counters of every bucket, sharded so decisions on different buckets
//! never wait on each other: a decision locks only the shard(s) its buckets
//! hash to, for a few hundred nanoseconds. Memory stays bounded under
//! millions of identifiers: a shard drops windows that can no longer weigh
//! on a decision as it grows (amortised over the inserts), and a hard
//! capacity bounds it when identifiers arrive faster than windows expire.

use std::sync::{Mutex, MutexGuard, PoisonError};

use hashbrown::hash_table::Entry;

use super::window::Window;
use super::{Decision, LimitRequest};

const SHARDS: usize = 64;
/// A shared table keeps reading the replicas' totals of a bucket for this
/// long after it was last used here.
const RECENT_MS: i64 = 1_000;
/// Buckets re-read without new counts per synchronisation, at most.
const MAX_REFRESH: usize = 10_000;
/// Buckets one process keeps at most (about 150 bytes each with typical
/// keys; keys are at most 256 bytes, see `policy::ratelimit`).
pub const DEFAULT_CAPACITY: usize = 1 << 20;

/// A shard's windows by bucket, each found under the one hash that also
/// chose the shard (see [`Table::place`]).
type Map = hashbrown::HashTable<(Box<str>, Window)>;

#[derive(Default)]
struct Shard {
    windows: Map,
    /// Buckets counted since the last synchronisation (shared tables).
    queue: Vec<Box<str>>,
    /// Inserts since the last sweep.
    inserts: usize,
    /// Buckets the last sweep kept.
    kept: usize,
}

/// A bucket's state to push to the shared store.
#[derive(Debug)]
pub(super) struct Pending {
    pub bucket: Box<str>,
    pub index: i64,
    pub window_ms: u64,
    pub count: u64,
}

pub(super) struct Table {
    shards: Box<[Mutex<Shard>]>,
    hasher: ahash::RandomState,
    shard_capacity: usize,
    /// Queue counted buckets for [`Self::take_pending`].
    shared: bool,
}

impl Table {
    pub fn new(capacity: usize, shared: bool) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            hasher: ahash::RandomState::new(),
            shard_capacity: (capacity / SHARDS).max(16),
            shared,
        }
    }

    /// The bucket's shard and its hash there: one hash per bucket and call.
    fn place(&self, bucket: &str) -> Place {
        let hash = self.hasher.hash_one(bucket);
        // The shard comes from bits a shard's table does not place by (it
        // takes the low bits, and the top seven as tags), so a shard's
        // buckets still spread over its table.
        Place {
            shard: (hash >> 32) as usize % SHARDS,
            hash,
        }
    }

    fn lock(&self, shard: usize) -> MutexGuard<'_, Shard> {
        self.shards[shard].lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// One limit: decided, and with `commit` counted when allowed.
    pub fn check_one(&self, request: &LimitRequest<'_>, commit: bool, now_ms: i64) -> Decision {
        let place = self.place(request.bucket);
        let mut shard = self.lock(place.shard);
        let window = shard.window(place.hash, request, now_ms, self);
        let mut decision = decide(window, request, now_ms);
        if commit && decision.allowed {
            decision = count(window, request, now_ms);
        }
        if self.shared && window.mark_used(now_ms) {
            shard.queue.push(request.bucket.into());
        }
        decision
    }

    /// Several limits, all or nothing: with `commit`, every one is counted
    /// if every one allows, else none (a rejected request does not count).
    pub fn check(&self, requests: &[LimitRequest<'_>], commit: bool, now_ms: i64) -> Vec<Decision> {
        if let [one] = requests {
            return vec![self.check_one(one, commit, now_ms)];
        }
        // Lock each shard once, in ascending order: no deadlock between requests.
        let places: Vec<Place> = requests.iter().map(|r| self.place(r.bucket)).collect();
        let mut order: Vec<usize> = places.iter().map(|p| p.shard).collect();
        order.sort_unstable();
        order.dedup();
        let mut guards: Vec<MutexGuard<'_, Shard>> = order.iter().map(|&s| self.lock(s)).collect();
        let guard_of = |shard: usize| order.binary_search(&shard).unwrap_or(0);

        let mut decisions: Vec<Decision> = requests
            .iter()
            .zip(&places)
            .map(|(request, place)| {
                let window = guards[guard_of(place.shard)].window(place.hash, request, now_ms, self);
                decide(window, request, now_ms)
            })
            .collect();
        if commit && decisions.iter().all(|d| d.allowed) {
            for ((request, place), decision) in requests.iter().zip(&places).zip(&mut decisions) {
                let shard = &mut guards[guard_of(place.shard)];
                *decision = count(shard.window(place.hash, request, now_ms, self), request, now_ms);
            }
        }
        if self.shared {
            for (request, place) in requests.iter().zip(&places) {
                let shard = &mut guards[guard_of(place.shard)];
                if shard.window(place.hash, request, now_ms, self).mark_used(now_ms) {
                    shard.queue.push(request.bucket.into());
                }
            }
        }
        decisions
    }

    /// Takes what was counted since the last call, shard by shard, and the
    /// buckets used here in the last [`RECENT_MS`] that counted nothing new
    /// (their count of 0 still reads the replicas' totals back) — at most
    /// [`MAX_REFRESH`] of those per call, the rest wait for the next one.
    pub fn take_pending(&self, now_ms: i64) -> Vec<Pending> {
        let mut out = Vec::new();
        let mut refreshes = 0;
        for shard in 0..SHARDS {
            let mut guard = self.lock(shard);
            let shard = &mut *guard;
            for bucket in std::mem::take(&mut shard.queue) {
                let Some(window) = shard.get_mut(self.place(&bucket).hash, &bucket) else {
                    continue;
                };
                let recent = now_ms - window.touched_ms < RECENT_MS;
                if window.pending == 0 {
                    if !recent {
                        window.queued = false;
                        continue;
                    }
                    if refreshes == MAX_REFRESH {
                        shard.queue.push(bucket);
                        continue;
                    }
                    refreshes += 1;
                }
                window.queued = recent;
                let pending = Pending {
                    index: window.index,
                    window_ms: window.window_ms,
                    count: std::mem::take(&mut window.pending),
                    bucket,
                };
                if recent {
                    shard.queue.push(pending.bucket.clone());
                }
                out.push(pending);
            }
        }
        out
    }

    /// Applies what the shared store answered for `pushed`: the replicas'
    /// totals of its window and of the one before.
    pub fn merge(&self, pushed: &Pending, total: u64, previous_total: u64) {
        let place = self.place(&pushed.bucket);
        let mut shard = self.lock(place.shard);
        let Some(window) = shard.get_mut(place.hash, &pushed.bucket) else {
            return;
        };
        if window.index == pushed.index {
            window.current = window.current.max(total.saturating_add(window.pending));
            window.previous = window.previous.max(previous_total);
        } else if window.index == pushed.index + 1 {
            window.previous = window.previous.max(total);
        }
    }

    /// Whether this replica has not used `bucket` for [`RECENT_MS`] (or never):
    /// its counts may be far behind the other replicas'.
    pub fn is_cold(&self, bucket: &str, now_ms: i64) -> bool {
        let place = self.place(bucket);
        self.lock(place.shard)
            .get_mut(place.hash, bucket)
            .is_none_or(|w| now_ms - w.touched_ms >= RECENT_MS)
    }

    /// Takes in the replicas' totals read for a cold bucket, and marks it
    /// used so the synchronisation keeps it current.
    pub fn warm(&self, request: &LimitRequest<'_>, now_ms: i64, total: u64, previous_total: u64) {
        let place = self.place(request.bucket);
        let mut shard = self.lock(place.shard);
        let window = shard.window(place.hash, request, now_ms, self);
        window.current = window.current.max(total.saturating_add(window.pending));
        window.previous = window.previous.max(previous_total);
        if window.mark_used(now_ms) {
            shard.queue.push(request.bucket.into());
        }
    }

    /// Puts back what could not be pushed, for the next try.
    pub fn requeue(&self, pushed: Pending) {
        let place = self.place(&pushed.bucket);
        let mut shard = self.lock(place.shard);
        let Some(window) = shard.get_mut(place.hash, &pushed.bucket) else {
            return;
        };
        if window.index == pushed.index {
            window.pending = window.pending.saturating_add(pushed.count);
            if !window.queued {
                window.queued = true;
                shard.queue.push(pushed.bucket);
            }
        }
    }

    /// Buckets held (for tests and the memory bound).
    pub fn len(&self) -> usize {
        (0..SHARDS).map(|s| self.lock(s).windows.len()).sum()
    }
}

/// Where a bucket's window is kept.
#[derive(Clone, Copy)]
struct Place {
    shard: usize,
    hash: u64,
}

impl Shard {
    fn get_mut(&mut self, hash: u64, bucket: &str) -> Option<&mut Window> {
        self.windows
            .find_mut(hash, |(kept, _)| **kept == *bucket)
            .map(|(_, window)| window)
    }

    /// The bucket's window, rolled to `now_ms`; created if new (`hash` is
    /// its [`Table::place`]).
    fn window(&mut self, hash: u64, request: &LimitRequest<'_>, now_ms: i64, table: &Table) -> &mut Window {
        let bucket = request.bucket;
        if self.get_mut(hash, bucket).is_none() {
            self.make_room(now_ms, table);
        }
        let window_ms = super::window::clamp(request.window_ms);
        let rehash = |(kept, _): &(Box<str>, Window)| table.hasher.hash_one(&**kept);
        let (_, window) = match self.windows.entry(hash, |(kept, _)| **kept == *bucket, rehash) {
            Entry::Occupied(kept) => kept.into_mut(),
            Entry::Vacant(vacant) => vacant.insert((bucket.into(), Window::new(window_ms))).into_mut(),
        };
        if window.window_ms != window_ms {
            // The limit's window changed (a reload): start over.
            *window = Window::new(window_ms);
        }
        window.roll(now_ms);
        window
    }

    /// Sweeps spent windows once the inserts since the last sweep reach what
    /// that sweep kept (amortised O(1) per insert); at capacity, forgets an
    /// arbitrary bucket — under a flood of identifiers some counts are lost
    /// rather than memory.
    fn make_room(&mut self, now_ms: i64, table: &Table) {
        self.inserts += 1;
        if self.inserts >= self.kept.max(64) {
            self.windows.retain(|(_, w)| !w.is_spent(now_ms));
            self.inserts = 0;
            self.kept = self.windows.len();
        }
        if self.windows.len() >= table.shard_capacity {
            let any = self.windows.iter().next();
            if let Some((hash, at)) = any.map(|(bucket, _)| (table.hasher.hash_one(&**bucket), bucket.as_ptr())) {
                if let Ok(entry) = self.windows.find_entry(hash, |(kept, _)| kept.as_ptr() == at) {
                    entry.remove();
                }
            }
        }
    }
}

fn remaining(limit: u64, used: f64) -> u64 {
    (limit as f64 - used.ceil()).max(0.0) as u64
}

fn decide(window: &Window, request: &LimitRequest<'_>, now_ms: i64) -> Decision {
    let used = window.count(now_ms);
    Decision {
        allowed: used + request.cost as f64 <= request.limit as f64,
        limit: request.limit,
        remaining: remaining(request.limit, used),
        reset_ms: window.reset_ms(),
    }
}

fn count(window: &mut Window, request: &LimitRequest<'_>, now_ms: i64) -> Decision {
    window.add(request.cost);
    Decision {
        allowed: true,
        limit: request.limit,
        remaining: remaining(request.limit, window.count(now_ms)),
        reset_ms: window.reset_ms(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(bucket: &str) -> LimitRequest<'_> {
        LimitRequest {
            bucket,
            limit: 10,
            window_ms: 1000,
            cost: 1,
        }
    }

    #[test]
    fn spent_windows_are_reclaimed_and_capacity_holds() {
        let table = Table::new(DEFAULT_CAPACITY, false);
        for i in 0..100_000 {
            table.check_one(&request(&format!("a{i}")), true, 0);
        }
        assert_eq!(table.len(), 100_000);
        // Two windows later the first identifiers can weigh on nothing.
        for i in 0..100_000 {
            table.check_one(&request(&format!("b{i}")), true, 5_000);
        }
        assert!(table.len() < 150_000, "spent windows were kept: {}", table.len());

        let small = Table::new(64 * 100, false);
        for i in 0..50_000 {
            small.check_one(&request(&format!("c{i}")), true, 0);
        }
        assert!(small.len() <= 64 * 100, "{}", small.len());
    }

    #[test]
    fn shared_tables_hand_over_counts_and_merge_totals() {
        let table = Table::new(DEFAULT_CAPACITY, true);
        for _ in 0..3 {
            table.check_one(&request("x"), true, 100);
        }
        let pending = table.take_pending(100);
        assert_eq!(pending.len(), 1);
        assert_eq!((pending[0].count, pending[0].index), (3, 0));
        let again = table.take_pending(150);
        assert_eq!(
            (again.len(), again[0].count),
            (1, 0),
            "recently used: totals are read again, nothing counted twice"
        );
        assert!(
            table.take_pending(5_000).is_empty(),
            "idle for a second: no longer read"
        );
        // Another replica counted 5 more in this window and 4 in the one before.
        table.merge(&pending[0], 8, 4);
        let d = table.check_one(
            &LimitRequest {
                limit: 20,
                ..request("x")
            },
            false,
            100,
        );
        assert_eq!(d.remaining, 20 - 12, "8 + 4 × 90% of the previous window, rounded up");
        // A failed push is retried with what was counted since.
        let roomy = LimitRequest {
            limit: 100,
            ..request("x")
        };
        table.check_one(&roomy, true, 200);
        let again = table.take_pending(200);
        assert_eq!(again[0].count, 1);
        table.requeue(again.into_iter().next().unwrap());
        table.check_one(&roomy, true, 300);
        assert_eq!(table.take_pending(300)[0].count, 2);
    }
}
