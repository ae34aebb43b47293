//! Credits of config keys shared by replicas through `state.redis`. Redis
//! holds the ledger: one hash per key with its balance, its
//! refill period and the credits config it was seeded from. A replica
//! *leases* credits from it with one atomic script (refill, take up to the
//! lease, give back, settle), spends them locally, and hands back what it
//! has not spent after a second without use. Since every credit leaves the
//! ledger exactly once, a key with M credits admits at most M across all
//! replicas; with the default lease of 1 every spend is one round trip and
//! nothing is ever held back from the other replicas.
//!
//! When Redis is unreachable a replica may still spend up to
//! `state.outage_credits` per key — never more than the ledger had left when
//! last seen — which it settles against the ledger once Redis answers again:
//! N replicas over-spend a key by at most (N − 1) × `outage_credits`. Failures count in
//! `keygate_ratelimit_backend_errors_total`; a request never gets a 5xx
//! because of them.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use redis::aio::ConnectionManager;

use crate::ratelimit::RedisLink;

use super::credits::period_of;
use super::model::{Balance, Refill};
use crate::clock::now_ms;

/// A Redis call on the request path gives up after this.
const CALL_TIMEOUT: Duration = Duration::from_millis(300);
/// Unspent leases idle this long go back to the ledger.
const IDLE: Duration = Duration::from_secs(1);

/// Refills, gives back or settles, then leases; answers `{taken, remaining, period}`.
/// KEYS[1] the key's hash. ARGV: origin, seed balance, seed period (used when
/// the ledger has nothing for this credits config: first use, a config
/// change, or a Redis that lost its data),
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

/// The credits ledger in `state.redis`, reached over the rate limiter's
/// connection (one per process, kept up by its synchronisation thread).
pub struct SharedCredits {
    redis: RedisLink,
    lease: i64,
    outage_credits: i64,
    script: redis::Script,
    /// The last call succeeded (failures are logged on the change only).
    healthy: std::sync::atomic::AtomicBool,
    accounts: moka::sync::Cache<String, Arc<SharedAccount>>,
}

/// One config key's credits on this replica.
pub struct SharedAccount {
    key_id: String,
    origin: String,
    refill: Option<Refill>,
    /// Leased and not yet spent, for `period`.
    held: AtomicI64,
    period: AtomicI64,
    /// The ledger's balance after the last call (what the other replicas can
    /// still take); it seeds a ledger that lost its data.
    ledger: AtomicI64,
    /// Spent while Redis was unreachable, to settle.
    overdrawn: AtomicI64,
    last_used_ms: AtomicI64,
    leasing: tokio::sync::Mutex<()>,
    shared: Weak<SharedCredits>,
}

impl std::fmt::Debug for SharedAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedAccount")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl SharedCredits {
    /// Starts the thread that hands back idle leases and settles overdrafts.
    pub fn start(redis: RedisLink, lease: u32, outage_credits: u32) -> std::io::Result<Arc<Self>> {
        let shared = Arc::new(Self {
            redis,
            lease: i64::from(lease.max(1)),
            outage_credits: i64::from(outage_credits),
            script: redis::Script::new(LEASE_SCRIPT),
            healthy: std::sync::atomic::AtomicBool::new(true),
            accounts: moka::sync::Cache::builder().build(),
        });
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let weak = Arc::downgrade(&shared);
        std::thread::Builder::new()
            .name("keygate-credits-sync".into())
            .spawn(move || runtime.block_on(give_back_loop(weak)))?;
        Ok(shared)
    }

    /// Hands every lease back before the process exits (within a second).
    /// The connection lives on the rate limiter's thread, which outlives the
    /// runtimes that served requests.
    pub fn give_back_all(&self) {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
            return;
        };
        let accounts: Vec<Arc<SharedAccount>> = self.accounts.iter().map(|(_, a)| a).collect();
        runtime.block_on(async {
            let settle_all = async {
                for account in accounts {
                    account.settle(self, now_ms(), true).await;
                }
            };
            if tokio::time::timeout(Duration::from_secs(1), settle_all).await.is_err() {
                tracing::warn!("could not hand every credit lease back to state.redis before exiting");
            }
        });
    }

    /// The key's account; kept while its credits config (`origin`) is unchanged.
    pub fn account(
        self: &Arc<Self>,
        key_id: &str,
        opening: Balance,
        refill: Option<Refill>,
        origin: String,
    ) -> Arc<SharedAccount> {
        if let Some(existing) = self.accounts.get(key_id).filter(|a| a.origin == origin) {
            return existing;
        }
        let account = Arc::new(SharedAccount {
            key_id: key_id.to_string(),
            origin,
            refill,
            held: AtomicI64::new(0),
            period: AtomicI64::new(opening.period),
            ledger: AtomicI64::new(opening.remaining),
            overdrawn: AtomicI64::new(0),
            last_used_ms: AtomicI64::new(0),
            leasing: tokio::sync::Mutex::new(()),
            shared: Arc::downgrade(self),
        });
        self.accounts.insert(key_id.to_string(), account.clone());
        account
    }

    fn connection(&self) -> redis::RedisResult<ConnectionManager> {
        match self.redis.load_full() {
            Some(connection) => Ok(ConnectionManager::clone(&connection)),
            None => Err(redis::RedisError::from((
                redis::ErrorKind::IoError,
                "state.redis is not connected",
            ))),
        }
    }

    /// One script call: `(taken, ledger balance, period)`.
    async fn call(
        &self,
        account: &SharedAccount,
        now_ms: i64,
        wanted: i64,
        adjustment: i64,
        adjustment_period: i64,
    ) -> redis::RedisResult<(i64, i64, i64)> {
        let mut connection = match self.connection() {
            Ok(connection) => connection,
            Err(e) => {
                self.record(Some(&e));
                return Err(e);
            }
        };
        let current = account.refill.as_ref().map_or(-1, |r| period_of(Some(r), now_ms));
        let mut invocation = self.script.key(format!("keygate:credits:{}", account.key_id));
        invocation
            .arg(&account.origin)
            .arg(account.ledger.load(Ordering::Acquire))
            .arg(account.period.load(Ordering::Acquire))
            .arg(current)
            .arg(account.refill.as_ref().map_or(0, |r| r.amount))
            .arg(wanted)
            .arg(adjustment)
            .arg(adjustment_period);
        let answer = match tokio::time::timeout(CALL_TIMEOUT, invocation.invoke_async(&mut connection)).await {
            Ok(answer) => answer,
            Err(_) => Err(redis::RedisError::from((
                redis::ErrorKind::IoError,
                "no answer in time",
            ))),
        };
        self.record(answer.as_ref().err());
        answer
    }

    /// Counts a failure, and logs when Redis goes away or comes back.
    fn record(&self, failure: Option<&redis::RedisError>) {
        let was_healthy = self.healthy.swap(failure.is_none(), Ordering::AcqRel);
        match failure {
            Some(e) => {
                crate::telemetry::metrics().ratelimit_backend_errors.inc();
                if was_healthy {
                    tracing::warn!(
                        "state.redis unreachable, credits of config keys go on within state.outage_credits: {e}"
                    );
                }
            }
            None if !was_healthy => tracing::info!("state.redis is reachable again: credits are shared again"),
            None => {}
        }
    }
}

impl SharedAccount {
    /// The balance as this replica knows it: its lease plus the ledger.
    pub fn available(&self) -> i64 {
        self.held.load(Ordering::Acquire) + self.ledger.load(Ordering::Acquire)
    }

    /// Makes sure `cost` credits are held here (leasing, or overdrawing
    /// within `outage_credits` while Redis is unreachable); answers the balance.
    pub async fn reserve(&self, cost: i64, now_ms: i64) -> i64 {
        self.last_used_ms.store(now_ms, Ordering::Release);
        if self.held.load(Ordering::Acquire) >= cost.max(1) && !self.period_turned(now_ms) {
            return self.available();
        }
        let Some(shared) = self.shared.upgrade() else {
            return self.available();
        };
        let _leasing = self.leasing.lock().await;
        let turned = self.period_turned(now_ms);
        if !turned && self.held.load(Ordering::Acquire) >= cost.max(1) {
            return self.available();
        }
        // Leases of a finished period are void: the refill replaced the balance.
        let held = if turned { 0 } else { self.held.load(Ordering::Acquire) };
        let overdrawn = self.overdrawn.load(Ordering::Acquire);
        let wanted = shared.lease.max(cost) - held;
        match shared
            .call(self, now_ms, wanted, -overdrawn, self.period.load(Ordering::Acquire))
            .await
        {
            Ok((taken, ledger, period)) => {
                self.overdrawn.fetch_sub(overdrawn, Ordering::AcqRel);
                self.held.store(held + taken, Ordering::Release);
                self.period.store(period, Ordering::Release);
                self.ledger.store(ledger, Ordering::Release);
            }
            Err(_) => {
                // Never more than the ledger had left when it was last seen.
                let need = (cost - held).max(0);
                let allowance = shared.outage_credits.min(self.ledger.load(Ordering::Acquire));
                let granted = self
                    .overdrawn
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |o| {
                        (o + need <= allowance).then_some(o + need)
                    })
                    .is_ok();
                self.held
                    .store(if granted { held + need } else { held }, Ordering::Release);
            }
        }
        self.available()
    }

    fn period_turned(&self, now_ms: i64) -> bool {
        self.refill
            .as_ref()
            .is_some_and(|r| period_of(Some(r), now_ms) > self.period.load(Ordering::Acquire))
    }

    /// Spends from what [`Self::reserve`] secured: `Ok(balance after)` or `Err(balance)`.
    pub fn spend(&self, cost: i64) -> Result<i64, i64> {
        if cost <= 0 {
            return Ok(self.available());
        }
        match self.held.fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
            (held >= cost).then_some(held - cost)
        }) {
            Ok(_) => Ok(self.available()),
            Err(_) => Err(self.available()),
        }
    }

    /// Gives back a spend (a later check of the same request failed).
    pub fn refund(&self, cost: i64) {
        if cost > 0 {
            self.held.fetch_add(cost, Ordering::AcqRel);
        }
    }

    /// Hands an idle lease (any lease, with `all`) back and settles an overdraft.
    async fn settle(&self, shared: &SharedCredits, now_ms: i64, all: bool) {
        let idle = all || now_ms - self.last_used_ms.load(Ordering::Acquire) >= IDLE.as_millis() as i64;
        let overdrawn = self.overdrawn.load(Ordering::Acquire);
        if !(idle && self.held.load(Ordering::Acquire) > 0) && overdrawn == 0 {
            return;
        }
        let _leasing = self.leasing.lock().await;
        let held = if idle { self.held.swap(0, Ordering::AcqRel) } else { 0 };
        let overdrawn = self.overdrawn.load(Ordering::Acquire);
        match shared
            .call(self, now_ms, 0, held - overdrawn, self.period.load(Ordering::Acquire))
            .await
        {
            Ok((_, ledger, period)) => {
                self.overdrawn.fetch_sub(overdrawn, Ordering::AcqRel);
                self.ledger.store(ledger, Ordering::Release);
                self.period.store(period, Ordering::Release);
            }
            Err(_) => {
                self.held.fetch_add(held, Ordering::AcqRel);
            }
        }
    }
}

async fn give_back_loop(shared: Weak<SharedCredits>) {
    let mut ticker = tokio::time::interval(IDLE);
    loop {
        ticker.tick().await;
        let Some(shared) = shared.upgrade() else { return };
        let accounts: Vec<Arc<SharedAccount>> = shared.accounts.iter().map(|(_, a)| a).collect();
        for account in accounts {
            account.settle(&shared, now_ms(), false).await;
        }
    }
}
