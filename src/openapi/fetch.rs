//! `openapi.fetch_path` (SPEC §9.20): a background loop fetches each such
//! deployment's spec from one of its available instances — at once for a
//! new slot (then every second until it works), and every 60 s after that.
//! A failed fetch or a document that does not compile is logged and counted
//! (`keygate_openapi_fetch_failures_total`) and the last good spec stays.
//! Last good specs outlive reloads, so saving the config never empties a slot.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::{CompiledSpec, SpecSlot};
use crate::proxy::SharedSnapshot;
use crate::snapshot::Deployment;
use crate::telemetry::metrics;
use crate::upstream::Target;

/// How often a fetched spec is refreshed.
pub const REFRESH: Duration = Duration::from_secs(60);
/// How often a slot without any spec is retried.
const RETRY: Duration = Duration::from_secs(1);
const TICK: Duration = Duration::from_millis(250);
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_SPEC_BYTES: usize = 32 << 20;

type Key = (String, String);

/// The last spec fetched per `(deployment, fetch_path)`, across snapshots.
fn remembered() -> &'static Mutex<HashMap<Key, Arc<CompiledSpec>>> {
    static LAST_GOOD: OnceLock<Mutex<HashMap<Key, Arc<CompiledSpec>>>> = OnceLock::new();
    LAST_GOOD.get_or_init(Default::default)
}

/// The spec a new slot starts with, if an earlier snapshot had fetched one.
pub fn last_good(deployment: &str, fetch_path: &str) -> Option<Arc<CompiledSpec>> {
    let key = (deployment.to_string(), fetch_path.to_string());
    remembered().lock().ok()?.get(&key).cloned()
}

/// Runs until `shutdown` flips.
pub async fn run(snapshot: SharedSnapshot, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let mut attempted: HashMap<Key, Instant> = HashMap::new();
    loop {
        let current = snapshot.load_full();
        for deployment in &current.deployments {
            let Some(slot) = &deployment.openapi else { continue };
            let Some(path) = slot.fetch_path() else { continue };
            let key = (deployment.id.to_string(), path.to_string());
            let wait = if slot.current().is_some() { REFRESH } else { RETRY };
            if attempted.get(&key).is_some_and(|at| at.elapsed() < wait) {
                continue;
            }
            attempted.insert(key.clone(), Instant::now());
            refresh(deployment, slot, path, key).await;
        }
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = shutdown.changed() => break,
        }
    }
}

async fn refresh(deployment: &Deployment, slot: &SpecSlot, path: &str, key: Key) {
    match fetch(deployment, path).await {
        Ok(spec) => {
            let spec = Arc::new(spec);
            if let Ok(mut last) = remembered().lock() {
                last.insert(key, spec.clone());
            }
            slot.store(spec);
            tracing::debug!(deployment = %deployment.id, path, "OpenAPI spec fetched");
        }
        Err(e) => {
            metrics().openapi_fetch_failures.inc();
            let kept = if slot.current().is_some() { "keeping the last good spec" } else { "requests get 422 until it works" };
            tracing::warn!(deployment = %deployment.id, path, "OpenAPI spec fetch failed, {kept}: {e}");
        }
    }
}

/// The spec from the first available instance that serves one that compiles.
async fn fetch(deployment: &Deployment, path: &str) -> Result<CompiledSpec, String> {
    let mut problems = Vec::new();
    for endpoint in deployment.instances.current().iter().filter(|e| e.is_available()) {
        let Target::Network(addr) = endpoint.target else { continue };
        let url = format!("http://{addr}{path}");
        let text = match crate::http_get::get(&url, FETCH_TIMEOUT, MAX_SPEC_BYTES).await {
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
