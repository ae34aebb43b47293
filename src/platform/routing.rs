//! The routes the control plane's state implies: each routable deployment
//! (ready, or live/standby) with its environment's policies and health
//! check, and per app of each project its commit, branch, environment and
//! live domains.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use super::domains;
use super::model::{live_id, DeploymentRecord};
use super::{projects, State};
use crate::routing::{HostPattern, PathMatch, PathPrefix};
use crate::runtime::{Deployment, PlatformSettings, Project, Route, RouteTarget, Routing, Snapshot};
use crate::upstream::health::HealthCheck;
use crate::upstream::Protocol;

/// Deployment id → the domains that point at it now (computed once for
/// every deployment a view shows).
pub fn domains_by_deployment(
    state: &State,
    settings: &PlatformSettings,
    projects: &[Project],
) -> BTreeMap<String, Vec<String>> {
    let mut by_deployment: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (domain, id) in assign(state, settings, projects) {
        by_deployment.entry(id).or_default().push(domain);
    }
    by_deployment
}

/// Domain → deployment id, for every project.
fn assign(state: &State, settings: &PlatformSettings, projects: &[Project]) -> BTreeMap<String, String> {
    let base = settings.base_domain.as_str();
    let mut domains = BTreeMap::new();
    for project in projects {
        for (a, app) in project.apps.iter().enumerate() {
            let label = project.label(app);
            let deployments = state
                .deployments
                .values()
                .filter(|d| d.project_id == project.id && d.app == *app);
            let mut newest_by_branch: BTreeMap<&str, &DeploymentRecord> = BTreeMap::new();
            for record in deployments.filter(|d| d.routable()) {
                domains.insert(domains::commit(&label, record, base), record.id.clone());
                let newest = newest_by_branch.entry(record.branch.as_str()).or_insert(record);
                if (record.created_at, &record.id) > (newest.created_at, &newest.id) {
                    *newest = record;
                }
            }
            for (branch, record) in newest_by_branch {
                domains.insert(domains::branch(&label, branch, base), record.id.clone());
            }
            let prefix = live_id(&project.id, app, "");
            for (key, live) in state.live.range(prefix.clone()..) {
                let Some(environment) = key.strip_prefix(&prefix) else {
                    break;
                };
                if state
                    .deployments
                    .get(&live.deployment_id)
                    .is_some_and(DeploymentRecord::routable)
                {
                    domains.insert(
                        domains::environment(&label, environment, base),
                        live.deployment_id.clone(),
                    );
                }
            }
            if let Some(live) = state.live.get(&live_id(&project.id, app, "production")) {
                if state
                    .deployments
                    .get(&live.deployment_id)
                    .is_some_and(DeploymentRecord::routable)
                {
                    // The project's own domains belong to its first app.
                    let custom: &[String] = if a == 0 { &project.domains } else { &[] };
                    for domain in domains::live(&label, custom, base) {
                        domains.insert(domain, live.deployment_id.clone());
                    }
                }
            }
        }
    }
    domains
}

/// The `api` provider's share of the routing table.
pub fn routing(state: &State, snapshot: &Snapshot) -> Routing {
    let settings = &snapshot.platform;
    let projects = projects::all(state, settings);
    let mut routing = Routing::default();
    let mut built: BTreeMap<&str, Arc<Deployment>> = BTreeMap::new();
    for record in state.deployments.values().filter(|d| d.routable()) {
        let Some(project) = projects.iter().find(|p| p.id == record.project_id) else {
            continue;
        };
        let policies = project
            .environments
            .get(&record.environment_slug)
            .cloned()
            .unwrap_or_default();
        let instances: Vec<SocketAddr> = record.instances.iter().filter_map(|i| i.parse().ok()).collect();
        let mut deployment = Deployment::plain(
            record.id.as_str().into(),
            instances,
            policies,
            &snapshot.services.endpoints,
        );
        deployment.environment = record.environment_slug.as_str().into();
        deployment.health_check = record
            .health_check
            .as_ref()
            .and_then(|spec| HealthCheck::compile(spec, Protocol::Http1).ok());
        let deployment = Arc::new(deployment);
        routing.deployments.push(deployment.clone());
        built.insert(record.id.as_str(), deployment);
    }
    for (domain, id) in assign(state, settings, &projects) {
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
