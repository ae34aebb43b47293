//! Cluster objects → keygate routing: Ingresses here, then the Gateway API
//! (`super::gateway`) into the same [`Translation`]. Ingress rules become
//! routes, their backends deployments `<namespace>/<service>:<port>` whose
//! instances are the *ready* EndpointSlice addresses, `spec.tls` Secrets
//! become certificates and `keygate.dev/policies` selects a `KeygatePolicy`.
//!
//! A pure function of what the reflectors hold, so it can be tested without
//! a cluster. Whatever is wrong with one object is a [`Problem`] (an Event
//! and a log line later) and affects only that object: a rule with a bad
//! host is skipped, a missing Service answers `deployment_not_found`, a
//! missing or invalid policy answers `invalid_configuration` (fail closed) — the rest of the cluster keeps being served.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressBackend, IngressClass};
use kube::ResourceExt;

use super::crd::KeygatePolicy;
use super::gateway::{Gateway, GatewayClass, HttpRoute, ReferenceGrant, StatusUpdate};
pub use super::resolve::CertCache;
use super::resolve::{is_object_name, Index, PortRef, Resolver};
use super::CONTROLLER;
use crate::errors::ErrorCode;
use crate::keys::Keys;
use crate::routing::{HostPattern, PathMatch, PathPrefix};
use crate::runtime::{Deployment, Route, RouteTarget, Routing, Services};
use crate::tls::pem::Certificate;

/// The annotation that attaches a `KeygatePolicy` (same namespace) to an Ingress.
pub const POLICY_ANNOTATION: &str = "keygate.dev/policies";
/// `"true"` on a Prefix route removes the prefix before forwarding.
pub const STRIP_PREFIX_ANNOTATION: &str = "keygate.dev/strip-prefix";
/// The pre-`ingressClassName` way of naming a class.
const LEGACY_CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";
const DEFAULT_CLASS_ANNOTATION: &str = "ingressclass.kubernetes.io/is-default-class";

/// Everything the reflectors hold, at one moment.
#[derive(Default)]
pub struct View {
    pub ingresses: Vec<Arc<Ingress>>,
    pub classes: Vec<Arc<IngressClass>>,
    pub services: Vec<Arc<Service>>,
    pub slices: Vec<Arc<EndpointSlice>>,
    pub secrets: Vec<Arc<Secret>>,
    pub policies: Vec<Arc<KeygatePolicy>>,
    pub namespaces: Vec<Arc<Namespace>>,
    pub gateway_classes: Vec<Arc<GatewayClass>>,
    pub gateways: Vec<Arc<Gateway>>,
    pub http_routes: Vec<Arc<HttpRoute>>,
    pub reference_grants: Vec<Arc<ReferenceGrant>>,
}

/// What translation needs besides the cluster.
pub struct Context<'a> {
    pub ingress_class: &'a str,
    /// The `controllerName` of the GatewayClasses keygate serves.
    pub gateway_controller: &'a str,
    /// `(namespace, name)` of the Service whose address Gateways get.
    pub publish_service: Option<&'a (String, String)>,
    /// The key service and static keys `keyauth` policies verify against.
    pub keys: &'a Keys,
    /// Where relative paths in policies resolve (the config file's directory).
    pub base_dir: &'a Path,
    /// The process's services: policies compile against them, an instance
    /// that stays keeps its state.
    pub services: &'a Services,
}

/// Which object a problem is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    pub kind: &'static str,
    pub api_version: &'static str,
    pub namespace: String,
    pub name: String,
    pub uid: Option<String>,
}

impl ObjectKey {
    pub fn ingress(ingress: &Ingress) -> Self {
        Self {
            kind: "Ingress",
            api_version: "networking.k8s.io/v1",
            namespace: ingress.namespace().unwrap_or_default(),
            name: ingress.name_any(),
            uid: ingress.uid(),
        }
    }
}

impl std::fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// Something wrong with one object; reported as a Kubernetes Event.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Problem {
    pub object: ObjectKey,
    /// CamelCase, as Event reasons are.
    pub reason: &'static str,
    pub message: String,
}

/// The outcome of one translation.
#[derive(Default)]
pub struct Translation {
    pub routing: Routing,
    /// `spec.tls` Secrets that hold a usable certificate, by `namespace/name`.
    pub certificates: Vec<(String, Certificate)>,
    pub problems: Vec<Problem>,
    /// The Ingresses of our class (their status gets the gateway's address).
    pub served: Vec<Arc<Ingress>>,
    /// The statuses of the Gateway API objects keygate serves.
    pub statuses: Vec<StatusUpdate>,
}

impl Translation {
    /// Reports a problem with one object (once per translation).
    pub fn problem(&mut self, object: &ObjectKey, reason: &'static str, message: String) {
        let problem = Problem {
            object: object.clone(),
            reason,
            message,
        };
        if !self.problems.contains(&problem) {
            self.problems.push(problem);
        }
    }
}

/// Translates `view`: Ingresses, then the Gateway API; see the module comment.
pub fn translate(view: &View, context: &Context<'_>, certs: &mut CertCache) -> Translation {
    let index = Index::build(view);
    let mut resolver = Resolver::new(&index, context, certs);
    let mut out = Translation::default();
    ingresses(view, context, &mut resolver, &mut out);
    super::gateway::translate(view, context, &mut resolver, &mut out);
    out.routing.deployments = resolver.finish();
    out
}

/// Adds the Ingresses of our class to `out`.
fn ingresses(view: &View, context: &Context<'_>, resolver: &mut Resolver<'_, '_>, out: &mut Translation) {
    let Some(class) = our_class(view, context.ingress_class, &mut out.problems) else {
        return;
    };
    let mut ingresses: Vec<&Arc<Ingress>> = view.ingresses.iter().filter(|i| class.claims(i)).collect();
    // The oldest Ingress keeps a host and path that several claim.
    ingresses.sort_by_key(|i| (i.creation_timestamp().map(|t| t.0), i.namespace(), i.name_any()));

    let mut builder = Builder {
        resolver,
        claimed: HashMap::new(),
        out,
    };
    let mut secrets = HashSet::new();
    for ingress in &ingresses {
        builder.ingress(ingress);
        for tls in ingress.spec.iter().flat_map(|s| s.tls.iter().flatten()) {
            if let Some(name) = &tls.secret_name {
                let namespace = ingress.namespace().unwrap_or_default();
                if secrets.insert(format!("{namespace}/{name}")) {
                    match builder.resolver.certificate(&namespace, name) {
                        Ok(certificate) => builder.out.certificates.push(certificate),
                        Err((reason, message)) => builder.out.problems.push(Problem {
                            object: ObjectKey::ingress(ingress),
                            reason,
                            message,
                        }),
                    }
                }
            }
        }
        builder.out.served.push((*ingress).clone());
    }
}

/// How this controller decides which Ingresses are its own.
struct Class<'a> {
    name: &'a str,
    /// Our IngressClass is marked as the cluster's default: Ingresses
    /// without a class are ours too.
    is_default: bool,
}

impl Class<'_> {
    fn claims(&self, ingress: &Ingress) -> bool {
        let named = ingress
            .spec
            .as_ref()
            .and_then(|s| s.ingress_class_name.as_deref())
            .or_else(|| ingress.annotations().get(LEGACY_CLASS_ANNOTATION).map(String::as_str));
        match named {
            Some(name) => name == self.name,
            None => self.is_default,
        }
    }
}

/// Our class, unless an IngressClass of that name belongs to another controller.
fn our_class<'a>(view: &View, name: &'a str, problems: &mut Vec<Problem>) -> Option<Class<'a>> {
    let Some(object) = view.classes.iter().find(|c| c.name_any() == name) else {
        // Served by name: the IngressClass object is recommended, not required.
        return Some(Class {
            name,
            is_default: false,
        });
    };
    let controller = object.spec.as_ref().and_then(|s| s.controller.as_deref()).unwrap_or("");
    if controller != CONTROLLER {
        problems.push(Problem {
            object: ObjectKey {
                kind: "IngressClass",
                api_version: "networking.k8s.io/v1",
                namespace: String::new(),
                name: name.to_string(),
                uid: object.uid(),
            },
            reason: "ForeignIngressClass",
            message: format!(
                "IngressClass {name} names controller {controller:?}, not {CONTROLLER}: its Ingresses are not served by keygate"
            ),
        });
        return None;
    }
    let is_default = object
        .annotations()
        .get(DEFAULT_CLASS_ANNOTATION)
        .is_some_and(|v| v == "true");
    Some(Class { name, is_default })
}

/// The state of one translation while Ingresses are added to it.
struct Builder<'r, 'a, 'c> {
    resolver: &'r mut Resolver<'a, 'c>,
    /// Which Ingress routes each (host, path) already.
    claimed: HashMap<(Option<HostPattern>, PathMatch), ObjectKey>,
    out: &'r mut Translation,
}

/// A backend as a route target: a deployment, or why it cannot be served.
struct Backend {
    target: Arc<Deployment>,
    refusal: Option<ErrorCode>,
}

impl Builder<'_, '_, '_> {
    fn ingress(&mut self, ingress: &Ingress) {
        let object = ObjectKey::ingress(ingress);
        let namespace = object.namespace.clone();
        let Some(spec) = &ingress.spec else { return };
        let policy = self.policy(ingress, &object);
        let strip_prefix = ingress
            .annotations()
            .get(STRIP_PREFIX_ANNOTATION)
            .is_some_and(|v| v == "true");

        let mut hosts_with_root: Vec<(Option<HostPattern>, bool, String)> = Vec::new();
        for rule in spec.rules.iter().flatten() {
            let host = match rule.host.as_deref().filter(|h| !h.is_empty()) {
                Some(text) => match HostPattern::parse(text) {
                    Ok(host) => Some(host),
                    Err(message) => {
                        self.problem(&object, "InvalidHost", format!("rule host skipped: {message}"));
                        continue;
                    }
                },
                None => None,
            };
            let label = rule
                .host
                .clone()
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "*".to_string());
            let mut has_root = false;
            for path in rule.http.iter().flat_map(|h| h.paths.iter()) {
                let text = path.path.as_deref().unwrap_or("/");
                let matcher = match path.path_type.as_str() {
                    "Exact" if text.starts_with('/') => Ok(PathMatch::Exact(text.into())),
                    "Exact" => Err(format!("path {text:?} must start with /")),
                    "Prefix" | "ImplementationSpecific" => PathPrefix::parse(text).map(PathMatch::Prefix),
                    other => Err(format!(
                        "unknown pathType {other:?} (Exact, Prefix or ImplementationSpecific)"
                    )),
                };
                let matcher = match matcher {
                    Ok(matcher) => matcher,
                    Err(message) => {
                        self.problem(&object, "InvalidPath", format!("path skipped: {message}"));
                        continue;
                    }
                };
                has_root |= matches!(&matcher, PathMatch::Prefix(p) if p.is_root());
                let Some(backend) = self.backend(&namespace, &path.backend, &policy, &object) else {
                    continue;
                };
                let strip = strip_prefix && matches!(matcher, PathMatch::Prefix(_));
                self.route(&object, host.clone(), matcher, strip, backend, &label);
            }
            hosts_with_root.push((host, has_root, label));
        }

        // The default backend answers what the rules leave open: "/" of each
        // rule host, and every host no route names.
        if let Some(default) = &spec.default_backend {
            if let Some(backend) = self.backend(&namespace, default, &policy, &object) {
                if !hosts_with_root.iter().any(|(host, _, _)| host.is_none()) {
                    hosts_with_root.push((None, false, "*".to_string()));
                }
                for (host, has_root, label) in hosts_with_root {
                    let key = (host.clone(), PathMatch::Prefix(PathPrefix::root()));
                    if has_root || (host.is_some() && self.claimed.contains_key(&key)) {
                        continue;
                    }
                    let backend = Backend {
                        target: backend.target.clone(),
                        refusal: backend.refusal,
                    };
                    self.route(
                        &object,
                        host,
                        PathMatch::Prefix(PathPrefix::root()),
                        false,
                        backend,
                        &label,
                    );
                }
            }
        }
    }

    /// The policy the Ingress selects: `Ok(None)` without the annotation,
    /// `Err(())` when it is unusable (reported; its routes fail closed).
    fn policy(&mut self, ingress: &Ingress, object: &ObjectKey) -> Result<Option<String>, ()> {
        let Some(name) = ingress.annotations().get(POLICY_ANNOTATION) else {
            return Ok(None);
        };
        let name = name.trim();
        if !is_object_name(name) {
            self.problem(
                object,
                "InvalidAnnotation",
                format!("{POLICY_ANNOTATION}: {name:?} is not a KeygatePolicy name; the Ingress answers 422 until it is fixed"),
            );
            return Err(());
        }
        if !self.resolver.index().has_policy(&object.namespace, name) {
            self.problem(
                object,
                "PolicyNotFound",
                format!(
                    "KeygatePolicy {}/{name} does not exist; the Ingress answers 422 until it does",
                    object.namespace
                ),
            );
            return Err(());
        }
        Ok(Some(name.to_string()))
    }

    /// The deployment behind `backend` (with the Ingress's policy), or
    /// `None` when the backend kind is not supported (reported; no route).
    fn backend(
        &mut self,
        namespace: &str,
        backend: &IngressBackend,
        policy: &Result<Option<String>, ()>,
        object: &ObjectKey,
    ) -> Option<Backend> {
        let Some(service) = &backend.service else {
            self.problem(
                object,
                "UnsupportedBackend",
                "only Service backends are supported; path skipped".into(),
            );
            return None;
        };
        let port = service.port.as_ref();
        let port_label = match (port.and_then(|p| p.number), port.and_then(|p| p.name.as_deref())) {
            (Some(number), _) => number.to_string(),
            (None, Some(name)) => name.to_string(),
            (None, None) => {
                self.problem(
                    object,
                    "InvalidBackend",
                    format!("service {} names no port; path skipped", service.name),
                );
                return None;
            }
        };
        let id = format!("{namespace}/{}:{port_label}", service.name);
        let port = match (port.and_then(|p| p.number), port.and_then(|p| p.name.as_deref())) {
            (Some(number), _) => PortRef::Number(number),
            (None, name) => PortRef::Name(name.unwrap_or_default()),
        };
        let placeholder = |resolver: &Resolver<'_, '_>, id: &str, refusal| {
            Some(Backend {
                target: resolver.placeholder(id),
                refusal: Some(refusal),
            })
        };
        let instances = match self.resolver.instances(namespace, &service.name, port) {
            Ok(instances) => instances,
            Err(message) => {
                self.problem(
                    object,
                    "ServiceNotFound",
                    format!("{message}; requests answer 404 deployment_not_found"),
                );
                return placeholder(self.resolver, &id, ErrorCode::DeploymentNotFound);
            }
        };
        let Ok(policy) = policy else {
            return placeholder(self.resolver, &id, ErrorCode::InvalidConfiguration);
        };
        match self
            .resolver
            .deployment(id.clone(), instances, policy.as_deref().map(|name| (namespace, name)))
        {
            Ok(deployment) => Some(Backend {
                target: deployment,
                refusal: None,
            }),
            Err(message) => {
                let name = policy.as_deref().unwrap_or_default();
                self.problem(
                    object,
                    "InvalidPolicy",
                    format!("KeygatePolicy {namespace}/{name}: {message}; the Ingress answers 422 until it is fixed"),
                );
                placeholder(self.resolver, &id, ErrorCode::InvalidConfiguration)
            }
        }
    }

    fn route(
        &mut self,
        object: &ObjectKey,
        host: Option<HostPattern>,
        path: PathMatch,
        strip: bool,
        backend: Backend,
        label: &str,
    ) {
        let key = (host.clone(), path.clone());
        if let Some(owner) = self.claimed.get(&key) {
            if owner != object {
                let message = format!("{} {} is already routed by {owner}; this path is ignored", label, path);
                self.problem(object, "RouteConflict", message);
            }
            return;
        }
        self.claimed.insert(key, object.clone());
        let mut target = RouteTarget::new(backend.target, label);
        target.refusal = backend.refusal;
        self.out.routing.routes.push(Route {
            host,
            path,
            strip_prefix: strip,
            rule: Default::default(),
            target,
        });
    }

    fn problem(&mut self, object: &ObjectKey, reason: &'static str, message: String) {
        self.out.problem(object, reason, message);
    }
}

#[cfg(test)]
mod tests;
