//! The process-wide services every snapshot shares: the key service (store,
//! caches, credits), the rate limiter with its Redis link, the specs
//! fetched from instances and the local root key. Opened once at start-up
//! from `state`; a reload compiles a new snapshot against the same
//! services, so counters, caches, balances and the root key survive it.

use std::sync::Arc;

use crate::http_client::{HttpClient, HttpError};
use crate::keys::store::StoreError;
use crate::keys::KeyService;
use crate::openapi::FetchedSpecs;
use crate::policy::Resources;
use crate::ratelimit::{RateLimiter, SharedSettings};
use crate::state::{RootKeyError, StateSettings};
use crate::telemetry::request_log::RequestLog;
use crate::telemetry::traces::Tracing;
use crate::upstream::Endpoints;

/// What snapshots are compiled against; clones share everything.
#[derive(Clone)]
pub struct Services {
    pub keys: Arc<KeyService>,
    /// Every limit: `ratelimit` policies, key and identity limits,
    /// `ratelimit.limit`. With `state.redis`, shared by the replicas.
    pub limiter: RateLimiter,
    pub fetched_specs: FetchedSpecs,
    /// Where `logging` policies write (configured from each snapshot's `request_log`).
    pub request_log: RequestLog,
    /// Where requests start their trace spans (configured from each snapshot's `tracing`).
    pub tracing: Tracing,
    /// Instances' live state (health, ejection, load), kept across reloads.
    pub endpoints: Endpoints,
    /// The control plane's HTTP client (JWKS, OIDC discovery, OpenAPI fetches).
    pub http: HttpClient,
    /// The root key the admin API accepts while `admin.root_keys` is empty
    /// (see [`Services::with_local_root_key`]).
    pub local_root_key: Option<Arc<str>>,
}

/// Why the services could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ServicesError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the control-plane HTTP client: {0}")]
    Http(#[from] HttpError),
}

impl std::fmt::Debug for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Services").finish_non_exhaustive()
    }
}

impl Services {
    /// The serving process's services, on `state.dir` (and `state.redis`).
    pub fn open(state: &StateSettings) -> Result<Self, ServicesError> {
        let limiter = match &state.redis {
            Some(url) => RateLimiter::shared(SharedSettings {
                url: url.clone(),
                sync_interval: state.sync_interval,
            })
            .map_err(|source| StoreError::Io {
                path: "rate-limit sync thread".into(),
                source,
            })?,
            None => RateLimiter::default(),
        };
        let keys = KeyService::open(state, limiter.clone())?;
        Ok(Self {
            keys,
            limiter,
            fetched_specs: FetchedSpecs::default(),
            request_log: RequestLog::default(),
            tracing: Tracing::default(),
            endpoints: Endpoints::default(),
            http: HttpClient::new(&[])?,
            local_root_key: None,
        })
    }

    /// For a gateway started without `admin.root_keys`: the local root key
    /// of `state.dir`, generated at the first start (`kg_root_` + base58 of
    /// 24 random bytes) and reused after.
    pub fn with_local_root_key(self, state: &StateSettings) -> Result<Self, RootKeyError> {
        let key = state.root_key_or_create(|| crate::keys::model::generate_key(Some("kg_root"), 24).plaintext)?;
        Ok(Self {
            local_root_key: Some(key.into()),
            ..self
        })
    }

    /// For `keygate check` and other offline uses: the store in `state.dir`
    /// if one exists (read, never created), else an empty in-memory one.
    pub fn offline(state: &StateSettings) -> Result<Self, ServicesError> {
        Self::with_keys(KeyService::open_existing(state)?)
    }

    /// Fresh in-memory services (tests and benchmarks).
    pub fn in_memory() -> Result<Self, ServicesError> {
        Self::with_keys(KeyService::in_memory()?)
    }

    fn with_keys(keys: Arc<KeyService>) -> Result<Self, ServicesError> {
        Ok(Self {
            limiter: keys.limiter().clone(),
            keys,
            fetched_specs: FetchedSpecs::default(),
            request_log: RequestLog::default(),
            tracing: Tracing::default(),
            endpoints: Endpoints::default(),
            http: HttpClient::new(&[])?,
            local_root_key: None,
        })
    }

    /// The key service with no static keys: what policies outside any
    /// config file verify against (tests, benchmarks).
    pub fn keys_without_statics(&self) -> crate::keys::Keys {
        crate::keys::Keys {
            service: self.keys.clone(),
            statics: Default::default(),
        }
    }

    /// What policies compiled against these services get, outside any
    /// deployment (set `openapi`, `base_dir`, `deployment` to place them).
    pub fn policy_resources<'a>(&self, keys: &crate::keys::Keys) -> Resources<'a> {
        Resources {
            keys: keys.clone(),
            limiter: self.limiter.clone(),
            request_log: self.request_log.clone(),
            http: self.http.clone(),
            openapi: None,
            base_dir: std::path::Path::new("."),
            deployment: "",
            policy_id: "",
        }
    }
}
