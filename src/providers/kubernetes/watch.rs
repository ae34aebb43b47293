//! Watch-based reflectors (no polling): one per watched kind and namespace,
//! each keeping an in-memory copy of its objects that the API server
//! updates through a long-lived watch.
//!
//! Why this cannot open a 404 window: a reflector swaps a re-list in whole
//! (kube's store buffers `InitApply` until `InitDone`), so a reconnect or a
//! full resync shows the old objects until the new list is complete; and
//! while the API server is unreachable the stores keep what they had, the
//! watch retries with exponential backoff, and the gateway keeps serving.

use std::fmt::Debug;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::crd::KeygatePolicy;
use super::gateway::{Gateway, GatewayClass, HttpRoute, ReferenceGrant};
use super::translate::View;

/// The stores of one kind (one per watched namespace, or one for all).
pub struct Watched<K: Resource<DynamicType = ()> + 'static> {
    stores: Vec<Store<K>>,
}

impl<K: Resource<DynamicType = ()> + Clone + 'static> Watched<K> {
    fn objects(&self) -> Vec<Arc<K>> {
        self.stores.iter().flat_map(Store::state).collect()
    }
}

/// Every reflector of the provider; dropping it stops the watches.
pub struct Cluster {
    ingresses: Watched<Ingress>,
    classes: Watched<IngressClass>,
    services: Watched<Service>,
    slices: Watched<EndpointSlice>,
    secrets: Watched<Secret>,
    policies: Watched<KeygatePolicy>,
    namespace_labels: Watched<Namespace>,
    gateway_classes: Watched<GatewayClass>,
    gateways: Watched<Gateway>,
    http_routes: Watched<HttpRoute>,
    reference_grants: Watched<ReferenceGrant>,
    /// One flag per reflector: it has listed its objects once.
    synced: Vec<Arc<AtomicBool>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Cluster {
    /// Starts the watches of `namespaces` (empty: all); `changed` is
    /// notified whenever a store changes.
    pub fn watch(client: &Client, namespaces: &[String], changed: Arc<Notify>) -> Self {
        let mut starter = Starter {
            client,
            namespaces,
            changed,
            synced: Vec::new(),
            tasks: Vec::new(),
        };
        let ingresses = starter.namespaced("ingresses", watcher::Config::default(), false);
        let classes = starter.cluster_wide("ingressclasses", false);
        let services = starter.namespaced("services", watcher::Config::default(), false);
        let slices = starter.namespaced(
            "endpointslices",
            watcher::Config::default().labels("kubernetes.io/service-name"),
            false,
        );
        // Only TLS Secrets: other Secrets never enter the gateway's memory.
        let secrets = starter.namespaced(
            "secrets",
            watcher::Config::default().fields("type=kubernetes.io/tls"),
            false,
        );
        // Optional: without the CRD installed, no Ingress can name a policy
        // that exists (and such Ingresses fail closed).
        let policies = starter.namespaced("keygatepolicies", watcher::Config::default(), true);
        // Namespace labels, for Gateway listeners that select route namespaces.
        let namespace_labels = starter.cluster_wide("namespaces", true);
        // The Gateway API, optional too: a cluster without its CRDs serves Ingresses alone.
        let gateway_classes = starter.cluster_wide("gatewayclasses", true);
        let gateways = starter.namespaced("gateways", watcher::Config::default(), true);
        let http_routes = starter.namespaced("httproutes", watcher::Config::default(), true);
        let reference_grants = starter.namespaced("referencegrants", watcher::Config::default(), true);
        Self {
            ingresses,
            classes,
            services,
            slices,
            secrets,
            policies,
            namespace_labels,
            gateway_classes,
            gateways,
            http_routes,
            reference_grants,
            synced: starter.synced,
            tasks: starter.tasks,
        }
    }

    /// Whether every reflector has listed its objects at least once.
    pub fn synced(&self) -> bool {
        self.synced.iter().all(|flag| flag.load(Ordering::Relaxed))
    }

    /// What the stores hold now.
    pub fn view(&self) -> View {
        View {
            ingresses: self.ingresses.objects(),
            classes: self.classes.objects(),
            services: self.services.objects(),
            slices: self.slices.objects(),
            secrets: self.secrets.objects(),
            policies: self.policies.objects(),
            namespaces: self.namespace_labels.objects(),
            gateway_classes: self.gateway_classes.objects(),
            gateways: self.gateways.objects(),
            http_routes: self.http_routes.objects(),
            reference_grants: self.reference_grants.objects(),
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

struct Starter<'a> {
    client: &'a Client,
    namespaces: &'a [String],
    changed: Arc<Notify>,
    synced: Vec<Arc<AtomicBool>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Starter<'_> {
    fn namespaced<K>(&mut self, kind: &'static str, config: watcher::Config, optional: bool) -> Watched<K>
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + Debug
            + Send
            + Sync
            + 'static,
    {
        let apis: Vec<Api<K>> = if self.namespaces.is_empty() {
            vec![Api::all(self.client.clone())]
        } else {
            self.namespaces
                .iter()
                .map(|ns| Api::namespaced(self.client.clone(), ns))
                .collect()
        };
        let stores = apis
            .into_iter()
            .map(|api| self.reflect(kind, api, config.clone(), optional))
            .collect();
        Watched { stores }
    }

    fn cluster_wide<K>(&mut self, kind: &'static str, optional: bool) -> Watched<K>
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    {
        let store = self.reflect(
            kind,
            Api::all(self.client.clone()),
            watcher::Config::default(),
            optional,
        );
        Watched { stores: vec![store] }
    }

    /// One reflector: its store, fed by a watch that retries with backoff.
    fn reflect<K>(&mut self, kind: &'static str, api: Api<K>, config: watcher::Config, optional: bool) -> Store<K>
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    {
        let (reader, writer) = reflector::store();
        let synced = Arc::new(AtomicBool::new(false));
        self.synced.push(synced.clone());
        let changed = self.changed.clone();
        let stream = reflector::reflector(writer, watcher(api, config)).default_backoff();
        self.tasks.push(tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            let mut failing = false;
            while let Some(event) = stream.next().await {
                match event {
                    Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => {}
                    Ok(event) => {
                        if matches!(event, watcher::Event::InitDone) {
                            synced.store(true, Ordering::Relaxed);
                        }
                        if std::mem::take(&mut failing) {
                            tracing::info!(kind, "Kubernetes watch is back");
                        }
                        changed.notify_one();
                    }
                    Err(error) if optional && unavailable(&error).is_some() => {
                        if !synced.swap(true, Ordering::Relaxed) {
                            let why = match unavailable(&error) {
                                Some(403) => "keygate may not list them (check its ClusterRole)",
                                _ => "the API server does not serve them (is the CRD installed?)",
                            };
                            tracing::warn!(kind, "{kind}: {why}; treated as empty");
                            changed.notify_one();
                        }
                    }
                    Err(error) => {
                        if !std::mem::replace(&mut failing, true) {
                            tracing::warn!(
                                kind,
                                "Kubernetes watch failed, serving what is known and retrying with backoff: {error}"
                            );
                        } else {
                            tracing::debug!(kind, "Kubernetes watch still failing: {error}");
                        }
                    }
                }
            }
        }));
        reader
    }
}

/// The status of an API error that makes an optional kind empty: 404 (its
/// CRD is not installed) or 403 (the ClusterRole does not cover it, e.g. an
/// older one without the Gateway API: Ingresses must keep being served).
fn unavailable(error: &watcher::Error) -> Option<u16> {
    let api_error = match error {
        watcher::Error::InitialListFailed(e) | watcher::Error::WatchStartFailed(e) | watcher::Error::WatchFailed(e) => {
            e
        }
        _ => return None,
    };
    match api_error {
        kube::Error::Api(response) if matches!(response.code, 403 | 404) => Some(response.code),
        _ => None,
    }
}
