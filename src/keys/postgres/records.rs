//! The control plane's records in PostgreSQL (see [`RecordStore`]).

use super::{classify, PgStore};
use crate::keys::store::{RecordStore, StoreError};

impl RecordStore for PgStore {
    fn put_record(&self, kind: &str, id: &str, record: &str, now_ms: i64) -> Result<(), StoreError> {
        self.run(async {
            let client = self.client().await?;
            client
                .execute(
                    "INSERT INTO records (kind, id, record, updated_at) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (kind, id) DO UPDATE SET record = $3, updated_at = $4",
                    &[&kind, &id, &record, &now_ms],
                )
                .await
                .map_err(classify)?;
            Ok(())
        })
    }

    fn records(&self, kind: &str) -> Result<Vec<(String, String)>, StoreError> {
        self.run(async {
            let client = self.client().await?;
            let rows = client
                .query("SELECT id, record FROM records WHERE kind = $1 ORDER BY id", &[&kind])
                .await
                .map_err(classify)?;
            Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
        })
    }

    fn delete_record(&self, kind: &str, id: &str) -> Result<(), StoreError> {
        self.run(async {
            let client = self.client().await?;
            client
                .execute("DELETE FROM records WHERE kind = $1 AND id = $2", &[&kind, &id])
                .await
                .map_err(classify)?;
            Ok(())
        })
    }
}
