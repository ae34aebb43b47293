//! The request field names a worker thread parsed lately. Clients send the
//! same few names on every request, and each cost ~260 instructions to
//! parse (`HeaderName::from_bytes` lower-cases it and matches it against
//! the standard names, allocating for any other) and to place
//! ([`forwarding::entry_role`]). A name seen before costs one hash and one
//! compare of its bytes as received.

use std::cell::RefCell;

use http::HeaderName;

use crate::proxy::forwarding::{self, EntryRole};

/// Names a thread keeps (direct-mapped by [`slot_of`]; a power of two).
const SLOTS: usize = 64;
/// Longer names are parsed each time (the usual ones are far shorter).
const MAX_KEPT: usize = 48;

struct Known {
    /// The name as received (any case).
    raw: Box<[u8]>,
    name: HeaderName,
    /// Its role with underscores refused, and allowed (a snapshot's setting).
    roles: [EntryRole; 2],
}

thread_local! {
    /// A random seed for the slots (so no client can aim names at one
    /// slot), and the slots.
    static KNOWN: (u64, RefCell<Vec<Option<Known>>>) =
        (rand::random(), RefCell::new((0..SLOTS).map(|_| None).collect()));
}

/// A name's slot: its first and last eight bytes, its length and the
/// seed, mixed by one multiply (a general hash costs more than the rest of
/// a lookup; a slot's bytes are compared in full anyway).
fn slot_of(raw: &[u8], seed: u64) -> usize {
    let eight = |bytes: &[u8]| <[u8; 8]>::try_from(bytes).map_or(0, u64::from_le_bytes);
    let (head, tail) = match raw.len() {
        0..8 => (raw.iter().fold(0u64, |word, &b| word << 8 | u64::from(b)), 0),
        len => (eight(&raw[..8]), eight(&raw[len - 8..])),
    };
    let mixed = (head ^ tail.rotate_left(29) ^ raw.len() as u64 ^ seed).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (mixed >> (64 - SLOTS.trailing_zeros())) as usize
}

/// The field name `raw`, as received, parsed; and what becomes of the
/// field on the way in. `None`: not a valid name.
pub fn parse(raw: &[u8], allow_underscores: bool) -> Option<(HeaderName, EntryRole)> {
    let role = |roles: [EntryRole; 2]| roles[usize::from(allow_underscores)];
    let parsed = || {
        let name = HeaderName::from_bytes(raw).ok()?;
        let roles = [false, true].map(|allowed| forwarding::entry_role(&name, allowed));
        Some((name, roles))
    };
    if raw.len() > MAX_KEPT {
        return parsed().map(|(name, roles)| (name, role(roles)));
    }
    KNOWN.with(|(seed, known)| {
        let slot = slot_of(raw, *seed);
        let mut known = known.borrow_mut();
        match &known[slot] {
            Some(kept) if *kept.raw == *raw => Some((kept.name.clone(), role(kept.roles))),
            _ => {
                let (name, roles) = parsed()?;
                known[slot] = Some(Known {
                    raw: raw.into(),
                    name: name.clone(),
                    roles,
                });
                Some((name, role(roles)))
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_name_parses_as_it_did_the_first_time_however_many_share_its_slot() {
        let mut names: Vec<String> = (0..SLOTS * 4).map(|i| format!("X-Field-{i}")).collect();
        names.extend(
            [
                "Host",
                "host",
                "user-agent",
                "Connection",
                "X_Under",
                "X-Unkey-Principal",
            ]
            .map(String::from),
        );
        names.push(format!("X-{}", "l".repeat(MAX_KEPT)));
        for round in 0..3 {
            for raw in &names {
                for allowed in [false, true] {
                    let expected = HeaderName::from_bytes(raw.as_bytes()).unwrap();
                    let role = forwarding::entry_role(&expected, allowed);
                    assert_eq!(
                        parse(raw.as_bytes(), allowed),
                        Some((expected, role)),
                        "{raw} (round {round}, underscores allowed: {allowed})"
                    );
                }
            }
        }
        assert_eq!(
            parse(b"X_Under", false).map(|(_, role)| role),
            Some(EntryRole::Stripped)
        );
        assert_eq!(
            parse(b"X_Under", true).map(|(_, role)| role),
            Some(EntryRole::Forwarded)
        );
        assert_eq!(
            parse(b"connection", true).map(|(_, role)| role),
            Some(EntryRole::HopByHop)
        );
        assert_eq!(parse(b"bad name", false), None);
        assert_eq!(parse(b"bad name", false), None, "an invalid name is never kept");
    }
}
