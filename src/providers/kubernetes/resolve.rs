//! What both translations (Ingress and Gateway API) need from the objects
//! they refer to: a Service port's ready instances from its EndpointSlices,
//! a `KeygatePolicy` compiled into a policy chain, a TLS Secret parsed into
//! a certificate, and the deployments built from them, one per backend and
//! policy however many routes name it.
//!
//! Lookups fail with a message for the caller to report on its own object:
//! the same missing Service is an Event on each Ingress or HTTPRoute that
//! names it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::ResourceExt;
use serde::Deserialize;

use super::crd::KeygatePolicy;
use super::translate::{Context, View};
use crate::config::policy::PolicySpec;
use crate::policy::{PolicyChain, Resources};
use crate::runtime::Deployment;
use crate::tls::pem::Certificate;

const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Parsed TLS Secrets, kept between translations by `namespace/name` and
/// resourceVersion: a certificate is parsed once per change, not per event.
pub type CertCache = HashMap<String, (Option<String>, Result<Certificate, String>)>;

/// A Service port as a backend names it.
#[derive(Debug, Clone, Copy)]
pub enum PortRef<'a> {
    Number(i32),
    Name(&'a str),
}

impl std::fmt::Display for PortRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Number(number) => write!(f, "{number}"),
            Self::Name(name) => f.write_str(name),
        }
    }
}

/// Why a TLS Secret gives no certificate: `(Event reason, message)`.
pub type SecretProblem = (&'static str, String);

/// Lookups by namespace and name.
pub struct Index<'a> {
    services: HashMap<(&'a str, &'a str), &'a Service>,
    /// EndpointSlices by (namespace, service name).
    slices: HashMap<(&'a str, &'a str), Vec<&'a EndpointSlice>>,
    secrets: HashMap<(&'a str, &'a str), &'a Arc<Secret>>,
    policies: HashMap<(&'a str, &'a str), &'a KeygatePolicy>,
}

impl<'a> Index<'a> {
    pub fn build(view: &'a View) -> Self {
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

    /// Whether `KeygatePolicy` `namespace/name` exists.
    pub fn has_policy(&self, namespace: &str, name: &str) -> bool {
        self.policies.contains_key(&(namespace, name))
    }
}

/// Resolves references for one translation and keeps what it built.
pub struct Resolver<'a, 'c> {
    index: &'a Index<'a>,
    context: &'a Context<'c>,
    certs: &'a mut CertCache,
    /// The Secrets looked up in this translation: the rest leave the cache.
    secrets_used: HashSet<String>,
    /// Deployments by (id, `namespace/name` of the policy), shared by every
    /// route to the same backend with the same policy.
    deployments: BTreeMap<(String, Option<String>), Arc<Deployment>>,
}

impl<'a, 'c> Resolver<'a, 'c> {
    pub fn new(index: &'a Index<'a>, context: &'a Context<'c>, certs: &'a mut CertCache) -> Self {
        Self {
            index,
            context,
            certs,
            secrets_used: HashSet::new(),
            deployments: BTreeMap::new(),
        }
    }

    pub fn index(&self) -> &Index<'a> {
        self.index
    }

    /// A deployment without instances: what a route whose backend cannot be
    /// resolved points at (it answers 503 `no_running_instances`, or the
    /// route's refusal).
    pub fn placeholder(&self, id: &str) -> Arc<Deployment> {
        Arc::new(Deployment::plain(
            id.into(),
            Vec::new(),
            PolicyChain::default(),
            &self.context.services.endpoints,
        ))
    }

    /// The deployment `id` with `instances` and the policy `namespace/name`
    /// (compiled once per translation). Errors say why the policy is unusable.
    pub fn deployment(
        &mut self,
        id: String,
        instances: Vec<SocketAddr>,
        policy: Option<(&str, &str)>,
    ) -> Result<Arc<Deployment>, String> {
        let key = (id, policy.map(|(namespace, name)| format!("{namespace}/{name}")));
        if let Some(existing) = self.deployments.get(&key) {
            return Ok(existing.clone());
        }
        let chain = match policy {
            Some((namespace, name)) => self.compile_policy(namespace, name)?,
            None => PolicyChain::default(),
        };
        let deployment = Arc::new(Deployment::plain(
            key.0.as_str().into(),
            instances,
            chain,
            &self.context.services.endpoints,
        ));
        self.deployments.insert(key, deployment.clone());
        Ok(deployment)
    }

    /// The ready addresses of the Service's port, from its EndpointSlices.
    pub fn instances(&self, namespace: &str, service_name: &str, port: PortRef<'_>) -> Result<Vec<SocketAddr>, String> {
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
        let service_port = spec
            .ports
            .iter()
            .flatten()
            .find(|p| match port {
                PortRef::Number(number) => p.port == number,
                PortRef::Name(name) => p.name.as_deref() == Some(name),
            })
            .ok_or_else(|| format!("Service {namespace}/{service_name} has no port {port}"))?;
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
        // Rate-limit buckets are per KeygatePolicy: every route selecting it shares them.
        let owner = format!("{namespace}/{name}");
        let resources = Resources {
            base_dir: self.context.base_dir,
            deployment: &owner,
            ..self.context.services.policy_resources(self.context.keys)
        };
        PolicyChain::compile(&spec.policies, &resources)
            .map_err(|(field, message)| format!("spec.policies{field}: {message}"))
    }

    /// The certificate in TLS Secret `namespace/name`, as `(namespace/name, certificate)`.
    pub fn certificate(&mut self, namespace: &str, name: &str) -> Result<(String, Certificate), SecretProblem> {
        let key = format!("{namespace}/{name}");
        let Some(secret) = self.index.secrets.get(&(namespace, name)) else {
            return Err(("SecretNotFound", format!("TLS Secret {key} does not exist")));
        };
        self.secrets_used.insert(key.clone());
        let version = secret.resource_version();
        let parsed = match self.certs.get(&key) {
            Some((seen, parsed)) if *seen == version && version.is_some() => parsed.clone(),
            _ => {
                let parsed = parse_secret(secret);
                self.certs.insert(key.clone(), (version, parsed.clone()));
                parsed
            }
        };
        match parsed {
            Ok(certificate) => Ok((key, certificate)),
            Err(message) => Err(("InvalidCertificate", format!("TLS Secret {key}: {message}"))),
        }
    }

    /// Every deployment built, in a stable order; forgets the certificates
    /// no object asked for this time.
    pub fn finish(self) -> Vec<Arc<Deployment>> {
        let used = self.secrets_used;
        self.certs.retain(|key, _| used.contains(key));
        self.deployments.into_values().collect()
    }
}

/// A DNS-1123 subdomain, what Kubernetes object names are.
pub fn is_object_name(name: &str) -> bool {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    !name.is_empty()
        && name.len() <= 253
        && name.starts_with(alnum)
        && name.ends_with(alnum)
        && name.chars().all(|c| alnum(c) || c == '-' || c == '.')
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
