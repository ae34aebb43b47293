//! The SHA-256 of keys this thread verified lately. Every store and cache
//! knows a key by its SHA-256, so verifying one hashed it on every request
//! (about a quarter of an authenticated request's user-space cost). Each
//! thread remembers the hashes of its last few hundred keys, found under a
//! 128-bit SipHash-2-4 of the key with a secret made at start-up: a hash is
//! only ever given back for the key it was computed from (anything else
//! would need a SipHash collision under an unknown secret), and a miss
//! costs nothing but the SipHash. It memoises a pure function, so nothing
//! in it goes stale when keys change.

use std::cell::RefCell;
use std::hash::Hasher as _;
use std::sync::LazyLock;

use rand::Rng;
use siphasher::sip128::{Hasher128, SipHasher24};

use super::model::{hash_key, KeyHash};

/// Keys a thread remembers (direct-mapped: a key's slot is fixed by its tag).
const SLOTS: usize = 256;

/// The process's SipHash secret.
static SECRET: LazyLock<(u64, u64)> = LazyLock::new(|| {
    let mut rng = rand::thread_rng();
    (rng.gen(), rng.gen())
});

thread_local! {
    static REMEMBERED: RefCell<Vec<Option<(u128, KeyHash)>>> = RefCell::new(vec![None; SLOTS]);
}

/// `hash_key(plaintext)`, remembered per thread.
pub fn hash_key_remembered(plaintext: &str) -> KeyHash {
    let (k0, k1) = *SECRET;
    let mut tagger = SipHasher24::new_with_keys(k0, k1);
    tagger.write(plaintext.as_bytes());
    let tag = tagger.finish128().as_u128();
    let slot = (tag % SLOTS as u128) as usize;
    REMEMBERED.with_borrow_mut(|remembered| match remembered[slot] {
        Some((kept, hash)) if kept == tag => hash,
        _ => {
            let hash = hash_key(plaintext);
            remembered[slot] = Some((tag, hash));
            hash
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_remembered_hash_is_the_keys_own_however_many_keys_share_slots() {
        // Many more keys than slots: every slot is taken over many times.
        let keys: Vec<String> = (0..SLOTS * 8).map(|i| format!("sk_{i}")).collect();
        for _ in 0..2 {
            for key in &keys {
                assert_eq!(hash_key_remembered(key), hash_key(key), "{key}");
            }
        }
        assert_eq!(hash_key_remembered(""), hash_key(""));
    }
}
