//! The key management API on the admin listener (SPEC §7, §9.6, §9.24,
//! §9.25), wire-compatible with Unkey's v2 API: `apis.*` and `keys.*`
//! operations, `POST` with a JSON body, answers `{meta: {requestId}, data}`,
//! errors in the SPEC §5 shape with `err:unkey:*` codes and field-level
//! validation details. Every change invalidates this process's caches, so
//! it takes effect on the next request. The CLI runs the same operations
//! in-process against the embedded store ([`run`]).

use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde_json::{json, Map, Value};

use super::model::{generate_key, new_id, normalized, now_ms, CreditPlan, Identity, KeyRecord, Keyspace, RateLimit, Refill, RefillInterval, StoredKey};
use super::permissions::PermissionQuery;
use super::store::StoreError;
use super::validate::{external_id_char, permission_char, Fields, Patch, Text};
use super::verify::{ActiveKey, LimitRef, Verdict, VerifyRequest};
use super::{CreditAdjustment, CreditChange, Keys};
use crate::admin::{require_root_key, AdminError};
use crate::reload::Reloader;

/// Request bodies larger than this are refused.
const MAX_BODY: usize = 1 << 20;
/// Unkey's upper bound for `expires`/`expiration` (2100-01-01).
const MAX_TIMESTAMP: i64 = 4_102_444_800_000;

/// The operations, one per `POST /v2/<name>` route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    CreateApi,
    GetApi,
    ListKeys,
    DeleteApi,
    CreateKey,
    GetKey,
    UpdateKey,
    DeleteKey,
    UpdateCredits,
    RerollKey,
    VerifyKey,
    /// Not about keys, but the same RPC shape and root key.
    RatelimitLimit,
}

impl Op {
    /// The route below `/v2/`.
    pub fn name(self) -> &'static str {
        match self {
            Self::CreateApi => "apis.createApi",
            Self::GetApi => "apis.getApi",
            Self::ListKeys => "apis.listKeys",
            Self::DeleteApi => "apis.deleteApi",
            Self::CreateKey => "keys.createKey",
            Self::GetKey => "keys.getKey",
            Self::UpdateKey => "keys.updateKey",
            Self::DeleteKey => "keys.deleteKey",
            Self::UpdateCredits => "keys.updateCredits",
            Self::RerollKey => "keys.rerollKey",
            Self::VerifyKey => "keys.verifyKey",
            Self::RatelimitLimit => "ratelimit.limit",
        }
    }
}

/// A successful answer: `data`, and `pagination` for lists.
#[derive(Debug)]
pub struct Reply {
    pub data: Value,
    pub pagination: Option<Value>,
}

impl Reply {
    pub fn data(data: Value) -> Self {
        Self { data, pagination: None }
    }
}

/// Serves one admin API call: root key, body, operation, response.
pub async fn serve(reloader: &Reloader, request: Request<Incoming>, op: Op) -> Response<Full<Bytes>> {
    let request_id = crate::telemetry::new_request_id();
    if let Err(error) = require_root_key(reloader, request.headers()) {
        return error.into_response(&request_id);
    }
    let body = match Limited::new(request.into_body(), MAX_BODY).collect().await {
        Ok(body) => body.to_bytes(),
        Err(e) => return AdminError::invalid_input(format!("cannot read the request body: {e}")).into_response(&request_id),
    };
    let keys = reloader.snapshot().load().keys.clone();
    match run(op, &body, &keys).await {
        Ok(reply) => {
            let mut out = json!({"meta": {"requestId": request_id}, "data": reply.data});
            if let Some(pagination) = reply.pagination {
                out["pagination"] = pagination;
            }
            crate::admin::json(StatusCode::OK, out)
        }
        Err(error) => error.into_response(&request_id),
    }
}

/// Runs an operation on `keys`. Store writes (an fsync each) run off the async workers.
pub async fn run(op: Op, body: &[u8], keys: &Keys) -> Result<Reply, AdminError> {
    let handler: fn(&[u8], &Keys) -> Result<Reply, AdminError> = match op {
        Op::VerifyKey => return verify_key(body, keys).await,
        Op::RatelimitLimit => return crate::ratelimit::admin::limit(body, keys.service.limiter(), now_ms()).await,
        Op::CreateApi => create_api,
        Op::GetApi => get_api,
        Op::ListKeys => list_keys,
        Op::DeleteApi => delete_api,
        Op::CreateKey => create_key,
        Op::GetKey => get_key,
        Op::UpdateKey => update_key,
        Op::DeleteKey => delete_key,
        Op::UpdateCredits => update_credits,
        Op::RerollKey => reroll_key,
    };
    let keys = keys.clone();
    let body = body.to_vec();
    tokio::task::spawn_blocking(move || handler(&body, &keys))
        .await
        .map_err(|e| internal(StoreError::Task(e.to_string())))?
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

fn internal(error: StoreError) -> AdminError {
    tracing::error!("admin API: {error}");
    AdminError::new(StatusCode::INTERNAL_SERVER_ERROR, "err:unkey:application:unexpected_error", error.to_string())
}

fn key_not_found(id: &str) -> AdminError {
    AdminError::new(StatusCode::NOT_FOUND, "err:unkey:data:key_not_found", format!("The key {id:?} does not exist."))
}

fn api_not_found(id: &str) -> AdminError {
    AdminError::new(StatusCode::NOT_FOUND, "err:unkey:data:api_not_found", format!("The API {id:?} does not exist."))
}

fn protected(what: &str) -> AdminError {
    AdminError::new(
        StatusCode::PRECONDITION_FAILED,
        "err:unkey:application:protected_resource",
        format!("{what} is defined in the config file and is read-only here; change it there."),
    )
}

/// A required field that validation already reported missing.
fn required<T>(value: Option<T>, name: &str) -> Result<T, AdminError> {
    value.ok_or_else(|| AdminError::invalid_input(format!("body.{name} is required")))
}

fn store_error(error: StoreError, not_found: impl FnOnce() -> AdminError) -> AdminError {
    match error {
        StoreError::NotFound => not_found(),
        StoreError::Conflict(what) => AdminError::new(StatusCode::CONFLICT, "err:unkey:data:conflict", format!("{what} already exists")),
        other => internal(other),
    }
}

// ---------------------------------------------------------------------------
// Lookups and response shapes
// ---------------------------------------------------------------------------

/// A key found by id: from the config (read-only) or the store.
enum Found {
    Static(Arc<ActiveKey>),
    Stored(Box<StoredKey>),
}

fn find_key(keys: &Keys, id: &str) -> Result<Found, AdminError> {
    if let Some(key) = keys.statics.by_id(id) {
        return Ok(Found::Static(key.clone()));
    }
    match keys.service.store().key_by_id(id).map_err(internal)? {
        Some(stored) => Ok(Found::Stored(Box::new(stored))),
        None => Err(key_not_found(id)),
    }
}

/// A store key, or 412 for a config key.
fn find_stored(keys: &Keys, id: &str) -> Result<StoredKey, AdminError> {
    match find_key(keys, id)? {
        Found::Stored(stored) => Ok(*stored),
        Found::Static(_) => Err(protected(&format!("The key {id:?}"))),
    }
}

fn find_keyspace(keys: &Keys, id: &str) -> Result<(Keyspace, bool), AdminError> {
    if let Some(keyspace) = keys.statics.keyspace(id) {
        return Ok((keyspace.clone(), true));
    }
    match keys.service.store().keyspace(id).map_err(internal)? {
        Some(keyspace) => Ok((keyspace, false)),
        None => Err(api_not_found(id)),
    }
}

fn refill_json(refill: &Refill) -> Value {
    let mut out = json!({"interval": refill.interval.as_str(), "amount": refill.amount});
    if let Some(day) = refill.refill_day {
        out["refillDay"] = json!(day);
    }
    out
}

fn credits_json(plan: Option<&CreditPlan>, remaining: Option<i64>) -> Value {
    let mut out = json!({"remaining": remaining});
    if let Some(refill) = plan.and_then(|p| p.refill.as_ref()) {
        out["refill"] = refill_json(refill);
    }
    out
}

fn limits_json(limits: &[RateLimit]) -> Value {
    limits
        .iter()
        .map(|l| json!({"id": l.id, "name": l.name, "limit": l.limit, "duration": l.duration, "autoApply": l.auto_apply}))
        .collect()
}

fn identity_json(identity: &Identity) -> Value {
    let mut out = json!({"id": identity.id(), "externalId": identity.external_id, "meta": identity.meta});
    if !identity.ratelimits.is_empty() {
        out["ratelimits"] = limits_json(&identity.ratelimits);
    }
    out
}

/// Unkey's `KeyResponseData`; empty optional fields are omitted.
fn key_json(record: &KeyRecord, remaining: Option<i64>) -> Value {
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

fn found_json(keys: &Keys, found: &Found) -> Value {
    match found {
        Found::Static(key) => key_json(&key.record, key.account().map(|a| a.available(now_ms()))),
        Found::Stored(stored) => key_json(&stored.record, keys.service.live_balance(stored)),
    }
}

// ---------------------------------------------------------------------------
// Shared field readers
// ---------------------------------------------------------------------------

fn key_id_field(f: &mut Fields) -> Option<String> {
    f.text("keyId", Text::id(3), true)
}

fn api_id_field(f: &mut Fields) -> Option<String> {
    f.text("apiId", Text::id(3), true)
}

const EXTERNAL_ID: Text = Text {
    min: 1,
    max: 255,
    charset: Some((external_id_char, "use letters, digits and _ . -")),
};
const PERMISSION: Text = Text {
    min: 1,
    max: 128,
    charset: Some((permission_char, "use letters, digits and _ : - . *")),
};

/// `credits: {remaining, refill}` as written in createKey/updateKey.
struct CreditsInput {
    remaining: Patch<i64>,
    refill: Patch<Refill>,
}

fn read_refill(f: &mut Fields) -> Patch<Refill> {
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

fn read_credits(f: &mut Fields) -> Patch<CreditsInput> {
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

fn read_ratelimits(f: &mut Fields) -> Patch<Vec<RateLimit>> {
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
        if let Some(name) = name.as_ref().filter(|n| limits.iter().any(|l: &RateLimit| &l.name == *n)) {
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

fn set_or<T>(patch: Patch<T>, default: T) -> T {
    match patch {
        Patch::Set(value) => value,
        Patch::Keep | Patch::Clear => default,
    }
}

// ---------------------------------------------------------------------------
// apis.*
// ---------------------------------------------------------------------------

fn create_api(body: &[u8], keys: &Keys) -> Result<Reply, AdminError> {
    let mut f = Fields::parse(body)?;
    let name = f.text("name", Text::len(3, 256), true);
    f.finish()?;
    let keyspace = Keyspace {
        id: new_id("api"),
        name: required(name, "name")?,
        created_at: now_ms(),
    };
    keys.service
        .store()
        .create_keyspace(&keyspace)
        .map_err(|e| store_error(e, || api_not_found(&keyspace.id)))?;
    Ok(Reply::data(json!({"apiId": keyspace.id})))
}

fn get_api(body: &[u8], keys: &Keys) -> Result<Reply, AdminError> {
    let mut f = Fields::parse(body)?;
    let id = api_id_field(&mut f);
    f.finish()?;
    let (keyspace, _) = find_keyspace(keys, &required(id, "apiId")?)?;
    Ok(Reply::data(json!({"id": keyspace.id, "name": keyspace.name})))
}

fn delete_api(body: &[u8], keys: &Keys) -> Result<Reply, AdminError> {
    let mut f = Fields::parse(body)?;
    let id = api_id_field(&mut f);
    f.finish()?;
    let id = required(id, "apiId")?;
    if keys.statics.keyspace(&id).is_some() {
        return Err(protected(&format!("The API {id:?}")));
    }
    keys.service.delete_keyspace(&id).map_err(|e| store_error(e, || api_not_found(&id)))?;
    Ok(Reply::data(json!({})))
}

fn list_keys(body: &[u8], keys: &Keys) -> Result<Reply, AdminError> {
    let mut f = Fields::parse(body)?;
    let id = f.text("apiId", Text::len(1, 255), true);
    let limit = f.int("limit", 1, 100, false).unwrap_or(100) as usize;
    let cursor = f.text("cursor", Text::len(1, 1024), false);
    let external_id = f.text("externalId", Text::len(1, 255), false);
    // Plaintext is never stored: `decrypt` has nothing to return.
    f.boolean("decrypt");
    f.boolean("revalidateKeysCache");
    f.finish()?;
    let id = required(id, "apiId")?;
    find_keyspace(keys, &id)?;
    let after = cursor.as_deref().unwrap_or("");
    let wanted = |record: &KeyRecord| {
        record.id.as_str() > after
            && external_id
                .as_deref()
                .map_or(true, |e| record.identity.as_ref().is_some_and(|i| i.external_id == e))
    };
    let mut page: Vec<(String, Value)> = keys
        .statics
        .keys_in(&id)
        .into_iter()
        .filter(|k| wanted(&k.record))
        .map(|k| (k.record.id.clone(), found_json(keys, &Found::Static(k.clone()))))
        .collect();
    let stored = keys
        .service
        .store()
        .list_keys(&id, cursor.as_deref(), limit + 1, external_id.as_deref())
        .map_err(internal)?;
    page.extend(stored.into_iter().map(|s| (s.record.id.clone(), found_json(keys, &Found::Stored(Box::new(s))))));
    page.sort_by(|a, b| a.0.cmp(&b.0));
    let has_more = page.len() > limit;
    page.truncate(limit);
    let mut pagination = json!({"hasMore": has_more});
    if has_more {
        if let Some((last, _)) = page.last() {
            pagination["cursor"] = json!(last);
        }
    }
    Ok(Reply {
        data: Value::Array(page.into_iter().map(|(_, v)| v).collect()),
        pagination: Some(pagination),
    })
}

// ---------------------------------------------------------------------------
// keys.*
// ---------------------------------------------------------------------------

fn create_key(body: &[u8], keys: &Keys) -> Result<Reply, AdminError> {
    let mut f = Fields::parse(body)?;
    let api_id = api_id_field(&mut f);
    let prefix = f.text("prefix", Text { max: 16, ..Text::id(1) }, false);
    let name = f.text("name", Text::len(1, 255), false);
    let byte_length = f.int("byteLength", 16, 255, false).unwrap_or(16) as usize;
    let external_id = f.text("externalId", EXTERNAL_ID, false);
    let meta = set_or(f.object_patch("meta", 100), Map::new());
    let roles = set_or(f.text_list("roles", 100, Text::len(1, 128)), Vec::new());
    let permissions = set_or(f.text_list("permissions", 1000, PERMISSION), Vec::new());
    let expires = f.int("expires", 0, MAX_TIMESTAMP, false);
    let credits = read_credits(&mut f);
    if matches!(credits, Patch::Clear) {
        f.reject("credits", "must be an object (omit it for unlimited usage)");
    }
    let ratelimits = set_or(read_ratelimits(&mut f), Vec::new());
    let enabled = f.boolean("enabled").unwrap_or(true);
    if f.boolean("recoverable") == Some(true) {
        f.reject("recoverable", "keygate never stores plaintext keys; keys cannot be recoverable");
    }
    f.finish()?;
    let api_id = required(api_id, "apiId")?;
    find_keyspace(keys, &api_id)?;

    let now = now_ms();
    let (plan, remaining) = match credits {
        Patch::Set(CreditsInput { remaining: Patch::Set(remaining), refill }) => {
            let refill = match refill {
                Patch::Set(refill) => Some(refill),
                Patch::Keep | Patch::Clear => None,
            };
            (Some(CreditPlan { refill }), Some(remaining))
        }
        _ => (None, None),
    };
    let generated = generate_key(prefix.as_deref(), byte_length);
    let record = KeyRecord {
        id: new_id("key"),
        keyspace_id: api_id,
        start: generated.start,
        name,
        meta,
        identity: external_id.map(Identity::new),
        roles: normalized(roles),
        permissions: normalized(permissions),
        expires,
        enabled,
        credits: plan,
        ratelimits,
        created_at: now,
        updated_at: 0,
    };
    let balance = remaining.map(|r| super::credits::CreditAccount::opening(r, plan.and_then(|p| p.refill).as_ref(), now));
    let stored = StoredKey {
        hash: generated.hash,
        balance,
        record,
    };
    keys.service
        .insert_key(&stored)
        .map_err(|e| store_error(e, || key_not_found(&stored.record.id)))?;
    Ok(Reply::data(json!({"keyId": stored.record.id, "key": generated.plaintext})))
}

fn get_key(body: &[u8], keys: &Keys) -> Result<Reply, AdminError> {
    let mut f = Fields::parse(body)?;
    let id = key_id_field(&mut f);
    f.boolean("decrypt");
    f.finish()?;
    let found = find_key(keys, &required(id, "keyId")?)?;
    Ok(Reply::data(found_json(keys, &found)))
}

fn update_key(body: &[u8], keys: &Keys) -> Result<Reply, AdminError> {
    let mut f = Fields::parse(body)?;
    let id = key_id_field(&mut f);
    let name = f.text_patch("name", Text::len(1, 255));
    let external_id = f.text_patch("externalId", EXTERNAL_ID);
    let meta = f.object_patch("meta", 100);
    let expires = f.int_patch("expires", 0, MAX_TIMESTAMP);
    let credits = read_credits(&mut f);
    let ratelimits = read_ratelimits(&mut f);
    let enabled = f.boolean("enabled");
    let roles = f.text_list("roles", 100, Text::len(1, 128));
    let permissions = f.text_list("permissions", 1000, PERMISSION);
    f.finish()?;
    let mut stored = find_stored(keys, &required(id, "keyId")?)?;
    let record = &mut stored.record;
    match name {
        Patch::Set(name) => record.name = Some(name),
        Patch::Clear => record.name = None,
        Patch::Keep => {}
    }
    match external_id {
        Patch::Set(external_id) => record.identity = Some(Identity::new(external_id)),
        Patch::Clear => record.identity = None,
        Patch::Keep => {}
    }
    match meta {
        Patch::Set(meta) => record.meta = meta,
        Patch::Clear => record.meta = Map::new(),
        Patch::Keep => {}
    }
    match expires {
        Patch::Set(expires) => record.expires = Some(expires),
        Patch::Clear => record.expires = None,
        Patch::Keep => {}
    }
    match ratelimits {
        Patch::Set(limits) => record.ratelimits = limits,
        Patch::Clear => record.ratelimits = Vec::new(),
        Patch::Keep => {}
    }
    if let Some(enabled) = enabled {
        record.enabled = enabled;
    }
    if let Patch::Set(roles) = roles {
        record.roles = normalized(roles);
    }
    if let Patch::Set(permissions) = permissions {
        record.permissions = normalized(permissions);
    }
    let change = match credits {
        Patch::Keep => CreditChange::Keep,
        Patch::Clear | Patch::Set(CreditsInput { remaining: Patch::Clear, .. }) => CreditChange::Unlimited,
        Patch::Set(CreditsInput { remaining, refill }) => {
            let current_refill = record.credits.and_then(|p| p.refill);
            let refill = match refill {
                Patch::Set(refill) => Some(refill),
                Patch::Clear => None,
                Patch::Keep => current_refill,
            };
            CreditChange::Limited {
                remaining: match remaining {
                    Patch::Set(n) => Some(n),
                    Patch::Keep | Patch::Clear => None,
                },
                refill,
            }
        }
    };
    record.credits = match change {
        CreditChange::Keep => record.credits,
        CreditChange::Unlimited => None,
        CreditChange::Limited { refill, .. } => Some(CreditPlan { refill }),
    };
    record.updated_at = now_ms();
    keys.service
        .update_key(&stored, change)
        .map_err(|e| store_error(e, || key_not_found(&stored.record.id)))?;
    Ok(Reply::data(json!({})))
}

fn delete_key(body: &[u8], keys: &Keys) -> Result<Reply, AdminError> {
    let mut f = Fields::parse(body)?;
    let id = key_id_field(&mut f);
    let permanent = f.boolean("permanent").unwrap_or(false);
    f.finish()?;
    let stored = find_stored(keys, &required(id, "keyId")?)?;
    let id = stored.record.id;
    keys.service.delete_key(&id, permanent).map_err(|e| store_error(e, || key_not_found(&id)))?;
    Ok(Reply::data(json!({})))
}

fn update_credits(body: &[u8], keys: &Keys) -> Result<Reply, AdminError> {
    let mut f = Fields::parse(body)?;
    let id = f.text("keyId", Text::len(3, 255), true);
    let operation = f.text("operation", Text::len(1, 16), true);
    let value = f.int_patch("value", 0, i64::MAX);
    match operation.as_deref() {
        Some("set") | None => {}
        Some("increment" | "decrement") => {
            if !matches!(value, Patch::Set(_)) {
                f.reject("value", "is required for increment and decrement");
            }
        }
        Some(_) => f.reject("operation", "must be set, increment or decrement"),
    }
    f.finish()?;
    let mut stored = find_stored(keys, &required(id, "keyId")?)?;
    let operation = required(operation, "operation")?;
    let unlimited = stored.record.credits.is_none();
    let remaining = match (operation.as_str(), value) {
        ("set", Patch::Set(n)) if unlimited => {
            stored.record.credits = Some(CreditPlan::default());
            stored.record.updated_at = now_ms();
            keys.service
                .update_key(&stored, CreditChange::Limited { remaining: Some(n), refill: None })
                .map_err(internal)?;
            Some(n)
        }
        ("set", Patch::Set(n)) => Some(keys.service.adjust_credits(&stored, CreditAdjustment::Set(n)).map_err(internal)?),
        ("set", _) => {
            stored.record.credits = None;
            stored.record.updated_at = now_ms();
            keys.service.update_key(&stored, CreditChange::Unlimited).map_err(internal)?;
            None
        }
        (_, _) if unlimited => {
            return Err(AdminError::invalid_input("The key has unlimited credits; set a value first."));
        }
        ("increment", Patch::Set(n)) => Some(keys.service.adjust_credits(&stored, CreditAdjustment::Increment(n)).map_err(internal)?),
        (_, Patch::Set(n)) => Some(keys.service.adjust_credits(&stored, CreditAdjustment::Decrement(n)).map_err(internal)?),
        (_, _) => return Err(AdminError::invalid_input("body.value is required for increment and decrement")),
    };
    Ok(Reply::data(credits_json(stored.record.credits.as_ref(), remaining)))
}

fn reroll_key(body: &[u8], keys: &Keys) -> Result<Reply, AdminError> {
    let mut f = Fields::parse(body)?;
    let id = key_id_field(&mut f);
    let expiration = f.int("expiration", 0, MAX_TIMESTAMP, true);
    f.finish()?;
    let mut old = find_stored(keys, &required(id, "keyId")?)?;
    let expiration = required(expiration, "expiration")?;
    let now = now_ms();
    // The prefix is what `start` has before its last `_` (base58 has no `_`).
    let prefix = old.record.start.rsplit_once('_').map(|(prefix, _)| prefix.to_string());
    let generated = generate_key(prefix.as_deref(), 16);
    let mut record = old.record.clone();
    record.id = new_id("key");
    record.start = generated.start;
    record.created_at = now;
    record.updated_at = 0;
    let balance = keys.service.live_balance(&old).map(|remaining| {
        super::credits::CreditAccount::opening(remaining, record.credits.and_then(|p| p.refill).as_ref(), now)
    });
    let new = StoredKey {
        hash: generated.hash,
        balance,
        record,
    };
    keys.service.insert_key(&new).map_err(internal)?;
    let revoke_at = now.saturating_add(expiration);
    old.record.expires = Some(old.record.expires.map_or(revoke_at, |e| e.min(revoke_at)));
    old.record.updated_at = now;
    keys.service.update_key(&old, CreditChange::Keep).map_err(internal)?;
    Ok(Reply::data(json!({"keyId": new.record.id, "key": generated.plaintext})))
}

async fn verify_key(body: &[u8], keys: &Keys) -> Result<Reply, AdminError> {
    let mut f = Fields::parse(body)?;
    let key = f.text("key", Text::len(1, 512), true);
    f.text_list("tags", 20, Text::len(1, 512));
    let query = f.text("permissions", Text::len(1, 1000), false);
    let permissions = match query.as_deref().map(PermissionQuery::parse) {
        Some(Err(e)) => {
            f.reject("permissions", &e.to_string());
            None
        }
        Some(Ok(parsed)) => parsed,
        None => None,
    };
    let cost = match f.nested("credits") {
        Patch::Set(mut c) => {
            let cost = c.int("cost", 0, 1_000_000_000_000, true);
            f.absorb(c);
            cost.unwrap_or(1)
        }
        Patch::Keep | Patch::Clear => 1,
    };
    let mut limits = Vec::new();
    if let Patch::Set(items) = f.nested_list("ratelimits", 50) {
        for mut item in items {
            let name = item.text("name", Text::len(3, 255), true);
            let cost = item.int("cost", 0, i64::MAX, false).unwrap_or(1);
            let limit = item.int("limit", 0, i64::MAX, false);
            let duration = item.int("duration", 0, i64::MAX, false);
            if let Some(name) = name {
                limits.push(LimitRef {
                    name,
                    inline: limit.zip(duration).map(|(l, d)| (l as u64, d as u64)),
                    cost: cost as u64,
                });
            }
            f.absorb(item);
        }
    }
    f.text("migrationId", Text::len(0, 256), false);
    f.finish()?;
    let key = required(key, "key")?;
    let request = VerifyRequest {
        keyspaces: None,
        cost,
        ratelimits: &limits,
        permissions: permissions.as_ref(),
    };
    let result = keys.service.verify(&keys.statics, &key, &request).await;
    if let Verdict::Unavailable(message) = &result.verdict {
        return Err(internal(StoreError::Task(message.clone())));
    }
    let valid = result.verdict == Verdict::Valid;
    let mut data = json!({"valid": valid, "code": if valid { "VALID" } else { result.verdict.unkey_code() }});
    if let Some(active) = &result.key {
        let record = &active.record;
        data["keyId"] = json!(record.id);
        data["enabled"] = json!(record.enabled);
        if let Some(name) = &record.name {
            data["name"] = json!(name);
        }
        if !record.meta.is_empty() {
            data["meta"] = Value::Object(record.meta.clone());
        }
        if let Some(expires) = record.expires {
            data["expires"] = json!(expires);
        }
        if let Some(credits) = result.credits {
            data["credits"] = json!(credits);
        }
        if !record.permissions.is_empty() {
            data["permissions"] = json!(record.permissions);
        }
        if !record.roles.is_empty() {
            data["roles"] = json!(record.roles);
        }
        if let Some(identity) = &record.identity {
            data["identity"] = identity_json(identity);
        }
    }
    if !result.limits.is_empty() {
        let now = now_ms();
        data["ratelimits"] = result
            .limits
            .iter()
            .map(|l| {
                json!({
                    "exceeded": !l.decision.allowed,
                    "id": l.id,
                    "name": l.name,
                    "limit": l.limit,
                    "duration": l.window_ms,
                    "reset": (l.decision.reset_ms - now).max(0),
                    "remaining": l.decision.remaining,
                    "autoApply": l.auto_apply,
                })
            })
            .collect();
    }
    Ok(Reply::data(data))
}
