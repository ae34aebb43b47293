//! Request fields shared by several key operations: ids, credits, refills,
//! rate limits.

use crate::admin::fields::{external_id_char, permission_char, Fields, Patch, Text};
use crate::keys::model::{new_id, RateLimit, Refill, RefillInterval};

/// Unkey's upper bound for `expires`/`expiration` (2100-01-01).
pub(in crate::admin) const MAX_TIMESTAMP: i64 = 4_102_444_800_000;

// ---------------------------------------------------------------------------
// Shared field readers
// ---------------------------------------------------------------------------

pub(in crate::admin) fn key_id_field(f: &mut Fields) -> Option<String> {
    f.text("keyId", Text::id(3), true)
}

pub(in crate::admin) fn api_id_field(f: &mut Fields) -> Option<String> {
    f.text("apiId", Text::id(3), true)
}

pub(in crate::admin) const EXTERNAL_ID: Text = Text {
    min: 1,
    max: 255,
    charset: Some((external_id_char, "use letters, digits and _ . -")),
};

pub(in crate::admin) const PERMISSION: Text = Text {
    min: 1,
    max: 128,
    charset: Some((permission_char, "use letters, digits and _ : - . *")),
};

/// `credits: {remaining, refill}` as written in createKey/updateKey.
pub(in crate::admin) struct CreditsInput {
    pub remaining: Patch<i64>,
    pub refill: Patch<Refill>,
}

pub(in crate::admin) fn read_refill(f: &mut Fields) -> Patch<Refill> {
    let mut r = match f.nested("refill") {
        Patch::Set(r) => r,
        Patch::Clear => return Patch::Clear,
        Patch::Keep => return Patch::Keep,
    };
    let interval = match r.text("interval", Text::len(1, 16), true).as_deref() {
        Some("daily") => Some(RefillInterval::Daily),
        Some("monthly") => Some(RefillInterval::Monthly),
        Some(_) => {
            r.reject("interval", "must be daily or monthly");
            None
        }
        None => None,
    };
    let amount = r.int("amount", 1, i64::MAX, true);
    let refill_day = r.int("refillDay", 1, 31, false);
    if interval == Some(RefillInterval::Daily) && refill_day.is_some() {
        r.reject("refillDay", "is only for monthly refills");
    }
    f.absorb(r);
    match (interval, amount) {
        (Some(interval), Some(amount)) => Patch::Set(Refill {
            interval,
            amount,
            refill_day: refill_day.and_then(|d| u8::try_from(d).ok()),
        }),
        _ => Patch::Keep,
    }
}

pub(in crate::admin) fn read_credits(f: &mut Fields) -> Patch<CreditsInput> {
    let mut c = match f.nested("credits") {
        Patch::Set(c) => c,
        Patch::Clear => return Patch::Clear,
        Patch::Keep => return Patch::Keep,
    };
    let remaining = c.int_patch("remaining", 0, i64::MAX);
    let refill = read_refill(&mut c);
    if remaining == Patch::Clear && matches!(refill, Patch::Set(_)) {
        c.reject("refill", "unlimited credits (remaining: null) cannot refill");
    }
    f.absorb(c);
    Patch::Set(CreditsInput { remaining, refill })
}

pub(in crate::admin) fn read_ratelimits(f: &mut Fields) -> Patch<Vec<RateLimit>> {
    let items = match f.nested_list("ratelimits", 50) {
        Patch::Set(items) => items,
        Patch::Clear => return Patch::Clear,
        Patch::Keep => return Patch::Keep,
    };
    let mut limits = Vec::with_capacity(items.len());
    let mut complete = true;
    for mut item in items {
        let name = item.text("name", Text::len(3, 128), true);
        let limit = item.int("limit", 1, i64::MAX, true);
        let duration = item.int("duration", 1000, i64::MAX, true);
        let auto_apply = item.boolean("autoApply").unwrap_or(false);
        if let Some(name) = name
            .as_ref()
            .filter(|n| limits.iter().any(|l: &RateLimit| &l.name == *n))
        {
            item.reject("name", &format!("duplicate rate limit {name:?}"));
        }
        match (name, limit, duration) {
            (Some(name), Some(limit), Some(duration)) => limits.push(RateLimit {
                id: new_id("rl"),
                name,
                limit: limit as u64,
                duration: duration as u64,
                auto_apply,
            }),
            _ => complete = false,
        }
        f.absorb(item);
    }
    if complete {
        Patch::Set(limits)
    } else {
        Patch::Keep
    }
}

pub(in crate::admin) fn set_or<T>(patch: Patch<T>, default: T) -> T {
    match patch {
        Patch::Set(value) => value,
        Patch::Keep | Patch::Clear => default,
    }
}
