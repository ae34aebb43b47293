//! `openapi.fetch_path`: a background task fetches each such deployment's
//! spec from one of its available instances — at once for a new slot (then
//! every second until it works), and every 60 s after that.
//! A failed fetch or a document that does not compile is logged and counted
//! (`keygate_openapi_fetch_failures_total`) and the last good spec stays.
//! Last good specs outlive reloads, so saving the config never empties a slot.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::{CompiledSpec, SpecSlot};
use crate::http_client::HttpClient;
use crate::telemetry::metrics;
use crate::upstream::{InstanceSet, Target};

/// How often a fetched spec is refreshed.
pub const REFRESH: Duration = Duration::from_secs(60);
/// How often a slot without any spec is retried.
const RETRY: Duration = Duration::from_secs(1);
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_SPEC_BYTES: usize = 32 << 20;

type Key = (String, String);

/// The last spec fetched per `(deployment, fetch_path)`, across snapshots:
/// a slot compiled by a reload starts with it. Clones share it.
#[derive(Debug, Default, Clone)]
pub struct FetchedSpecs(Arc<Mutex<HashMap<Key, Arc<CompiledSpec>>>>);

impl FetchedSpecs {
    /// The spec a new slot starts with, if an earlier snapshot had fetched one.
    pub fn last_good(&self, deployment: &str, fetch_path: &str) -> Option<Arc<CompiledSpec>> {
        let key = (deployment.to_string(), fetch_path.to_string());
        self.0.lock().ok()?.get(&key).cloned()
    }

    fn remember(&self, key: Key, spec: Arc<CompiledSpec>) {
        if let Ok(mut last) = self.0.lock() {
            last.insert(key, spec);
        }
    }
}

/// A deployment whose spec is fetched from its instances.
pub struct Fetched<'a> {
    pub deployment: &'a Arc<str>,
    pub slot: &'a SpecSlot,
    pub instances: &'a InstanceSet,
}

/// What the fetcher needs of the running configuration.
pub trait FetchSources: Send + Sync + 'static {
    fn fetch_sources(&self) -> Vec<Fetched<'_>>;
}

/// Follows `config` until `shutdown` flips: fetches each new slot at once,
/// refreshes every [`REFRESH`] (retries every second while a slot is empty).
pub async fn run<C: FetchSources>(
    fetched: FetchedSpecs,
    http: HttpClient,
    mut config: watch::Receiver<Arc<C>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut attempted: HashMap<Key, Instant> = HashMap::new();
    loop {
        let current = config.borrow_and_update().clone();
        let mut next = REFRESH;
        for source in current.fetch_sources() {
            let Some(path) = source.slot.fetch_path() else { continue };
            let key = (source.deployment.to_string(), path.to_string());
            let wait = if source.slot.current().is_some() {
                REFRESH
            } else {
                RETRY
            };
            if let Some(since) = attempted.get(&key).map(Instant::elapsed).filter(|since| *since < wait) {
                next = next.min(wait - since);
                continue;
            }
            attempted.insert(key.clone(), Instant::now());
            refresh(&fetched, &http, &source, path, key).await;
            next = next.min(if source.slot.current().is_some() {
                REFRESH
            } else {
                RETRY
            });
        }
        tokio::select! {
            changed = config.changed() => if changed.is_err() { break },
            _ = tokio::time::sleep(next) => {}
            _ = shutdown.changed() => break,
        }
    }
}

async fn refresh(fetched: &FetchedSpecs, http: &HttpClient, source: &Fetched<'_>, path: &str, key: Key) {
    let (deployment, slot) = (source.deployment, source.slot);
    match fetch(http, source.instances, path).await {
        Ok(spec) => {
            let spec = Arc::new(spec);
            fetched.remember(key, spec.clone());
            slot.store(spec);
            tracing::debug!(deployment = %deployment, path, "OpenAPI spec fetched");
        }
        Err(e) => {
            metrics().openapi_fetch_failures.inc();
            let kept = if slot.current().is_some() {
                "keeping the last good spec"
            } else {
                "requests get 422 until it works"
            };
            tracing::warn!(deployment = %deployment, path, "OpenAPI spec fetch failed, {kept}: {e}");
        }
    }
}

/// The spec from the first available instance that serves one that compiles.
async fn fetch(http: &HttpClient, instances: &InstanceSet, path: &str) -> Result<CompiledSpec, String> {
    let mut problems = Vec::new();
    for endpoint in instances.current().iter().filter(|e| e.is_available()) {
        let Target::Network(addr) = endpoint.target else {
            continue;
        };
        let url = format!("http://{addr}{path}");
        let text = match http.get(&url, FETCH_TIMEOUT, MAX_SPEC_BYTES).await {
            Ok(body) => body,
            Err(e) => {
                problems.push(e.to_string());
                continue;
            }
        };
        // Compiling a large document takes milliseconds: keep it off the async workers.
        let compiled = tokio::task::spawn_blocking(move || {
            let text = String::from_utf8_lossy(&text);
            super::compile(&text)
        })
        .await;
        match compiled {
            Ok(Ok(spec)) => return Ok(spec),
            Ok(Err(e)) => problems.push(format!("{url}: {e}")),
            Err(e) => problems.push(format!("{url}: {e}")),
        }
    }
    if problems.is_empty() {
        return Err("no available network instance to fetch from".into());
    }
    Err(problems.join("; "))
}
