//! Keeps the background work of instances in step with the live snapshot:
//! exactly one health checker per checked instance (started, restarted on a
//! changed check, stopped when the instance or check goes away — no
//! duplicates, no leaks), DNS entries re-resolved, and
//! `keygate_instances_healthy` exported.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use super::endpoint::{Endpoint, Target};
use super::health::{self, HealthCheck};
use crate::proxy::SharedSnapshot;
use crate::telemetry::metrics;

/// How often the supervisor compares what runs with what the snapshot wants.
const TICK: Duration = Duration::from_millis(250);

struct Checker {
    check: HealthCheck,
    endpoint: Weak<Endpoint>,
    task: JoinHandle<()>,
}

/// Runs until `shutdown` flips.
pub async fn run(snapshot: SharedSnapshot, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let mut checkers: HashMap<(Arc<str>, SocketAddr), Checker> = HashMap::new();
    let mut resolved_at: HashMap<Arc<str>, Instant> = HashMap::new();
    let mut exported: Vec<String> = Vec::new();
    loop {
        let current = snapshot.load_full();
        sync_checkers(&current, &mut checkers);
        refresh_dns(&current, &mut resolved_at).await;
        exported = export_health(&current, exported);
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = shutdown.changed() => break,
        }
    }
    for (_, checker) in checkers {
        checker.task.abort();
    }
}

fn sync_checkers(snapshot: &crate::snapshot::Snapshot, checkers: &mut HashMap<(Arc<str>, SocketAddr), Checker>) {
    let mut wanted: HashMap<(Arc<str>, SocketAddr), (Arc<Endpoint>, HealthCheck)> = HashMap::new();
    for deployment in &snapshot.deployments {
        let Some(check) = &deployment.health_check else { continue };
        for endpoint in deployment.instances.current().iter() {
            if let Target::Network(addr) = endpoint.target {
                wanted.insert((deployment.id.clone(), addr), (endpoint.clone(), check.clone()));
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
        checkers.insert(key, Checker { check, endpoint: Arc::downgrade(&endpoint), task });
    }
}

async fn refresh_dns(snapshot: &crate::snapshot::Snapshot, resolved_at: &mut HashMap<Arc<str>, Instant>) {
    for deployment in &snapshot.deployments {
        let names = deployment.instances.dns_names();
        if names.is_empty() {
            continue;
        }
        let due = resolved_at
            .get(&deployment.id)
            .map_or(true, |at| at.elapsed() >= deployment.dns_refresh);
        if !due {
            continue;
        }
        resolved_at.insert(deployment.id.clone(), Instant::now());
        for (name, port) in names {
            match tokio::net::lookup_host((name.as_str(), port)).await {
                Ok(addrs) => {
                    let addrs: Vec<SocketAddr> = addrs.collect();
                    if addrs.is_empty() {
                        tracing::warn!(deployment = %deployment.id, name, "DNS returned no address; keeping the last good set");
                    } else {
                        deployment.instances.update_dns(&name, port, addrs);
                    }
                }
                Err(e) => tracing::warn!(deployment = %deployment.id, name, "DNS lookup failed, keeping the last good set: {e}"),
            }
        }
    }
}

/// Sets `keygate_instances_healthy{deployment}`; returns the deployments exported.
fn export_health(snapshot: &crate::snapshot::Snapshot, previous: Vec<String>) -> Vec<String> {
    let now: Vec<String> = snapshot.deployments.iter().map(|d| d.id.to_string()).collect();
    for gone in previous.iter().filter(|id| !now.contains(id)) {
        metrics().remove_instances_healthy(gone);
    }
    for deployment in &snapshot.deployments {
        metrics().set_instances_healthy(&deployment.id, deployment.instances.available());
    }
    now
}
