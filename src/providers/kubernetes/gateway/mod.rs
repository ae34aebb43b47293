//! The Kubernetes Gateway API (`gateway.networking.k8s.io`): GatewayClasses
//! whose `controllerName` is keygate's, their Gateways' listeners, and the
//! HTTPRoutes attached to them become routes in the same [`Translation`] as
//! Ingresses (one provider share), with their statuses.
//!
//! Like the Ingress translation, a pure function of what the reflectors
//! hold. A bad object is a [`Problem`](super::translate::Problem) (an Event)
//! and a status condition, and is skipped alone: a rule keygate cannot
//! serve leaves the route's other rules, an unresolved backend leaves the
//! rule's other backends, a listener with an unsupported protocol leaves the
//! Gateway's other listeners.

mod hosts;
mod listeners;
mod objects;
mod refs;
mod routes;
mod rules;
mod spec;
mod status;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use kube::ResourceExt;
use serde_json::{json, Value};

pub use objects::{Gateway, GatewayClass, GatewayObject, HttpRoute, Kind, ReferenceGrant};
pub use status::{StatusUpdate, StatusWriter};

use super::resolve::Resolver;
use super::translate::{Context, ObjectKey, Translation, View};
use listeners::GatewayState;
use refs::Grants;
use spec::{GatewayClassSpec, GatewaySpec, ReferenceGrantSpec};
use status::{conditions, Condition, StatusKind};

/// The route kind keygate serves.
const ROUTE_KIND: &str = "HTTPRoute";

/// The key problems with a Gateway API object are reported under.
fn object_key<K: Kind>(object: &GatewayObject<K>) -> ObjectKey {
    ObjectKey {
        kind: K::KIND,
        api_version: K::API_VERSION,
        namespace: object.namespace().unwrap_or_default(),
        name: object.name_any(),
        uid: object.uid(),
    }
}

/// Adds the Gateway API's routes, certificates, problems and statuses to `out`.
pub fn translate(view: &View, context: &Context<'_>, resolver: &mut Resolver<'_, '_>, out: &mut Translation) {
    let classes = classes(view, context.gateway_controller, out);
    if classes.is_empty() {
        return;
    }
    let mut grants = Grants::default();
    for grant in &view.reference_grants {
        match spec::decode::<ReferenceGrantSpec>(&grant.spec) {
            Ok(spec) => grants.add(&grant.namespace().unwrap_or_default(), spec),
            Err(message) => out.problem(
                &object_key(&**grant),
                "InvalidReferenceGrant",
                format!("{message}; it grants nothing"),
            ),
        }
    }

    let mut gateways: Vec<GatewayState<'_>> = Vec::new();
    for gateway in &view.gateways {
        let spec = match spec::decode::<GatewaySpec>(&gateway.spec) {
            Ok(spec) if classes.contains(spec.gateway_class_name.as_str()) => Ok(spec),
            Ok(_) => continue,
            // Whose it is cannot be told from an unreadable spec, unless it names our class.
            Err(message) => {
                let class = gateway.spec.get("gatewayClassName").and_then(Value::as_str);
                if !class.is_some_and(|c| classes.contains(c)) {
                    continue;
                }
                Err(message)
            }
        };
        gateways.push(GatewayState::new(gateway, spec, &grants, resolver, out));
    }

    let namespaces: HashMap<&str, &BTreeMap<String, String>> = view
        .namespaces
        .iter()
        .filter_map(|n| Some((n.metadata.name.as_deref()?, n.metadata.labels.as_ref()?)))
        .collect();
    // The oldest route keeps a host, path and match that several claim.
    let mut http_routes: Vec<&Arc<HttpRoute>> = view.http_routes.iter().collect();
    http_routes.sort_by_key(|r| (r.creation_timestamp().map(|t| t.0), r.namespace(), r.name_any()));
    let mut attach = routes::Attach {
        controller: context.gateway_controller,
        gateways: &mut gateways,
        namespaces: &namespaces,
        grants: &grants,
    };
    let mut statuses = Vec::new();
    for route in http_routes {
        if let Some(status) = attach.route(route, resolver, out) {
            statuses.push(status);
        }
    }

    let addresses = publish_addresses(view, context);
    statuses.extend(gateways.iter().map(|g| g.status(&addresses)));
    statuses.extend(class_statuses(view, &classes));
    out.statuses = statuses;
}

/// The names of the GatewayClasses whose `controllerName` is `controller`.
fn classes<'v>(view: &'v View, controller: &str, out: &mut Translation) -> HashSet<&'v str> {
    let mut ours = HashSet::new();
    for class in &view.gateway_classes {
        match spec::decode::<GatewayClassSpec>(&class.spec) {
            Ok(spec) if spec.controller_name == controller => {
                if let Some(name) = class.metadata.name.as_deref() {
                    ours.insert(name);
                }
            }
            Ok(_) => {}
            Err(message) => out.problem(&object_key(&**class), "InvalidGatewayClass", message),
        }
    }
    ours
}

fn class_statuses<'a>(view: &'a View, ours: &'a HashSet<&str>) -> impl Iterator<Item = StatusUpdate> + 'a {
    view.gateway_classes
        .iter()
        .filter(|class| class.metadata.name.as_deref().is_some_and(|n| ours.contains(n)))
        .map(|class| {
            let accepted = Condition::new("Accepted", true, "Accepted", "keygate serves Gateways of this class");
            StatusUpdate {
                kind: StatusKind::GatewayClass,
                namespace: String::new(),
                name: class.name_any(),
                resource_version: class.resource_version(),
                current: class.status.clone(),
                desired: json!({ "conditions": conditions(&[accepted], class.metadata.generation) }),
            }
        })
}

/// The Gateway `status.addresses`: the publish Service's addresses.
fn publish_addresses(view: &View, context: &Context<'_>) -> Vec<Value> {
    let Some((namespace, name)) = context.publish_service else {
        return Vec::new();
    };
    let service = view
        .services
        .iter()
        .find(|s| s.metadata.namespace.as_ref() == Some(namespace) && s.metadata.name.as_ref() == Some(name));
    service
        .map(|s| super::status::addresses(s))
        .unwrap_or_default()
        .into_iter()
        .filter_map(|address| match (address.ip, address.hostname) {
            (Some(ip), _) => Some(json!({"type": "IPAddress", "value": ip})),
            (None, Some(hostname)) => Some(json!({"type": "Hostname", "value": hostname})),
            (None, None) => None,
        })
        .collect()
}

#[cfg(test)]
mod tests;
