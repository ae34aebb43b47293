//! Gateways of keygate's classes and their listeners: which routes may
//! attach to each listener (`allowedRoutes`), which hosts it admits, the
//! certificates its `certificateRefs` name, and the Gateway's status.
//!
//! keygate binds its own `listen.http` and `listen.https`: a listener does
//! not open a port, it states which hosts and routes keygate serves there.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::ResourceExt;
use serde_json::{json, Value};

use super::objects::{Gateway, GROUP};
use super::refs::{core_group, selects, From, Grants};
use super::spec::{self, GatewaySpec};
use super::status::{conditions, Condition, StatusKind, StatusUpdate};
use super::{object_key, ROUTE_KIND};
use crate::providers::kubernetes::resolve::Resolver;
use crate::providers::kubernetes::translate::{ObjectKey, Translation};

/// Which namespaces' routes a listener admits.
enum Namespaces {
    Same,
    All,
    Selector(LabelSelector),
}

/// One listener, as routes attach to it.
pub struct ListenerState {
    pub name: String,
    pub port: i32,
    /// Lowercased; `None`: every host.
    pub hostname: Option<String>,
    namespaces: Namespaces,
    /// Its `allowedRoutes.kinds` include HTTPRoute (or name none).
    routes_allowed: bool,
    /// Why routes cannot attach at all (an unsupported protocol or TLS mode).
    refused: Option<(&'static str, String)>,
    /// Why a reference of the listener is unusable.
    unresolved: Option<(&'static str, String)>,
    /// Routes attached (accepted with a host in common).
    pub attached: usize,
}

impl ListenerState {
    /// Whether routes of `namespace` (with `labels`) may attach, as the
    /// Gateway in `gateway_namespace` allows it.
    pub fn admits(&self, gateway_namespace: &str, namespace: &str, labels: Option<&BTreeMap<String, String>>) -> bool {
        if self.refused.is_some() || !self.routes_allowed {
            return false;
        }
        match &self.namespaces {
            Namespaces::Same => namespace == gateway_namespace,
            Namespaces::All => true,
            Namespaces::Selector(selector) => labels.is_some_and(|labels| selects(selector, labels)),
        }
    }

    fn status(&self, generation: Option<i64>) -> Value {
        let accepted = match &self.refused {
            None => Condition::new("Accepted", true, "Accepted", "the listener is served"),
            Some((reason, message)) => Condition::new("Accepted", false, reason, message.clone()),
        };
        let programmed = match &self.refused {
            None => Condition::new("Programmed", true, "Programmed", "the listener is served"),
            Some((_, message)) => Condition::new("Programmed", false, "Invalid", message.clone()),
        };
        let resolved = match &self.unresolved {
            None => Condition::new("ResolvedRefs", true, "ResolvedRefs", "all references are resolved"),
            Some((reason, message)) => Condition::new("ResolvedRefs", false, reason, message.clone()),
        };
        let conflicted = Condition::new("Conflicted", false, "NoConflicts", "no conflicts");
        let kinds = if self.routes_allowed {
            json!([{"group": GROUP, "kind": ROUTE_KIND}])
        } else {
            json!([])
        };
        json!({
            "name": self.name,
            "supportedKinds": kinds,
            "attachedRoutes": self.attached,
            "conditions": conditions(&[accepted, programmed, resolved, conflicted], generation),
        })
    }
}

/// A Gateway of one of keygate's classes.
pub struct GatewayState<'v> {
    pub object: &'v Arc<Gateway>,
    pub key: ObjectKey,
    /// Why its spec cannot be read (then it has no listeners).
    invalid: Option<String>,
    pub listeners: Vec<ListenerState>,
}

impl<'v> GatewayState<'v> {
    /// Reads the Gateway's listeners; loads their certificates into `out`.
    pub fn new(
        object: &'v Arc<Gateway>,
        spec: Result<GatewaySpec, String>,
        grants: &Grants,
        resolver: &mut Resolver<'_, '_>,
        out: &mut Translation,
    ) -> Self {
        let key = object_key(&**object);
        let spec = match spec {
            Ok(spec) => spec,
            Err(message) => {
                out.problem(&key, "InvalidGateway", format!("{message}; the Gateway is not served"));
                return Self {
                    object,
                    key,
                    invalid: Some(message),
                    listeners: Vec::new(),
                };
            }
        };
        let listeners = spec
            .listeners
            .into_iter()
            .map(|listener| compile_listener(listener, &key, grants, resolver, out))
            .collect();
        Self {
            object,
            key,
            invalid: None,
            listeners,
        }
    }

    pub fn namespace(&self) -> &str {
        &self.key.namespace
    }

    pub fn name(&self) -> &str {
        &self.key.name
    }

    /// The status it should have; `addresses` are the publish Service's.
    pub fn status(&self, addresses: &[Value]) -> StatusUpdate {
        let generation = self.object.metadata.generation;
        let (accepted, programmed) = match &self.invalid {
            Some(message) => (
                Condition::new("Accepted", false, "Invalid", message.clone()),
                Condition::new("Programmed", false, "Invalid", message.clone()),
            ),
            None if addresses.is_empty() => (
                Condition::new("Accepted", true, "Accepted", "served by keygate"),
                Condition::new(
                    "Programmed",
                    false,
                    "AddressNotAssigned",
                    "the publish Service has no address (yet)",
                ),
            ),
            None => (
                Condition::new("Accepted", true, "Accepted", "served by keygate"),
                Condition::new("Programmed", true, "Programmed", "served by keygate"),
            ),
        };
        let listeners: Vec<Value> = self.listeners.iter().map(|l| l.status(generation)).collect();
        StatusUpdate {
            kind: StatusKind::Gateway,
            namespace: self.key.namespace.clone(),
            name: self.key.name.clone(),
            resource_version: self.object.resource_version(),
            current: self.object.status.clone(),
            desired: json!({
                "addresses": addresses,
                "conditions": conditions(&[accepted, programmed], generation),
                "listeners": listeners,
            }),
        }
    }
}

fn compile_listener(
    listener: spec::Listener,
    gateway: &ObjectKey,
    grants: &Grants,
    resolver: &mut Resolver<'_, '_>,
    out: &mut Translation,
) -> ListenerState {
    let allowed = listener.allowed_routes.unwrap_or_default();
    let routes_allowed = allowed.kinds.is_empty()
        || allowed
            .kinds
            .iter()
            .any(|k| k.group.as_deref().unwrap_or(GROUP) == GROUP && k.kind == ROUTE_KIND);
    let namespaces = allowed.namespaces.unwrap_or_default();
    let mut refused = None;
    let namespaces = match namespaces.from.as_deref().unwrap_or("Same") {
        "Same" => Namespaces::Same,
        "All" => Namespaces::All,
        "Selector" => Namespaces::Selector(namespaces.selector.unwrap_or_default()),
        other => {
            refused = Some((
                "UnsupportedValue",
                format!("allowedRoutes.namespaces.from {other:?} is not Same, All or Selector"),
            ));
            Namespaces::Same
        }
    };
    let mut unresolved = (!routes_allowed).then(|| {
        (
            "InvalidRouteKinds",
            "allowedRoutes.kinds names no kind keygate serves (HTTPRoute)".to_string(),
        )
    });
    match listener.protocol.as_str() {
        "HTTP" => {}
        "HTTPS" => {
            let tls = listener.tls.unwrap_or(spec::ListenerTls {
                mode: None,
                certificate_refs: Vec::new(),
            });
            if tls.mode.as_deref().is_some_and(|mode| mode != "Terminate") {
                refused = Some((
                    "UnsupportedValue",
                    "tls.mode Passthrough is not supported (keygate terminates TLS)".to_string(),
                ));
            } else if tls.certificate_refs.is_empty() {
                unresolved = Some((
                    "InvalidCertificateRef",
                    "an HTTPS listener needs tls.certificateRefs".to_string(),
                ));
            }
            for reference in &tls.certificate_refs {
                if let Err(problem) = certificate(reference, gateway, grants, resolver, out) {
                    out.problem(gateway, problem.0, format!("listener {}: {}", listener.name, problem.1));
                    unresolved.get_or_insert(problem);
                }
            }
        }
        other => {
            refused = Some((
                "UnsupportedProtocol",
                format!("protocol {other} is not supported (HTTP and HTTPS are)"),
            ));
        }
    }
    if let Some((reason, message)) = &refused {
        out.problem(gateway, reason, format!("listener {}: {message}", listener.name));
    }
    ListenerState {
        name: listener.name,
        port: listener.port,
        hostname: listener.hostname.map(|h| h.to_ascii_lowercase()),
        namespaces,
        routes_allowed,
        refused,
        unresolved,
        attached: 0,
    }
}

/// Loads the certificate a listener's `certificateRefs` entry names into `out`.
fn certificate(
    reference: &spec::ObjectRef,
    gateway: &ObjectKey,
    grants: &Grants,
    resolver: &mut Resolver<'_, '_>,
    out: &mut Translation,
) -> Result<(), (&'static str, String)> {
    let kind = reference.kind.as_deref().unwrap_or("Secret");
    if !core_group(reference.group.as_deref()) || kind != "Secret" {
        return Err((
            "InvalidCertificateRef",
            format!("certificateRefs names a {kind}, not a Secret"),
        ));
    }
    let namespace = reference.namespace.as_deref().unwrap_or(&gateway.namespace);
    let from = From {
        group: GROUP,
        kind: "Gateway",
        namespace: &gateway.namespace,
    };
    if !grants.permits(&from, "", "Secret", namespace, &reference.name) {
        return Err((
            "RefNotPermitted",
            format!(
                "Secret {namespace}/{} is in another namespace and no ReferenceGrant there allows it",
                reference.name
            ),
        ));
    }
    match resolver.certificate(namespace, &reference.name) {
        Ok(certificate) => {
            if !out.certificates.iter().any(|(name, _)| *name == certificate.0) {
                out.certificates.push(certificate);
            }
            Ok(())
        }
        Err((_, message)) => Err(("InvalidCertificateRef", message)),
    }
}
