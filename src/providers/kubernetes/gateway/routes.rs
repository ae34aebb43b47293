//! HTTPRoutes: which listeners of keygate's Gateways each route attaches
//! to (`parentRefs`, `sectionName`, `allowedRoutes`, hostnames), the routes
//! its rules become on the hosts it gets, and its status per parent.

use std::collections::{BTreeMap, HashMap};

use kube::ResourceExt;
use serde_json::{json, Value};

use super::hosts::intersect;
use super::listeners::GatewayState;
use super::object_key;
use super::objects::{HttpRoute, GROUP};
use super::refs::Grants;
use super::rules::{self, RuleContext, Unresolved};
use super::spec::{self, HttpRouteSpec, ParentRef};
use super::status::{conditions, Condition, StatusKind, StatusUpdate};
use crate::providers::kubernetes::resolve::Resolver;
use crate::providers::kubernetes::translate::{ObjectKey, Translation};
use crate::routing::HostPattern;
use crate::runtime::{Route, RouteTarget};

/// What attaching routes needs besides the route.
pub struct Attach<'a, 'v> {
    pub controller: &'a str,
    pub gateways: &'a mut [GatewayState<'v>],
    /// Namespace labels, for `allowedRoutes` selectors.
    pub namespaces: &'a HashMap<&'v str, &'v BTreeMap<String, String>>,
    pub grants: &'a Grants,
}

/// Whether a parent accepts the route: `Ok(hosts)`, else `(reason, message)`.
type Outcome = Result<Vec<Option<String>>, (&'static str, String)>;

/// How one parentRef of a route turned out.
struct Parent {
    /// The parentRef as written (copied into the status).
    reference: Value,
    outcome: Outcome,
}

impl Attach<'_, '_> {
    /// Adds `route`'s rules to `out` for the hosts its parents give it,
    /// and returns its status when one of its parents is keygate's.
    pub fn route(
        &mut self,
        route: &HttpRoute,
        resolver: &mut Resolver<'_, '_>,
        out: &mut Translation,
    ) -> Option<StatusUpdate> {
        let key = object_key(route);
        let references = route
            .spec
            .get("parentRefs")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let spec = match spec::decode::<HttpRouteSpec>(&route.spec) {
            Ok(spec) => spec,
            Err(message) => {
                // Still tell the route's parents why it is not served.
                let ours: Vec<Parent> = references
                    .iter()
                    .filter(|reference| {
                        serde_json::from_value::<ParentRef>((*reference).clone())
                            .is_ok_and(|parent| self.gateway(&parent, &key.namespace).is_some())
                    })
                    .map(|reference| Parent {
                        reference: reference.clone(),
                        outcome: Err(("UnsupportedValue", message.clone())),
                    })
                    .collect();
                if ours.is_empty() {
                    return self.forget(route);
                }
                out.problem(&key, "InvalidHTTPRoute", format!("{message}; the route is not served"));
                return Some(self.status(route, ours, None));
            }
        };

        let mut parents = Vec::new();
        for (parent, reference) in spec.parent_refs.iter().zip(references) {
            if let Some(outcome) = self.attach(parent, &key.namespace, &spec.hostnames) {
                parents.push(Parent { reference, outcome });
            }
        }
        if parents.is_empty() {
            return self.forget(route);
        }
        for parent in &parents {
            if let Err((reason, message)) = &parent.outcome {
                out.problem(&key, reason, message.clone());
            }
        }
        let mut hosts: Vec<Option<String>> = Vec::new();
        for host in parents.iter().filter_map(|p| p.outcome.as_ref().ok()).flatten() {
            if !hosts.contains(host) {
                hosts.push(host.clone());
            }
        }

        let context = RuleContext {
            namespace: &key.namespace,
            route: &key.name,
            grants: self.grants,
        };
        let mut unresolved: Vec<Unresolved> = Vec::new();
        let mut invalid = Vec::new();
        let mut compiled = Vec::new();
        for (i, rule) in spec.rules.iter().enumerate() {
            match rules::compile(rule, &context, resolver, &mut unresolved) {
                Ok(rule) => compiled.push(rule),
                Err(message) => invalid.push(format!("rules[{i}]: {message}")),
            }
        }
        for message in &invalid {
            out.problem(&key, "UnsupportedValue", format!("{message}; the rule is not served"));
        }
        for (reason, message) in &unresolved {
            out.problem(&key, reason, message.clone());
        }
        for host in &hosts {
            self.add_routes(&key, host.as_deref(), &compiled, out);
        }
        let rules_status = RulesStatus {
            unresolved: &unresolved,
            invalid: &invalid,
            total: spec.rules.len(),
        };
        Some(self.status(route, parents, Some(rules_status)))
    }

    /// A status without keygate's parents, for a route that no longer names
    /// one of keygate's Gateways but still has keygate's entries; else `None`.
    fn forget(&self, route: &HttpRoute) -> Option<StatusUpdate> {
        let listed = route
            .status
            .as_ref()
            .and_then(|s| s.get("parents"))
            .and_then(Value::as_array)
            .is_some_and(|parents| parents.iter().any(|p| p["controllerName"] == self.controller));
        listed.then(|| self.status(route, Vec::new(), None))
    }

    /// The Gateway a parentRef names, when it is one of keygate's.
    fn gateway(&self, parent: &ParentRef, route_namespace: &str) -> Option<usize> {
        let group = parent.group.as_deref().unwrap_or(GROUP);
        let kind = parent.kind.as_deref().unwrap_or("Gateway");
        if group != GROUP || kind != "Gateway" {
            return None;
        }
        let namespace = parent.namespace.as_deref().unwrap_or(route_namespace);
        self.gateways
            .iter()
            .position(|g| g.namespace() == namespace && g.name() == parent.name)
    }

    /// Attaches the route to the listeners `parent` selects; `None` when the
    /// parent is not one of keygate's Gateways.
    fn attach(&mut self, parent: &ParentRef, route_namespace: &str, hostnames: &[String]) -> Option<Outcome> {
        let index = self.gateway(parent, route_namespace)?;
        let labels = self.namespaces.get(route_namespace).copied();
        let gateway = &mut self.gateways[index];
        let gateway_namespace = gateway.namespace().to_string();
        let gateway_label = format!("Gateway {}/{}", gateway_namespace, gateway.name());
        let candidates: Vec<usize> = (0..gateway.listeners.len())
            .filter(|&i| {
                let listener = &gateway.listeners[i];
                parent.section_name.as_deref().is_none_or(|s| s == listener.name)
                    && parent.port.is_none_or(|p| p == listener.port)
            })
            .collect();
        if candidates.is_empty() {
            return Some(Err((
                "NoMatchingParent",
                format!("{gateway_label} has no listener named by sectionName/port"),
            )));
        }
        let allowed: Vec<usize> = candidates
            .into_iter()
            .filter(|&i| gateway.listeners[i].admits(&gateway_namespace, route_namespace, labels))
            .collect();
        if allowed.is_empty() {
            return Some(Err((
                "NotAllowedByListeners",
                format!("the listeners of {gateway_label} do not allow routes from namespace {route_namespace}"),
            )));
        }
        let mut hosts = Vec::new();
        for i in allowed {
            let listener = &mut gateway.listeners[i];
            let shared = intersect(listener.hostname.as_deref(), hostnames);
            if shared.is_empty() {
                continue;
            }
            listener.attached += 1;
            for host in shared {
                if !hosts.contains(&host) {
                    hosts.push(host);
                }
            }
        }
        if hosts.is_empty() {
            return Some(Err((
                "NoMatchingListenerHostname",
                format!("no hostname of the route matches a listener hostname of {gateway_label}"),
            )));
        }
        Some(Ok(hosts))
    }

    fn add_routes(&self, key: &ObjectKey, host: Option<&str>, compiled: &[rules::CompiledRule], out: &mut Translation) {
        let pattern = match host.map(HostPattern::parse) {
            None => None,
            Some(Ok(pattern)) => Some(pattern),
            Some(Err(message)) => {
                out.problem(key, "InvalidHost", format!("hostname skipped: {message}"));
                return;
            }
        };
        let label = host.unwrap_or("*");
        for rule in compiled {
            let mut target = RouteTarget::weighted(rule.backends.clone(), label);
            target.refusal = rule.refusal;
            for (path, matched) in &rule.matches {
                out.routing.routes.push(Route {
                    host: pattern.clone(),
                    path: path.clone(),
                    strip_prefix: false,
                    rule: matched.clone(),
                    target: target.clone(),
                });
            }
        }
    }

    /// The route's status: its other controllers' parents as they are, and
    /// keygate's with `Accepted` and `ResolvedRefs`.
    fn status(&self, route: &HttpRoute, parents: Vec<Parent>, rules: Option<RulesStatus<'_>>) -> StatusUpdate {
        let generation = route.metadata.generation;
        let current = route.status.clone();
        let mut list: Vec<Value> = current
            .as_ref()
            .and_then(|s| s.get("parents"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|p| p.get("controllerName").and_then(Value::as_str) != Some(self.controller))
            .cloned()
            .collect();
        let invalid = rules.as_ref().map_or(&[][..], |r| r.invalid).join("; ");
        let every_rule_invalid = rules
            .as_ref()
            .is_some_and(|r| r.total > 0 && r.invalid.len() == r.total);
        for parent in parents {
            let accepted = match &parent.outcome {
                Err((reason, message)) => Condition::new("Accepted", false, reason, message.clone()),
                Ok(_) if every_rule_invalid => Condition::new("Accepted", false, "UnsupportedValue", invalid.clone()),
                Ok(_) => Condition::new("Accepted", true, "Accepted", "the route is served"),
            };
            let resolved = match rules.as_ref().and_then(|r| r.unresolved.first().map(|u| (u, r))) {
                Some(((reason, _), r)) => Condition::new(
                    "ResolvedRefs",
                    false,
                    reason,
                    r.unresolved
                        .iter()
                        .map(|(_, m)| m.as_str())
                        .collect::<Vec<_>>()
                        .join("; "),
                ),
                None => Condition::new("ResolvedRefs", true, "ResolvedRefs", "all references are resolved"),
            };
            let mut list_of = vec![accepted, resolved];
            if !invalid.is_empty() && !every_rule_invalid {
                list_of.push(Condition::new(
                    "PartiallyInvalid",
                    true,
                    "UnsupportedValue",
                    invalid.clone(),
                ));
            }
            list.push(json!({
                "parentRef": parent.reference,
                "controllerName": self.controller,
                "conditions": conditions(&list_of, generation),
            }));
        }
        StatusUpdate {
            kind: StatusKind::HttpRoute,
            namespace: route.namespace().unwrap_or_default(),
            name: route.name_any(),
            resource_version: route.resource_version(),
            current,
            desired: json!({ "parents": list }),
        }
    }
}

/// What the rules of a decoded route say for its status.
struct RulesStatus<'a> {
    unresolved: &'a [Unresolved],
    invalid: &'a [String],
    total: usize,
}
