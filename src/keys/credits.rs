//! Credit balances: one lock-free account per limited key,
//! shared by every request of this process, so N concurrent requests on M
//! credits admit exactly M. Balances are persisted write-behind (see
//! `KeyService::flush_credits`): a spend costs an atomic, never a disk write.
//!
//! A refill *replaces* the balance when a new period begins. Each account
//! remembers the period its balance belongs to; the first request of a new
//! period claims it with a compare-and-swap and stores the new amount. A
//! spend racing with that store is ordered before the refill, which is what
//! "replace" means.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;

use super::model::{Balance, Refill, RefillInterval};

const DAY_MS: i64 = 86_400_000;

/// The refill period `now_ms` falls in: days since the epoch (daily), or
/// months since January 1970 counted from each month's refill day (monthly).
pub fn period_of(refill: Option<&Refill>, now_ms: i64) -> i64 {
    let Some(refill) = refill else { return 0 };
    match refill.interval {
        RefillInterval::Daily => now_ms.div_euclid(DAY_MS),
        RefillInterval::Monthly => {
            let Ok(at) = time::OffsetDateTime::from_unix_timestamp(now_ms.div_euclid(1000)) else {
                return 0;
            };
            let (year, month, day) = (at.year(), at.month(), at.day());
            let last_day = month.length(year);
            let refill_day = refill.refill_day.unwrap_or(1).clamp(1, 31).min(last_day);
            let index = i64::from(year) * 12 + i64::from(u8::from(month)) - 1;
            if day >= refill_day {
                index
            } else {
                index - 1
            }
        }
    }
}

/// One key's live balance.
#[derive(Debug)]
pub struct CreditAccount {
    remaining: AtomicI64,
    period: AtomicI64,
    refill: Option<Refill>,
    /// For a config key: the credits config the balance was seeded from.
    origin: Option<String>,
    /// Changed since the last flush to the store.
    dirty: AtomicBool,
}

impl CreditAccount {
    pub fn new(balance: Balance, refill: Option<Refill>) -> Self {
        Self {
            remaining: AtomicI64::new(balance.remaining),
            period: AtomicI64::new(balance.period),
            refill,
            origin: None,
            dirty: AtomicBool::new(false),
        }
    }

    /// A config key's account, seeded from the credits config `origin`.
    pub fn seeded(balance: Balance, refill: Option<Refill>, origin: String) -> Self {
        Self {
            origin: Some(origin),
            ..Self::new(balance, refill)
        }
    }

    pub fn origin(&self) -> Option<&str> {
        self.origin.as_deref()
    }

    /// A fresh balance for a key created at `now_ms`: no refill until the next period.
    pub fn opening(remaining: i64, refill: Option<&Refill>, now_ms: i64) -> Balance {
        Balance {
            remaining,
            period: period_of(refill, now_ms),
        }
    }

    fn refill_for(&self, now_ms: i64) {
        let Some(refill) = &self.refill else { return };
        let current = period_of(Some(refill), now_ms);
        let seen = self.period.load(Ordering::Acquire);
        if seen < current
            && self
                .period
                .compare_exchange(seen, current, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            self.remaining.store(refill.amount, Ordering::Release);
            self.dirty.store(true, Ordering::Release);
        }
    }

    /// The balance at `now_ms` (refilled if a period began).
    pub fn available(&self, now_ms: i64) -> i64 {
        self.refill_for(now_ms);
        self.remaining.load(Ordering::Acquire)
    }

    /// Deducts `cost` if the balance covers it: `Ok(balance after)`, or
    /// `Err(balance)` when it does not. A cost of 0 never fails.
    pub fn spend(&self, cost: i64, now_ms: i64) -> Result<i64, i64> {
        self.refill_for(now_ms);
        if cost <= 0 {
            return Ok(self.remaining.load(Ordering::Acquire));
        }
        let result = self
            .remaining
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |left| {
                (left >= cost).then(|| left - cost)
            });
        match result {
            Ok(before) => {
                self.dirty.store(true, Ordering::Release);
                Ok(before - cost)
            }
            Err(left) => Err(left),
        }
    }

    /// Gives back what a spend took (a later check of the same request failed).
    pub fn refund(&self, cost: i64) {
        if cost > 0 {
            self.remaining.fetch_add(cost, Ordering::AcqRel);
            self.dirty.store(true, Ordering::Release);
        }
    }

    /// Sets the balance (admin `set`), keeping the current period.
    pub fn set(&self, remaining: i64) {
        self.remaining.store(remaining, Ordering::Release);
        self.dirty.store(true, Ordering::Release);
    }

    /// Adds `delta` (negative to take), never going below zero; returns the new balance.
    pub fn adjust(&self, delta: i64) -> i64 {
        let update = |left: i64| Some(left.saturating_add(delta).max(0));
        let before = self
            .remaining
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, update)
            .unwrap_or_else(|left| left);
        self.dirty.store(true, Ordering::Release);
        before.saturating_add(delta).max(0)
    }

    pub fn balance(&self) -> Balance {
        Balance {
            remaining: self.remaining.load(Ordering::Acquire),
            period: self.period.load(Ordering::Acquire),
        }
    }

    /// Marks the balance as not yet persisted (a flush failed).
    pub fn mark_dirty(&self) {
        self.dirty.store(true, Ordering::Release);
    }

    /// True once per change: the caller persists [`Self::balance`].
    pub fn take_dirty(&self) -> bool {
        self.dirty.swap(false, Ordering::AcqRel)
    }
}

/// Every live account of this process, by key id. Never evicts: an account
/// is the balance's authority until the key is deleted.
pub struct CreditLedger {
    accounts: moka::sync::Cache<String, Arc<CreditAccount>>,
}

impl Default for CreditLedger {
    fn default() -> Self {
        Self {
            accounts: moka::sync::Cache::builder().build(),
        }
    }
}

impl CreditLedger {
    /// The key's account, opened from `initial` the first time it is needed.
    pub fn account(
        &self,
        key_id: &str,
        refill: Option<Refill>,
        initial: impl FnOnce() -> Balance,
    ) -> Arc<CreditAccount> {
        self.accounts
            .get_with_by_ref(key_id, || Arc::new(CreditAccount::new(initial(), refill)))
    }

    pub fn get(&self, key_id: &str) -> Option<Arc<CreditAccount>> {
        self.accounts.get(key_id)
    }

    /// Installs a new account (credits changed by the admin API, or a config
    /// key seeded). Its balance is already where the caller wants it stored.
    pub fn replace(&self, key_id: &str, account: CreditAccount) -> Arc<CreditAccount> {
        let account = Arc::new(account);
        self.accounts.insert(key_id.to_string(), account.clone());
        account
    }

    pub fn remove(&self, key_id: &str) {
        self.accounts.invalidate(key_id);
    }

    /// Balances changed since the last call.
    pub fn take_dirty(&self) -> Vec<(String, Balance, Option<String>)> {
        self.accounts
            .iter()
            .filter(|(_, account)| account.take_dirty())
            .map(|(id, account)| ((*id).clone(), account.balance(), account.origin.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> i64 {
        let parsed = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).unwrap();
        (parsed.unix_timestamp_nanos() / 1_000_000) as i64
    }

    fn monthly(day: u8) -> Refill {
        Refill {
            interval: RefillInterval::Monthly,
            amount: 10,
            refill_day: Some(day),
        }
    }

    #[test]
    fn daily_periods_turn_at_midnight_utc() {
        let daily = Refill {
            interval: RefillInterval::Daily,
            amount: 5,
            refill_day: None,
        };
        let p = |t| period_of(Some(&daily), at(t));
        assert_eq!(p("2024-03-01T23:59:59Z"), p("2024-03-01T00:00:00Z"));
        assert_eq!(p("2024-03-02T00:00:00Z"), p("2024-03-01T00:00:00Z") + 1);
    }

    #[test]
    fn monthly_periods_clamp_to_the_last_day() {
        let p = |day, t| period_of(Some(&monthly(day)), at(t));
        assert_eq!(p(15, "2024-03-14T23:59:59Z") + 1, p(15, "2024-03-15T00:00:00Z"));
        // Day 31 in February (leap year): the 29th.
        assert_eq!(p(31, "2024-02-28T12:00:00Z") + 1, p(31, "2024-02-29T00:00:00Z"));
        assert_eq!(p(31, "2024-02-29T00:00:00Z"), p(31, "2024-03-30T00:00:00Z"));
        assert_eq!(p(31, "2024-03-31T00:00:00Z"), p(31, "2024-02-29T00:00:00Z") + 1);
    }

    #[test]
    fn spending_never_goes_negative_and_refill_replaces() {
        let daily = Refill {
            interval: RefillInterval::Daily,
            amount: 3,
            refill_day: None,
        };
        let now = at("2024-03-01T10:00:00Z");
        let account = CreditAccount::new(CreditAccount::opening(2, Some(&daily), now), Some(daily));
        assert_eq!(account.spend(1, now), Ok(1));
        assert_eq!(account.spend(2, now), Err(1));
        assert_eq!(account.spend(0, now), Ok(1));
        assert_eq!(account.spend(1, now), Ok(0));
        assert_eq!(account.spend(1, now), Err(0));
        let tomorrow = at("2024-03-02T00:00:01Z");
        assert_eq!(account.available(tomorrow), 3, "replaced, not added");
        assert_eq!(account.spend(3, tomorrow), Ok(0));
        assert_eq!(account.available(tomorrow), 0, "one refill per period");
        assert_eq!(account.adjust(-5), 0);
        assert_eq!(account.adjust(4), 4);
    }

    #[test]
    fn concurrent_spends_admit_exactly_the_balance() {
        let account = Arc::new(CreditAccount::new(
            Balance {
                remaining: 1000,
                period: 0,
            },
            None,
        ));
        let admitted: usize = (0..8)
            .map(|_| {
                let account = account.clone();
                std::thread::spawn(move || (0..500).filter(|_| account.spend(1, 0).is_ok()).count())
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap())
            .sum();
        assert_eq!(admitted, 1000);
        assert_eq!(account.available(0), 0);
    }
}
