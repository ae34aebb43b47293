//! Where keygate keeps what it must not lose: the embedded store's files,
//! ACME account and certificates and the local root key — under
//! `state.dir` — and, when replicas must agree, the Redis URL they share.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::state::StateSpec;
use crate::config::Config;

/// The compiled `state` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateSettings {
    pub dir: PathBuf,
    /// The shared PostgreSQL key store, if any (else the embedded one in `dir`).
    pub database: Option<String>,
    /// How long a replica serves a verified key from its cache (with `database`).
    pub cache_ttl: Duration,
    pub redis: Option<String>,
    pub sync_interval: Duration,
    pub credit_lease: u32,
    pub outage_credits: u32,
}

impl StateSettings {
    pub fn compile(spec: &StateSpec, base_dir: &Path) -> Self {
        Self {
            dir: base_dir.join(spec.dir.as_deref().unwrap_or("state")),
            database: spec.database.clone().filter(|url| !url.trim().is_empty()),
            cache_ttl: spec.cache_ttl.map_or(Duration::from_secs(600), |d| d.0),
            redis: spec.redis.clone().filter(|url| !url.trim().is_empty()),
            sync_interval: spec.sync_interval.map_or(Duration::from_millis(50), |d| d.0),
            credit_lease: spec.credit_lease.unwrap_or(1).max(1),
            outage_credits: spec.outage_credits.unwrap_or(10),
        }
    }

    /// The `state` section of `config`, its paths resolved against the file's directory.
    pub fn of(config: &Config) -> Self {
        Self::compile(&config.file.state, config.base_dir())
    }

    /// `state.dir/<name>`, created (mode 0700) if missing.
    pub fn subdir(&self, name: &str) -> std::io::Result<PathBuf> {
        use std::os::unix::fs::DirBuilderExt;
        let path = self.dir.join(name);
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&path)?;
        Ok(path)
    }
}

/// Where the local root key is kept, relative to `state.dir`.
const ROOT_KEY_FILE: [&str; 2] = ["admin", "root_key"];

/// The local root key: what the admin API accepts when `admin.root_keys` is
/// empty. The gateway creates it at its first start; client commands on the
/// same machine read it, so nobody has to copy a key around.
impl StateSettings {
    /// `<state.dir>/admin/root_key`.
    pub fn root_key_path(&self) -> PathBuf {
        ROOT_KEY_FILE
            .iter()
            .fold(self.dir.clone(), |path, part| path.join(part))
    }

    /// The local root key, or `None` when its file does not exist.
    pub fn read_root_key(&self) -> Result<Option<String>, RootKeyError> {
        let path = self.root_key_path();
        match std::fs::read_to_string(&path) {
            Ok(text) => match text.trim() {
                "" => Err(RootKeyError::Empty { path }),
                key => Ok(Some(key.to_string())),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(RootKeyError::Io { path, source }),
        }
    }

    /// The local root key; at the first call, `generate`d and written
    /// (directory 0700, file 0600) atomically and without replacing a key
    /// that another process wrote meanwhile, so both use the same one.
    pub fn root_key_or_create(&self, generate: impl FnOnce() -> String) -> Result<String, RootKeyError> {
        if let Some(key) = self.read_root_key()? {
            return Ok(key);
        }
        let path = self.root_key_path();
        let io = |source| RootKeyError::Io {
            path: path.clone(),
            source,
        };
        let dir = self.subdir(ROOT_KEY_FILE[0]).map_err(io)?;
        let key = generate();
        let mut file = tempfile::Builder::new()
            .prefix(".root_key")
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .tempfile_in(&dir)
            .map_err(io)?;
        file.write_all(format!("{key}\n").as_bytes()).map_err(io)?;
        file.as_file().sync_all().map_err(io)?;
        match file.persist_noclobber(&path) {
            Ok(_) => Ok(key),
            Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => {
                self.read_root_key()?.ok_or(RootKeyError::Empty { path })
            }
            Err(e) => Err(io(e.error)),
        }
    }
}

/// Why the local root key cannot be read or kept.
#[derive(Debug, thiserror::Error)]
pub enum RootKeyError {
    #[error("the local root key {}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("the local root key {} is empty: delete it and restart the gateway for a new one", path.display())]
    Empty { path: PathBuf },
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

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn settings(dir: &Path) -> StateSettings {
        StateSettings::compile(&StateSpec::default(), dir)
    }

    #[test]
    fn root_key_is_created_once_private_and_then_reused() {
        let base = tempfile::tempdir().unwrap();
        let state = settings(base.path());
        assert_eq!(state.read_root_key().unwrap(), None);
        let key = state.root_key_or_create(|| "kg_root_first".into()).unwrap();
        assert_eq!(key, "kg_root_first");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&state.root_key_path()), 0o600);
        assert_eq!(mode(state.root_key_path().parent().unwrap()), 0o700);
        assert_eq!(
            state.root_key_or_create(|| "kg_root_second".into()).unwrap(),
            "kg_root_first"
        );
        assert_eq!(state.read_root_key().unwrap().as_deref(), Some("kg_root_first"));
    }

    #[test]
    fn an_empty_root_key_file_is_an_error() {
        let base = tempfile::tempdir().unwrap();
        let state = settings(base.path());
        state.subdir("admin").unwrap();
        std::fs::write(state.root_key_path(), "\n").unwrap();
        assert!(matches!(state.read_root_key(), Err(RootKeyError::Empty { .. })));
    }
}
