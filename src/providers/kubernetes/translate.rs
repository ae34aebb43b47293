//! Cluster objects → keygate routing: Ingress rules become routes, their
//! backends deployments `<namespace>/<service>:<port>` whose
//! instances are the *ready* EndpointSlice addresses, `spec.tls` Secrets
//! become certificates and `keygate.dev/policies` selects a `KeygatePolicy`.
//!
//! A pure function of what the reflectors hold, so it can be tested without
//! a cluster. Whatever is wrong with one object is a [`Problem`] (an Event
//! and a log line later) and affects only that object: a rule with a bad
//! host is skipped, a missing Service answers `deployment_not_found`, a
//! missing or invalid policy answers `invalid_configuration` (fail closed) — the rest of the cluster keeps being served.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressBackend, IngressClass};
use kube::ResourceExt;
use serde::Deserialize;

use super::crd::KeygatePolicy;
use super::CONTROLLER;
use crate::config::policy::PolicySpec;
use crate::errors::ErrorCode;
use crate::keys::Keys;
use crate::policy::{PolicyChain, Resources};
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
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Everything the reflectors hold, at one moment.
#[derive(Default)]
pub struct View {
    pub ingresses: Vec<Arc<Ingress>>,
    pub classes: Vec<Arc<IngressClass>>,
    pub services: Vec<Arc<Service>>,
    pub slices: Vec<Arc<EndpointSlice>>,
    pub secrets: Vec<Arc<Secret>>,
    pub policies: Vec<Arc<KeygatePolicy>>,
}

/// What translation needs besides the cluster.
pub struct Context<'a> {
    pub ingress_class: &'a str,
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
    fn ingress(ingress: &Ingress) -> Self {
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
}

/// Parsed TLS Secrets, kept between translations by `namespace/name` and
/// resourceVersion: a certificate is parsed once per change, not per event.
pub type CertCache = HashMap<String, (Option<String>, Result<Certificate, String>)>;

/// Translates `view`; see the module comment.
pub fn translate(view: &View, context: &Context<'_>, certs: &mut CertCache) -> Translation {
    let mut problems = Vec::new();
    let Some(class) = our_class(view, context.ingress_class, &mut problems) else {
        return Translation {
            problems,
            ..Translation::default()
        };
    };
    let mut ingresses: Vec<&Arc<Ingress>> = view.ingresses.iter().filter(|i| class.claims(i)).collect();
    // The oldest Ingress keeps a host and path that several claim.
    ingresses.sort_by_key(|i| (i.creation_timestamp().map(|t| t.0), i.namespace(), i.name_any()));

    let index = Index::build(view);
    let mut builder = Builder {
        index: &index,
        context,
        claimed: HashMap::new(),
        deployments: BTreeMap::new(),
        out: Translation {
            problems,
            ..Translation::default()
        },
    };
    let mut secrets = HashSet::new();
    for ingress in &ingresses {
        builder.ingress(ingress);
        for tls in ingress.spec.iter().flat_map(|s| s.tls.iter().flatten()) {
            if let Some(name) = &tls.secret_name {
                let namespace = ingress.namespace().unwrap_or_default();
                if secrets.insert(format!("{namespace}/{name}")) {
                    certificate(&index, certs, ingress, &namespace, name, &mut builder.out);
                }
            }
        }
        builder.out.served.push((*ingress).clone());
    }
    certs.retain(|key, _| secrets.contains(key));
    builder.out
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

/// Lookups by namespace and name.
struct Index<'a> {
    services: HashMap<(&'a str, &'a str), &'a Service>,
    /// EndpointSlices by (namespace, service name).
    slices: HashMap<(&'a str, &'a str), Vec<&'a EndpointSlice>>,
    secrets: HashMap<(&'a str, &'a str), &'a Arc<Secret>>,
    policies: HashMap<(&'a str, &'a str), &'a KeygatePolicy>,
}

impl<'a> Index<'a> {
    fn build(view: &'a View) -> Self {
        fn key<K: kube::Resource>(object: &K) -> Option<(&str, &str)> {
            Some((object.meta().namespace.as_deref()?, object.meta().name.as_deref()?))
        }
        let mut slices: HashMap<(&str, &str), Vec<&EndpointSlice>> = HashMap::new();
        for slice in &view.slices {
            let service = slice.metadata.labels.as_ref().and_then(|l| l.get(SERVICE_NAME_LABEL));
            if let (Some(namespace), Some(service)) = (slice.metadata.namespace.as_deref(), service) {
                slices.entry((namespace, service.as_str())).or_default().push(slice);
            }
        }
        Self {
            services: view.services.iter().filter_map(|s| Some((key(&**s)?, &**s))).collect(),
            slices,
            secrets: view.secrets.iter().filter_map(|s| Some((key(&**s)?, s))).collect(),
            policies: view.policies.iter().filter_map(|p| Some((key(&**p)?, &**p))).collect(),
        }
    }
}

/// The state of one translation while Ingresses are added to it.
struct Builder<'a, 'c> {
    index: &'a Index<'a>,
    context: &'a Context<'c>,
    /// Which Ingress routes each (host, path) already.
    claimed: HashMap<(Option<HostPattern>, PathMatch), ObjectKey>,
    /// Deployments by (id, policy), shared by every route to the same backend.
    deployments: BTreeMap<(String, Option<String>), Arc<Deployment>>,
    out: Translation,
}

/// A backend as a route target: a deployment, or why it cannot be served.
struct Backend {
    target: Arc<Deployment>,
    refusal: Option<ErrorCode>,
}

impl Builder<'_, '_> {
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
        if !self.index.policies.contains_key(&(object.namespace.as_str(), name)) {
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
        let placeholder = |id: &str, refusal| {
            Some(Backend {
                target: Arc::new(Deployment::plain(
                    id.into(),
                    Vec::new(),
                    PolicyChain::default(),
                    &self.context.services.endpoints,
                )),
                refusal: Some(refusal),
            })
        };
        let instances = match self.instances(namespace, &service.name, port) {
            Ok(instances) => instances,
            Err(message) => {
                self.problem(
                    object,
                    "ServiceNotFound",
                    format!("{message}; requests answer 404 deployment_not_found"),
                );
                return placeholder(&id, ErrorCode::DeploymentNotFound);
            }
        };
        let Ok(policy) = policy else {
            return placeholder(&id, ErrorCode::InvalidConfiguration);
        };
        let key = (id.clone(), policy.clone());
        if let Some(existing) = self.deployments.get(&key) {
            return Some(Backend {
                target: existing.clone(),
                refusal: None,
            });
        }
        let chain = match policy {
            Some(name) => {
                match self.compile_policy(namespace, name) {
                    Ok(chain) => chain,
                    Err(message) => {
                        self.problem(
                        object,
                        "InvalidPolicy",
                        format!("KeygatePolicy {namespace}/{name}: {message}; the Ingress answers 422 until it is fixed"),
                    );
                        return placeholder(&id, ErrorCode::InvalidConfiguration);
                    }
                }
            }
            None => PolicyChain::default(),
        };
        let deployment = Arc::new(Deployment::plain(
            id.into(),
            instances,
            chain,
            &self.context.services.endpoints,
        ));
        self.deployments.insert(key, deployment.clone());
        self.out.routing.deployments.push(deployment.clone());
        Some(Backend {
            target: deployment,
            refusal: None,
        })
    }

    /// The ready addresses of the Service's port, from its EndpointSlices.
    fn instances(
        &self,
        namespace: &str,
        service_name: &str,
        port: Option<&k8s_openapi::api::networking::v1::ServiceBackendPort>,
    ) -> Result<Vec<SocketAddr>, String> {
        let service = self
            .index
            .services
            .get(&(namespace, service_name))
            .ok_or_else(|| format!("Service {namespace}/{service_name} does not exist"))?;
        let spec = service
            .spec
            .as_ref()
            .ok_or_else(|| format!("Service {namespace}/{service_name} has no spec"))?;
        if spec.type_.as_deref() == Some("ExternalName") {
            return Err(format!(
                "Service {namespace}/{service_name} is an ExternalName service, which is not supported"
            ));
        }
        let wanted_number = port.and_then(|p| p.number);
        let wanted_name = port.and_then(|p| p.name.as_deref());
        let service_port = spec
            .ports
            .iter()
            .flatten()
            .find(|p| Some(p.port) == wanted_number || (wanted_name.is_some() && p.name.as_deref() == wanted_name))
            .ok_or_else(|| {
                let port = wanted_number.map_or_else(|| wanted_name.unwrap_or("").to_string(), |n| n.to_string());
                format!("Service {namespace}/{service_name} has no port {port}")
            })?;
        let port_name = service_port.name.as_deref().unwrap_or("");
        let mut addresses = Vec::new();
        for slice in self.index.slices.get(&(namespace, service_name)).into_iter().flatten() {
            if !matches!(slice.address_type.as_str(), "IPv4" | "IPv6") {
                continue;
            }
            let Some(port) = slice
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref().unwrap_or("") == port_name)
                .and_then(|p| p.port)
                .and_then(|p| u16::try_from(p).ok())
            else {
                continue;
            };
            for endpoint in &slice.endpoints {
                // An unknown readiness counts as ready (the API's convention);
                // terminating pods are never ready.
                let ready = endpoint.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
                let address = endpoint.addresses.first().and_then(|a| a.parse::<IpAddr>().ok());
                if let (true, Some(ip)) = (ready, address) {
                    addresses.push(SocketAddr::new(ip, port));
                }
            }
        }
        addresses.sort();
        addresses.dedup();
        Ok(addresses)
    }

    fn compile_policy(&self, namespace: &str, name: &str) -> Result<PolicyChain, String> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Spec {
            #[serde(default)]
            policies: Vec<PolicySpec>,
        }
        let object = self.index.policies.get(&(namespace, name)).ok_or("it does not exist")?;
        let spec: Spec = serde_path_to_error::deserialize(&object.spec).map_err(|e| {
            let path = e.path().to_string();
            format!("spec.{path}: {}", e.into_inner())
        })?;
        // Rate-limit buckets are per KeygatePolicy: every Ingress selecting it shares them.
        let owner = format!("{namespace}/{name}");
        let resources = Resources {
            base_dir: self.context.base_dir,
            deployment: &owner,
            ..self.context.services.policy_resources(self.context.keys)
        };
        PolicyChain::compile(&spec.policies, &resources)
            .map_err(|(field, message)| format!("spec.policies{field}: {message}"))
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
        let problem = Problem {
            object: object.clone(),
            reason,
            message,
        };
        if !self.out.problems.contains(&problem) {
            self.out.problems.push(problem);
        }
    }
}

/// A DNS-1123 subdomain, what Kubernetes object names are.
fn is_object_name(name: &str) -> bool {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    !name.is_empty()
        && name.len() <= 253
        && name.starts_with(alnum)
        && name.ends_with(alnum)
        && name.chars().all(|c| alnum(c) || c == '-' || c == '.')
}

/// Loads the `spec.tls` Secret `namespace/name` into `out.certificates`.
fn certificate(
    index: &Index<'_>,
    cache: &mut CertCache,
    ingress: &Ingress,
    namespace: &str,
    name: &str,
    out: &mut Translation,
) {
    let object = ObjectKey::ingress(ingress);
    let Some(secret) = index.secrets.get(&(namespace, name)) else {
        out.problems.push(Problem {
            object,
            reason: "SecretNotFound",
            message: format!("TLS Secret {namespace}/{name} does not exist"),
        });
        return;
    };
    let key = format!("{namespace}/{name}");
    let version = secret.resource_version();
    let cached = match cache.get(&key) {
        Some((seen, parsed)) if *seen == version && version.is_some() => parsed.clone(),
        _ => {
            let parsed = parse_secret(secret);
            cache.insert(key.clone(), (version, parsed.clone()));
            parsed
        }
    };
    match cached {
        Ok(certificate) => out.certificates.push((key, certificate)),
        Err(message) => out.problems.push(Problem {
            object,
            reason: "InvalidCertificate",
            message: format!("TLS Secret {key}: {message}"),
        }),
    }
}

fn parse_secret(secret: &Secret) -> Result<Certificate, String> {
    if secret.type_.as_deref() != Some("kubernetes.io/tls") {
        return Err(format!(
            "type is {:?}, not kubernetes.io/tls",
            secret.type_.as_deref().unwrap_or("")
        ));
    }
    let data = secret.data.as_ref().ok_or("it has no data")?;
    let crt = data.get("tls.crt").ok_or("it has no tls.crt")?;
    let key = data.get("tls.key").ok_or("it has no tls.key")?;
    Certificate::from_pem(&crt.0, &key.0)
}

#[cfg(test)]
mod tests;
