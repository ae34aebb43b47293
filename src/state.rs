//! Where keygate keeps what it must not lose (`state`): the embedded
//! store's files, ACME account and certificates — under `state.dir` — and,
//! when replicas must agree, the Redis URL they share.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::state::StateSpec;

/// The compiled `state` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateSettings {
    pub dir: PathBuf,
    pub redis: Option<String>,
    pub sync_interval: Duration,
    pub credit_lease: u32,
    pub outage_credits: u32,
}

impl StateSettings {
    pub fn compile(spec: &StateSpec, base_dir: &Path) -> Self {
        Self {
            dir: base_dir.join(spec.dir.as_deref().unwrap_or("state")),
            redis: spec.redis.clone().filter(|url| !url.trim().is_empty()),
            sync_interval: spec.sync_interval.map_or(Duration::from_millis(50), |d| d.0),
            credit_lease: spec.credit_lease.unwrap_or(1).max(1),
            outage_credits: spec.outage_credits.unwrap_or(10),
        }
    }

    /// `state.dir/<name>`, created (mode 0700) if missing.
    pub fn subdir(&self, name: &str) -> std::io::Result<PathBuf> {
        use std::os::unix::fs::DirBuilderExt;
        let path = self.dir.join(name);
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&path)?;
        Ok(path)
    }
}

/// A connection to `state.redis` that reconnects by itself after a failure;
/// every call on it gives up after `timeout`. Shared by ACME, rate limits
/// and credits.
pub async fn connect_redis(url: &str, timeout: Duration) -> redis::RedisResult<redis::aio::ConnectionManager> {
    let client = redis::Client::open(url)?;
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(timeout)
        .set_response_timeout(timeout)
        .set_number_of_retries(1);
    redis::aio::ConnectionManager::new_with_config(client, config).await
}
