//! The request field names a worker thread parsed lately. Clients send the
//! same few names on every request, and each cost ~260 instructions to
//! parse (`HeaderName::from_bytes` lower-cases it and matches it against
//! the standard names, allocating for any other) and to place
//! ([`forwarding::entry_role`]). A name seen before costs one hash and one
//! or two compares of its bytes as received.

use std::cell::RefCell;

use http::HeaderName;

use crate::proxy::forwarding::{self, EntryRole};

/// Names a thread keeps (each in one of two slots, [`mix_of`]; a power
/// of two).
const SLOTS: usize = 256;
/// Longer names are parsed each time (the usual ones are far shorter).
const MAX_KEPT: usize = 48;

struct Known {
    /// Its [`mix_of`], compared before the bytes.
    mix: u64,
    /// The name as received (any case).
    raw: Box<[u8]>,
    name: HeaderName,
    /// Its role with underscores refused, and allowed (a snapshot's setting).
    roles: [EntryRole; 2],
}

thread_local! {
    static KNOWN: RefCell<[Option<Known>; SLOTS]> = const { RefCell::new([const { None }; SLOTS]) };
}

/// A name's mix: its first and last eight bytes and its length, mixed by
/// one multiply (a general hash costs more than the rest of a lookup; a
/// slot's bytes are compared in full anyway). Its two slots are two bit
/// ranges of it ([`slots_of`]). The mix is fixed, not seeded: a seed would
/// not stop a client from pushing names out (a few hundred names do that),
/// and with a random one (and one slot of 64), two of a client's few names
/// shared a slot in a few threads in a hundred (4.6 % for curl's three)
/// and pushed each other out on every request for the thread's life.
/// Fixed, the names clients usually send are known to sit together (a test
/// pins it).
fn mix_of(raw: &[u8]) -> u64 {
    let eight = |bytes: &[u8]| <[u8; 8]>::try_from(bytes).map_or(0, u64::from_le_bytes);
    let (head, tail) = match raw.len() {
        0..8 => (raw.iter().fold(0u64, |word, &b| word << 8 | u64::from(b)), 0),
        len => (eight(&raw[..8]), eight(&raw[len - 8..])),
    };
    (head ^ tail.rotate_left(29) ^ raw.len() as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// The two slots of a name whose mix is `mix`.
fn slots_of(mix: u64) -> [usize; 2] {
    let bits = SLOTS.trailing_zeros();
    [(mix >> (64 - bits)) as usize, (mix >> (64 - 2 * bits)) as usize % SLOTS]
}

/// The field name `raw`, as received, parsed; and what becomes of the
/// field on the way in. `None`: not a valid name.
pub fn parse(raw: &[u8], allow_underscores: bool) -> Option<(HeaderName, EntryRole)> {
    let (name, roles) = match raw.len() > MAX_KEPT {
        true => parsed(raw)?,
        false => KNOWN.with_borrow_mut(|known| kept_or_parsed(known, raw))?,
    };
    Some((name, roles[usize::from(allow_underscores)]))
}

/// `raw` parsed, and its roles without and with underscores allowed.
fn parsed(raw: &[u8]) -> Option<(HeaderName, [EntryRole; 2])> {
    let name = HeaderName::from_bytes(raw).ok()?;
    let roles = [false, true].map(|allowed| forwarding::entry_role(&name, allowed));
    Some((name, roles))
}

/// `raw` as `known` keeps it, else parsed and kept there.
#[inline]
fn kept_or_parsed(known: &mut [Option<Known>], raw: &[u8]) -> Option<(HeaderName, [EntryRole; 2])> {
    let mix = mix_of(raw);
    for slot in slots_of(mix) {
        if let Some(kept) = &known[slot] {
            if kept.mix == mix && *kept.raw == *raw {
                return Some((kept.name.clone(), kept.roles));
            }
        }
    }
    parse_and_keep(known, raw, mix)
}

/// `raw`, not kept: parsed, and put in an empty slot of its two; else in
/// the first, whose name moves to its own other slot if that one is empty.
#[cold]
fn parse_and_keep(known: &mut [Option<Known>], raw: &[u8], mix: u64) -> Option<(HeaderName, [EntryRole; 2])> {
    let (name, roles) = parsed(raw)?;
    let slots = slots_of(mix);
    let slot = slots
        .into_iter()
        .find(|&slot| known[slot].is_none())
        .unwrap_or(slots[0]);
    if let Some(kept) = &known[slot] {
        let [one, two] = slots_of(kept.mix);
        let other = if one == slot { two } else { one };
        if known[other].is_none() {
            known.swap(slot, other);
        }
    }
    known[slot] = Some(Known {
        mix,
        raw: raw.into(),
        name: name.clone(),
        roles,
    });
    Some((name, roles))
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

    /// Request field names as HTTP/1.1 clients spell them: title case
    /// (curl, browsers, Go, Python) and lower case (Node, HTTP/2 habits).
    const COMMON: [&str; 30] = [
        "Host",
        "User-Agent",
        "Accept",
        "Accept-Language",
        "Accept-Encoding",
        "Connection",
        "Cookie",
        "Referer",
        "Upgrade-Insecure-Requests",
        "Sec-Fetch-Dest",
        "Sec-Fetch-Mode",
        "Sec-Fetch-Site",
        "Sec-Fetch-User",
        "Priority",
        "Cache-Control",
        "Authorization",
        "Origin",
        "Pragma",
        "If-None-Match",
        "If-Modified-Since",
        "X-Requested-With",
        "X-Forwarded-For",
        "X-Request-Id",
        "Content-Type",
        "Sec-Ch-Ua",
        "Sec-Ch-Ua-Mobile",
        "Sec-Ch-Ua-Platform",
        "Dnt",
        "Traceparent",
        "X-Api-Key",
    ];

    #[test]
    fn the_names_clients_usually_send_all_stay_kept_together() {
        let names: Vec<String> = COMMON
            .iter()
            .flat_map(|n| [n.to_string(), n.to_ascii_lowercase()])
            .collect();
        let mut known: [Option<Known>; SLOTS] = [const { None }; SLOTS];
        for _ in 0..2 {
            for raw in &names {
                kept_or_parsed(&mut known, raw.as_bytes());
            }
        }
        for raw in &names {
            assert!(
                known.iter().flatten().any(|k| *k.raw == *raw.as_bytes()),
                "{raw} was pushed out by another usual name"
            );
        }
    }
}
