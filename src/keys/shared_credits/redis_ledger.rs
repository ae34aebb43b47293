//! The credits ledger in `state.redis` (config keys): one hash per key with
//! its balance, its refill period and the credits config it was seeded
//! from, changed by one atomic script per lease.

use std::time::Duration;

use async_trait::async_trait;
use redis::aio::ConnectionManager;

use super::{LeaseAnswer, LeaseCall, Ledger};
use crate::ratelimit::RedisLink;

/// A Redis call on the request path gives up after this.
const CALL_TIMEOUT: Duration = Duration::from_millis(300);

/// Reseeds when the credits config changed, refills, applies the
/// adjustment, then leases; answers `{taken, remaining, period}`.
/// KEYS[1] the key's ledger. ARGV: origin, seed balance, seed period,
/// current period (-1: never refills), refill amount, wanted, adjustment
/// (given back − overdrawn), the period the adjustment belongs to.
const LEASE_SCRIPT: &str = r"
local k = KEYS[1]
if redis.call('HGET', k, 'origin') ~= ARGV[1] then
  redis.call('HSET', k, 'origin', ARGV[1], 'remaining', ARGV[2], 'period', ARGV[3])
end
local remaining = tonumber(redis.call('HGET', k, 'remaining'))
local period = tonumber(redis.call('HGET', k, 'period'))
local current = tonumber(ARGV[4])
if current >= 0 and period < current then
  remaining = tonumber(ARGV[5])
  period = current
end
if tonumber(ARGV[8]) == period then
  remaining = math.max(remaining + tonumber(ARGV[7]), 0)
end
local taken = math.max(math.min(tonumber(ARGV[6]), remaining), 0)
remaining = remaining - taken
redis.call('HSET', k, 'remaining', remaining, 'period', period)
return {taken, remaining, period}
";

/// Leases over the rate limiter's connection (one per process, kept up by
/// its synchronisation thread).
pub struct RedisLedger {
    redis: RedisLink,
    script: redis::Script,
}

impl RedisLedger {
    pub fn new(redis: RedisLink) -> Self {
        Self {
            redis,
            script: redis::Script::new(LEASE_SCRIPT),
        }
    }

    fn connection(&self) -> Result<ConnectionManager, String> {
        match self.redis.load_full() {
            Some(connection) => Ok(ConnectionManager::clone(&connection)),
            None => Err("state.redis is not connected".into()),
        }
    }
}

#[async_trait]
impl Ledger for RedisLedger {
    fn name(&self) -> &'static str {
        "state.redis"
    }

    async fn lease(&self, call: LeaseCall) -> Result<LeaseAnswer, String> {
        let answer = async {
            let mut connection = self.connection()?;
            let mut invocation = self.script.key(format!("keygate:credits:{}", call.key_id));
            invocation
                .arg(call.origin.as_deref().unwrap_or_default())
                .arg(call.seed.remaining)
                .arg(call.seed.period)
                .arg(call.current_period)
                .arg(call.refill_amount)
                .arg(call.wanted)
                .arg(call.adjustment)
                .arg(call.adjustment_period);
            match tokio::time::timeout(CALL_TIMEOUT, invocation.invoke_async(&mut connection)).await {
                Ok(Ok((taken, remaining, period))) => Ok(LeaseAnswer {
                    taken,
                    remaining,
                    period,
                }),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err("no answer in time".to_string()),
            }
        }
        .await;
        if answer.is_err() {
            crate::telemetry::metrics().ratelimit_backend_errors.inc();
        }
        answer
    }
}
