//! Containers → keygate routing: each served container is an instance of a
//! deployment (`keygate.deployment`, else its Compose service, else its
//! name), and the deployment's routes come from its labels.
//!
//! A pure function of the containers the watcher holds, so it can be tested
//! without an engine. Whatever is wrong with one container is a [`Problem`]
//! (a log line) and affects only that container: a bad label or an
//! unreachable address keeps it out; a deployment naming a policy set that
//! does not exist answers `invalid_configuration` (fail closed) — everything
//! else keeps being served.
//!
//! Which deployment a container joins is decided in one place,
//! [`deployment_id`], so that linking containers to deployments created
//! through an API (by image or by `keygate.deployment=<id>`) is a lookup
//! added there.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use super::container::Container;
use super::labels::{self, LabelError};
use crate::errors::ErrorCode;
use crate::policy::PolicyChain;
use crate::routing::{HostPattern, PathMatch};
use crate::runtime::{Deployment, PolicySets, Route, RouteTarget, Routing};
use crate::upstream::Endpoints;

/// What translation needs besides the containers.
pub struct Context<'a> {
    /// `providers.docker.exposed_by_default`.
    pub exposed_by_default: bool,
    /// `providers.docker.network`: whose address is dialled (`None`: the first).
    pub network: Option<&'a str>,
    /// `policy_sets:` of the running configuration.
    pub policy_sets: &'a PolicySets,
    /// Deployment ids the configuration file uses: a label cannot take one.
    pub file_deployments: HashSet<&'a str>,
    /// The process's endpoints: an instance that stays keeps its state.
    pub endpoints: &'a Endpoints,
}

/// Something wrong with one container; logged once while it lasts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Problem {
    /// The container's name.
    pub container: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "container {}: {}", self.container, self.message)
    }
}

/// The outcome of one translation.
#[derive(Default)]
pub struct Translation {
    pub routing: Routing,
    pub problems: Vec<Problem>,
}

/// A container that is served: its deployment, address and labels.
struct Member<'c> {
    container: &'c Container,
    deployment: String,
    address: SocketAddr,
    routing: labels::Routing,
}

/// Translates `containers`; see the module comment.
pub fn translate<'c>(containers: impl IntoIterator<Item = &'c Container>, context: &Context<'_>) -> Translation {
    let mut out = Translation::default();
    let mut containers: Vec<&Container> = containers.into_iter().collect();
    // The oldest container of a deployment states its routes; the oldest
    // deployment keeps a host and path that two claim.
    containers.sort_by(|a, b| (a.created, &a.name, &a.id).cmp(&(b.created, &b.name, &b.id)));

    let mut groups: Vec<(String, Vec<Member<'_>>)> = Vec::new();
    for container in containers {
        let member = match member(container, context) {
            Ok(Some(member)) => member,
            Ok(None) => continue,
            Err(message) => {
                out.problems.push(Problem {
                    container: container.name.clone(),
                    message,
                });
                continue;
            }
        };
        match groups.iter_mut().find(|(id, _)| *id == member.deployment) {
            Some((_, members)) => members.push(member),
            None => groups.push((member.deployment.clone(), vec![member])),
        }
    }

    let mut claimed: HashMap<(HostPattern, PathMatch), String> = HashMap::new();
    for (id, members) in groups {
        deployment(&id, &members, context, &mut claimed, &mut out);
    }
    out
}

/// The container as a member of its deployment; `Ok(None)` when it is not
/// to be served, `Err` when it asks to be but cannot.
fn member<'c>(container: &'c Container, context: &Context<'_>) -> Result<Option<Member<'c>>, String> {
    let labels = &container.labels;
    if !labels::enabled(labels, context.exposed_by_default).map_err(|e| e.to_string())? {
        return Ok(None);
    }
    let port = match (
        labels::port(labels).map_err(|e| e.to_string())?,
        container.exposed_tcp_ports.as_slice(),
    ) {
        (Some(port), _) => port,
        (None, [only]) => *only,
        // Served by default only: a container without ports is not a web service.
        (None, []) if !labels.contains_key(labels::ENABLE) => return Ok(None),
        (None, []) => return Err(format!("exposes no TCP port; set {} to the port to dial", labels::PORT)),
        (None, several) => {
            let ports: Vec<String> = several.iter().map(u16::to_string).collect();
            return Err(format!(
                "exposes ports {}; set {} to the one to dial",
                ports.join(", "),
                labels::PORT
            ));
        }
    };
    let ip = match context.network {
        Some(wanted) => match container.networks.iter().find(|(name, _)| name == wanted) {
            Some((_, Some(ip))) => *ip,
            Some((_, None)) => return Err(format!("has no address on network {wanted}")),
            None => return Err(format!("is not on network {wanted} (providers.docker.network)")),
        },
        None => container
            .networks
            .iter()
            .find_map(|(_, ip)| *ip)
            .ok_or("has no network address (host networking?); it cannot be dialled")?,
    };
    let deployment = deployment_id(container).map_err(|e| e.to_string())?;
    if context.file_deployments.contains(deployment.as_str()) {
        return Err(format!(
            "{}: {deployment:?} is a deployment of the configuration file",
            labels::DEPLOYMENT
        ));
    }
    let routing = labels::Routing::parse(labels).map_err(|e| e.to_string())?;
    Ok(Some(Member {
        container,
        deployment,
        address: SocketAddr::new(ip, port),
        routing,
    }))
}

/// The deployment a container is an instance of: `keygate.deployment`, else
/// `docker/<compose project>/<compose service>`, else `docker/<name>`.
pub fn deployment_id(container: &Container) -> Result<String, LabelError> {
    if let Some(id) = labels::deployment(&container.labels)? {
        return Ok(id.to_string());
    }
    let compose = |label| container.labels.get(label).filter(|v| !v.is_empty());
    Ok(
        match (compose(labels::COMPOSE_PROJECT), compose(labels::COMPOSE_SERVICE)) {
            (Some(project), Some(service)) => format!("docker/{project}/{service}"),
            _ => format!("docker/{}", container.name),
        },
    )
}

/// Adds deployment `id` of `members` (oldest first) and its routes.
fn deployment(
    id: &str,
    members: &[Member<'_>],
    context: &Context<'_>,
    claimed: &mut HashMap<(HostPattern, PathMatch), String>,
    out: &mut Translation,
) {
    let Some(first) = members.first() else { return };
    let problem = |member: &Member<'_>, message: String| Problem {
        container: member.container.name.clone(),
        message,
    };
    for other in &members[1..] {
        if other.routing != first.routing {
            out.problems.push(problem(
                other,
                format!(
                    "its keygate labels differ from those of {}, the oldest container of deployment {id}: \
                     it serves as an instance, its own routing labels are ignored",
                    first.container.name
                ),
            ));
        }
    }
    let (chain, refusal) = match &first.routing.policies {
        None => (PolicyChain::default(), None),
        Some(name) => match context.policy_sets.get(name) {
            Some(chain) => (chain.clone(), None),
            None => {
                out.problems.push(problem(
                    first,
                    format!(
                        "{}: no policy set {name:?} in policy_sets; deployment {id} answers 422 until there is one",
                        labels::POLICIES
                    ),
                ));
                (PolicyChain::default(), Some(ErrorCode::InvalidConfiguration))
            }
        },
    };
    let mut instances: Vec<SocketAddr> = members
        .iter()
        .filter(|m| m.container.is_ready())
        .map(|m| m.address)
        .collect();
    instances.sort();
    instances.dedup();
    let plain = Deployment::plain(id.into(), instances, chain, context.endpoints);
    let deployment = Arc::new(Deployment {
        protocol: first.routing.protocol,
        health_check: first.routing.health_check.clone(),
        ..plain
    });
    out.routing.deployments.push(deployment.clone());

    if first.routing.hosts.is_empty() {
        out.problems.push(problem(
            first,
            format!("has no {} label: deployment {id} is not routed", labels::HOST),
        ));
    }
    let path = PathMatch::Prefix(first.routing.path_prefix.clone());
    for (text, host) in &first.routing.hosts {
        let key = (host.clone(), path.clone());
        if let Some(owner) = claimed.get(&key) {
            out.problems.push(problem(
                first,
                format!(
                    "{text} {} is already routed to deployment {owner}; not routed to {id}",
                    first.routing.path_prefix.as_str()
                ),
            ));
            continue;
        }
        claimed.insert(key, id.to_string());
        let mut target = RouteTarget::new(deployment.clone(), text);
        target.refusal = refusal;
        out.routing.routes.push(Route {
            host: Some(host.clone()),
            path: path.clone(),
            strip_prefix: first.routing.strip_prefix,
            rule: Default::default(),
            target,
        });
    }
}

#[cfg(test)]
mod tests;
