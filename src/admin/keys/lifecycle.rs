//! `keys.*` that create and change keys: create, get, update, delete,
//! credits and reroll. Identities, permissions and roles a key names are
//! created in the catalogue when they do not exist yet.

use serde_json::{json, Map, Value};

use super::input::{
    api_id_field, key_id_field, read_credits, read_ratelimits, set_or, CreditsInput, EXTERNAL_ID, MAX_TIMESTAMP,
    PERMISSION,
};
use super::shapes::{credits_json, found_json};
use super::{find_key, find_keyspace, find_stored, key_not_found};
use crate::admin::envelope::{invalid_input, Reply};
use crate::admin::fields::{Fields, Patch, Text};
use crate::admin::rpc::{internal, required, Answer};
use crate::clock::now_ms;
use crate::errors::GatewayError;
use crate::keys::model::{
    generate_key, new_id, normalized, CreditPlan, Identity, KeyHash, KeyRecord, RateLimit, StoredKey,
};
use crate::keys::store::StoreError;
use crate::keys::{CreditAdjustment, CreditChange, Keys};

/// Role names: Unkey's limits, any characters.
pub(in crate::admin) const ROLE: Text = Text::len(1, 128);

fn key_error(error: StoreError, id: &str) -> GatewayError {
    match error {
        StoreError::NotFound => key_not_found(id),
        other => internal(other),
    }
}

/// What a new key is made of (createKey and each key of migrateKeys).
pub(super) struct NewKey {
    name: Option<String>,
    external_id: Option<String>,
    meta: Map<String, Value>,
    roles: Vec<String>,
    permissions: Vec<String>,
    expires: Option<i64>,
    credits: Patch<CreditsInput>,
    ratelimits: Vec<RateLimit>,
    enabled: bool,
}

/// Reads the settings of a new key from `f`.
pub(super) fn read_new_key(f: &mut Fields) -> NewKey {
    let name = f.text("name", Text::len(1, 255), false);
    let external_id = f.text("externalId", EXTERNAL_ID, false);
    let meta = set_or(f.object_patch("meta", 100), Map::new());
    let roles = set_or(f.text_list("roles", 100, ROLE), Vec::new());
    let permissions = set_or(f.text_list("permissions", 1000, PERMISSION), Vec::new());
    let expires = f.int("expires", 0, MAX_TIMESTAMP, false);
    let credits = read_credits(f);
    if matches!(credits, Patch::Clear) {
        f.reject("credits", "must be an object (omit it for unlimited usage)");
    }
    let ratelimits = set_or(read_ratelimits(f), Vec::new());
    let enabled = f.boolean("enabled").unwrap_or(true);
    NewKey {
        name,
        external_id,
        meta,
        roles,
        permissions,
        expires,
        credits,
        ratelimits,
        enabled,
    }
}

impl NewKey {
    /// The key row for these settings, in keyspace `api_id`.
    pub(super) fn into_stored(self, api_id: String, hash: KeyHash, start: String, now: i64) -> StoredKey {
        let (plan, remaining) = match self.credits {
            Patch::Set(CreditsInput {
                remaining: Patch::Set(remaining),
                refill,
            }) => {
                let refill = match refill {
                    Patch::Set(refill) => Some(refill),
                    Patch::Keep | Patch::Clear => None,
                };
                (Some(CreditPlan { refill }), Some(remaining))
            }
            _ => (None, None),
        };
        let balance = remaining
            .map(|r| crate::keys::credits::CreditAccount::opening(r, plan.and_then(|p| p.refill).as_ref(), now));
        StoredKey {
            hash,
            balance,
            record: KeyRecord {
                id: new_id("key"),
                keyspace_id: api_id,
                start,
                name: self.name,
                meta: self.meta,
                identity: self.external_id.map(Identity::new),
                roles: normalized(self.roles),
                permissions: normalized(self.permissions),
                expires: self.expires,
                enabled: self.enabled,
                credits: plan,
                ratelimits: self.ratelimits,
                created_at: now,
                updated_at: 0,
            },
        }
    }
}

/// Creates the identity, permissions and roles `record` names that the
/// catalogue lacks (Unkey creates unknown permissions the same way).
pub(super) fn adopt_references(keys: &Keys, record: &KeyRecord) -> Result<(), GatewayError> {
    let catalogue = keys.service.catalogue();
    let now = now_ms();
    if let Some(identity) = &record.identity {
        catalogue
            .ensure_identity(&identity.external_id, now)
            .map_err(internal)?;
    }
    if !record.permissions.is_empty() {
        catalogue
            .ensure_permissions(&record.permissions, now)
            .map_err(internal)?;
    }
    if !record.roles.is_empty() {
        catalogue.ensure_roles(&record.roles, now).map_err(internal)?;
    }
    Ok(())
}

pub(in crate::admin) fn create_key(body: &[u8], keys: &Keys) -> Answer {
    let mut f = Fields::parse(body)?;
    let api_id = api_id_field(&mut f);
    let prefix = f.text("prefix", Text { max: 16, ..Text::id(1) }, false);
    let byte_length = f.int("byteLength", 16, 255, false).unwrap_or(16) as usize;
    let settings = read_new_key(&mut f);
    if f.boolean("recoverable") == Some(true) {
        f.reject(
            "recoverable",
            "keygate never stores plaintext keys; keys cannot be recoverable",
        );
    }
    f.finish()?;
    let api_id = required(api_id, "apiId")?;
    find_keyspace(keys, &api_id)?;
    let generated = generate_key(prefix.as_deref(), byte_length);
    let stored = settings.into_stored(api_id, generated.hash, generated.start, now_ms());
    adopt_references(keys, &stored.record)?;
    keys.service
        .insert_key(&stored)
        .map_err(|e| key_error(e, &stored.record.id))?;
    Ok(Reply::data(
        json!({"keyId": stored.record.id, "key": generated.plaintext}),
    ))
}

pub(in crate::admin) fn get_key(body: &[u8], keys: &Keys) -> Answer {
    let mut f = Fields::parse(body)?;
    let id = key_id_field(&mut f);
    f.boolean("decrypt");
    f.finish()?;
    let found = find_key(keys, &required(id, "keyId")?)?;
    Ok(Reply::data(found_json(keys, &found)))
}

pub(in crate::admin) fn update_key(body: &[u8], keys: &Keys) -> Answer {
    let mut f = Fields::parse(body)?;
    let id = key_id_field(&mut f);
    let name = f.text_patch("name", Text::len(1, 255));
    let external_id = f.text_patch("externalId", EXTERNAL_ID);
    let meta = f.object_patch("meta", 100);
    let expires = f.int_patch("expires", 0, MAX_TIMESTAMP);
    let credits = read_credits(&mut f);
    let ratelimits = read_ratelimits(&mut f);
    let enabled = f.boolean("enabled");
    let roles = f.text_list("roles", 100, ROLE);
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
        Patch::Clear
        | Patch::Set(CreditsInput {
            remaining: Patch::Clear,
            ..
        }) => CreditChange::Unlimited,
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
    adopt_references(keys, &stored.record)?;
    keys.service
        .update_key(&stored, change)
        .map_err(|e| key_error(e, &stored.record.id))?;
    Ok(Reply::data(json!({})))
}

pub(in crate::admin) fn delete_key(body: &[u8], keys: &Keys) -> Answer {
    let mut f = Fields::parse(body)?;
    let id = key_id_field(&mut f);
    let permanent = f.boolean("permanent").unwrap_or(false);
    f.finish()?;
    let stored = find_stored(keys, &required(id, "keyId")?)?;
    let id = stored.record.id;
    keys.service.delete_key(&id, permanent).map_err(|e| key_error(e, &id))?;
    Ok(Reply::data(json!({})))
}

pub(in crate::admin) fn update_credits(body: &[u8], keys: &Keys) -> Answer {
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
                .update_key(
                    &stored,
                    CreditChange::Limited {
                        remaining: Some(n),
                        refill: None,
                    },
                )
                .map_err(internal)?;
            Some(n)
        }
        ("set", Patch::Set(n)) => Some(
            keys.service
                .adjust_credits(&stored, CreditAdjustment::Set(n))
                .map_err(internal)?,
        ),
        ("set", _) => {
            stored.record.credits = None;
            stored.record.updated_at = now_ms();
            keys.service
                .update_key(&stored, CreditChange::Unlimited)
                .map_err(internal)?;
            None
        }
        (_, _) if unlimited => {
            return Err(invalid_input("The key has unlimited credits; set a value first."));
        }
        ("increment", Patch::Set(n)) => Some(
            keys.service
                .adjust_credits(&stored, CreditAdjustment::Increment(n))
                .map_err(internal)?,
        ),
        (_, Patch::Set(n)) => Some(
            keys.service
                .adjust_credits(&stored, CreditAdjustment::Decrement(n))
                .map_err(internal)?,
        ),
        (_, _) => return Err(invalid_input("body.value is required for increment and decrement")),
    };
    Ok(Reply::data(credits_json(stored.record.credits.as_ref(), remaining)))
}

pub(in crate::admin) fn reroll_key(body: &[u8], keys: &Keys) -> Answer {
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
        crate::keys::credits::CreditAccount::opening(remaining, record.credits.and_then(|p| p.refill).as_ref(), now)
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
