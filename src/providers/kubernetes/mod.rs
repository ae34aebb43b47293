//! The Kubernetes provider (`providers.kubernetes`): keygate as an ingress
//! controller and a Gateway API implementation. Reflectors keep a copy of
//! the Ingresses, Gateway API objects and what they refer to (`watch`);
//! every change is translated into a complete
//! [`Routing`](crate::runtime::Routing) plus certificates (`translate` for
//! Ingresses, `gateway` for the Gateway API, both on `resolve`) and
//! published to the [`Hub`]; problems become Events (`events`), served
//! Ingresses get the gateway's address (`status`) and Gateway API objects
//! their conditions (`gateway`).

mod crd;
mod events;
#[cfg(test)]
mod fixtures;
mod gateway;
mod resolve;
mod status;
mod translate;
mod watch;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use tokio::sync::Notify;

pub use crd::{custom_resource_definition, KeygatePolicy};
pub use gateway::{Gateway, GatewayClass, GatewayObject, HttpRoute, Kind, ReferenceGrant};

use crate::runtime::{Hub, KubernetesSettings, ProviderId};
use crate::tls::store::{CertStore, Source};

/// The `spec.controller` of IngressClasses keygate serves.
pub const CONTROLLER: &str = "keygate.dev/ingress-controller";

/// How long changes are collected before one translation: a rollout
/// touches many EndpointSlices within milliseconds.
const DEBOUNCE: Duration = Duration::from_millis(50);

/// The first wait after a failed attempt to build a client; it doubles…
const MIN_CONNECT_BACKOFF: Duration = Duration::from_millis(500);
/// …up to this.
const MAX_CONNECT_BACKOFF: Duration = Duration::from_secs(30);

/// Why no API client could be built.
#[derive(Debug, thiserror::Error)]
enum ConnectError {
    #[error("cannot read the kubeconfig {path}: {source}")]
    Kubeconfig {
        path: PathBuf,
        source: kube::config::KubeconfigError,
    },
    #[error("no in-cluster service account: {0}")]
    InCluster(#[from] kube::config::InClusterError),
    #[error("unusable kubeconfig: {0}")]
    Config(#[from] kube::config::KubeconfigError),
    #[error("cannot build the API client: {0}")]
    Client(#[from] kube::Error),
}

async fn connect(settings: &KubernetesSettings) -> Result<kube::Client, ConnectError> {
    let config = match &settings.kubeconfig {
        Some(path) => {
            let kubeconfig = kube::config::Kubeconfig::read_from(path).map_err(|source| ConnectError::Kubeconfig {
                path: path.clone(),
                source,
            })?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default()).await?
        }
        None => kube::Config::incluster()?,
    };
    Ok(kube::Client::try_from(config)?)
}

/// Runs the provider until `shutdown`: publishes to `hub`, installs
/// `spec.tls` certificates into `certs` (when the HTTPS listener is on).
pub async fn run(
    settings: KubernetesSettings,
    hub: Arc<Hub>,
    certs: Option<Arc<CertStore>>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let backoff = ExponentialBuilder::new()
        .with_min_delay(MIN_CONNECT_BACKOFF)
        .with_max_delay(MAX_CONNECT_BACKOFF)
        .with_factor(2.0)
        .without_max_times();
    let connecting = (|| connect(&settings))
        .retry(backoff)
        .notify(|error, wait| tracing::error!("Kubernetes provider: {error}; retrying in {wait:?}"));
    let client = tokio::select! {
        connected = connecting => match connected {
            Ok(client) => client,
            // The retries are unbounded: never reached, but typed.
            Err(error) => {
                tracing::error!("Kubernetes provider stopped: {error}");
                return;
            }
        },
        _ = shutdown.changed() => return,
    };
    tracing::info!(ingress_class = settings.ingress_class, gateway_controller = settings.gateway_controller, namespaces = ?settings.namespaces, "Kubernetes provider watching");

    let changed = Arc::new(Notify::new());
    let cluster = watch::Cluster::watch(&client, &settings.namespaces, changed.clone());
    let mut problems = events::ProblemReporter::new(client.clone());
    let mut status = status::StatusWriter::new(client.clone(), settings.publish_service.clone());
    let mut gateway_status = gateway::StatusWriter::new(client);
    // A file reload changes the static keys that Ingress policies verify
    // against: translate again then (and not on the other swaps).
    let mut config = hub.subscribe();
    let mut statics = hub.current().keys.statics.clone();
    let mut cert_cache = resolve::CertCache::new();
    let mut installed_certs: Option<Vec<(String, Vec<u8>)>> = None;
    let mut warned_no_https = false;
    loop {
        tokio::select! {
            _ = changed.notified() => {}
            changed = config.changed() => {
                if changed.is_err() {
                    return;
                }
                let now = config.borrow_and_update().keys.statics.clone();
                if Arc::ptr_eq(&now, &statics) {
                    continue;
                }
                statics = now;
            }
            _ = shutdown.changed() => return,
        }
        tokio::time::sleep(DEBOUNCE).await;
        // Nothing is published before every kind was listed once: a partial
        // view would route Ingresses to Services not seen yet.
        if !cluster.synced() {
            continue;
        }
        let snapshot = hub.current();
        let view = cluster.view();
        let context = translate::Context {
            ingress_class: &settings.ingress_class,
            gateway_controller: &settings.gateway_controller,
            publish_service: settings.publish_service.as_ref(),
            keys: &snapshot.keys,
            base_dir: &settings.base_dir,
            services: &snapshot.services,
        };
        let translation = translate::translate(&view, &context, &mut cert_cache);
        // A certificate is identified by its leaf's bytes: a Secret replaced
        // with a new certificate of the same validity must still be installed.
        let served: Vec<(String, Vec<u8>)> = translation
            .certificates
            .iter()
            .map(|(name, c)| {
                (
                    name.clone(),
                    c.key.cert.first().map(|leaf| leaf.to_vec()).unwrap_or_default(),
                )
            })
            .collect();
        match &certs {
            Some(store) if installed_certs.as_ref() != Some(&served) => {
                let fresh = translation
                    .certificates
                    .into_iter()
                    .map(|(name, certificate)| (Source::Kubernetes(name), certificate))
                    .collect();
                store.replace_where(|source| matches!(source, Source::Kubernetes(_)), fresh);
                installed_certs = Some(served);
            }
            None if !served.is_empty() && !std::mem::replace(&mut warned_no_https, true) => {
                tracing::warn!("Ingress spec.tls and Gateway HTTPS listeners are ignored: listen.https is not set");
            }
            _ => {}
        }
        hub.publish(ProviderId::Kubernetes, translation.routing);
        problems.report(&translation.problems);
        status.update(&view.services, &translation.served);
        gateway_status.update(&translation.statuses);
    }
}
