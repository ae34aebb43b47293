//! Endpoints outlive config snapshots: a reload (or a DNS refresh) that keeps
//! an instance keeps its health, ejection and in-flight state. The registry
//! hands out the existing endpoint for `(deployment, target)` while anything
//! still holds it. One registry serves the process; every snapshot's
//! instance sets share it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use super::endpoint::{Endpoint, Target};

type Key = (Arc<str>, Target);

/// The live endpoints by deployment and target; clones share them.
#[derive(Debug, Clone, Default)]
pub struct Endpoints(Arc<Mutex<HashMap<Key, Weak<Endpoint>>>>);

impl Endpoints {
    /// The live endpoint of `deployment` at `target`, or a new one.
    pub fn endpoint(&self, deployment: &Arc<str>, target: Target) -> Arc<Endpoint> {
        let Ok(mut map) = self.0.lock() else {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endpoint_lives_as_long_as_someone_holds_it() {
        let endpoints = Endpoints::default();
        let deployment: Arc<str> = "dep".into();
        let a = endpoints.endpoint(&deployment, Target::Echo);
        assert!(Arc::ptr_eq(&a, &endpoints.endpoint(&deployment, Target::Echo)));
        let other: Arc<str> = "other".into();
        assert!(!Arc::ptr_eq(&a, &endpoints.endpoint(&other, Target::Echo)));
        drop(a);
        let fresh = endpoints.endpoint(&deployment, Target::Echo);
        assert_eq!(
            Arc::strong_count(&fresh),
            1,
            "a dropped endpoint is not handed out again"
        );
    }
}
