//! Credits shared by replicas: a ledger outside the process holds each
//! key's balance, and a replica *leases* credits from it in one atomic step
//! (refill, take up to the lease, give back, settle), spends them locally,
//! and hands back what it has not spent after a second without use. Since
//! every credit leaves the ledger exactly once, a key with M credits admits
//! at most M across all replicas; with the default lease of 1 every spend is
//! one round trip and nothing is ever held back from the other replicas.
//!
//! Two ledgers implement [`Ledger`]: `state.redis` ([`RedisLedger`], for config
//! keys) and `state.database` (the PostgreSQL store's `credits` table, for
//! every key when no Redis is configured, and always for API-created keys).
//!
//! When the ledger is unreachable a replica may still spend up to
//! `state.outage_credits` per key — never more than the ledger had left when
//! last seen — which it settles against the ledger once it answers again:
//! N replicas over-spend a key by at most (N − 1) × `outage_credits`. A
//! request never gets a 5xx because of the ledger.

mod redis_ledger;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;

use super::credits::period_of;
use super::model::{Balance, Refill};
use crate::clock::now_ms;

/// Accounts unused this long are forgotten (their balance is in the ledger).
const ACCOUNT_IDLE: Duration = Duration::from_secs(600);
/// Unspent leases idle this long go back to the ledger.
const IDLE: Duration = Duration::from_secs(1);

pub use redis_ledger::RedisLedger;

/// Where the balances live, changed one atomic step at a time.
#[async_trait]
pub trait Ledger: Send + Sync {
    /// The setting that names it, for logs.
    fn name(&self) -> &'static str;
    /// One atomic [`LeaseCall::apply`] on the key's balance; failures are
    /// counted by the ledger.
    async fn lease(&self, call: LeaseCall) -> Result<LeaseAnswer, String>;
}

/// One step on a key's balance in the ledger.
#[derive(Debug, Clone)]
pub struct LeaseCall {
    pub key_id: String,
    /// The credits config a config key's balance was seeded from: a ledger
    /// holding another origin is reseeded. `None` (API keys): the ledger's
    /// balance is the truth, seeded only if absent.
    pub origin: Option<String>,
    pub seed: Balance,
    /// -1: never refills.
    pub current_period: i64,
    pub refill_amount: i64,
    pub wanted: i64,
    /// Given back − overdrawn.
    pub adjustment: i64,
    /// The period the adjustment belongs to (void after a refill).
    pub adjustment_period: i64,
}

/// What a step took, and what the ledger holds after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseAnswer {
    pub taken: i64,
    pub remaining: i64,
    pub period: i64,
}

impl LeaseCall {
    /// The step on `stored` (seeded from `origin`): the new balance and the
    /// answer. Ledgers that cannot run this code atomically (Redis) run the
    /// same rules as a script.
    pub fn apply(&self, stored_origin: Option<&str>, stored: Balance) -> (Balance, LeaseAnswer) {
        let mut balance = match &self.origin {
            Some(origin) if stored_origin != Some(origin.as_str()) => self.seed,
            _ => stored,
        };
        if self.current_period >= 0 && balance.period < self.current_period {
            balance = Balance {
                remaining: self.refill_amount,
                period: self.current_period,
            };
        }
        if self.adjustment_period == balance.period {
            balance.remaining = (balance.remaining + self.adjustment).max(0);
        }
        let taken = self.wanted.min(balance.remaining).max(0);
        balance.remaining -= taken;
        let answer = LeaseAnswer {
            taken,
            remaining: balance.remaining,
            period: balance.period,
        };
        (balance, answer)
    }
}

/// Shared credit accounts over one ledger.
pub struct SharedCredits {
    ledger: Box<dyn Ledger>,
    lease: i64,
    outage_credits: i64,
    /// The last call succeeded (failures are logged on the change only).
    healthy: std::sync::atomic::AtomicBool,
    accounts: moka::sync::Cache<String, Arc<SharedAccount>>,
}

/// One key's credits on this replica.
pub struct SharedAccount {
    key_id: String,
    origin: Option<String>,
    refill: Option<Refill>,
    /// Leased and not yet spent, for `period`.
    held: AtomicI64,
    period: AtomicI64,
    /// The ledger's balance after the last call (what the other replicas can
    /// still take); it seeds a ledger that lost its data.
    ledger: AtomicI64,
    /// Spent while the ledger was unreachable, to settle.
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
    pub fn start(ledger: Box<dyn Ledger>, lease: u32, outage_credits: u32) -> std::io::Result<Arc<Self>> {
        let shared = Arc::new(Self {
            ledger,
            lease: i64::from(lease.max(1)),
            outage_credits: i64::from(outage_credits),
            healthy: std::sync::atomic::AtomicBool::new(true),
            // An idle account has handed its lease back long before it is dropped.
            accounts: moka::sync::Cache::builder().time_to_idle(ACCOUNT_IDLE).build(),
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
                tracing::warn!(
                    "could not hand every credit lease back to {} before exiting",
                    self.ledger.name()
                );
            }
        });
    }

    /// The key's account; kept while its credits config (`origin`, refill)
    /// is unchanged. `origin`: see [`LeaseCall::origin`].
    pub fn account(
        self: &Arc<Self>,
        key_id: &str,
        opening: Balance,
        refill: Option<Refill>,
        origin: Option<String>,
    ) -> Arc<SharedAccount> {
        if let Some(existing) = self
            .accounts
            .get(key_id)
            .filter(|a| a.origin == origin && a.refill == refill)
        {
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

    /// One step on `account`'s balance in the ledger.
    async fn call(
        &self,
        account: &SharedAccount,
        now_ms: i64,
        wanted: i64,
        adjustment: i64,
        adjustment_period: i64,
    ) -> Result<LeaseAnswer, String> {
        let call = LeaseCall {
            key_id: account.key_id.clone(),
            origin: account.origin.clone(),
            seed: Balance {
                remaining: account.ledger.load(Ordering::Acquire),
                period: account.period.load(Ordering::Acquire),
            },
            current_period: account.refill.as_ref().map_or(-1, |r| period_of(Some(r), now_ms)),
            refill_amount: account.refill.as_ref().map_or(0, |r| r.amount),
            wanted,
            adjustment,
            adjustment_period,
        };
        let answer = self.ledger.lease(call).await;
        self.record(answer.as_ref().err());
        answer
    }

    /// Logs when the ledger goes away or comes back.
    fn record(&self, failure: Option<&String>) {
        let was_healthy = self.healthy.swap(failure.is_none(), Ordering::AcqRel);
        match failure {
            Some(e) if was_healthy => tracing::warn!(
                "{} unreachable, credits go on within state.outage_credits: {e}",
                self.ledger.name()
            ),
            Some(_) => {}
            None if !was_healthy => {
                tracing::info!("{} is reachable again: credits are shared again", self.ledger.name())
            }
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
    /// within `outage_credits` while the ledger is unreachable); answers the balance.
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
            Ok(answer) => {
                self.overdrawn.fetch_sub(overdrawn, Ordering::AcqRel);
                self.held.store(held + answer.taken, Ordering::Release);
                self.period.store(answer.period, Ordering::Release);
                self.ledger.store(answer.remaining, Ordering::Release);
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
            Ok(answer) => {
                self.overdrawn.fetch_sub(overdrawn, Ordering::AcqRel);
                self.ledger.store(answer.remaining, Ordering::Release);
                self.period.store(answer.period, Ordering::Release);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn call(origin: Option<&str>, wanted: i64) -> LeaseCall {
        LeaseCall {
            key_id: "key_1".into(),
            origin: origin.map(String::from),
            seed: Balance {
                remaining: 10,
                period: 0,
            },
            current_period: -1,
            refill_amount: 0,
            wanted,
            adjustment: 0,
            adjustment_period: 0,
        }
    }

    fn balance(remaining: i64, period: i64) -> Balance {
        Balance { remaining, period }
    }

    #[test]
    fn takes_at_most_what_is_left() {
        let (after, answer) = call(None, 3).apply(None, balance(2, 0));
        assert_eq!((after.remaining, answer.taken, answer.remaining), (0, 2, 0));
    }

    #[test]
    fn a_config_key_is_reseeded_when_its_origin_changed_and_an_api_key_never() {
        let (after, _) = call(Some("cfg-2"), 0).apply(Some("cfg-1"), balance(3, 0));
        assert_eq!(after.remaining, 10, "reseeded from the new credits config");
        let (after, _) = call(Some("cfg-1"), 0).apply(Some("cfg-1"), balance(3, 0));
        assert_eq!(after.remaining, 3, "same config: the ledger's balance stands");
        let (after, _) = call(None, 0).apply(None, balance(3, 0));
        assert_eq!(after.remaining, 3, "an API key's stored balance is the truth");
    }

    #[test]
    fn a_refill_replaces_the_balance_and_voids_older_adjustments() {
        let mut refilling = call(None, 1);
        refilling.current_period = 5;
        refilling.refill_amount = 100;
        refilling.adjustment = 4;
        refilling.adjustment_period = 4;
        let (after, answer) = refilling.apply(None, balance(0, 4));
        assert_eq!((after.remaining, after.period, answer.taken), (99, 5, 1));
    }

    #[test]
    fn adjustments_of_the_current_period_apply_and_never_go_below_zero() {
        let mut giving_back = call(None, 0);
        giving_back.adjustment = 2;
        assert_eq!(giving_back.apply(None, balance(1, 0)).0.remaining, 3);
        let mut overdrawn = call(None, 0);
        overdrawn.adjustment = -5;
        assert_eq!(overdrawn.apply(None, balance(1, 0)).0.remaining, 0);
    }
}
