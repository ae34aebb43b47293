//! `POST /v2/ratelimit.limit`: keygate as an application's
//! rate-limit service, with Unkey v2's field names — `namespace`,
//! `identifier`, `limit`, `duration` (ms), `cost` — answering
//! `{success, limit, remaining, reset}` (`reset` in unix ms). The counters
//! are the gateway's own, so they are shared between replicas exactly like
//! policy limits.

use serde_json::json;

use super::envelope::{invalid_input, Reply};
use super::fields::{Fields, Text};
use crate::errors::GatewayError;
use crate::ratelimit::{push_part, LimitRequest, RateLimiter};

/// Longest window accepted: 30 days.
const MAX_DURATION_MS: i64 = 30 * 24 * 3600 * 1000;

pub async fn limit(body: &[u8], limiter: &RateLimiter, now_ms: i64) -> Result<Reply, GatewayError> {
    let mut f = Fields::parse(body)?;
    let namespace = f.text("namespace", Text::len(1, 255), true);
    let identifier = f.text("identifier", Text::len(1, 255), true);
    let limit = f.int("limit", 1, i64::MAX, true);
    let duration = f.int("duration", 1, MAX_DURATION_MS, true);
    let cost = f.int("cost", 0, i64::MAX, false).unwrap_or(1);
    // Decisions never wait for the shared store, so `async` changes nothing.
    f.boolean("async");
    f.finish()?;
    let (Some(namespace), Some(identifier), Some(limit), Some(duration)) = (namespace, identifier, limit, duration) else {
        return Err(invalid_input("namespace, identifier, limit and duration are required"));
    };
    let mut bucket = String::from("ns");
    push_part(&mut bucket, &namespace);
    push_part(&mut bucket, &identifier);
    let request = LimitRequest {
        bucket: &bucket,
        limit: limit as u64,
        window_ms: duration as u64,
        cost: cost as u64,
    };
    limiter.prime(std::slice::from_ref(&request), now_ms).await;
    let decision = limiter.check_one(&request, true, now_ms);
    Ok(Reply::data(json!({
        "success": decision.allowed,
        "limit": decision.limit,
        "remaining": decision.remaining,
        "reset": decision.reset_ms,
    })))
}
