//! The `keyspaces:` config section: keyspaces declared in
//! the file and their static keys, for local testing and for keys every
//! replica must agree on. Compiled with each snapshot into [`StaticKeys`],
//! which verification consults before the store. Static keys are read-only
//! through the admin API.

use std::collections::HashMap;
use std::sync::Arc;

use super::credits::period_of;
use super::model::{
    hash_key, normalized, parse_hash, Balance, CreditPlan, Identity, KeyHash, KeyRecord, Keyspace, RateLimit, Refill,
    RefillInterval,
};
use super::verify::ActiveKey;
use super::KeyService;
use crate::config::keys::{ExpiresSpec, KeyspaceSpec, NamedLimitSpec, RefillIntervalSpec, StaticKeySpec};

/// Config keyspaces and keys of one snapshot.
#[derive(Debug, Default)]
pub struct StaticKeys {
    keyspaces: Vec<Keyspace>,
    by_hash: HashMap<KeyHash, Arc<ActiveKey>>,
    by_id: HashMap<String, Arc<ActiveKey>>,
}

/// A compile error: `(field path below keyspaces, message)`.
type SpecError = (String, String);

/// Keyspace and key ids: what Unkey ids may contain.
pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 255 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Permission names: letters, digits and `. _ - * :`.
pub fn is_valid_permission(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '*' | ':'))
}

impl StaticKeys {
    /// Compiles the section; credit accounts of static keys are opened (or
    /// kept, when their credits config is unchanged) in `service`'s ledger.
    pub fn compile(specs: &[KeyspaceSpec], service: &KeyService) -> Result<Self, SpecError> {
        let mut statics = Self::default();
        for (i, spec) in specs.iter().enumerate() {
            if !is_valid_id(&spec.id) {
                return Err((format!("[{i}].id"), "use letters, digits and _ (at most 255)".into()));
            }
            if statics.keyspaces.iter().any(|k| k.id == spec.id) {
                return Err((format!("[{i}].id"), format!("duplicate keyspace id {:?}", spec.id)));
            }
            statics.keyspaces.push(Keyspace {
                id: spec.id.clone(),
                name: spec.name.clone().unwrap_or_else(|| spec.id.clone()),
                created_at: 0,
            });
            for (j, key) in spec.keys.iter().enumerate() {
                let at = |field: &str| format!("[{i}].keys[{j}]{field}");
                let (record, hash, credits) = compile_key(key, &spec.id).map_err(|(f, m)| (at(&f), m))?;
                if statics.by_id.contains_key(&record.id) {
                    return Err((at(".id"), format!("duplicate key id {:?}", record.id)));
                }
                if statics.by_hash.contains_key(&hash) {
                    return Err((at(""), "two static keys have the same key".into()));
                }
                let account = credits.map(|(balance, origin)| {
                    let refill = record.credits.and_then(|c| c.refill);
                    service.static_account(&record.id, balance, refill, origin)
                });
                let active = Arc::new(ActiveKey::new(record, account, &service.role_grants()));
                statics.by_hash.insert(hash, active.clone());
                statics.by_id.insert(active.record.id.clone(), active);
            }
        }
        Ok(statics)
    }

    pub fn by_hash(&self, hash: &KeyHash) -> Option<&Arc<ActiveKey>> {
        self.by_hash.get(hash)
    }

    pub fn by_id(&self, id: &str) -> Option<&Arc<ActiveKey>> {
        self.by_id.get(id)
    }

    /// The config's keyspaces, in file order.
    pub fn keyspaces(&self) -> &[Keyspace] {
        &self.keyspaces
    }

    pub fn keyspace(&self, id: &str) -> Option<&Keyspace> {
        self.keyspaces.iter().find(|k| k.id == id)
    }

    /// The static keys of a keyspace, ordered by id.
    pub fn keys_in(&self, keyspace_id: &str) -> Vec<&Arc<ActiveKey>> {
        let mut keys: Vec<_> = self
            .by_id
            .values()
            .filter(|k| k.record.keyspace_id == keyspace_id)
            .collect();
        keys.sort_by(|a, b| a.record.id.cmp(&b.record.id));
        keys
    }
}

/// A static key's record, hash, and opening balance with its origin.
type CompiledKey = (KeyRecord, KeyHash, Option<(Balance, String)>);

fn compile_key(spec: &StaticKeySpec, keyspace_id: &str) -> Result<CompiledKey, SpecError> {
    let err = |field: &str, message: &str| Err((field.to_string(), message.to_string()));
    if !is_valid_id(&spec.id) {
        return err(".id", "use letters, digits and _ (at most 255)");
    }
    let hash = match (&spec.key, &spec.hash) {
        (Some(key), None) if !key.is_empty() => hash_key(key),
        (None, Some(hash)) => match parse_hash(hash) {
            Some(hash) => hash,
            None => return err(".hash", "expected sha256:<64 hex digits>"),
        },
        _ => return err("", "a static key needs exactly one of `key` or `hash`"),
    };
    if let Some(j) = spec.permissions.iter().position(|p| !is_valid_permission(p)) {
        return err(
            &format!(".permissions[{j}]"),
            "permissions use letters, digits and . _ - * :",
        );
    }
    let expires = match &spec.expires {
        None => None,
        Some(ExpiresSpec::UnixMs(ms)) => Some(*ms),
        Some(ExpiresSpec::Rfc3339(text)) => {
            match time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339) {
                Ok(at) => Some((at.unix_timestamp_nanos() / 1_000_000) as i64),
                Err(_) => {
                    return err(
                        ".expires",
                        "expected RFC 3339 (2030-01-01T00:00:00Z) or unix milliseconds",
                    )
                }
            }
        }
    };
    let ratelimits = compile_limits(&spec.ratelimits, &spec.id).map_err(|(f, m)| (format!(".ratelimits{f}"), m))?;
    let identity = match &spec.identity {
        None => None,
        Some(identity) => {
            if identity.external_id.is_empty() {
                return err(".identity.external_id", "must not be empty");
            }
            let limits = compile_limits(&identity.ratelimits, &identity.external_id)
                .map_err(|(f, m)| (format!(".identity.ratelimits{f}"), m))?;
            Some(Identity {
                external_id: identity.external_id.clone(),
                meta: identity.meta.clone(),
                ratelimits: limits,
            })
        }
    };
    let mut credits = None;
    let mut plan = None;
    if let Some(spec_credits) = &spec.credits {
        if spec_credits.remaining < 0 {
            return err(".credits.remaining", "must be 0 or more");
        }
        let refill = match &spec_credits.refill {
            None => None,
            Some(r) => {
                if r.amount < 1 {
                    return err(".credits.refill.amount", "must be 1 or more");
                }
                let interval = match r.interval {
                    RefillIntervalSpec::Daily => RefillInterval::Daily,
                    RefillIntervalSpec::Monthly => RefillInterval::Monthly,
                };
                match (interval, r.refill_day) {
                    (RefillInterval::Daily, Some(_)) => {
                        return err(".credits.refill.refill_day", "only for monthly refills")
                    }
                    (_, Some(day)) if !(1..=31).contains(&day) => {
                        return err(".credits.refill.refill_day", "must be 1..31")
                    }
                    _ => {}
                }
                Some(Refill {
                    interval,
                    amount: r.amount,
                    refill_day: r.refill_day,
                })
            }
        };
        plan = Some(CreditPlan { refill });
        let origin = serde_json::to_string(spec_credits).unwrap_or_default();
        let opening = Balance {
            remaining: spec_credits.remaining,
            period: period_of(refill.as_ref(), crate::clock::now_ms()),
        };
        credits = Some((opening, origin));
    }
    let record = KeyRecord {
        id: spec.id.clone(),
        keyspace_id: keyspace_id.to_string(),
        start: spec
            .key
            .as_deref()
            .map_or_else(String::new, |k| k.chars().take(8).collect()),
        name: spec.name.clone(),
        meta: spec.meta.clone(),
        identity,
        roles: normalized(spec.roles.clone()),
        permissions: normalized(spec.permissions.clone()),
        expires,
        enabled: spec.enabled,
        credits: plan,
        ratelimits,
        created_at: 0,
        updated_at: 0,
    };
    Ok((record, hash, credits))
}

fn compile_limits(specs: &[NamedLimitSpec], owner: &str) -> Result<Vec<RateLimit>, SpecError> {
    let mut limits: Vec<RateLimit> = Vec::with_capacity(specs.len());
    for (k, spec) in specs.iter().enumerate() {
        if spec.name.is_empty() {
            return Err((format!("[{k}].name"), "must not be empty".into()));
        }
        if limits.iter().any(|l| l.name == spec.name) {
            return Err((format!("[{k}].name"), format!("duplicate rate limit {:?}", spec.name)));
        }
        if spec.limit == 0 {
            return Err((format!("[{k}].limit"), "must be 1 or more".into()));
        }
        let duration = spec.duration.0.as_millis() as u64;
        if duration == 0 {
            return Err((format!("[{k}].duration"), "must be at least 1ms".into()));
        }
        limits.push(RateLimit {
            id: format!("rl_{owner}_{}", spec.name),
            name: spec.name.clone(),
            limit: spec.limit,
            duration,
            auto_apply: spec.auto_apply,
        });
    }
    Ok(limits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compile(yaml: &str) -> Result<StaticKeys, SpecError> {
        let specs: Vec<KeyspaceSpec> = serde_saphyr::from_str(yaml).unwrap();
        StaticKeys::compile(&specs, &KeyService::in_memory().unwrap())
    }

    #[test]
    fn keys_by_plaintext_and_hash() {
        let hash: String = hash_key("sk_two").iter().map(|b| format!("{b:02X}")).collect();
        let statics = compile(&format!(
            "- id: ks_main\n  keys:\n    - {{id: k1, key: sk_one, expires: '2030-01-01T00:00:00Z', roles: [b, a, a]}}\n    - {{id: k2, hash: 'sha256:{hash}', credits: {{remaining: 5, refill: {{interval: monthly, amount: 5, refill_day: 31}}}}}}\n"
        ))
        .unwrap();
        let one = statics.by_hash(&hash_key("sk_one")).unwrap();
        assert_eq!(one.record.expires, Some(1_893_456_000_000));
        assert_eq!(one.record.roles, vec!["a", "b"]);
        assert!(one.account().is_none());
        let two = statics.by_hash(&hash_key("sk_two")).unwrap();
        assert_eq!(two.record.id, "k2");
        assert_eq!(two.account().map(|a| a.available(crate::clock::now_ms())), Some(5));
        assert_eq!(statics.keys_in("ks_main").len(), 2);
    }

    #[test]
    fn errors_name_the_field() {
        let field = |yaml: &str| compile(yaml).unwrap_err().0;
        assert_eq!(field("- {id: 'bad id'}"), "[0].id");
        assert_eq!(field("- {id: a}\n- {id: a}"), "[1].id");
        assert_eq!(field("- {id: a, keys: [{id: k}]}"), "[0].keys[0]");
        assert_eq!(
            field("- {id: a, keys: [{id: k, hash: 'sha256:00'}]}"),
            "[0].keys[0].hash"
        );
        assert_eq!(
            field("- {id: a, keys: [{id: k, key: x, expires: soon}]}"),
            "[0].keys[0].expires"
        );
        assert_eq!(
            field("- {id: a, keys: [{id: k, key: x, permissions: ['a b']}]}"),
            "[0].keys[0].permissions[0]"
        );
        assert_eq!(
            field("- {id: a, keys: [{id: k, key: x}, {id: k, key: y}]}"),
            "[0].keys[1].id"
        );
        assert_eq!(
            field("- {id: a, keys: [{id: k, key: x}, {id: l, key: x}]}"),
            "[0].keys[1]"
        );
        assert_eq!(
            field("- {id: a, keys: [{id: k, key: x, ratelimits: [{name: r, limit: 0, duration: 1s}]}]}"),
            "[0].keys[0].ratelimits[0].limit"
        );
        assert_eq!(
            field("- {id: a, keys: [{id: k, key: x, credits: {remaining: 1, refill: {interval: daily, amount: 1, refill_day: 3}}}]}"),
            "[0].keys[0].credits.refill.refill_day"
        );
    }
}
