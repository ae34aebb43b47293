//! Keyspaces, keys and credit balances in PostgreSQL: the embedded store's
//! queries, with the records encoded exactly as there.

use deadpool_postgres::GenericClient;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use super::{classify, PgStore};
use crate::keys::changes::Change;
use crate::keys::model::{Balance, KeyHash, Keyspace, StoredKey};
use crate::keys::sqlite::{decode, encode, KEY_COLUMNS};
use crate::keys::sqlite_catalogue::fill_identity;
use crate::keys::store::{BalanceWrite, KeyStore, Removed, StoreError};

fn stored_key(row: &Row) -> Result<StoredKey, StoreError> {
    let remaining: Option<i64> = row.try_get(2).map_err(classify)?;
    let period: Option<i64> = row.try_get(3).map_err(classify)?;
    let mut key = decode(
        row.try_get(0).map_err(classify)?,
        row.try_get(1).map_err(classify)?,
        remaining.zip(period),
    )?;
    let meta: Option<String> = row.try_get(4).map_err(classify)?;
    let limits: Option<String> = row.try_get(5).map_err(classify)?;
    if let (Some(identity), Some(meta), Some(limits)) = (key.record.identity.as_mut(), meta, limits) {
        fill_identity(identity, &meta, &limits)?;
    }
    Ok(key)
}

fn keyspace(row: &Row) -> Keyspace {
    Keyspace {
        id: row.get(0),
        name: row.get(1),
        created_at: row.get(2),
    }
}

fn removed(key_id: String, hash: Vec<u8>) -> Result<Removed, StoreError> {
    let hash = KeyHash::try_from(hash).map_err(|_| StoreError::Corrupt {
        id: key_id.clone(),
        message: "hash is not 32 bytes".into(),
    })?;
    Ok(Removed { key_id, hash })
}

async fn one_key(
    client: &impl GenericClient,
    filter: &str,
    param: &(dyn ToSql + Sync),
) -> Result<Option<StoredKey>, StoreError> {
    let sql = format!("SELECT {KEY_COLUMNS} WHERE {filter} AND k.deleted_at IS NULL");
    client
        .query_opt(&sql, &[param])
        .await
        .map_err(classify)?
        .as_ref()
        .map(stored_key)
        .transpose()
}

async fn write_balance(
    client: &impl GenericClient,
    key_id: &str,
    balance: Balance,
    origin: Option<&str>,
) -> Result<(), StoreError> {
    client
        .execute(
            "INSERT INTO credits (key_id, remaining, period, origin) VALUES ($1, $2, $3, $4)
             ON CONFLICT (key_id) DO UPDATE SET remaining = $2, period = $3, origin = $4",
            &[&key_id, &balance.remaining, &balance.period, &origin],
        )
        .await
        .map_err(classify)?;
    Ok(())
}

impl KeyStore for PgStore {
    fn keyspace(&self, id: &str) -> Result<Option<Keyspace>, StoreError> {
        self.run(async {
            let client = self.client().await?;
            let row = client
                .query_opt("SELECT id, name, created_at FROM keyspaces WHERE id = $1", &[&id])
                .await
                .map_err(classify)?;
            Ok(row.as_ref().map(keyspace))
        })
    }

    fn list_keyspaces(&self) -> Result<Vec<Keyspace>, StoreError> {
        self.run(async {
            let client = self.client().await?;
            let rows = client
                .query("SELECT id, name, created_at FROM keyspaces ORDER BY id", &[])
                .await
                .map_err(classify)?;
            Ok(rows.iter().map(keyspace).collect())
        })
    }

    fn create_keyspace(&self, keyspace: &Keyspace) -> Result<(), StoreError> {
        self.run(async {
            let client = self.client().await?;
            let inserted = client
                .execute(
                    "INSERT INTO keyspaces (id, name, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                    &[&keyspace.id, &keyspace.name, &keyspace.created_at],
                )
                .await
                .map_err(classify)?;
            if inserted == 0 {
                return Err(StoreError::Conflict(format!("keyspace {}", keyspace.id)));
            }
            Ok(())
        })
    }

    fn delete_keyspace(&self, id: &str, now_ms: i64) -> Result<Vec<Removed>, StoreError> {
        self.run(async {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(classify)?;
            if tx
                .execute("DELETE FROM keyspaces WHERE id = $1", &[&id])
                .await
                .map_err(classify)?
                == 0
            {
                return Err(StoreError::NotFound);
            }
            let rows = tx
                .query(
                    "UPDATE keys SET deleted_at = $2 WHERE keyspace_id = $1 AND deleted_at IS NULL RETURNING id, hash",
                    &[&id, &now_ms],
                )
                .await
                .map_err(classify)?;
            let removed = rows
                .into_iter()
                .map(|row| removed(row.get(0), row.get(1)))
                .collect::<Result<Vec<_>, _>>()?;
            tx.commit().await.map_err(classify)?;
            Ok(removed)
        })
    }

    fn insert_key(&self, key: &StoredKey) -> Result<(), StoreError> {
        let record = encode(&key.record)?;
        let external_id = key.record.identity.as_ref().map(|i| i.external_id.as_str());
        self.run(async {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(classify)?;
            let inserted = tx
                .execute(
                    "INSERT INTO keys (id, keyspace_id, hash, external_id, record) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                    &[&key.record.id, &key.record.keyspace_id, &&key.hash[..], &external_id, &record],
                )
                .await
                .map_err(classify)?;
            if inserted == 0 {
                return Err(StoreError::Conflict(format!("key {}", key.record.id)));
            }
            if let Some(balance) = key.balance {
                write_balance(&tx, &key.record.id, balance, None).await?;
            }
            tx.commit().await.map_err(classify)
        })
    }

    fn key_by_id(&self, id: &str) -> Result<Option<StoredKey>, StoreError> {
        self.run(async { one_key(&self.client().await?, "k.id = $1", &id).await })
    }

    fn key_by_hash(&self, hash: &KeyHash) -> Result<Option<StoredKey>, StoreError> {
        self.run(async { one_key(&self.client().await?, "k.hash = $1", &&hash[..]).await })
    }

    fn update_key(&self, key: &StoredKey, balance: &mut dyn FnMut() -> BalanceWrite) -> Result<(), StoreError> {
        let record = encode(&key.record)?;
        let external_id = key.record.identity.as_ref().map(|i| i.external_id.as_str());
        let _writing = self.write_lock();
        self.run(async {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(classify)?;
            let updated = tx
                .execute(
                    "UPDATE keys SET record = $2, external_id = $3 WHERE id = $1 AND deleted_at IS NULL",
                    &[&key.record.id, &record, &external_id],
                )
                .await
                .map_err(classify)?;
            if updated == 0 {
                return Err(StoreError::NotFound);
            }
            match balance() {
                BalanceWrite::Keep => {}
                BalanceWrite::Set(balance) => write_balance(&tx, &key.record.id, balance, None).await?,
                BalanceWrite::Clear => {
                    tx.execute("DELETE FROM credits WHERE key_id = $1", &[&key.record.id])
                        .await
                        .map_err(classify)?;
                }
            }
            tx.commit().await.map_err(classify)
        })
    }

    fn delete_key(&self, id: &str, permanent: bool, now_ms: i64) -> Result<Removed, StoreError> {
        self.run(async {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(classify)?;
            let row = tx
                .query_opt(
                    "SELECT hash FROM keys WHERE id = $1 AND deleted_at IS NULL FOR UPDATE",
                    &[&id],
                )
                .await
                .map_err(classify)?
                .ok_or(StoreError::NotFound)?;
            if permanent {
                tx.execute("DELETE FROM keys WHERE id = $1", &[&id])
                    .await
                    .map_err(classify)?;
            } else {
                tx.execute("UPDATE keys SET deleted_at = $2 WHERE id = $1", &[&id, &now_ms])
                    .await
                    .map_err(classify)?;
            }
            tx.execute("DELETE FROM credits WHERE key_id = $1", &[&id])
                .await
                .map_err(classify)?;
            tx.commit().await.map_err(classify)?;
            removed(id.to_string(), row.get(0))
        })
    }

    fn list_keys(
        &self,
        keyspace_id: &str,
        cursor: Option<&str>,
        limit: usize,
        external_id: Option<&str>,
    ) -> Result<Vec<StoredKey>, StoreError> {
        let sql = format!(
            "SELECT {KEY_COLUMNS} WHERE k.keyspace_id = $1 AND k.id > $2 AND ($3::text IS NULL OR k.external_id = $3)
             AND k.deleted_at IS NULL ORDER BY k.id LIMIT $4"
        );
        let (cursor, limit) = (cursor.unwrap_or(""), limit as i64);
        self.run(async {
            let client = self.client().await?;
            let rows = client
                .query(&sql, &[&keyspace_id, &cursor, &external_id, &limit])
                .await
                .map_err(classify)?;
            rows.iter().map(stored_key).collect()
        })
    }

    fn static_balance(&self, key_id: &str, origin: &str) -> Result<Option<Balance>, StoreError> {
        self.run(async {
            let client = self.client().await?;
            let row = client
                .query_opt(
                    "SELECT remaining, period FROM credits WHERE key_id = $1 AND origin = $2",
                    &[&key_id, &origin],
                )
                .await
                .map_err(classify)?;
            Ok(row.map(|row| Balance {
                remaining: row.get(0),
                period: row.get(1),
            }))
        })
    }

    fn save_balances(
        &self,
        collect: &mut dyn FnMut() -> Vec<(String, Balance, Option<String>)>,
    ) -> Result<(), StoreError> {
        let _writing = self.write_lock();
        let balances = collect();
        if balances.is_empty() {
            return Ok(());
        }
        self.run(async {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(classify)?;
            for (key_id, balance, origin) in &balances {
                write_balance(&tx, key_id, *balance, origin.as_deref()).await?;
            }
            tx.commit().await.map_err(classify)
        })
    }

    fn announce(&self, change: &Change) -> Result<(), StoreError> {
        PgStore::announce(self, change)
    }
}
