//! Unkey's JSON shapes of keys, identities, permissions, roles, credits
//! and limits, and of a page of a listing.

use serde_json::{json, Value};

use super::Found;
use crate::admin::envelope::Reply;
use crate::admin::fields::{Fields, Text};
use crate::clock::now_ms;
use crate::keys::catalogue::{Page, Permission, Role};
use crate::keys::model::{CreditPlan, Identity, KeyRecord, RateLimit, Refill};
use crate::keys::Keys;

/// The `limit`, `cursor` and `search` of a catalogue listing.
pub(in crate::admin) struct Listing {
    limit: usize,
    cursor: Option<String>,
    search: Option<String>,
}

impl Listing {
    /// Reads the three fields (limit 1..100, default 100).
    pub fn read(f: &mut Fields) -> Self {
        Self {
            limit: f.int("limit", 1, 100, false).unwrap_or(100) as usize,
            cursor: f.text("cursor", Text::len(1, 1024), false),
            search: f.text("search", Text::len(1, 256), false),
        }
    }

    /// What to ask the store for: one more than the page, to know whether there are more.
    pub fn page(&self) -> Page<'_> {
        Page {
            cursor: self.cursor.as_deref(),
            limit: self.limit + 1,
            search: self.search.as_deref(),
        }
    }

    /// The answer for what the store returned.
    pub fn reply(&self, items: Vec<(String, Value)>) -> Reply {
        page_of(items, self.limit)
    }
}

/// A page of `(id, item)` (one more than `limit` when there are more):
/// `data` and `pagination: {hasMore, cursor?}`, the cursor being the last id.
pub(in crate::admin) fn page_of(mut items: Vec<(String, Value)>, limit: usize) -> Reply {
    let has_more = items.len() > limit;
    items.truncate(limit);
    let next = has_more.then(|| items.last().map(|(last, _)| last.clone())).flatten();
    Reply::page(items.into_iter().map(|(_, v)| v).collect(), next)
}

/// Unkey's `Permission`.
pub(in crate::admin) fn permission_json(permission: &Permission) -> Value {
    let mut out = json!({"id": permission.id, "name": permission.name, "slug": permission.slug});
    if let Some(description) = &permission.description {
        out["description"] = json!(description);
    }
    out
}

/// Unkey's `Role`, with its permissions when it has some.
pub(in crate::admin) fn role_json(role: &Role) -> Value {
    let mut out = json!({"id": role.id, "name": role.name});
    if let Some(description) = &role.description {
        out["description"] = json!(description);
    }
    if !role.permissions.is_empty() {
        out["permissions"] = role.permissions.iter().map(permission_json).collect();
    }
    out
}

pub(in crate::admin) fn refill_json(refill: &Refill) -> Value {
    let mut out = json!({"interval": refill.interval.as_str(), "amount": refill.amount});
    if let Some(day) = refill.refill_day {
        out["refillDay"] = json!(day);
    }
    out
}

pub(in crate::admin) fn credits_json(plan: Option<&CreditPlan>, remaining: Option<i64>) -> Value {
    let mut out = json!({"remaining": remaining});
    if let Some(refill) = plan.and_then(|p| p.refill.as_ref()) {
        out["refill"] = refill_json(refill);
    }
    out
}

pub(in crate::admin) fn limits_json(limits: &[RateLimit]) -> Value {
    limits
        .iter()
        .map(|l| json!({"id": l.id, "name": l.name, "limit": l.limit, "duration": l.duration, "autoApply": l.auto_apply}))
        .collect()
}

pub(in crate::admin) fn identity_json(identity: &Identity) -> Value {
    let mut out = json!({"id": identity.id(), "externalId": identity.external_id, "meta": identity.meta});
    if !identity.ratelimits.is_empty() {
        out["ratelimits"] = limits_json(&identity.ratelimits);
    }
    out
}

/// Unkey's `KeyResponseData`; empty optional fields are omitted.
pub(in crate::admin) fn key_json(record: &KeyRecord, remaining: Option<i64>) -> Value {
    let mut out = json!({
        "keyId": record.id,
        "start": record.start,
        "enabled": record.enabled,
        "createdAt": record.created_at,
    });
    if let Some(name) = &record.name {
        out["name"] = json!(name);
    }
    if !record.meta.is_empty() {
        out["meta"] = Value::Object(record.meta.clone());
    }
    if record.updated_at > 0 {
        out["updatedAt"] = json!(record.updated_at);
    }
    if let Some(expires) = record.expires {
        out["expires"] = json!(expires);
    }
    if !record.permissions.is_empty() {
        out["permissions"] = json!(record.permissions);
    }
    if !record.roles.is_empty() {
        out["roles"] = json!(record.roles);
    }
    if record.credits.is_some() {
        out["credits"] = credits_json(record.credits.as_ref(), remaining);
    }
    if let Some(identity) = &record.identity {
        out["identity"] = identity_json(identity);
    }
    if !record.ratelimits.is_empty() {
        out["ratelimits"] = limits_json(&record.ratelimits);
    }
    out
}

pub(in crate::admin) fn found_json(keys: &Keys, found: &Found) -> Value {
    match found {
        Found::Static(key) => key_json(&key.record, key.account().map(|a| a.available(now_ms()))),
        Found::Stored(stored) => key_json(&stored.record, keys.service.live_balance(stored)),
    }
}
