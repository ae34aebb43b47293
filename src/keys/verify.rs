//! Verifying a key: the one procedure behind the
//! `keyauth` policy and the admin API's `keys.verifyKey`. Checks run in the
//! documented order and nothing is charged until every check passed: credits
//! and limits are first *looked at*, then — permissions granted — spent
//! atomically, so a request refused for permissions costs nothing and
//! concurrent requests can never overspend.

use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;

use super::credits::CreditAccount;
use super::model::KeyRecord;
use super::permissions::{Grants, PermissionQuery};
use super::principal::PrincipalTemplate;
use super::roles::RoleGrants;
use super::shared_credits::SharedAccount;
use crate::ratelimit::{push_part, Decision, LimitRequest, RateLimiter};

/// A key ready for verification: its record plus everything compiled from it.
#[derive(Debug)]
pub struct ActiveKey {
    pub record: KeyRecord,
    /// What depends on its roles' permissions, as of one catalogue generation.
    resolved: ArcSwap<Resolved>,
    account: Option<Credits>,
    limits: Vec<BoundLimit>,
}

/// A key's permissions (its own and its roles'), compiled for queries and
/// rendered into its Principal.
#[derive(Debug)]
struct Resolved {
    generation: u64,
    permissions: Vec<String>,
    grants: Grants,
    principal: PrincipalTemplate,
}

impl Resolved {
    fn new(record: &KeyRecord, roles: &RoleGrants) -> Self {
        let permissions = roles.effective(&record.permissions, &record.roles);
        Self {
            generation: roles.generation,
            grants: Grants::compile(&permissions),
            principal: PrincipalTemplate::new(record, &permissions),
            permissions,
        }
    }
}

/// A limited key's balance: this process's own account, or its share of
/// the ledger in `state.redis` (config keys, when replicas share credits).
#[derive(Debug, Clone)]
pub enum Credits {
    Local(Arc<CreditAccount>),
    Shared(Arc<SharedAccount>),
}

impl Credits {
    /// The balance as this process knows it.
    pub fn available(&self, now_ms: i64) -> i64 {
        match self {
            Self::Local(account) => account.available(now_ms),
            Self::Shared(account) => account.available(),
        }
    }

    /// The balance, after securing `cost` credits for a spend where the ledger is shared.
    async fn reserve(&self, cost: i64, now_ms: i64) -> i64 {
        match self {
            Self::Local(account) => account.available(now_ms),
            Self::Shared(account) => account.reserve(cost, now_ms).await,
        }
    }

    fn spend(&self, cost: i64, now_ms: i64) -> Result<i64, i64> {
        match self {
            Self::Local(account) => account.spend(cost, now_ms),
            Self::Shared(account) => account.spend(cost),
        }
    }

    fn refund(&self, cost: i64) {
        match self {
            Self::Local(account) => account.refund(cost),
            Self::Shared(account) => account.refund(cost),
        }
    }
}

/// A limit of the key or its identity, with its counter's bucket.
#[derive(Debug, Clone)]
struct BoundLimit {
    id: String,
    name: String,
    limit: u64,
    window_ms: u64,
    auto_apply: bool,
    bucket: String,
}

/// Per key id + name (key limits) or identity external id + name.
fn bucket(scope: &str, owner: &str, name: &str) -> String {
    let mut bucket = String::from(scope);
    push_part(&mut bucket, owner);
    push_part(&mut bucket, name);
    bucket
}

impl ActiveKey {
    /// Compiles `record`, its roles resolved in `roles`.
    pub fn new(record: KeyRecord, account: Option<Credits>, roles: &RoleGrants) -> Self {
        let mut limits: Vec<BoundLimit> = record
            .ratelimits
            .iter()
            .map(|l| BoundLimit {
                id: l.id.clone(),
                name: l.name.clone(),
                limit: l.limit,
                window_ms: l.duration,
                auto_apply: l.auto_apply,
                bucket: bucket("key", &record.id, &l.name),
            })
            .collect();
        if let Some(identity) = &record.identity {
            limits.extend(identity.ratelimits.iter().map(|l| BoundLimit {
                id: l.id.clone(),
                name: l.name.clone(),
                limit: l.limit,
                window_ms: l.duration,
                auto_apply: l.auto_apply,
                bucket: bucket("identity", &identity.external_id, &l.name),
            }));
        }
        Self {
            resolved: ArcSwap::from_pointee(Resolved::new(&record, roles)),
            limits,
            account,
            record,
        }
    }

    /// Resolves the key's roles again if it has some and `roles` is newer
    /// than what it was compiled against (once per catalogue change).
    pub fn refresh(&self, roles: &RoleGrants) {
        if !self.record.roles.is_empty() && self.resolved.load().generation != roles.generation {
            self.resolved.store(Arc::new(Resolved::new(&self.record, roles)));
        }
    }

    /// Its permissions and those of its roles, as last verified.
    pub fn permissions(&self) -> Vec<String> {
        self.resolved.load().permissions.clone()
    }

    pub fn account(&self) -> Option<&Credits> {
        self.account.as_ref()
    }

    /// The identity's externalId, else the key id.
    pub fn subject(&self) -> &str {
        self.record
            .identity
            .as_ref()
            .map_or(&self.record.id, |i| &i.external_id)
    }

    /// The Principal JSON with the balance after this request.
    pub fn principal_json(&self, credits: Option<i64>) -> http::HeaderValue {
        self.resolved.load().principal.render(credits)
    }
}

/// A limit a verification asks for by name (policy `ratelimits`, or the
/// admin API's `ratelimits`), with inline values for keys that lack it.
#[derive(Debug, Clone)]
pub struct LimitRef {
    pub name: String,
    /// `(limit, window ms)` used when neither the key nor its identity has `name`.
    pub inline: Option<(u64, u64)>,
    pub cost: u64,
}

/// What a verification asks beyond "is this key good".
#[derive(Debug, Clone, Copy)]
pub struct VerifyRequest<'a> {
    /// Keyspaces the key must belong to; `None` accepts any.
    pub keyspaces: Option<&'a [String]>,
    /// Credits to spend; 0 verifies without spending.
    pub cost: i64,
    pub ratelimits: &'a [LimitRef],
    pub permissions: Option<&'a PermissionQuery>,
    /// When the key was presented: its expiry, its credits' refills and its
    /// rate-limit windows count from here (the gateway passes the moment it
    /// received the request, read once per request).
    pub at: Instant,
}

/// The result, in the documented order of checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Valid,
    NotFound,
    Disabled,
    Expired,
    UsageExceeded,
    RateLimited,
    InsufficientPermissions,
    /// A named limit exists nowhere and has no inline values.
    UnknownLimit(String),
    /// The store could not be read.
    Unavailable(String),
}

impl Verdict {
    /// Unkey's `verifyKey` code.
    pub fn unkey_code(&self) -> &'static str {
        match self {
            Self::Valid => "VALID",
            Self::NotFound => "NOT_FOUND",
            Self::Disabled => "DISABLED",
            Self::Expired => "EXPIRED",
            Self::UsageExceeded => "USAGE_EXCEEDED",
            Self::RateLimited => "RATE_LIMITED",
            Self::InsufficientPermissions => "INSUFFICIENT_PERMISSIONS",
            Self::UnknownLimit(_) | Self::Unavailable(_) => "FORBIDDEN",
        }
    }
}

/// A limit that was evaluated, for headers and the admin API.
#[derive(Debug, Clone)]
pub struct CheckedLimit {
    pub id: String,
    pub name: String,
    pub limit: u64,
    pub window_ms: u64,
    pub auto_apply: bool,
    pub decision: Decision,
}

#[derive(Debug)]
pub struct Verification {
    pub verdict: Verdict,
    pub key: Option<Arc<ActiveKey>>,
    /// The balance after this request (or as it stands, when refused); `None` when unlimited.
    pub credits: Option<i64>,
    pub limits: Vec<CheckedLimit>,
}

impl Verification {
    fn refused(verdict: Verdict, key: Option<Arc<ActiveKey>>) -> Self {
        Self {
            verdict,
            key,
            credits: None,
            limits: Vec::new(),
        }
    }
}

/// One limit to apply to this request.
struct Applied<'k> {
    bound: std::borrow::Cow<'k, BoundLimit>,
    cost: u64,
}

fn applicable<'k>(key: &'k ActiveKey, refs: &[LimitRef]) -> Result<Vec<Applied<'k>>, String> {
    let mut applied: Vec<Applied<'k>> = key
        .limits
        .iter()
        .filter(|l| l.auto_apply)
        .map(|l| Applied {
            bound: std::borrow::Cow::Borrowed(l),
            cost: 1,
        })
        .collect();
    for wanted in refs {
        if let Some(existing) = applied.iter_mut().find(|a| a.bound.name == wanted.name) {
            existing.cost = existing.cost.max(wanted.cost);
            continue;
        }
        let bound = match key.limits.iter().find(|l| l.name == wanted.name) {
            Some(found) => std::borrow::Cow::Borrowed(found),
            None => match wanted.inline {
                Some((limit, window_ms)) => std::borrow::Cow::Owned(BoundLimit {
                    id: String::new(),
                    name: wanted.name.clone(),
                    limit,
                    window_ms,
                    auto_apply: false,
                    bucket: bucket("key", &key.record.id, &wanted.name),
                }),
                None => return Err(wanted.name.clone()),
            },
        };
        applied.push(Applied {
            bound,
            cost: wanted.cost,
        });
    }
    Ok(applied)
}

/// Runs the checks on a looked-up key (`None`: no such key) at `now_ms`
/// (its roles as last [`ActiveKey::refresh`]ed).
pub async fn verify(
    key: Option<Arc<ActiveKey>>,
    request: &VerifyRequest<'_>,
    limiter: &RateLimiter,
    now_ms: i64,
) -> Verification {
    let Some(key) = key else {
        return Verification::refused(Verdict::NotFound, None);
    };
    let record = &key.record;
    if request
        .keyspaces
        .is_some_and(|allowed| !allowed.contains(&record.keyspace_id))
    {
        return Verification::refused(Verdict::NotFound, None);
    }
    if !record.enabled {
        return Verification::refused(Verdict::Disabled, Some(key));
    }
    if record.expires.is_some_and(|at| at <= now_ms) {
        return Verification::refused(Verdict::Expired, Some(key));
    }
    let balance = match &key.account {
        Some(account) => Some(account.reserve(request.cost, now_ms).await),
        None => None,
    };
    if balance.is_some_and(|left| left < request.cost) {
        let mut refused = Verification::refused(Verdict::UsageExceeded, Some(key.clone()));
        refused.credits = balance;
        return refused;
    }
    let applied = match applicable(&key, request.ratelimits) {
        Ok(applied) => applied,
        Err(name) => return Verification::refused(Verdict::UnknownLimit(name), Some(key.clone())),
    };
    let limit_requests: Vec<LimitRequest<'_>> = applied
        .iter()
        .map(|a| LimitRequest {
            bucket: &a.bound.bucket,
            limit: a.bound.limit,
            window_ms: a.bound.window_ms,
            cost: a.cost,
        })
        .collect();
    let checked = |decisions: Vec<Decision>| -> Vec<CheckedLimit> {
        applied
            .iter()
            .zip(decisions)
            .map(|(a, decision)| CheckedLimit {
                id: a.bound.id.clone(),
                name: a.bound.name.clone(),
                limit: a.bound.limit,
                window_ms: a.bound.window_ms,
                auto_apply: a.bound.auto_apply,
                decision,
            })
            .collect()
    };
    let mut result = Verification {
        verdict: Verdict::Valid,
        key: Some(key.clone()),
        credits: balance,
        limits: Vec::new(),
    };
    if !limit_requests.is_empty() {
        limiter.prime(&limit_requests, now_ms).await;
        let peek = limiter.check(&limit_requests, false, now_ms);
        let limited = peek.iter().any(|d| !d.allowed);
        // Headers are sent whatever the outcome.
        result.limits = checked(peek);
        if limited {
            result.verdict = Verdict::RateLimited;
            return result;
        }
    }
    if request
        .permissions
        .is_some_and(|q| !q.is_satisfied_by(&key.resolved.load().grants))
    {
        result.verdict = Verdict::InsufficientPermissions;
        return result;
    }
    // Every check passed: charge, atomically.
    if let Some(account) = &key.account {
        match account.spend(request.cost, now_ms) {
            Ok(left) => result.credits = Some(left),
            Err(left) => {
                result.verdict = Verdict::UsageExceeded;
                result.credits = Some(left);
                return result;
            }
        }
    }
    if !limit_requests.is_empty() {
        let counted = limiter.check(&limit_requests, true, now_ms);
        if counted.iter().any(|d| !d.allowed) {
            if let Some(account) = &key.account {
                account.refund(request.cost);
                result.credits = result.credits.map(|c| c + request.cost.max(0));
            }
            result.verdict = Verdict::RateLimited;
        }
        result.limits = checked(counted);
    }
    result
}
