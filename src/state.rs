//! Where keygate keeps what it must not lose (SPEC §2 `state`): the embedded
//! store's files, ACME account and certificates — under `state.dir` — and,
//! when replicas must agree, the Redis URL they share.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The `state:` section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateSpec {
    /// Relative to the config file's directory; default `state/`.
    #[serde(default)]
    pub dir: Option<String>,
    /// e.g. `redis://127.0.0.1:6379`; shared counters across replicas.
    #[serde(default)]
    pub redis: Option<String>,
}

/// The compiled `state` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateSettings {
    pub dir: PathBuf,
    pub redis: Option<String>,
}

impl StateSettings {
    pub fn compile(spec: &StateSpec, base_dir: &Path) -> Self {
        Self {
            dir: base_dir.join(spec.dir.as_deref().unwrap_or("state")),
            redis: spec.redis.clone().filter(|url| !url.trim().is_empty()),
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
