//! The Kubernetes provider (SPEC §2 `providers.kubernetes`, §9.30–31):
//! keygate as an ingress controller. Reflectors keep a copy of the
//! Ingresses of our class and what they refer to (`watch`); every change is
//! translated into a complete [`Routing`](super::Routing) plus certificates
//! (`translate`) and published to the [`Hub`]; problems become Events
//! (`events`) and served Ingresses get the gateway's address (`status`).

mod crd;
mod events;
mod status;
mod translate;
mod watch;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::Notify;

pub use crd::KeygatePolicy;

use super::{Hub, ProviderId};
use crate::tls::store::{CertStore, Source};

/// The `spec.controller` of IngressClasses keygate serves.
pub const CONTROLLER: &str = "keygate.dev/ingress-controller";

/// How long changes are collected before one translation: a rollout
/// touches many EndpointSlices within milliseconds.
const DEBOUNCE: Duration = Duration::from_millis(50);

/// The longest wait between two attempts to build a client.
const MAX_CONNECT_BACKOFF: Duration = Duration::from_secs(30);

/// `providers.kubernetes`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesSpec {
    #[serde(default = "KubernetesSpec::default_class")]
    pub ingress_class: String,
    /// Namespaces to watch; empty = all.
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// A kubeconfig file; null = the in-cluster service account.
    #[serde(default)]
    pub kubeconfig: Option<String>,
    /// `<namespace>/<name>` of the Service whose address goes into Ingress
    /// statuses; null = `$POD_NAMESPACE/keygate`.
    #[serde(default)]
    pub publish_service: Option<String>,
}

impl KubernetesSpec {
    fn default_class() -> String {
        "keygate".to_string()
    }
}

/// The compiled `providers.kubernetes` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubernetesSettings {
    pub ingress_class: String,
    pub namespaces: Vec<String>,
    pub kubeconfig: Option<PathBuf>,
    pub publish_service: Option<(String, String)>,
    /// Where relative paths in `KeygatePolicy` objects resolve (the config's directory).
    pub base_dir: PathBuf,
}

impl KubernetesSettings {
    /// Errors are `(field below providers.kubernetes, message)`.
    pub fn compile(spec: &KubernetesSpec, base_dir: &Path) -> Result<Self, (String, String)> {
        if spec.ingress_class.trim().is_empty() {
            return Err(("ingress_class".into(), "the ingress class cannot be empty".into()));
        }
        let publish_service = match &spec.publish_service {
            Some(text) => match text.split_once('/') {
                Some((namespace, name)) if !namespace.is_empty() && !name.is_empty() && !name.contains('/') => {
                    Some((namespace.to_string(), name.to_string()))
                }
                _ => {
                    return Err((
                        "publish_service".into(),
                        format!("{text:?} is not <namespace>/<name> (e.g. keygate/keygate)"),
                    ))
                }
            },
            None => std::env::var("POD_NAMESPACE")
                .ok()
                .filter(|ns| !ns.is_empty())
                .map(|ns| (ns, "keygate".to_string())),
        };
        Ok(Self {
            ingress_class: spec.ingress_class.clone(),
            namespaces: spec.namespaces.clone(),
            kubeconfig: spec.kubeconfig.as_ref().map(|path| base_dir.join(path)),
            publish_service,
            base_dir: base_dir.to_path_buf(),
        })
    }
}

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
    let mut backoff = Duration::from_millis(500);
    let client = loop {
        match connect(&settings).await {
            Ok(client) => break client,
            Err(error) => tracing::error!("Kubernetes provider: {error}; retrying in {backoff:?}"),
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.changed() => return,
        }
        backoff = (backoff * 2).min(MAX_CONNECT_BACKOFF);
    };
    tracing::info!(ingress_class = settings.ingress_class, namespaces = ?settings.namespaces, "Kubernetes provider watching");

    let changed = Arc::new(Notify::new());
    let cluster = watch::Cluster::watch(&client, &settings.namespaces, changed.clone());
    let mut recorder = events::Recorder::new(client.clone());
    let mut status = status::StatusWriter::new(client, settings.publish_service.clone());
    let mut file_reloads = hub.file_reloads();
    let mut cert_cache = translate::CertCache::new();
    let mut installed_certs: Option<Vec<(String, i64)>> = None;
    let mut warned_no_https = false;
    loop {
        tokio::select! {
            _ = changed.notified() => {}
            reloaded = file_reloads.changed() => if reloaded.is_err() { return },
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
            keys: &snapshot.keys,
            base_dir: &settings.base_dir,
        };
        let translation = translate::translate(&view, &context, &mut cert_cache);
        let served: Vec<(String, i64)> = translation.certificates.iter().map(|(name, c)| (name.clone(), c.not_after)).collect();
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
                tracing::warn!("Ingress spec.tls is ignored: listen.https is not set");
            }
            _ => {}
        }
        hub.publish(ProviderId::Kubernetes, translation.routing);
        recorder.report(&translation.problems);
        status.update(&view.services, &translation.served);
    }
}
