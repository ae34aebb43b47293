//! `keys.verifyKey`: the same verification as the `keyauth` policy, with
//! Unkey's answer (HTTP 200 and `valid: false` with a code for a rejected
//! key); and `keys.whoami`: the key behind a plaintext, verifying nothing.

use std::time::Instant;

use serde_json::{json, Value};

use super::shapes::{identity_json, key_json};
use crate::admin::envelope::Reply;
use crate::admin::fields::{Fields, Patch, Text};
use crate::admin::rpc::{internal, required, Answer};
use crate::clock::now_ms;
use crate::errors::ErrorCode;
use crate::keys::model::hash_key;
use crate::keys::permissions::PermissionQuery;
use crate::keys::store::StoreError;
use crate::keys::verify::{LimitRef, Verdict, VerifyRequest};
use crate::keys::Keys;

pub(in crate::admin) async fn verify_key(body: &[u8], keys: &Keys) -> Answer {
    let mut f = Fields::parse(body)?;
    let key = f.text("key", Text::len(1, 512), true);
    f.text_list("tags", 20, Text::len(1, 512));
    let keyspaces = match f.text_list("keyspaces", 100, Text::len(1, 255)) {
        Patch::Set(list) => Some(list),
        Patch::Keep | Patch::Clear => None,
    };
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
        keyspaces: keyspaces.as_deref(),
        cost,
        ratelimits: &limits,
        permissions: permissions.as_ref(),
        at: Instant::now(),
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
        let permissions = active.permissions();
        if !permissions.is_empty() {
            data["permissions"] = json!(permissions);
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

/// `keys.whoami`: the key with this plaintext (config or store), as `keys.getKey` shows it.
pub(in crate::admin) async fn whoami(body: &[u8], keys: &Keys) -> Answer {
    let mut f = Fields::parse(body)?;
    let key = f.text("key", Text::len(1, 512), true);
    f.finish()?;
    let key = required(key, "key")?;
    let found = keys
        .service
        .lookup(&keys.statics, &hash_key(&key), Instant::now())
        .await
        .map_err(internal)?;
    let Some(active) = found else {
        return Err(ErrorCode::KeyNotFound.into());
    };
    let remaining = active.account().map(|account| account.available(now_ms()));
    Ok(Reply::data(key_json(&active.record, remaining)))
}
