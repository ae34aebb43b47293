//! Replicas behind one load balancer (`state.redis`): the CA's validation
//! request may reach any replica, and only one replica should order a host.
//! Through Redis a replica publishes its pending HTTP-01 tokens (every
//! replica mirrors them into its own [`ChallengeTokens`], so the request path
//! stays local and lock-free), takes a per-host lock with expiry before
//! ordering, and shares what it was issued; the others install that instead
//! of ordering. When Redis is unreachable, each replica orders on its own.
//!
//! ```text
//! keygate:acme:<directory>:tokens       hash: token → "<expiry ms> <key authorization>"
//! keygate:acme:<directory>:cert:<host>  JSON {chain_pem, key_pem}
//! keygate:acme:<directory>:lock:<host>  the ordering replica's id, expires
//! ```

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rand::distributions::Alphanumeric;
use rand::Rng;
use redis::aio::ConnectionManager;
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

use super::AcmeError;
use crate::tls::challenges::ChallengeTokens;

/// How often replicas re-read the shared tokens…
const MIRROR_INTERVAL: Duration = Duration::from_millis(250);
/// …so the ordering replica waits this long before asking the CA to validate.
pub const MIRROR_GRACE: Duration = Duration::from_secs(1);
/// A token outlives any validation by far; left-overs of a crashed replica expire.
const TOKEN_TTL: Duration = Duration::from_secs(600);
/// Every Redis call gives up after this long.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// An issued certificate as replicas share it.
#[derive(Serialize, Deserialize)]
pub struct SharedCertificate {
    pub chain_pem: String,
    pub key_pem: String,
}

/// This replica's handle on the shared ACME state of one directory.
pub struct Shared {
    redis: ConnectionManager,
    prefix: String,
    /// Names this replica in locks.
    replica: String,
}

impl Shared {
    pub async fn connect(url: &str, directory_id: &str) -> Result<Self, AcmeError> {
        let redis = crate::state::connect_redis(url, CALL_TIMEOUT).await?;
        let replica = rand::thread_rng()
            .sample_iter(&Alphanumeric)
            .take(16)
            .map(char::from)
            .collect();
        Ok(Self {
            redis,
            prefix: format!("keygate:acme:{directory_id}:"),
            replica,
        })
    }

    pub async fn publish_token(&self, token: &str, key_authorization: &str) -> Result<(), AcmeError> {
        let expires = unix_ms(SystemTime::now() + TOKEN_TTL);
        let value = format!("{expires} {key_authorization}");
        let mut redis = self.redis.clone();
        bounded(redis.hset::<_, _, _, ()>(self.key("tokens"), token, value)).await
    }

    /// Best effort: a token left behind expires by itself.
    pub async fn withdraw_token(&self, token: &str) {
        let mut redis = self.redis.clone();
        if let Err(e) = bounded(redis.hdel::<_, _, ()>(self.key("tokens"), token)).await {
            tracing::debug!("cannot withdraw an ACME token from state.redis: {e}");
        }
    }

    /// Every replica's unexpired tokens.
    async fn pending_tokens(&self) -> Result<HashMap<String, String>, AcmeError> {
        let mut redis = self.redis.clone();
        let all: HashMap<String, String> = bounded(redis.hgetall(self.key("tokens"))).await?;
        let now = unix_ms(SystemTime::now());
        Ok(all
            .into_iter()
            .filter_map(|(token, value)| {
                let (expires, key_authorization) = value.split_once(' ')?;
                (expires.parse::<u128>().ok()? > now).then(|| (token, key_authorization.to_string()))
            })
            .collect())
    }

    /// Mirrors the shared tokens into `tokens` until the returned guard is dropped.
    pub fn mirror_into(self: &Arc<Self>, tokens: Arc<ChallengeTokens>) -> Mirror {
        let shared = self.clone();
        Mirror(tokio::spawn(async move {
            let mut reported = false;
            loop {
                match shared.pending_tokens().await {
                    Ok(pending) => {
                        tokens.mirror(pending);
                        reported = false;
                    }
                    Err(e) if !reported => {
                        tracing::warn!("cannot read other replicas' ACME tokens from state.redis: {e}");
                        reported = true;
                    }
                    Err(_) => {}
                }
                tokio::time::sleep(MIRROR_INTERVAL).await;
            }
        }))
    }

    /// The certificate another replica shared for `host`.
    pub async fn certificate(&self, host: &str) -> Result<Option<SharedCertificate>, AcmeError> {
        let mut redis = self.redis.clone();
        let json: Option<String> = bounded(redis.get(self.key(&format!("cert:{host}")))).await?;
        Ok(json.and_then(|json| serde_json::from_str(&json).ok()))
    }

    pub async fn save_certificate(&self, host: &str, certificate: &SharedCertificate) -> Result<(), AcmeError> {
        let json = serde_json::to_string(certificate).map_err(|e| AcmeError::Setup(e.to_string()))?;
        let mut redis = self.redis.clone();
        bounded(redis.set::<_, _, ()>(self.key(&format!("cert:{host}")), json)).await
    }

    /// Takes the order lock of `host` for `ttl`; false while another replica holds it.
    pub async fn lock(&self, host: &str, ttl: Duration) -> Result<bool, AcmeError> {
        let mut redis = self.redis.clone();
        let set: Option<String> = bounded(
            redis::cmd("SET")
                .arg(self.key(&format!("lock:{host}")))
                .arg(&self.replica)
                .arg("NX")
                .arg("PX")
                .arg(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX))
                .query_async(&mut redis),
        )
        .await?;
        Ok(set.is_some())
    }

    /// Releases the lock if this replica still holds it.
    pub async fn unlock(&self, host: &str) {
        let script = redis::Script::new(
            "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end",
        );
        let mut redis = self.redis.clone();
        let released = bounded(
            script
                .key(self.key(&format!("lock:{host}")))
                .arg(&self.replica)
                .invoke_async::<i64>(&mut redis),
        )
        .await;
        if let Err(e) = released {
            tracing::debug!(host, "cannot release the ACME order lock (it expires by itself): {e}");
        }
    }

    fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }
}

/// The token mirror task; stops when dropped.
pub struct Mirror(JoinHandle<()>);

impl Drop for Mirror {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn bounded<T>(call: impl std::future::Future<Output = redis::RedisResult<T>>) -> Result<T, AcmeError> {
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(AcmeError::Redis(format!("no answer within {CALL_TIMEOUT:?}"))),
    }
}

fn unix_ms(at: SystemTime) -> u128 {
    at.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis())
}
