//! Ingress `status.loadBalancer`: the address clients reach the
//! gateway at, taken from the Service that publishes it (its load-balancer
//! ingress, else its external IPs), written to every Ingress keygate serves
//! whose status says otherwise. Every replica writes the same value, so no
//! leader is needed; an unchanged status is never written again.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::{Ingress, IngressLoadBalancerIngress};
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt};

/// Writes Ingress statuses.
pub struct StatusWriter {
    client: Client,
    /// `(namespace, name)` of the Service whose address is published.
    service: Option<(String, String)>,
    /// Logged once: the publish Service is missing or has no address yet.
    warned: bool,
    /// The resourceVersion each Ingress had when its status was last
    /// written: until the watch brings the new version, it is not written again.
    written: HashMap<(String, String), Option<String>>,
}

impl StatusWriter {
    pub fn new(client: Client, service: Option<(String, String)>) -> Self {
        if service.is_none() {
            tracing::warn!(
                "providers.kubernetes.publish_service is not set and POD_NAMESPACE is unknown: Ingress statuses are not updated"
            );
        }
        Self {
            client,
            service,
            warned: false,
            written: HashMap::new(),
        }
    }

    /// Publishes the gateway's address on each of `served` whose status differs.
    pub fn update(&mut self, services: &[Arc<Service>], served: &[Arc<Ingress>]) {
        let Some((namespace, name)) = &self.service else { return };
        let service = services
            .iter()
            .find(|s| s.metadata.namespace.as_deref() == Some(namespace) && s.metadata.name.as_deref() == Some(name));
        let addresses = service.map(|s| addresses(s)).unwrap_or_default();
        if addresses.is_empty() {
            if !std::mem::replace(&mut self.warned, true) {
                tracing::warn!(service = %format!("{namespace}/{name}"), "the publish Service has no address (yet): Ingress statuses are not updated");
            }
            return;
        }
        self.warned = false;
        self.written.retain(|(ns, name), _| {
            served
                .iter()
                .any(|i| i.metadata.namespace.as_deref() == Some(ns) && i.metadata.name.as_deref() == Some(name))
        });
        for ingress in served {
            let current = ingress
                .status
                .as_ref()
                .and_then(|s| s.load_balancer.as_ref())
                .and_then(|lb| lb.ingress.clone())
                .unwrap_or_default();
            let key = (ingress.namespace().unwrap_or_default(), ingress.name_any());
            let version = ingress.resource_version();
            if current == addresses || self.written.get(&key) == Some(&version) {
                continue;
            }
            self.written.insert(key.clone(), version);
            let (namespace, name) = key;
            let api: Api<Ingress> = Api::namespaced(self.client.clone(), &namespace);
            let patch = serde_json::json!({"status": {"loadBalancer": {"ingress": addresses}}});
            tokio::spawn(async move {
                if let Err(error) = api
                    .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    tracing::warn!(ingress = name, "cannot update the Ingress status: {error}");
                }
            });
        }
    }
}

/// The Service's published addresses: its load balancer's, else its external IPs.
pub(super) fn addresses(service: &Service) -> Vec<IngressLoadBalancerIngress> {
    let balancer: Vec<IngressLoadBalancerIngress> = service
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter(|i| i.ip.is_some() || i.hostname.is_some())
        .map(|i| IngressLoadBalancerIngress {
            ip: i.ip.clone(),
            hostname: i.hostname.clone(),
            ports: None,
        })
        .collect();
    if !balancer.is_empty() {
        return balancer;
    }
    service
        .spec
        .as_ref()
        .and_then(|s| s.external_ips.as_ref())
        .into_iter()
        .flatten()
        .map(|ip| IngressLoadBalancerIngress {
            ip: Some(ip.clone()),
            hostname: None,
            ports: None,
        })
        .collect()
}
