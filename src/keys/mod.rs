//! API keys: keyspaces and keys, their store (embedded, or PostgreSQL
//! shared by replicas), the caches in front of it, credit balances, the
//! [`catalogue`] of identities, permissions, roles and rate-limit
//! overrides, and the one verification procedure behind the `keyauth`
//! policy and `keys.verifyKey`.
//!
//! [`KeyService`] is process-wide: opened once at start-up on `state.dir`
//! or `state.database`, shared by every snapshot. [`StaticKeys`] (config keys) belong to a
//! snapshot and are swapped with it. A verification looks in the static
//! keys, then the positive cache, then the negative cache, and only then
//! reads the store — off the async workers.

pub mod catalogue;
pub mod changes;
pub mod credits;
mod hash_memo;
mod hot;
pub mod migrate;
pub mod model;
pub mod permissions;
mod postgres;
pub mod principal;
pub mod roles;
mod shared_credits;
mod sqlite;
mod sqlite_catalogue;
pub mod statics;
pub mod store;
pub mod verify;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use crate::clock::{now_ms, unix_ms_at};
use arc_swap::{ArcSwap, Guard};
use catalogue::CatalogueStore;
use changes::Change;
use credits::{period_of, CreditAccount, CreditLedger};
use model::{Balance, KeyHash, Refill, StoredKey};
use roles::RoleGrants;
use shared_credits::{RedisLedger, SharedCredits};
pub use statics::StaticKeys;
use store::{BalanceWrite, KeyStore, RecordStore, StoreError};
use verify::{ActiveKey, Credits, Verdict, Verification, VerifyRequest};

use crate::ratelimit::RateLimiter;
use crate::state::StateSettings;

/// How long a verified key of the embedded store is trusted without
/// rereading it. Admin changes on this process invalidate at once; this
/// bounds changes made by another process (the CLI writing the store
/// directly). A shared database announces every change instead, so there
/// the TTL is `state.cache_ttl`.
const EMBEDDED_FOUND_TTL: Duration = Duration::from_secs(10);
const FOUND_CAPACITY: u64 = 100_000;
/// Unknown hashes are remembered briefly, so a flood of random keys costs
/// one store read per distinct key at most once per TTL.
const MISSING_TTL: Duration = Duration::from_secs(10);
const MISSING_CAPACITY: u64 = 50_000;
/// How often spent credits are written to the store.
const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// The process's keys: store, caches, credit ledger and rate limiter.
pub struct KeyService {
    store: Arc<dyn KeyStore>,
    catalogue: Arc<dyn CatalogueStore>,
    records: Arc<dyn RecordStore>,
    /// Bumped whenever another replica changed the records.
    records_changed: tokio::sync::watch::Sender<u64>,
    /// The roles' permissions, reloaded on every catalogue change.
    roles: ArcSwap<RoleGrants>,
    ledger: CreditLedger,
    limiter: RateLimiter,
    /// Config keys' credits shared by replicas (`state.redis`, else `state.database`).
    shared_credits: Option<Arc<SharedCredits>>,
    /// API keys' credits in `state.database`; `None`: spent from [`Self::ledger`].
    store_credits: Option<Arc<SharedCredits>>,
    /// Keyed by the key's SHA-256, looked up on every authenticated
    /// request the thread's [`hot`] keys miss: hashed with ahash (randomly
    /// keyed) rather than SipHash.
    found: moka::sync::Cache<KeyHash, Found, ahash::RandomState>,
    found_ttl: Duration,
    missing: moka::sync::Cache<KeyHash, (), ahash::RandomState>,
    /// Moves before and after every invalidation (see [`Self::invalidating`]).
    generation: AtomicU64,
    /// This service's number in the threads' [`hot`] keys.
    id: u64,
}

/// A key in the shared cache, and when its time to live there ends (which
/// bounds its copies in the threads' [`hot`] keys too).
#[derive(Clone)]
struct Found {
    key: Arc<ActiveKey>,
    until: Instant,
}

/// What a snapshot holds of keys: the service and this config's static keys.
#[derive(Clone)]
pub struct Keys {
    pub service: Arc<KeyService>,
    pub statics: Arc<StaticKeys>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys")
            .field("statics", &self.statics)
            .finish_non_exhaustive()
    }
}

/// How `update_key` changes credits.
#[derive(Debug, Clone, Copy)]
pub enum CreditChange {
    Keep,
    /// Unlimited from now on.
    Unlimited,
    /// Limited: a new refill plan, and a new balance (`None`: keep the current one).
    Limited {
        remaining: Option<i64>,
        refill: Option<Refill>,
    },
}

/// `keys.updateCredits` operations.
#[derive(Debug, Clone, Copy)]
pub enum CreditAdjustment {
    Set(i64),
    Increment(i64),
    Decrement(i64),
}

/// The ledgers replicas lease credits from; `None`: this process's own.
#[derive(Default)]
struct CreditSharing {
    config_keys: Option<Arc<SharedCredits>>,
    api_keys: Option<Arc<SharedCredits>>,
}

impl KeyService {
    /// A service on `store`; the role catalogue and the rate-limit
    /// overrides it holds are loaded (the overrides into `limiter`).
    fn with_store<S: KeyStore + CatalogueStore + RecordStore + 'static>(
        store: Arc<S>,
        limiter: RateLimiter,
        sharing: CreditSharing,
        found_ttl: Duration,
    ) -> Result<Self, StoreError> {
        let roles = RoleGrants::new(0, store.role_grants()?);
        limiter.overrides().install(store.all_overrides()?);
        Ok(Self {
            catalogue: store.clone(),
            records: store.clone(),
            records_changed: tokio::sync::watch::Sender::new(0),
            store,
            roles: ArcSwap::from_pointee(roles),
            ledger: CreditLedger::default(),
            limiter,
            shared_credits: sharing.config_keys,
            store_credits: sharing.api_keys,
            found: moka::sync::Cache::builder()
                .max_capacity(FOUND_CAPACITY)
                .time_to_live(found_ttl)
                .support_invalidation_closures()
                .build_with_hasher(ahash::RandomState::new()),
            found_ttl,
            missing: moka::sync::Cache::builder()
                .max_capacity(MISSING_CAPACITY)
                .time_to_live(MISSING_TTL)
                .build_with_hasher(ahash::RandomState::new()),
            generation: AtomicU64::new(0),
            id: hot::service_id(),
        })
    }

    /// Opens the store for serving — `state.database` when set (and starts
    /// listening for the other replicas' changes), else the embedded one in
    /// `state.dir/keys` — and starts writing spent credits back every
    /// second. Key and identity limits count in `limiter`. Replicas share
    /// credits through a ledger: config keys' through `state.redis` (over
    /// the limiter's link) or else `state.database`, API keys' through
    /// `state.database`.
    pub fn open(state: &StateSettings, limiter: RateLimiter) -> Result<Arc<Self>, StoreError> {
        let start = |ledger: Box<dyn shared_credits::Ledger>| {
            SharedCredits::start(ledger, state.credit_lease, state.outage_credits).map_err(|source| StoreError::Io {
                path: "credits sync thread".into(),
                source,
            })
        };
        let redis = match limiter.redis_link() {
            Some(link) => Some(start(Box::new(RedisLedger::new(link)))?),
            None => None,
        };
        let service = match &state.database {
            Some(url) => {
                let store = Arc::new(postgres::PgStore::open(url)?);
                let database = start(Box::new(postgres::PgLedger::new(store.clone())))?;
                let sharing = CreditSharing {
                    config_keys: Some(redis.unwrap_or_else(|| database.clone())),
                    api_keys: Some(database),
                };
                let service = Arc::new(Self::with_store(store.clone(), limiter, sharing, state.cache_ttl)?);
                let weak = Arc::downgrade(&service);
                postgres::listen(&store, move |change| {
                    if let Some(service) = weak.upgrade() {
                        service.apply(change);
                    }
                });
                service
            }
            None => {
                let dir = state.subdir("keys").map_err(|source| StoreError::Io {
                    path: state.dir.join("keys").display().to_string(),
                    source,
                })?;
                let store = Arc::new(sqlite::SqliteStore::open(&dir)?);
                let sharing = CreditSharing {
                    config_keys: redis,
                    api_keys: None,
                };
                Arc::new(Self::with_store(store, limiter, sharing, EMBEDDED_FOUND_TTL)?)
            }
        };
        let weak = Arc::downgrade(&service);
        std::thread::Builder::new()
            .name("keygate-credits".into())
            .spawn(move || flush_loop(weak))
            .map_err(|source| StoreError::Io {
                path: "credits flush thread".into(),
                source,
            })?;
        Ok(service)
    }

    /// The store in `state.dir` if one exists, else an empty in-memory one:
    /// for `keygate check`, which must not create state.
    pub fn open_existing(state: &StateSettings) -> Result<Arc<Self>, StoreError> {
        let dir = state.dir.join("keys");
        if dir.join("keys.db").exists() {
            let store = Arc::new(sqlite::SqliteStore::open(&dir)?);
            Ok(Arc::new(Self::with_store(
                store,
                RateLimiter::default(),
                CreditSharing::default(),
                EMBEDDED_FOUND_TTL,
            )?))
        } else {
            Self::in_memory()
        }
    }

    /// A service over a fresh in-memory store (tests, benchmarks, `check`).
    pub fn in_memory() -> Result<Arc<Self>, StoreError> {
        let store = Arc::new(sqlite::SqliteStore::in_memory()?);
        Ok(Arc::new(Self::with_store(
            store,
            RateLimiter::default(),
            CreditSharing::default(),
            EMBEDDED_FOUND_TTL,
        )?))
    }

    /// Writes spent credits before a graceful exit (at most a second is
    /// otherwise still in memory), and hands leased shared credits back.
    pub fn flush_before_exit(&self) {
        if let Err(e) = self.flush_credits() {
            tracing::warn!("cannot persist credit balances before exiting: {e}");
        }
        if let Some(shared) = &self.shared_credits {
            shared.give_back_all();
        }
    }

    pub fn store(&self) -> &dyn KeyStore {
        self.store.as_ref()
    }

    /// The control plane's records. After a change, call
    /// [`Self::records_written`] so the other replicas reload them.
    pub fn records(&self) -> &dyn RecordStore {
        self.records.as_ref()
    }

    /// Tells the other replicas that the records changed.
    pub fn records_written(&self) {
        self.announce(Change::Records);
    }

    /// Follows the other replicas' record changes.
    pub fn follow_records(&self) -> tokio::sync::watch::Receiver<u64> {
        self.records_changed.subscribe()
    }

    /// Identities, permissions, roles and rate-limit overrides. After a
    /// change, call [`Self::roles_changed`], [`Self::identity_changed`] or
    /// [`Self::overrides_changed`] so it takes effect at once.
    pub fn catalogue(&self) -> &dyn CatalogueStore {
        self.catalogue.as_ref()
    }

    /// The roles' permissions as verification uses them now.
    pub fn role_grants(&self) -> Guard<Arc<RoleGrants>> {
        self.roles.load()
    }

    /// Roles or their permissions changed: every key's roles are resolved
    /// again on its next verification (cached and config keys included).
    /// When the change also rewrote key records (a rename or a deletion),
    /// `records_rewritten` forgets every cached key as well.
    pub fn roles_changed(&self, records_rewritten: bool) -> Result<(), StoreError> {
        self.roles_changed_here(records_rewritten)?;
        self.announce(Change::Roles { records_rewritten });
        Ok(())
    }

    fn roles_changed_here(&self, records_rewritten: bool) -> Result<(), StoreError> {
        let generation = self.roles.load().generation + 1;
        self.roles
            .store(Arc::new(RoleGrants::new(generation, self.catalogue.role_grants()?)));
        if records_rewritten {
            self.invalidating(|| self.found.invalidate_all());
        }
        Ok(())
    }

    /// The identity `external_id` changed (or appeared, or went): its
    /// cached keys are read again.
    pub fn identity_changed(&self, external_id: &str) {
        self.identity_changed_here(external_id);
        self.announce(Change::Identity(external_id.to_string()));
    }

    fn identity_changed_here(&self, external_id: &str) {
        let external_id = external_id.to_string();
        let of_identity = move |_: &KeyHash, found: &Found| {
            found
                .key
                .record
                .identity
                .as_ref()
                .is_some_and(|i| i.external_id == external_id)
        };
        self.invalidating(|| {
            if let Err(e) = self.found.invalidate_entries_if(of_identity) {
                // The cache supports invalidation closures (see `with_store`); should
                // that ever fail, forgetting everything beats serving stale meta.
                tracing::warn!("cannot invalidate an identity's keys alone ({e}); forgetting every cached key");
                self.found.invalidate_all();
            }
        });
    }

    /// Runs `drop`, which drops cached keys, between two moves of the
    /// generation. The one before: a lookup that read the store meanwhile
    /// does not cache what it read. The one after: what a thread took from
    /// the shared cache meanwhile, perhaps just before `drop` removed it,
    /// is not served again from its hot keys.
    fn invalidating(&self, drop: impl FnOnce()) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        drop();
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Rate-limit overrides changed: the limiter applies the stored ones from now on.
    pub fn overrides_changed(&self) -> Result<(), StoreError> {
        self.overrides_changed_here()?;
        self.announce(Change::Overrides);
        Ok(())
    }

    fn overrides_changed_here(&self) -> Result<(), StoreError> {
        self.limiter.overrides().install(self.catalogue.all_overrides()?);
        Ok(())
    }

    /// Tells the processes sharing the store about a change made here.
    fn announce(&self, change: Change) {
        if let Err(e) = self.store.announce(&change) {
            tracing::warn!("cannot tell the other replicas about a change ({change:?}); their caches catch up within state.cache_ttl: {e}");
        }
    }

    /// A change another process announced (or [`Change::Everything`] after
    /// announcements may have been missed): the caches drop what it touched.
    pub fn apply(&self, change: Change) {
        let reloaded = match change {
            Change::Key(hash) => {
                self.forget_here(&hash);
                Ok(())
            }
            Change::Identity(external_id) => {
                self.identity_changed_here(&external_id);
                Ok(())
            }
            Change::Roles { records_rewritten } => self.roles_changed_here(records_rewritten),
            Change::Overrides => self.overrides_changed_here(),
            Change::Records => {
                self.records_changed.send_modify(|n| *n += 1);
                Ok(())
            }
            Change::Everything => {
                self.records_changed.send_modify(|n| *n += 1);
                self.invalidating(|| {
                    self.found.invalidate_all();
                    self.missing.invalidate_all();
                });
                self.roles_changed_here(true)
                    .and_then(|()| self.overrides_changed_here())
            }
        };
        if let Err(e) = reloaded {
            tracing::warn!("cannot apply another replica's change: {e}");
        }
    }

    /// The process's rate-limit counters, which `ratelimit` policies and
    /// `ratelimit.limit` share with key limits.
    pub fn limiter(&self) -> &RateLimiter {
        &self.limiter
    }

    /// A config key's credit account: kept while its credits config is
    /// unchanged (reloads do not reset balances), else reseeded — from the
    /// store when it persisted a balance for this config. With
    /// `state.redis`, replicas share the balance (the opening one seeds the
    /// ledger if it has none for this config).
    pub(crate) fn static_account(
        &self,
        key_id: &str,
        opening: Balance,
        refill: Option<Refill>,
        origin: String,
    ) -> Credits {
        if let Some(existing) = self.ledger.get(key_id).filter(|a| a.origin() == Some(origin.as_str())) {
            return Credits::Local(existing);
        }
        let persisted = self.store.static_balance(key_id, &origin).unwrap_or_else(|e| {
            tracing::warn!(
                key_id,
                "cannot read the persisted balance, starting from the config: {e}"
            );
            None
        });
        let balance = persisted.unwrap_or(opening);
        match &self.shared_credits {
            Some(shared) => Credits::Shared(shared.account(key_id, balance, refill, Some(origin))),
            None => Credits::Local(
                self.ledger
                    .replace(key_id, CreditAccount::seeded(balance, refill, origin)),
            ),
        }
    }

    /// A stored key, compiled for verification with its live credit account.
    pub fn activate(&self, stored: StoredKey) -> ActiveKey {
        let account = stored.record.credits.map(|plan| {
            let opening = || {
                stored
                    .balance
                    .unwrap_or_else(|| CreditAccount::opening(0, plan.refill.as_ref(), now_ms()))
            };
            match &self.store_credits {
                Some(shared) => Credits::Shared(shared.account(&stored.record.id, opening(), plan.refill, None)),
                None => Credits::Local(self.ledger.account(&stored.record.id, plan.refill, opening)),
            }
        });
        ActiveKey::new(stored.record, account, &self.roles.load())
    }

    /// The key with this hash: static, cached, or read from the store.
    /// `at` is now, or a moment ago the caller read anyway: a key this thread
    /// holds is served while the shared cache's entry it came from was
    /// fresh at `at`.
    pub async fn lookup(
        &self,
        statics: &StaticKeys,
        hash: &KeyHash,
        at: Instant,
    ) -> Result<Option<Arc<ActiveKey>>, StoreError> {
        if let Some(key) = statics.by_hash(hash) {
            return Ok(Some(key.clone()));
        }
        let stamp = hot::Stamp {
            service: self.id,
            generation: self.generation.load(Ordering::Acquire),
        };
        if let Some(key) = hot::get(stamp, hash, at) {
            return Ok(Some(key));
        }
        if let Some(Found { key, until }) = self.found.get(hash) {
            hot::put(stamp, *hash, until, key.clone());
            return Ok(Some(key));
        }
        if self.missing.contains_key(hash) {
            return Ok(None);
        }
        let store = self.store.clone();
        let wanted = *hash;
        let loaded = tokio::task::spawn_blocking(move || store.key_by_hash(&wanted))
            .await
            .map_err(|e| StoreError::Task(e.to_string()))??;
        let active = loaded.map(|stored| Arc::new(self.activate(stored)));
        if self.generation.load(Ordering::Acquire) == stamp.generation {
            match &active {
                Some(key) => self.found.insert(
                    *hash,
                    Found {
                        key: key.clone(),
                        until: Instant::now() + self.found_ttl,
                    },
                ),
                None => self.missing.insert(*hash, ()),
            }
        }
        Ok(active)
    }

    /// Verifies a presented key, checks in the documented order (docs/config.md, `keyauth`).
    pub async fn verify(&self, statics: &StaticKeys, plaintext: &str, request: &VerifyRequest<'_>) -> Verification {
        let hash = hash_memo::hash_key_remembered(plaintext);
        match self.lookup(statics, &hash, request.at).await {
            Ok(key) => {
                if let Some(key) = &key {
                    key.refresh(&self.roles.load());
                }
                verify::verify(key, request, &self.limiter, unix_ms_at(request.at)).await
            }
            Err(e) => {
                tracing::error!("key lookup failed: {e}");
                Verification {
                    verdict: Verdict::Unavailable(e.to_string()),
                    key: None,
                    credits: None,
                    limits: Vec::new(),
                }
            }
        }
    }

    /// Forgets what the caches here and in the other replicas know about
    /// `hash` (an admin change).
    fn forget(&self, hash: &KeyHash) {
        self.forget_here(hash);
        self.announce(Change::Key(*hash));
    }

    fn forget_here(&self, hash: &KeyHash) {
        self.invalidating(|| {
            self.found.invalidate(hash);
            self.missing.invalidate(hash);
        });
    }

    /// The balance as it stands now (live account if any, else as stored).
    pub fn live_balance(&self, stored: &StoredKey) -> Option<i64> {
        let plan = stored.record.credits?;
        match self.ledger.get(&stored.record.id) {
            Some(account) => Some(account.available(now_ms())),
            None => {
                let balance = stored.balance?;
                let account = CreditAccount::new(balance, plan.refill);
                Some(account.available(now_ms()))
            }
        }
    }

    pub fn insert_key(&self, key: &StoredKey) -> Result<(), StoreError> {
        self.store.insert_key(key)?;
        self.forget(&key.hash);
        Ok(())
    }

    /// Writes a changed record (and credits); effective at once on this process.
    pub fn update_key(&self, key: &StoredKey, credits: CreditChange) -> Result<(), StoreError> {
        let id = key.record.id.as_str();
        let mut write = || match credits {
            CreditChange::Keep => BalanceWrite::Keep,
            CreditChange::Unlimited => {
                self.ledger.remove(id);
                BalanceWrite::Clear
            }
            CreditChange::Limited { remaining, refill } => {
                let now = now_ms();
                let current = self
                    .ledger
                    .get(id)
                    .map(|a| a.available(now))
                    .or_else(|| self.live_balance(key))
                    .unwrap_or(0);
                let balance = Balance {
                    remaining: remaining.unwrap_or(current),
                    period: period_of(refill.as_ref(), now),
                };
                self.ledger.replace(id, CreditAccount::new(balance, refill));
                BalanceWrite::Set(balance)
            }
        };
        self.store.update_key(key, &mut write)?;
        self.leave_balance_to_the_ledger(id);
        self.forget(&key.hash);
        Ok(())
    }

    /// Changes a limited key's balance under the store's write lock.
    pub fn adjust_credits(&self, key: &StoredKey, change: CreditAdjustment) -> Result<i64, StoreError> {
        let plan = key.record.credits.unwrap_or_default();
        let opening = key.balance;
        let account = self.ledger.account(&key.record.id, plan.refill, || {
            opening.unwrap_or_else(|| CreditAccount::opening(0, plan.refill.as_ref(), now_ms()))
        });
        let mut remaining = 0;
        self.store.update_key(key, &mut || {
            remaining = match change {
                CreditAdjustment::Set(value) => {
                    account.set(value);
                    value
                }
                CreditAdjustment::Increment(delta) => account.adjust(delta),
                CreditAdjustment::Decrement(delta) => account.adjust(-delta),
            };
            BalanceWrite::Set(Balance {
                remaining,
                period: account.balance().period,
            })
        })?;
        self.leave_balance_to_the_ledger(&key.record.id);
        self.forget(&key.hash);
        Ok(remaining)
    }

    /// With a shared ledger, an admin change computes the balance in a
    /// local account and writes it to the store, where the ledger reads it:
    /// the account must go, or its next write-back would overwrite what the
    /// replicas spend meanwhile.
    fn leave_balance_to_the_ledger(&self, key_id: &str) {
        if self.store_credits.is_some() {
            self.ledger.remove(key_id);
        }
    }

    pub fn delete_key(&self, id: &str, permanent: bool) -> Result<(), StoreError> {
        let removed = self.store.delete_key(id, permanent, now_ms())?;
        self.ledger.remove(&removed.key_id);
        self.forget(&removed.hash);
        Ok(())
    }

    pub fn delete_keyspace(&self, id: &str) -> Result<(), StoreError> {
        for removed in self.store.delete_keyspace(id, now_ms())? {
            self.ledger.remove(&removed.key_id);
            self.forget(&removed.hash);
        }
        Ok(())
    }

    /// Writes changed balances to the store (kept for the next try if that fails).
    pub fn flush_credits(&self) -> Result<(), StoreError> {
        let mut taken = Vec::new();
        let saved = self.store.save_balances(&mut || {
            taken = self.ledger.take_dirty();
            taken.clone()
        });
        if saved.is_err() {
            for (key_id, _, _) in &taken {
                if let Some(account) = self.ledger.get(key_id) {
                    account.mark_dirty();
                }
            }
        }
        saved
    }
}

fn flush_loop(service: Weak<KeyService>) {
    loop {
        std::thread::sleep(FLUSH_EVERY);
        let Some(service) = service.upgrade() else { return };
        if let Err(e) = service.flush_credits() {
            tracing::warn!("cannot persist credit balances (retrying): {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::{hash_key, KeyRecord, Keyspace};

    const KEY: &str = "sk_hot_key";

    fn stored(tag: &str) -> StoredKey {
        let mut meta = serde_json::Map::new();
        meta.insert("tag".into(), tag.into());
        StoredKey {
            hash: hash_key(KEY),
            record: KeyRecord {
                meta,
                ..KeyRecord::bare("key_hot", "ks_hot", "sk_h")
            },
            balance: None,
        }
    }

    fn service(found_ttl: Duration) -> Arc<KeyService> {
        let store = Arc::new(sqlite::SqliteStore::in_memory().unwrap());
        let service =
            KeyService::with_store(store, RateLimiter::default(), CreditSharing::default(), found_ttl).unwrap();
        let keyspace = Keyspace {
            id: "ks_hot".into(),
            name: "hot".into(),
            created_at: 0,
        };
        service.store().create_keyspace(&keyspace).unwrap();
        Arc::new(service)
    }

    /// The key verified as presented `at`.
    async fn presented_at(service: &KeyService, at: Instant) -> Verification {
        let request = VerifyRequest {
            keyspaces: None,
            cost: 0,
            ratelimits: &[],
            permissions: None,
            at,
        };
        service.verify(&StaticKeys::default(), KEY, &request).await
    }

    /// The key's `tag`, or `None` when it does not verify.
    async fn tag_of(service: &KeyService) -> Option<String> {
        let verified = presented_at(service, Instant::now()).await;
        match verified.verdict {
            Verdict::Valid => Some(verified.key?.record.meta["tag"].as_str()?.to_string()),
            _ => None,
        }
    }

    #[tokio::test]
    async fn a_key_is_checked_as_of_when_it_was_presented() {
        let service = service(EMBEDDED_FOUND_TTL);
        let mut key = stored("one");
        key.record.expires = Some(now_ms() + 60_000);
        service.insert_key(&key).unwrap();
        let now = Instant::now();
        assert_eq!(presented_at(&service, now).await.verdict, Verdict::Valid);
        // Held hot now, but presented after both its expiry and the time
        // its cached copy may be served.
        let later = now + EMBEDDED_FOUND_TTL + Duration::from_secs(120);
        assert_eq!(presented_at(&service, later).await.verdict, Verdict::Expired);
    }

    #[tokio::test]
    async fn a_change_made_here_is_seen_at_once_though_the_thread_keeps_the_key_hot() {
        let service = service(EMBEDDED_FOUND_TTL);
        service.insert_key(&stored("one")).unwrap();
        // The first read fills the caches; the second is served hot.
        assert_eq!(tag_of(&service).await.as_deref(), Some("one"));
        assert_eq!(tag_of(&service).await.as_deref(), Some("one"));
        service.update_key(&stored("two"), CreditChange::Keep).unwrap();
        assert_eq!(tag_of(&service).await.as_deref(), Some("two"));
        assert_eq!(tag_of(&service).await.as_deref(), Some("two"));
        service.apply(Change::Everything);
        assert_eq!(tag_of(&service).await.as_deref(), Some("two"));
        service.delete_key("key_hot", true).unwrap();
        assert_eq!(tag_of(&service).await, None);
    }

    #[tokio::test]
    async fn a_change_written_behind_the_services_back_is_seen_once_the_cache_time_is_up() {
        let ttl = Duration::from_millis(50);
        let service = service(ttl);
        service.insert_key(&stored("one")).unwrap();
        assert_eq!(tag_of(&service).await.as_deref(), Some("one"));
        // As the CLI writing the embedded store directly: no invalidation.
        service
            .store()
            .update_key(&stored("two"), &mut || BalanceWrite::Keep)
            .unwrap();
        assert_eq!(tag_of(&service).await.as_deref(), Some("one"), "cached within its time");
        // Waiting out the time to live is what this test is about.
        std::thread::sleep(ttl * 2);
        assert_eq!(tag_of(&service).await.as_deref(), Some("two"));
    }

    #[tokio::test]
    async fn a_threads_hot_keys_belong_to_the_service_that_verified_them() {
        let holder = service(EMBEDDED_FOUND_TTL);
        let other = service(EMBEDDED_FOUND_TTL);
        holder.insert_key(&stored("one")).unwrap();
        assert_eq!(tag_of(&holder).await.as_deref(), Some("one"));
        assert_eq!(tag_of(&holder).await.as_deref(), Some("one"));
        assert_eq!(tag_of(&other).await, None);
    }
}
