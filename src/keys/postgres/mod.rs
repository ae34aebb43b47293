//! The shared key store: PostgreSQL (`state.database`), for replicas that
//! must agree on keys. Same data and answers as the embedded store; what a
//! replica writes reaches the others' caches through `LISTEN/NOTIFY`
//! ([`listen`]).
//!
//! The store traits are synchronous (their callers run on blocking threads),
//! so the store owns a small tokio runtime that drives the database
//! connections, and each call waits for its query on the calling thread.
//! Queries time out after [`QUERY_WAIT`]: an unreachable database is an
//! [`StoreError::Unreachable`] quickly, never a hung request.

mod catalogue;
mod credits;
mod keys;
mod listen;
mod records;

use std::future::Future;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime, Timeouts};
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::changes::Change;
use super::store::StoreError;
use crate::clock::now_ms;
use crate::telemetry::metrics;

pub use credits::PgLedger;
pub use listen::listen;

/// The schema, one migration per version, tracked in `keygate_schema`.
/// Append, never edit.
const MIGRATIONS: &[&str] = &[include_str!("01_schema.sql"), include_str!("02_records.sql")];
/// The advisory lock replicas take while migrating (any fixed number; this
/// one spells "keygate" in ASCII).
const MIGRATION_LOCK: i64 = 0x006b_6579_6761_7465;
/// The channel changes are announced on.
const CHANNEL: &str = "keygate_changes";
/// How long a call waits for a connection or a query.
const QUERY_WAIT: Duration = Duration::from_secs(3);
/// Connections per replica.
const POOL_SIZE: usize = 16;

pub struct PgStore {
    /// Drives the connections; `None` only while dropping.
    runtime: Option<tokio::runtime::Runtime>,
    pool: Pool,
    /// This process among the replicas, in its announcements.
    process: String,
    /// Where the listener connects, and how.
    config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    /// Held by balance writes, so this process never overwrites a balance
    /// an admin change just set with an older one it computed before.
    writing: Mutex<()>,
}

impl PgStore {
    /// Connects to `url` and brings the schema to this keygate's version
    /// (replicas starting at once take turns on an advisory lock).
    pub fn open(url: &str) -> Result<Self, StoreError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("keygate-postgres")
            .enable_all()
            .build()
            .map_err(|source| StoreError::Io {
                path: "postgres runtime".into(),
                source,
            })?;
        let mut config: tokio_postgres::Config = url.parse().map_err(|e: tokio_postgres::Error| {
            StoreError::Unreachable(format!("state.database is not a valid URL: {e}"))
        })?;
        // TLS when the URL asks for it (`sslmode=require`), verified against
        // the system's roots; otherwise plain, never a silent "prefer".
        if config.get_ssl_mode() != SslMode::Require {
            config.ssl_mode(SslMode::Disable);
        }
        let tls = crate::http_client::system_tls_config()
            .map(MakeRustlsConnect::new)
            .map_err(|e| StoreError::Unreachable(e.to_string()))?;
        let manager = Manager::from_config(
            config.clone(),
            tls.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let timeouts = Timeouts {
            wait: Some(QUERY_WAIT),
            create: Some(QUERY_WAIT),
            recycle: Some(QUERY_WAIT),
        };
        let pool = {
            let _entered = runtime.enter();
            Pool::builder(manager)
                .max_size(POOL_SIZE)
                .timeouts(timeouts)
                .runtime(Runtime::Tokio1)
                .build()
                .map_err(|e| StoreError::Unreachable(e.to_string()))?
        };
        let store = Self {
            runtime: Some(runtime),
            pool,
            process: format!("{:016x}", rand::random::<u64>()),
            config,
            tls,
            writing: Mutex::new(()),
        };
        store.run(async {
            let mut client = store.client().await?;
            migrate(&mut client).await
        })?;
        Ok(store)
    }

    /// Waits for `work` on this thread, its connections driven by the
    /// store's runtime; failures are counted.
    fn run<T>(&self, work: impl Future<Output = Result<T, StoreError>>) -> Result<T, StoreError> {
        let Some(runtime) = &self.runtime else {
            return Err(StoreError::Unreachable("the store is closing".into()));
        };
        let _entered = runtime.enter();
        let result = futures::executor::block_on(async {
            tokio::time::timeout(QUERY_WAIT, work)
                .await
                .unwrap_or_else(|_| Err(StoreError::Unreachable(format!("no answer within {QUERY_WAIT:?}"))))
        });
        if let Err(e) = &result {
            if matches!(e, StoreError::Unreachable(_) | StoreError::Postgres(_)) {
                metrics().store_errors.inc();
            }
        }
        result
    }

    fn write_lock(&self) -> MutexGuard<'_, ()> {
        self.writing.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn client(&self) -> Result<Object, StoreError> {
        self.pool
            .get()
            .await
            .map_err(|e| StoreError::Unreachable(e.to_string()))
    }

    /// Tells the other replicas about `change` (the payload names this
    /// process, whose listener skips it: its caches are already current,
    /// and evicting them again would lose what it learnt since).
    pub fn announce(&self, change: &Change) -> Result<(), StoreError> {
        let payload = format!("{} {}", self.process, change.encode());
        self.run(async {
            let client = self.client().await?;
            client
                .execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &payload])
                .await
                .map_err(classify)?;
            Ok(())
        })
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which is not allowed on an async thread.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// A query error: a lost connection, or a server shutting down or
/// refusing connections, means the database is unreachable (retry later);
/// anything else is the query's own failure.
fn classify(error: tokio_postgres::Error) -> StoreError {
    let io = std::error::Error::source(&error).is_some_and(|source| source.is::<std::io::Error>());
    let unavailable = error.code().is_some_and(|code| {
        let class = &code.code()[..2];
        class == "08" || class == "57"
    });
    if error.is_closed() || io || unavailable {
        StoreError::Unreachable(error.to_string())
    } else {
        StoreError::Postgres(error)
    }
}

/// An insert's or rename's error: `Conflict(what)` when a unique
/// constraint refused it (the row exists), else as [`classify`].
fn conflict_or(error: tokio_postgres::Error, what: String) -> StoreError {
    if error.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) {
        StoreError::Conflict(what)
    } else {
        classify(error)
    }
}

/// Applies the migrations this database lacks, in one transaction under
/// [`MIGRATION_LOCK`]; a database at a newer version than this keygate's is
/// refused, untouched.
async fn migrate(client: &mut Object) -> Result<(), StoreError> {
    let tx = client.transaction().await.map_err(classify)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(classify)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS keygate_schema (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
    )
    .await
    .map_err(classify)?;
    let current: i64 = tx
        .query_one("SELECT COALESCE(MAX(version), 0) FROM keygate_schema", &[])
        .await
        .map_err(classify)?
        .get(0);
    let known = MIGRATIONS.len() as i64;
    if current > known {
        return Err(StoreError::NewerSchema { found: current, known });
    }
    for (version, sql) in (1i64..).zip(MIGRATIONS).skip(current as usize) {
        tx.batch_execute(sql).await.map_err(classify)?;
        tx.execute(
            "INSERT INTO keygate_schema (version, applied_at) VALUES ($1, $2)",
            &[&version, &now_ms()],
        )
        .await
        .map_err(classify)?;
    }
    tx.commit().await.map_err(classify)
}
