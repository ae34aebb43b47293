//! The routes the control plane's state implies: each routable deployment
//! (ready, or live/standby) with its environment's policies, and per
//! project its commit, branch, environment and live domains.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use super::domains;
use super::model::{live_id, DeploymentRecord, Status};
use super::State;
use crate::routing::{HostPattern, PathMatch, PathPrefix};
use crate::runtime::{Deployment, PlatformSettings, Route, RouteTarget, Routing, Snapshot};

/// Whether requests may reach the deployment.
fn routable(record: &DeploymentRecord) -> bool {
    matches!(record.status, Status::Ready | Status::Standby)
}

/// The domains that point at `record` now.
pub fn domains_of(state: &State, settings: &PlatformSettings, record: &DeploymentRecord) -> Vec<String> {
    assign(state, settings)
        .into_iter()
        .filter(|(_, id)| *id == record.id)
        .map(|(domain, _)| domain)
        .collect()
}

/// Domain → deployment id, for every project of the configuration.
fn assign(state: &State, settings: &PlatformSettings) -> BTreeMap<String, String> {
    let base = settings.base_domain.as_str();
    let mut domains = BTreeMap::new();
    for project in &settings.projects {
        let deployments = state.deployments.values().filter(|d| d.project_id == project.id);
        let mut newest_by_branch: BTreeMap<&str, &DeploymentRecord> = BTreeMap::new();
        for record in deployments.filter(|d| routable(d)) {
            domains.insert(domains::commit(&project.slug, record, base), record.id.clone());
            let newest = newest_by_branch.entry(record.branch.as_str()).or_insert(record);
            if (record.created_at, &record.id) > (newest.created_at, &newest.id) {
                *newest = record;
            }
        }
        for (branch, record) in newest_by_branch {
            domains.insert(domains::branch(&project.slug, branch, base), record.id.clone());
        }
        for (key, live) in &state.live {
            let Some((project_id, environment)) = key.split_once('/') else {
                continue;
            };
            if project_id != project.id || !state.deployments.get(&live.deployment_id).is_some_and(routable) {
                continue;
            }
            domains.insert(
                domains::environment(&project.slug, environment, base),
                live.deployment_id.clone(),
            );
        }
        if let Some(live) = state.live.get(&live_id(&project.id, "production")) {
            if state.deployments.get(&live.deployment_id).is_some_and(routable) {
                for domain in domains::live(&project.slug, &project.domains, base) {
                    domains.insert(domain, live.deployment_id.clone());
                }
            }
        }
    }
    domains
}

/// The `api` provider's share of the routing table.
pub fn routing(state: &State, snapshot: &Snapshot) -> Routing {
    let settings = &snapshot.platform;
    let mut routing = Routing::default();
    let mut built: BTreeMap<&str, Arc<Deployment>> = BTreeMap::new();
    for record in state.deployments.values().filter(|d| routable(d)) {
        let Some(project) = settings.project(&record.project_id) else {
            continue;
        };
        let policies = project
            .environments
            .get(&record.environment_slug)
            .cloned()
            .unwrap_or_default();
        let instances: Vec<SocketAddr> = record.instances.iter().filter_map(|i| i.parse().ok()).collect();
        let deployment = Arc::new(Deployment::plain(
            record.id.as_str().into(),
            instances,
            policies,
            &snapshot.services.endpoints,
        ));
        routing.deployments.push(deployment.clone());
        built.insert(record.id.as_str(), deployment);
    }
    for (domain, id) in assign(state, settings) {
        let (Some(deployment), Ok(host)) = (built.get(id.as_str()), HostPattern::parse(&domain)) else {
            continue;
        };
        routing.routes.push(Route {
            host: Some(host),
            path: PathMatch::Prefix(PathPrefix::root()),
            strip_prefix: false,
            rule: Default::default(),
            target: RouteTarget::new(deployment.clone(), &domain),
        });
    }
    routing
}
