//! The stored keys this thread verified lately, in front of the process's
//! shared cache of found keys. A read of that cache (moka) records itself
//! for the eviction policy and pins an epoch: about 600 instructions, a
//! fifth of an authenticated request's policy chain. Here a hit is one
//! slot's compare.
//!
//! An entry is served only while nothing was invalidated since it was
//! taken (the service's invalidation generation is the one it was stamped
//! with) and only until the shared entry's time to live ends, so it never
//! serves a key the shared cache would no longer give.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use super::model::KeyHash;
use super::verify::ActiveKey;

/// Keys a thread keeps (direct-mapped by the first bytes of their SHA-256).
const SLOTS: usize = 256;

/// Tells services apart: tests and `keygate check` open several in one process.
static NEXT_SERVICE: AtomicU64 = AtomicU64::new(1);

/// A service's number in the threads' hot keys.
pub(super) fn service_id() -> u64 {
    NEXT_SERVICE.fetch_add(1, Ordering::Relaxed)
}

/// Where an entry came from and how long it may serve.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) struct Stamp {
    pub service: u64,
    /// The service's invalidation generation when the key was taken.
    pub generation: u64,
}

struct Entry {
    stamp: Stamp,
    until: Instant,
    hash: KeyHash,
    key: Arc<ActiveKey>,
}

thread_local! {
    static HOT: RefCell<Vec<Option<Entry>>> = RefCell::new((0..SLOTS).map(|_| None).collect());
}

fn slot_of(hash: &KeyHash) -> usize {
    usize::from(hash[0]) % SLOTS
}

/// The key with `hash` if this thread took it under `stamp` and its time was
/// not up `at`.
pub(super) fn get(stamp: Stamp, hash: &KeyHash, at: Instant) -> Option<Arc<ActiveKey>> {
    HOT.with_borrow(|hot| match &hot[slot_of(hash)] {
        Some(entry) if entry.stamp == stamp && entry.hash == *hash && at < entry.until => Some(entry.key.clone()),
        _ => None,
    })
}

/// Keeps `key` on this thread, under `stamp`, until `until`.
pub(super) fn put(stamp: Stamp, hash: KeyHash, until: Instant, key: Arc<ActiveKey>) {
    HOT.with_borrow_mut(|hot| {
        hot[slot_of(&hash)] = Some(Entry {
            stamp,
            until,
            hash,
            key,
        })
    });
}
