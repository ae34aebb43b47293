//! Where keys persist: the [`KeyStore`] trait the rest of keygate talks to,
//! implemented by the embedded store ([`super::sqlite::SqliteStore`]) and
//! the shared database ([`super::postgres::PgStore`]).

use super::changes::Change;
use super::model::{Balance, KeyHash, Keyspace, StoredKey};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("key store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The schema cannot be brought to this keygate's version.
    #[error("key store: the database schema cannot be brought to this keygate's version (was it written by a newer keygate?): {0}")]
    Schema(#[from] rusqlite_migration::Error),
    /// The shared database failed a query (or a row did not decode).
    #[error("key store (postgres): {0}")]
    Postgres(#[from] tokio_postgres::Error),
    /// The shared database cannot be reached: the caller may answer 503.
    #[error("key store: the database is unreachable: {0}")]
    Unreachable(String),
    /// The shared database's schema is newer than this keygate knows.
    #[error(
        "key store: the database schema is at version {found}, newer than this keygate's {known}: upgrade keygate"
    )]
    NewerSchema { found: i64, known: i64 },
    #[error("key store: cannot create {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("key store: record {id} is unreadable: {message}")]
    Corrupt { id: String, message: String },
    #[error("key store task failed: {0}")]
    Task(String),
    #[error("not found")]
    NotFound,
    #[error("{0} already exists")]
    Conflict(String),
}

/// A key that was deleted: what caches must forget.
#[derive(Debug, Clone)]
pub struct Removed {
    pub key_id: String,
    pub hash: KeyHash,
}

/// Persistent keyspaces, keys and credit balances. Every mutating call is
/// durable when it returns.
pub trait KeyStore: Send + Sync {
    fn keyspace(&self, id: &str) -> Result<Option<Keyspace>, StoreError>;
    /// Every keyspace, ordered by id.
    fn list_keyspaces(&self) -> Result<Vec<Keyspace>, StoreError>;
    /// `Conflict` when the id is taken.
    fn create_keyspace(&self, keyspace: &Keyspace) -> Result<(), StoreError>;
    /// Deletes the keyspace and every key in it; `NotFound` when absent.
    fn delete_keyspace(&self, id: &str, now_ms: i64) -> Result<Vec<Removed>, StoreError>;

    /// Inserts a key with its opening balance (`key.balance`).
    fn insert_key(&self, key: &StoredKey) -> Result<(), StoreError>;
    fn key_by_id(&self, id: &str) -> Result<Option<StoredKey>, StoreError>;
    /// The lookup on the verification path (a cache miss).
    fn key_by_hash(&self, hash: &KeyHash) -> Result<Option<StoredKey>, StoreError>;
    /// Replaces a key's record, and its balance as `balance` decides — called
    /// under the write lock, so a balance computed from the live account
    /// cannot be overwritten by an older one.
    fn update_key(&self, key: &StoredKey, balance: &mut dyn FnMut() -> BalanceWrite) -> Result<(), StoreError>;
    /// Soft delete (the row stays, unusable) or permanent; `NotFound` when absent.
    fn delete_key(&self, id: &str, permanent: bool, now_ms: i64) -> Result<Removed, StoreError>;
    /// Keys of a keyspace ordered by id, after `cursor`.
    fn list_keys(
        &self,
        keyspace_id: &str,
        cursor: Option<&str>,
        limit: usize,
        external_id: Option<&str>,
    ) -> Result<Vec<StoredKey>, StoreError>;

    /// A config key's persisted balance, if it was seeded from `origin`.
    fn static_balance(&self, key_id: &str, origin: &str) -> Result<Option<Balance>, StoreError>;
    /// Writes balances gathered by `collect` under the write lock, so no
    /// admin change to a balance can be overwritten by an older value.
    fn save_balances(
        &self,
        collect: &mut dyn FnMut() -> Vec<(String, Balance, Option<String>)>,
    ) -> Result<(), StoreError>;

    /// Tells the other processes sharing this store what changed, so their
    /// caches drop it at once. The embedded store has no one to tell.
    fn announce(&self, _change: &Change) -> Result<(), StoreError> {
        Ok(())
    }
}

/// What `update_key` does to the persisted balance.
#[derive(Debug, Clone, Copy)]
pub enum BalanceWrite {
    Keep,
    Set(Balance),
    /// Unlimited: the balance row goes.
    Clear,
}

/// Documents of the layers above the key store (the control plane's
/// deployments), kept in the same store so they are as durable and, with
/// a database, as shared as the keys.
pub trait RecordStore: Send + Sync {
    /// Creates or replaces the record `kind`/`id`.
    fn put_record(&self, kind: &str, id: &str, record: &str, now_ms: i64) -> Result<(), StoreError>;
    /// Every record of `kind`, by id.
    fn records(&self, kind: &str) -> Result<Vec<(String, String)>, StoreError>;
    /// Removes the record if it exists.
    fn delete_record(&self, kind: &str, id: &str) -> Result<(), StoreError>;
}
