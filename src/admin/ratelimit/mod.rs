//! `ratelimit.limit` and `ratelimit.multiLimit`: keygate as an
//! application's rate-limit service, with Unkey v2's field names —
//! `namespace`, `identifier`, `limit`, `duration` (ms), `cost` — answering
//! `{success, limit, remaining, reset, overrideId?}` (`reset` in unix ms).
//! The counters are the gateway's own, so they are shared between replicas
//! exactly like policy limits; an override of the namespace (see
//! [`overrides`]) replaces the caller's limit and duration for the
//! identifiers it matches.

pub(super) mod overrides;

use serde_json::{json, Value};

use super::envelope::Reply;
use super::fields::{Fields, Text};
use super::rpc::{required, Answer};
use crate::clock::now_ms;
use crate::keys::Keys;
use crate::ratelimit::{push_part, Decision, LimitRequest, RateLimiter};

/// Longest window accepted: 30 days.
pub(super) const MAX_DURATION_MS: i64 = 30 * 24 * 3600 * 1000;
/// Checks one `multiLimit` call makes at most.
const MAX_CHECKS: usize = 100;
/// Namespaces and identifiers.
pub(super) const NAME: Text = Text::len(1, 512);

/// One limit as asked, resolved against the overrides.
struct Check {
    namespace: String,
    identifier: String,
    bucket: String,
    limit: u64,
    window_ms: u64,
    cost: u64,
    override_id: Option<String>,
}

impl Check {
    fn request(&self) -> LimitRequest<'_> {
        LimitRequest {
            bucket: &self.bucket,
            limit: self.limit,
            window_ms: self.window_ms,
            cost: self.cost,
        }
    }

    /// `{limit, remaining, reset, overrideId?}` of its decision.
    fn answer(&self, decision: &Decision) -> Value {
        let mut out = json!({"limit": decision.limit, "remaining": decision.remaining, "reset": decision.reset_ms});
        if let Some(id) = &self.override_id {
            out["overrideId"] = json!(id);
        }
        out
    }
}

/// Reads one limit request; `None` when a field failed (reported in `f`).
fn read_check(f: &mut Fields, limiter: &RateLimiter) -> Option<Check> {
    let namespace = f.text("namespace", NAME, true);
    let identifier = f.text("identifier", NAME, true);
    let limit = f.int("limit", 1, i64::MAX, true);
    let duration = f.int("duration", 1, MAX_DURATION_MS, true);
    let cost = f.int("cost", 0, i64::MAX, false).unwrap_or(1);
    // Decisions never wait for the shared store, so `async` changes nothing.
    f.boolean("async");
    let (namespace, identifier, limit, duration) = (namespace?, identifier?, limit?, duration?);
    let mut bucket = String::from("ns");
    push_part(&mut bucket, &namespace);
    push_part(&mut bucket, &identifier);
    let overridden = limiter.overrides().find(&namespace, || identifier.as_str());
    Some(Check {
        bucket,
        limit: overridden.as_ref().map_or(limit as u64, |o| o.limit),
        window_ms: overridden.as_ref().map_or(duration as u64, |o| o.duration_ms),
        cost: cost as u64,
        override_id: overridden.map(|o| o.id.clone()),
        namespace,
        identifier,
    })
}

pub(super) async fn limit(body: &[u8], keys: &Keys) -> Answer {
    let limiter = keys.service.limiter();
    let mut f = Fields::parse(body)?;
    let check = read_check(&mut f, limiter);
    f.finish()?;
    let check = required(check, "namespace, identifier, limit and duration")?;
    let now = now_ms();
    limiter.prime(&[check.request()], now).await;
    let decision = limiter.check_one(&check.request(), true, now);
    let mut data = check.answer(&decision);
    data["success"] = json!(decision.allowed);
    Ok(Reply::data(data))
}

/// Several limits at once, all or nothing: counted only when every one passes.
pub(super) async fn multi_limit(body: &[u8], keys: &Keys) -> Answer {
    let limiter = keys.service.limiter();
    let (mut root, items) = Fields::parse_list(body, MAX_CHECKS)?;
    let mut checks = Vec::with_capacity(items.len());
    for mut item in items {
        checks.extend(read_check(&mut item, limiter));
        root.absorb(item);
    }
    root.finish()?;
    let requests: Vec<LimitRequest<'_>> = checks.iter().map(Check::request).collect();
    let now = now_ms();
    limiter.prime(&requests, now).await;
    let decisions = limiter.check(&requests, true, now);
    let limits: Vec<Value> = checks
        .iter()
        .zip(&decisions)
        .map(|(check, decision)| {
            let mut out = check.answer(decision);
            out["namespace"] = json!(check.namespace);
            out["identifier"] = json!(check.identifier);
            out["passed"] = json!(decision.allowed);
            out
        })
        .collect();
    Ok(Reply::data(
        json!({"passed": decisions.iter().all(|d| d.allowed), "limits": limits}),
    ))
}
