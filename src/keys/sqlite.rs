//! The embedded key store: SQLite (rusqlite, bundled) in `state.dir/keys/`.
//!
//! Why SQLite: with WAL and `synchronous=FULL` every acknowledged commit is
//! on disk, and a process killed at any moment reopens to the last commit;
//! other processes (`keygate check`, `keygate keys` without a running
//! gateway) can open the same file while the gateway runs; secondary
//! indexes and cursor pagination are plain SQL; and `sqlite3` lets an
//! operator look inside. (redb was the alternative: pure Rust, but it locks
//! its file to one process.)
//!
//! Writes go through one connection behind a mutex; verification misses
//! read through their own connections, so an admin write never blocks them
//! (WAL readers see the last commit). The schema is versioned with
//! rusqlite_migration (`MIGRATIONS`, `migrations/*.sql`); opening a store
//! brings it to the newest version.

use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};

use rusqlite::{params, Connection, OptionalExtension, Row, TransactionBehavior};
use rusqlite_migration::{Migrations, M};

use super::model::{Balance, KeyHash, KeyRecord, Keyspace, StoredKey};
use super::store::{BalanceWrite, KeyStore, RecordStore, Removed, StoreError};

/// The schema, one migration per version; the version a database is at is
/// its SQLite `user_version`. Append, never edit.
static SCHEMA_VERSIONS: &[M<'static>] = &[
    M::up(include_str!("migrations/01_keys.sql")),
    M::up(include_str!("migrations/02_catalogue.sql")),
    M::up(include_str!("migrations/03_records.sql")),
];
const MIGRATIONS: Migrations<'static> = Migrations::from_slice(SCHEMA_VERSIONS);

/// A key with its balance and its identity's meta and rate limits.
pub(super) const KEY_COLUMNS: &str = "k.hash, k.record, c.remaining, c.period, i.meta, i.ratelimits FROM keys k
     LEFT JOIN credits c ON c.key_id = k.id LEFT JOIN identities i ON i.external_id = k.external_id";

/// Connections reserved for verification lookups.
const READERS: usize = 2;

pub struct SqliteStore {
    pub(super) writer: Mutex<Connection>,
    readers: Vec<Mutex<Connection>>,
}

pub(super) fn lock(conn: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    conn.lock().unwrap_or_else(PoisonError::into_inner)
}

fn configure(conn: &Connection) -> Result<(), rusqlite::Error> {
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    Ok(())
}

/// Brings the schema to the newest version, atomically. Two processes may
/// open an old store at once (the gateway and `keygate keys`): with `BEGIN
/// IMMEDIATE` the second waits for the first's transaction (busy timeout)
/// instead of failing on a stale snapshot, and as rusqlite_migration reads
/// the version before its transaction, the second may then re-apply a
/// migration the first just committed; that attempt rolls back and one
/// retry finds the store up to date.
fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    conn.set_transaction_behavior(TransactionBehavior::Immediate);
    let migrated = MIGRATIONS.to_latest(conn).or_else(|_| MIGRATIONS.to_latest(conn));
    conn.set_transaction_behavior(TransactionBehavior::Deferred);
    Ok(migrated?)
}

impl SqliteStore {
    /// Opens (creating if needed) `dir/keys.db`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let path = dir.join("keys.db");
        let mut writer = Connection::open(&path)?;
        configure(&writer)?;
        migrate(&mut writer)?;
        let readers = (0..READERS)
            .map(|_| {
                let reader = Connection::open(&path)?;
                configure(&reader)?;
                Ok(Mutex::new(reader))
            })
            .collect::<Result<Vec<_>, rusqlite::Error>>()?;
        Ok(Self {
            writer: Mutex::new(writer),
            readers,
        })
    }

    /// A store that lives and dies with the process (tests, `keygate check`
    /// when no store exists yet).
    pub fn in_memory() -> Result<Self, StoreError> {
        let mut conn = Connection::open_in_memory()?;
        migrate(&mut conn)?;
        Ok(Self {
            writer: Mutex::new(conn),
            readers: Vec::new(),
        })
    }

    /// A free reader if there is one, else the first reader to free up
    /// (never the writer, unless this store has no readers).
    fn reader(&self) -> MutexGuard<'_, Connection> {
        for reader in &self.readers {
            if let Ok(guard) = reader.try_lock() {
                return guard;
            }
        }
        match self.readers.first() {
            Some(reader) => lock(reader),
            None => lock(&self.writer),
        }
    }
}

fn stored_key(row: &Row<'_>) -> Result<Result<StoredKey, StoreError>, rusqlite::Error> {
    let hash: Vec<u8> = row.get(0)?;
    let record: String = row.get(1)?;
    let remaining: Option<i64> = row.get(2)?;
    let period: Option<i64> = row.get(3)?;
    let identity_meta: Option<String> = row.get(4)?;
    let identity_limits: Option<String> = row.get(5)?;
    Ok(decode(hash, &record, remaining.zip(period)).and_then(|mut key| {
        if let (Some(identity), Some(meta), Some(limits)) =
            (key.record.identity.as_mut(), identity_meta, identity_limits)
        {
            super::sqlite_catalogue::fill_identity(identity, &meta, &limits)?;
        }
        Ok(key)
    }))
}

pub(super) fn decode(hash: Vec<u8>, record: &str, balance: Option<(i64, i64)>) -> Result<StoredKey, StoreError> {
    let record = decode_record(record)?;
    let hash: KeyHash = hash.try_into().map_err(|_| StoreError::Corrupt {
        id: record.id.clone(),
        message: "hash is not 32 bytes".into(),
    })?;
    Ok(StoredKey {
        hash,
        balance: balance.map(|(remaining, period)| Balance { remaining, period }),
        record,
    })
}

pub(super) fn decode_record(record: &str) -> Result<KeyRecord, StoreError> {
    serde_json::from_str(record).map_err(|e| StoreError::Corrupt {
        id: "?".into(),
        message: e.to_string(),
    })
}

/// A record as stored: its identity is only the externalId (the rest is the identity's own row).
pub(super) fn encode(record: &KeyRecord) -> Result<String, StoreError> {
    if let Some(identity) = record
        .identity
        .as_ref()
        .filter(|i| !i.meta.is_empty() || !i.ratelimits.is_empty())
    {
        let mut bare = record.clone();
        bare.identity = Some(super::model::Identity::new(identity.external_id.clone()));
        return encode_as_is(&bare);
    }
    encode_as_is(record)
}

fn encode_as_is(record: &KeyRecord) -> Result<String, StoreError> {
    serde_json::to_string(record).map_err(|e| StoreError::Corrupt {
        id: record.id.clone(),
        message: e.to_string(),
    })
}

fn one_key(conn: &Connection, filter: &str, param: &dyn rusqlite::ToSql) -> Result<Option<StoredKey>, StoreError> {
    let sql = format!("SELECT {KEY_COLUMNS} WHERE {filter} AND k.deleted_at IS NULL");
    conn.query_row(&sql, [param], stored_key).optional()?.transpose()
}

fn write_balance(
    conn: &Connection,
    key_id: &str,
    balance: Balance,
    origin: Option<&str>,
) -> Result<(), rusqlite::Error> {
    conn.execute(
        "INSERT INTO credits (key_id, remaining, period, origin) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (key_id) DO UPDATE SET remaining = ?2, period = ?3, origin = ?4",
        params![key_id, balance.remaining, balance.period, origin],
    )?;
    Ok(())
}

impl KeyStore for SqliteStore {
    fn keyspace(&self, id: &str) -> Result<Option<Keyspace>, StoreError> {
        let conn = lock(&self.writer);
        let keyspace = conn
            .query_row(
                "SELECT id, name, created_at FROM keyspaces WHERE id = ?1",
                [id],
                |row| {
                    Ok(Keyspace {
                        id: row.get(0)?,
                        name: row.get(1)?,
                        created_at: row.get(2)?,
                    })
                },
            )
            .optional()?;
        Ok(keyspace)
    }

    fn list_keyspaces(&self) -> Result<Vec<Keyspace>, StoreError> {
        let conn = lock(&self.writer);
        let mut statement = conn.prepare("SELECT id, name, created_at FROM keyspaces ORDER BY id")?;
        let rows = statement.query_map([], |row| {
            Ok(Keyspace {
                id: row.get(0)?,
                name: row.get(1)?,
                created_at: row.get(2)?,
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    fn create_keyspace(&self, keyspace: &Keyspace) -> Result<(), StoreError> {
        let conn = lock(&self.writer);
        let inserted = conn.execute(
            "INSERT INTO keyspaces (id, name, created_at) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
            params![keyspace.id, keyspace.name, keyspace.created_at],
        )?;
        if inserted == 0 {
            return Err(StoreError::Conflict(format!("keyspace {}", keyspace.id)));
        }
        Ok(())
    }

    fn delete_keyspace(&self, id: &str, now_ms: i64) -> Result<Vec<Removed>, StoreError> {
        let mut conn = lock(&self.writer);
        let tx = conn.transaction()?;
        if tx.execute("DELETE FROM keyspaces WHERE id = ?1", [id])? == 0 {
            return Err(StoreError::NotFound);
        }
        let removed = {
            let mut statement =
                tx.prepare("SELECT id, hash FROM keys WHERE keyspace_id = ?1 AND deleted_at IS NULL")?;
            let rows = statement.query_map([id], |row| Ok((row.get::<_, String>(0)?, row.get::<_, Vec<u8>>(1)?)))?;
            rows.filter_map(|row| match row {
                Ok((key_id, hash)) => KeyHash::try_from(hash).ok().map(|hash| Ok(Removed { key_id, hash })),
                Err(e) => Some(Err(e)),
            })
            .collect::<Result<Vec<_>, _>>()?
        };
        tx.execute(
            "UPDATE keys SET deleted_at = ?2 WHERE keyspace_id = ?1 AND deleted_at IS NULL",
            params![id, now_ms],
        )?;
        tx.commit()?;
        Ok(removed)
    }

    fn insert_key(&self, key: &StoredKey) -> Result<(), StoreError> {
        let record = encode(&key.record)?;
        let mut conn = lock(&self.writer);
        let tx = conn.transaction()?;
        let external_id = key.record.identity.as_ref().map(|i| i.external_id.as_str());
        let inserted = tx.execute(
            "INSERT INTO keys (id, keyspace_id, hash, external_id, record) VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
            params![key.record.id, key.record.keyspace_id, &key.hash[..], external_id, record],
        )?;
        if inserted == 0 {
            return Err(StoreError::Conflict(format!("key {}", key.record.id)));
        }
        if let Some(balance) = key.balance {
            write_balance(&tx, &key.record.id, balance, None)?;
        }
        tx.commit()?;
        Ok(())
    }

    fn key_by_id(&self, id: &str) -> Result<Option<StoredKey>, StoreError> {
        one_key(&lock(&self.writer), "k.id = ?1", &id)
    }

    fn key_by_hash(&self, hash: &KeyHash) -> Result<Option<StoredKey>, StoreError> {
        one_key(&self.reader(), "k.hash = ?1", &&hash[..])
    }

    fn update_key(&self, key: &StoredKey, balance: &mut dyn FnMut() -> BalanceWrite) -> Result<(), StoreError> {
        let record = encode(&key.record)?;
        let mut conn = lock(&self.writer);
        let tx = conn.transaction()?;
        let external_id = key.record.identity.as_ref().map(|i| i.external_id.as_str());
        let updated = tx.execute(
            "UPDATE keys SET record = ?2, external_id = ?3 WHERE id = ?1 AND deleted_at IS NULL",
            params![key.record.id, record, external_id],
        )?;
        if updated == 0 {
            return Err(StoreError::NotFound);
        }
        match balance() {
            BalanceWrite::Keep => {}
            BalanceWrite::Set(balance) => write_balance(&tx, &key.record.id, balance, None)?,
            BalanceWrite::Clear => {
                tx.execute("DELETE FROM credits WHERE key_id = ?1", [&key.record.id])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn delete_key(&self, id: &str, permanent: bool, now_ms: i64) -> Result<Removed, StoreError> {
        let mut conn = lock(&self.writer);
        let tx = conn.transaction()?;
        let hash: Option<Vec<u8>> = tx
            .query_row(
                "SELECT hash FROM keys WHERE id = ?1 AND deleted_at IS NULL",
                [id],
                |row| row.get(0),
            )
            .optional()?;
        let hash = hash.ok_or(StoreError::NotFound)?;
        if permanent {
            tx.execute("DELETE FROM keys WHERE id = ?1", [id])?;
        } else {
            tx.execute("UPDATE keys SET deleted_at = ?2 WHERE id = ?1", params![id, now_ms])?;
        }
        tx.execute("DELETE FROM credits WHERE key_id = ?1", [id])?;
        tx.commit()?;
        let hash = KeyHash::try_from(hash).map_err(|_| StoreError::Corrupt {
            id: id.to_string(),
            message: "hash is not 32 bytes".into(),
        })?;
        Ok(Removed {
            key_id: id.to_string(),
            hash,
        })
    }

    fn list_keys(
        &self,
        keyspace_id: &str,
        cursor: Option<&str>,
        limit: usize,
        external_id: Option<&str>,
    ) -> Result<Vec<StoredKey>, StoreError> {
        let conn = lock(&self.writer);
        let sql = format!(
            "SELECT {KEY_COLUMNS} WHERE k.keyspace_id = ?1 AND k.id > ?2 AND (?3 IS NULL OR k.external_id = ?3)
             AND k.deleted_at IS NULL ORDER BY k.id LIMIT ?4"
        );
        let mut statement = conn.prepare(&sql)?;
        let rows = statement.query_map(
            params![keyspace_id, cursor.unwrap_or(""), external_id, limit as i64],
            stored_key,
        )?;
        rows.map(|row| row.map_err(StoreError::from).and_then(|key| key))
            .collect()
    }

    fn static_balance(&self, key_id: &str, origin: &str) -> Result<Option<Balance>, StoreError> {
        let conn = lock(&self.writer);
        let balance = conn
            .query_row(
                "SELECT remaining, period FROM credits WHERE key_id = ?1 AND origin = ?2",
                params![key_id, origin],
                |row| {
                    Ok(Balance {
                        remaining: row.get(0)?,
                        period: row.get(1)?,
                    })
                },
            )
            .optional()?;
        Ok(balance)
    }

    fn save_balances(
        &self,
        collect: &mut dyn FnMut() -> Vec<(String, Balance, Option<String>)>,
    ) -> Result<(), StoreError> {
        let mut conn = lock(&self.writer);
        let balances = collect();
        if balances.is_empty() {
            return Ok(());
        }
        let tx = conn.transaction()?;
        for (key_id, balance, origin) in &balances {
            write_balance(&tx, key_id, *balance, origin.as_deref())?;
        }
        tx.commit()?;
        Ok(())
    }
}

impl RecordStore for SqliteStore {
    fn put_record(&self, kind: &str, id: &str, record: &str, now_ms: i64) -> Result<(), StoreError> {
        lock(&self.writer).execute(
            "INSERT INTO records (kind, id, record, updated_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (kind, id) DO UPDATE SET record = excluded.record, updated_at = excluded.updated_at",
            params![kind, id, record, now_ms],
        )?;
        Ok(())
    }

    fn records(&self, kind: &str) -> Result<Vec<(String, String)>, StoreError> {
        let conn = lock(&self.writer);
        let mut statement = conn.prepare("SELECT id, record FROM records WHERE kind = ?1 ORDER BY id")?;
        let rows = statement.query_map(params![kind], |row| Ok((row.get(0)?, row.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn delete_record(&self, kind: &str, id: &str) -> Result<(), StoreError> {
        lock(&self.writer).execute("DELETE FROM records WHERE kind = ?1 AND id = ?2", params![kind, id])?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The schema exactly as keygate created it before migrations
    /// (`execute_batch` on every open, `user_version` left at 0).
    const UNVERSIONED_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS keyspaces (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS keys (
    id TEXT PRIMARY KEY,
    keyspace_id TEXT NOT NULL,
    hash BLOB NOT NULL UNIQUE,
    external_id TEXT,
    record TEXT NOT NULL,
    deleted_at INTEGER
);
CREATE INDEX IF NOT EXISTS keys_by_keyspace ON keys (keyspace_id, id);
CREATE TABLE IF NOT EXISTS credits (
    key_id TEXT PRIMARY KEY,
    remaining INTEGER NOT NULL,
    period INTEGER NOT NULL,
    origin TEXT
);
";

    fn user_version(path: &Path) -> i64 {
        Connection::open(path)
            .unwrap()
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .unwrap()
    }

    #[test]
    fn migrations_are_valid() {
        MIGRATIONS.validate().unwrap();
    }

    #[test]
    fn a_database_from_before_migrations_keeps_its_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.db");
        {
            let old = Connection::open(&path).unwrap();
            configure(&old).unwrap();
            old.execute_batch(UNVERSIONED_SCHEMA).unwrap();
            old.execute(
                "INSERT INTO keyspaces (id, name, created_at) VALUES ('ks_1', 'main', 5)",
                [],
            )
            .unwrap();
            old.execute(
                "INSERT INTO keys (id, keyspace_id, hash, external_id, record) VALUES (?1, 'ks_1', ?2, 'user_9', ?3)",
                params![
                    "key_1",
                    &[7u8; 32][..],
                    r#"{"id":"key_1","keyspaceId":"ks_1","start":"kg_abc","name":"old","enabled":true,"createdAt":1,"updatedAt":2}"#
                ],
            )
            .unwrap();
            write_balance(
                &old,
                "key_1",
                Balance {
                    remaining: 42,
                    period: 3,
                },
                None,
            )
            .unwrap();
        }
        assert_eq!(user_version(&path), 0);

        let store = SqliteStore::open(dir.path()).unwrap();
        let key = store
            .key_by_hash(&[7u8; 32])
            .unwrap()
            .expect("the old key is still there");
        assert_eq!(key.record.id, "key_1");
        assert_eq!(key.record.name.as_deref(), Some("old"));
        assert_eq!(
            key.balance,
            Some(Balance {
                remaining: 42,
                period: 3
            })
        );
        assert_eq!(store.key_by_id("key_1").unwrap().map(|k| k.hash), Some([7u8; 32]));
        assert_eq!(store.list_keys("ks_1", None, 10, Some("user_9")).unwrap().len(), 1);
        assert_eq!(
            store.keyspace("ks_1").unwrap().map(|ks| ks.name),
            Some("main".to_string())
        );
        drop(store);
        assert_eq!(user_version(&path), SCHEMA_VERSIONS.len() as i64);

        // Opening again is a no-op.
        let store = SqliteStore::open(dir.path()).unwrap();
        assert!(store.key_by_id("key_1").unwrap().is_some());
        assert_eq!(user_version(&path), SCHEMA_VERSIONS.len() as i64);
    }

    #[test]
    fn connections_upgrading_a_store_at_once_all_succeed() {
        for _ in 0..10 {
            let dir = tempfile::tempdir().unwrap();
            let old = Connection::open(dir.path().join("keys.db")).unwrap();
            configure(&old).unwrap();
            old.execute_batch(UNVERSIONED_SCHEMA).unwrap();
            drop(old);
            let openers: Vec<_> = (0..4)
                .map(|_| {
                    let dir = dir.path().to_path_buf();
                    std::thread::spawn(move || SqliteStore::open(&dir).map(drop))
                })
                .collect();
            for opener in openers {
                opener.join().unwrap().unwrap();
            }
            assert_eq!(user_version(&dir.path().join("keys.db")), SCHEMA_VERSIONS.len() as i64);
        }
    }

    #[test]
    fn a_database_from_a_newer_keygate_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        drop(SqliteStore::open(dir.path()).unwrap());
        let path = dir.path().join("keys.db");
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", 99)
            .unwrap();
        let error = SqliteStore::open(dir.path()).err().expect("refused");
        assert!(matches!(error, StoreError::Schema(_)), "{error}");
        assert_eq!(user_version(&path), 99, "left as it was");
    }
}
