//! Publishing snapshots. Each routing provider (the file, Kubernetes, …)
//! states its whole share of the routing table as a [`Routing`]; the [`Hub`]
//! merges every share into the one [`Snapshot`] the proxy reads and swaps it
//! in whole, so a request sees either the old or the new table and the
//! request path never knows providers exist. Every swap is also announced on
//! one watch channel ([`Hub::subscribe`]), which is how background tasks
//! (health checks, OpenAPI fetches, ACME, providers) follow the config.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use tokio::sync::watch;

use super::snapshot::{Deployment, RouteTarget, Snapshot};
use crate::routing::{HostPattern, PathMatch, RouteRule, RouteTable};

/// The snapshot every request starts from; replaced whole by each swap.
pub type SharedSnapshot = Arc<ArcSwap<Snapshot>>;

/// A provider, in merge order: a host claimed by two providers belongs to
/// the earlier one (the file first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProviderId {
    File,
    Kubernetes,
    Docker,
    /// Deployments created through the Deployments API.
    Api,
}

impl ProviderId {
    pub fn name(self) -> &'static str {
        match self {
            Self::File => "file",
            Self::Kubernetes => "kubernetes",
            Self::Docker => "docker",
            Self::Api => "api",
        }
    }
}

/// One route as a provider states it.
#[derive(Debug, Clone)]
pub struct Route {
    /// `None`: every host no other route names (an Ingress rule without a host).
    pub host: Option<HostPattern>,
    pub path: PathMatch,
    pub strip_prefix: bool,
    /// Match expressions, filters and timeout (default: none).
    pub rule: Arc<RouteRule>,
    pub target: RouteTarget,
}

/// Everything one provider contributes to the routing table.
#[derive(Debug, Default)]
pub struct Routing {
    pub deployments: Vec<Arc<Deployment>>,
    pub routes: Vec<Route>,
}

/// A host that two providers route: the earlier provider keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Conflict {
    pub host: String,
    pub kept_by: ProviderId,
    pub dropped_from: ProviderId,
}

/// The routing table and deployments of several providers together.
pub struct Merged {
    pub routes: RouteTable<RouteTarget>,
    pub deployments: Vec<Arc<Deployment>>,
    pub conflicts: Vec<Conflict>,
}

/// Merges the shares in [`ProviderId`] order. A host (exact, wildcard, or
/// "any") belongs to the first provider that routes it; a later provider's
/// routes for it are dropped and reported as a conflict.
pub fn merge(shares: &[(ProviderId, &Routing)]) -> Merged {
    let mut owners: HashMap<Option<&HostPattern>, ProviderId> = HashMap::new();
    let mut routes = RouteTable::default();
    let mut deployments = Vec::new();
    let mut conflicts = Vec::new();
    let mut ordered: Vec<&(ProviderId, &Routing)> = shares.iter().collect();
    ordered.sort_by_key(|(id, _)| *id);
    for (id, routing) in ordered {
        let mut claimed_now: HashSet<Option<&HostPattern>> = HashSet::new();
        for route in &routing.routes {
            let host = route.host.as_ref();
            match owners.get(&host) {
                Some(owner) if owner != id => {
                    conflicts.push(Conflict {
                        host: host_label(host),
                        kept_by: *owner,
                        dropped_from: *id,
                    });
                    continue;
                }
                _ => {}
            }
            claimed_now.insert(host);
            let target = RouteTarget {
                provider: *id,
                ..route.target.clone()
            };
            routes.add(host, route.path.clone(), route.strip_prefix, route.rule.clone(), target);
        }
        for host in claimed_now {
            owners.insert(host, *id);
        }
        deployments.extend(routing.deployments.iter().cloned());
    }
    conflicts.sort_by(|a, b| a.host.cmp(&b.host));
    conflicts.dedup();
    Merged {
        routes,
        deployments,
        conflicts,
    }
}

fn host_label(host: Option<&HostPattern>) -> String {
    match host {
        Some(HostPattern::Exact(name)) => name.to_string(),
        Some(HostPattern::Wildcard(parent)) => format!("*.{parent}"),
        None => "*".to_string(),
    }
}

/// Where providers publish. Keeps each provider's latest [`Routing`] and
/// swaps in a merged snapshot whenever the file or a provider changes; the
/// swap is whole, so a request sees either the old or the new table.
pub struct Hub {
    /// What requests read: one lock-free load per request.
    snapshot: SharedSnapshot,
    /// What background tasks follow: every swap is announced here too.
    changes: watch::Sender<Arc<Snapshot>>,
    state: Mutex<HubState>,
}

#[derive(Default)]
struct HubState {
    published: BTreeMap<ProviderId, Arc<Routing>>,
    /// Conflicts already logged: each is logged once while it lasts.
    reported: HashSet<Conflict>,
    /// Providers started but not published yet: the gateway is not ready
    /// before they are (an ingress controller must not take traffic before
    /// it knows the Ingresses).
    waiting: BTreeSet<ProviderId>,
}

impl Hub {
    /// A hub serving `first` until something is installed or published.
    pub fn new(first: Snapshot) -> Arc<Self> {
        let first = Arc::new(first);
        Arc::new(Self {
            snapshot: Arc::new(ArcSwap::new(first.clone())),
            changes: watch::Sender::new(first),
            state: Mutex::new(HubState::default()),
        })
    }

    /// The snapshot requests load, lock-free.
    pub fn shared(&self) -> &SharedSnapshot {
        &self.snapshot
    }

    /// Follows every swap: the only way background tasks learn of a new
    /// snapshot (the current one is marked seen, so `changed()` waits for
    /// the next).
    pub fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.changes.subscribe()
    }

    /// Marks `provider` as started: [`Hub::synced`] is false until it publishes.
    pub fn await_first_publish(&self, provider: ProviderId) {
        if let Ok(mut state) = self.state.lock() {
            state.waiting.insert(provider);
        }
    }

    /// Whether every started provider has published its routing once.
    pub fn synced(&self) -> bool {
        self.state.lock().is_ok_and(|state| state.waiting.is_empty())
    }

    /// The snapshot requests are served from now.
    pub fn current(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// Swaps in `next`, compiled from the file, with every provider's routes merged in.
    pub fn install_file(&self, next: Snapshot) {
        let Ok(mut state) = self.state.lock() else { return };
        let merged = if state.published.is_empty() {
            next
        } else {
            Self::merge_into(&next, &mut state)
        };
        self.swap(merged);
    }

    /// Replaces what `provider` contributes and swaps in the merged snapshot.
    pub fn publish(&self, provider: ProviderId, routing: Routing) {
        let Ok(mut state) = self.state.lock() else { return };
        state.published.insert(provider, Arc::new(routing));
        if state.waiting.remove(&provider) {
            tracing::info!(provider = provider.name(), "provider synced: its routes are served");
        }
        let current = self.snapshot.load_full();
        let next = Self::merge_into(&current, &mut state);
        tracing::debug!(
            provider = provider.name(),
            routes = next.routes.len(),
            "routing updated"
        );
        self.swap(next);
    }

    /// Called with the state lock held, so swaps happen in merge order.
    fn swap(&self, next: Snapshot) {
        let next = Arc::new(next);
        self.snapshot.store(next.clone());
        self.changes.send_replace(next);
    }

    fn merge_into(base: &Snapshot, state: &mut HubState) -> Snapshot {
        let mut shares: Vec<(ProviderId, &Routing)> = vec![(ProviderId::File, &*base.file_routing)];
        shares.extend(state.published.iter().map(|(id, routing)| (*id, &**routing)));
        let merged = merge(&shares);
        let now: HashSet<Conflict> = merged.conflicts.iter().cloned().collect();
        for conflict in now.difference(&state.reported) {
            tracing::error!(
                host = conflict.host,
                kept_by = conflict.kept_by.name(),
                dropped_from = conflict.dropped_from.name(),
                "host claimed by two providers: the {} provider's routes for it are ignored",
                conflict.dropped_from.name()
            );
        }
        state.reported = now;
        base.with_routing(merged.routes, merged.deployments)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::{request_head, PathPrefix};

    fn share(hosts: &[(&str, &str)]) -> Routing {
        let mut routing = Routing::default();
        for (host, deployment) in hosts {
            let deployment = Arc::new(Deployment::plain(
                (*deployment).into(),
                Vec::new(),
                crate::policy::PolicyChain::default(),
                &crate::upstream::Endpoints::default(),
            ));
            routing.deployments.push(deployment.clone());
            routing.routes.push(Route {
                host: (*host != "*").then(|| HostPattern::parse(host).unwrap()),
                path: PathMatch::Prefix(PathPrefix::root()),
                strip_prefix: false,
                rule: Arc::default(),
                target: RouteTarget::new(deployment, host),
            });
        }
        routing
    }

    fn deployment_for(merged: &Merged, host: &str) -> Option<String> {
        merged
            .routes
            .resolve(host, &request_head("GET", "/", &[]))
            .and_then(|r| r.target.deployment())
            .map(|d| d.id.to_string())
    }

    #[test]
    fn the_file_keeps_a_host_both_claim() {
        let file = share(&[("a.com", "file_a")]);
        let k8s = share(&[("a.com", "ns/a:80"), ("b.com", "ns/b:80"), ("*", "ns/default:80")]);
        let merged = merge(&[(ProviderId::Kubernetes, &k8s), (ProviderId::File, &file)]);
        assert_eq!(deployment_for(&merged, "a.com").as_deref(), Some("file_a"));
        assert_eq!(deployment_for(&merged, "b.com").as_deref(), Some("ns/b:80"));
        assert_eq!(deployment_for(&merged, "c.com").as_deref(), Some("ns/default:80"));
        assert_eq!(
            merged.conflicts,
            vec![Conflict {
                host: "a.com".into(),
                kept_by: ProviderId::File,
                dropped_from: ProviderId::Kubernetes
            }]
        );
        assert_eq!(merged.deployments.len(), 4);
    }

    #[test]
    fn every_route_names_its_provider() {
        let file = share(&[("a.com", "file_a")]);
        let docker = share(&[("a.com", "docker/a"), ("b.com", "docker/b")]);
        let merged = merge(&[(ProviderId::Docker, &docker), (ProviderId::File, &file)]);
        let provider = |host: &str| {
            merged
                .routes
                .resolve(host, &request_head("GET", "/", &[]))
                .map(|r| r.target.provider)
        };
        assert_eq!(provider("a.com"), Some(ProviderId::File));
        assert_eq!(provider("b.com"), Some(ProviderId::Docker));
        assert_eq!(
            merged.conflicts,
            vec![Conflict {
                host: "a.com".into(),
                kept_by: ProviderId::File,
                dropped_from: ProviderId::Docker
            }]
        );
    }

    #[test]
    fn one_provider_may_route_a_host_many_times() {
        let mut k8s = share(&[("a.com", "ns/a:80")]);
        let mut api = k8s.routes[0].clone();
        api.path = PathMatch::Prefix(PathPrefix::parse("/api").unwrap());
        k8s.routes.push(api);
        let merged = merge(&[(ProviderId::Kubernetes, &k8s)]);
        assert!(merged.conflicts.is_empty());
        assert_eq!(merged.routes.len(), 2);
    }
}
