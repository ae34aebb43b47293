//! Endpoints outlive config snapshots: a reload (or a DNS refresh) that keeps
//! an instance keeps its health, ejection and in-flight state. The registry
//! hands out the existing endpoint for `(deployment, target)` while anything
//! still holds it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};

use super::endpoint::{Endpoint, Target};

type Key = (Arc<str>, Target);

fn registry() -> &'static Mutex<HashMap<Key, Weak<Endpoint>>> {
    static REGISTRY: OnceLock<Mutex<HashMap<Key, Weak<Endpoint>>>> = OnceLock::new();
    REGISTRY.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The live endpoint of `deployment` at `target`, or a new one.
pub fn endpoint(deployment: &Arc<str>, target: Target) -> Arc<Endpoint> {
    let Ok(mut map) = registry().lock() else {
        return Arc::new(Endpoint::new(target));
    };
    let key = (deployment.clone(), target);
    if let Some(existing) = map.get(&key).and_then(Weak::upgrade) {
        return existing;
    }
    map.retain(|_, weak| weak.strong_count() > 0);
    let fresh = Arc::new(Endpoint::new(target));
    map.insert(key, Arc::downgrade(&fresh));
    fresh
}
