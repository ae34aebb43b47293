//! Keeps the background work of instances in step with the running
//! configuration: exactly one health checker per checked instance (started,
//! restarted on a changed check, stopped when the instance or check goes
//! away — no duplicates, no leaks), and `dns:` entries re-resolved when due.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::endpoint::{Endpoint, Target};
use super::health::{self, HealthCheck};
use super::InstanceSet;

/// One deployment's instances as the supervisor sees them.
pub struct Pool<'a> {
    pub deployment: &'a Arc<str>,
    pub instances: &'a InstanceSet,
    pub health_check: Option<&'a HealthCheck>,
    pub dns_refresh: Duration,
}

/// What the supervisor needs of the running configuration: every deployment's pool.
pub trait Pools: Send + Sync + 'static {
    fn pools(&self) -> Vec<Pool<'_>>;
}

/// The longest the supervisor sleeps when no DNS entry is due sooner.
const IDLE: Duration = Duration::from_secs(3600);

struct Checker {
    check: HealthCheck,
    endpoint: Weak<Endpoint>,
    task: JoinHandle<()>,
}

/// Follows `config` until `shutdown` flips: checkers are synced whenever a
/// new configuration is published, DNS entries re-resolved when due.
pub async fn run<C: Pools>(mut config: watch::Receiver<Arc<C>>, mut shutdown: watch::Receiver<bool>) {
    let mut checkers: HashMap<(Arc<str>, SocketAddr), Checker> = HashMap::new();
    let mut resolved_at: HashMap<Arc<str>, Instant> = HashMap::new();
    loop {
        let current = config.borrow_and_update().clone();
        let pools = current.pools();
        sync_checkers(&pools, &mut checkers);
        let next_dns = refresh_dns(&pools, &mut resolved_at).await;
        drop(pools);
        tokio::select! {
            changed = config.changed() => if changed.is_err() { break },
            _ = tokio::time::sleep(next_dns) => {}
            _ = shutdown.changed() => break,
        }
    }
    for (_, checker) in checkers {
        checker.task.abort();
    }
}

fn sync_checkers(pools: &[Pool<'_>], checkers: &mut HashMap<(Arc<str>, SocketAddr), Checker>) {
    let mut wanted: HashMap<(Arc<str>, SocketAddr), (Arc<Endpoint>, HealthCheck)> = HashMap::new();
    for pool in pools {
        let Some(check) = pool.health_check else { continue };
        for endpoint in pool.instances.current().iter() {
            if let Target::Network(addr) = endpoint.target {
                wanted.insert((pool.deployment.clone(), addr), (endpoint.clone(), check.clone()));
            }
        }
    }
    checkers.retain(|key, checker| {
        let keep = wanted.get(key).is_some_and(|(endpoint, check)| {
            *check == checker.check && checker.endpoint.upgrade().is_some_and(|e| Arc::ptr_eq(&e, endpoint))
        });
        if !keep {
            checker.task.abort();
            if !wanted.contains_key(key) {
                // No longer checked: nothing may keep it out any more.
                if let Some(endpoint) = checker.endpoint.upgrade() {
                    endpoint.set_healthy(true);
                }
            }
        }
        keep
    });
    for (key, (endpoint, check)) in wanted {
        if checkers.contains_key(&key) {
            continue;
        }
        let task = tokio::spawn(health::run(Arc::downgrade(&endpoint), key.1, check.clone()));
        checkers.insert(
            key,
            Checker {
                check,
                endpoint: Arc::downgrade(&endpoint),
                task,
            },
        );
    }
}

/// Re-resolves the `dns:` entries that are due; returns how long until the next is.
async fn refresh_dns(pools: &[Pool<'_>], resolved_at: &mut HashMap<Arc<str>, Instant>) -> Duration {
    resolved_at.retain(|id, _| pools.iter().any(|p| p.deployment == id));
    let mut next = IDLE;
    for pool in pools {
        let names = pool.instances.dns_names();
        if names.is_empty() {
            continue;
        }
        let since = resolved_at.get(pool.deployment).map(Instant::elapsed);
        if let Some(since) = since.filter(|since| *since < pool.dns_refresh) {
            next = next.min(pool.dns_refresh - since);
            continue;
        }
        resolved_at.insert(pool.deployment.clone(), Instant::now());
        next = next.min(pool.dns_refresh);
        for (name, port) in names {
            match tokio::net::lookup_host((name.as_str(), port)).await {
                Ok(addrs) => {
                    let addrs: Vec<SocketAddr> = addrs.collect();
                    if addrs.is_empty() {
                        tracing::warn!(deployment = %pool.deployment, name, "DNS returned no address; keeping the last good set");
                    } else {
                        pool.instances.update_dns(&name, port, addrs);
                    }
                }
                Err(e) => {
                    tracing::warn!(deployment = %pool.deployment, name, "DNS lookup failed, keeping the last good set: {e}")
                }
            }
        }
    }
    next
}
