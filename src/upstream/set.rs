//! A deployment's instances as requests see them: one list, swapped whole
//! when a DNS entry resolves to a different set of addresses.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use super::endpoint::{Endpoint, Target};
use super::registry::Endpoints;

/// Where one configured `instances:` entry gets its addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    Fixed(Vec<Target>),
    /// `dns:name:port`: every A/AAAA record, re-resolved periodically.
    Dns {
        name: String,
        port: u16,
        resolved: Vec<SocketAddr>,
    },
}

#[derive(Debug)]
pub struct InstanceSet {
    deployment: Arc<str>,
    /// Where endpoints come from, so one that stays keeps its state.
    registry: Endpoints,
    /// The configured entries and what they resolved to; only writers lock it.
    sources: Mutex<Vec<Source>>,
    endpoints: ArcSwap<Vec<Arc<Endpoint>>>,
}

/// One configured entry, resolved.
pub enum Entry {
    Fixed(Vec<Target>),
    Dns {
        name: String,
        port: u16,
        resolved: Vec<SocketAddr>,
    },
}

impl InstanceSet {
    pub fn new(deployment: Arc<str>, entries: Vec<Entry>, registry: &Endpoints) -> Self {
        let sources: Vec<Source> = entries
            .into_iter()
            .map(|e| match e {
                Entry::Fixed(targets) => Source::Fixed(targets),
                Entry::Dns { name, port, resolved } => Source::Dns { name, port, resolved },
            })
            .collect();
        let endpoints = flatten(registry, &deployment, &sources);
        Self {
            deployment,
            registry: registry.clone(),
            sources: Mutex::new(sources),
            endpoints: ArcSwap::from_pointee(endpoints),
        }
    }

    /// The endpoints now; a request keeps this list for all its tries.
    pub fn current(&self) -> Arc<Vec<Arc<Endpoint>>> {
        self.endpoints.load_full()
    }

    /// The `dns:` entries to refresh, as `(name, port)`.
    pub fn dns_names(&self) -> Vec<(String, u16)> {
        let Ok(sources) = self.sources.lock() else {
            return Vec::new();
        };
        sources
            .iter()
            .filter_map(|s| match s {
                Source::Dns { name, port, .. } => Some((name.clone(), *port)),
                Source::Fixed(_) => None,
            })
            .collect()
    }

    /// Records a fresh resolution of `name:port`; swaps the list if it changed.
    pub fn update_dns(&self, name: &str, port: u16, mut addrs: Vec<SocketAddr>) {
        addrs.sort();
        addrs.dedup();
        let Ok(mut sources) = self.sources.lock() else { return };
        let mut changed = false;
        for source in sources.iter_mut() {
            if let Source::Dns {
                name: n,
                port: p,
                resolved,
            } = source
            {
                if n == name && *p == port && *resolved != addrs {
                    tracing::info!(deployment = %self.deployment, name, ?addrs, "DNS instances changed");
                    *resolved = addrs.clone();
                    changed = true;
                }
            }
        }
        if changed {
            self.endpoints
                .store(Arc::new(flatten(&self.registry, &self.deployment, &sources)));
        }
    }

    /// Endpoints available now (healthy and not ejected).
    pub fn available(&self) -> usize {
        self.endpoints.load().iter().filter(|e| e.is_available()).count()
    }
}

fn flatten(registry: &Endpoints, deployment: &Arc<str>, sources: &[Source]) -> Vec<Arc<Endpoint>> {
    let mut out: Vec<Arc<Endpoint>> = Vec::new();
    for source in sources {
        let targets: Vec<Target> = match source {
            Source::Fixed(targets) => targets.clone(),
            Source::Dns { resolved, .. } => resolved.iter().copied().map(Target::Network).collect(),
        };
        for target in targets {
            if !out.iter().any(|e| e.target == target) {
                out.push(registry.endpoint(deployment, target));
            }
        }
    }
    out
}
