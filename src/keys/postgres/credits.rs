//! The credits ledger in PostgreSQL: the store's `credits` table, one row
//! per key, changed by one transaction per lease (the row locked, the
//! shared rules of [`LeaseCall::apply`] applied, written back). API keys'
//! rows are the balances the admin API reads and sets, so a balance set
//! through any replica is what the next lease on every replica sees.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::{classify, PgStore};
use crate::keys::model::Balance;
use crate::keys::shared_credits::{LeaseAnswer, LeaseCall, Ledger};
use crate::keys::store::StoreError;
use crate::telemetry::metrics;

/// A lease on the request path gives up after this.
const LEASE_WAIT: Duration = Duration::from_millis(500);

pub struct PgLedger {
    store: Arc<PgStore>,
}

impl PgLedger {
    pub fn new(store: Arc<PgStore>) -> Self {
        Self { store }
    }
}

#[async_trait]
impl Ledger for PgLedger {
    fn name(&self) -> &'static str {
        "state.database"
    }

    async fn lease(&self, call: LeaseCall) -> Result<LeaseAnswer, String> {
        let Some(runtime) = &self.store.runtime else {
            return Err("the store is closing".into());
        };
        // The store's runtime drives its connections; wait for it from here.
        let store = self.store.clone();
        let step = runtime.spawn(async move { tokio::time::timeout(LEASE_WAIT, step(&store, &call)).await });
        let answer = match step.await {
            Ok(Ok(Ok(answer))) => Ok(answer),
            Ok(Ok(Err(e))) => Err(e.to_string()),
            Ok(Err(_)) => Err(format!("no answer within {LEASE_WAIT:?}")),
            Err(e) => Err(e.to_string()),
        };
        if answer.is_err() {
            metrics().store_errors.inc();
        }
        answer
    }
}

/// Seeds the row if absent, locks it, applies the call, writes it back.
async fn step(store: &PgStore, call: &LeaseCall) -> Result<LeaseAnswer, StoreError> {
    let mut client = store.client().await?;
    let tx = client.transaction().await.map_err(classify)?;
    tx.execute(
        "INSERT INTO credits (key_id, remaining, period, origin) VALUES ($1, $2, $3, $4)
         ON CONFLICT (key_id) DO NOTHING",
        &[&call.key_id, &call.seed.remaining, &call.seed.period, &call.origin],
    )
    .await
    .map_err(classify)?;
    let row = tx
        .query_one(
            "SELECT remaining, period, origin FROM credits WHERE key_id = $1 FOR UPDATE",
            &[&call.key_id],
        )
        .await
        .map_err(classify)?;
    let stored_origin: Option<String> = row.get(2);
    let stored = Balance {
        remaining: row.get(0),
        period: row.get(1),
    };
    let (balance, answer) = call.apply(stored_origin.as_deref(), stored);
    let origin = call.origin.clone().or(stored_origin);
    tx.execute(
        "UPDATE credits SET remaining = $2, period = $3, origin = $4 WHERE key_id = $1",
        &[&call.key_id, &balance.remaining, &balance.period, &origin],
    )
    .await
    .map_err(classify)?;
    tx.commit().await.map_err(classify)?;
    Ok(answer)
}
