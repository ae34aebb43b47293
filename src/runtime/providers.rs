//! The compiled `providers:` section: which routing providers run besides
//! the file, with their settings checked at load. They start with the
//! process; a reload that changes this section is logged and takes effect
//! after a restart.

use std::path::{Path, PathBuf};

use crate::config::providers::{KubernetesSpec, ProvidersSpec};

/// Which providers run besides the file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProvidersSettings {
    pub kubernetes: Option<KubernetesSettings>,
}

impl ProvidersSettings {
    /// Errors are `(field below providers, message)`.
    pub fn compile(spec: &ProvidersSpec, base_dir: &Path) -> Result<Self, (String, String)> {
        let kubernetes = match &spec.kubernetes {
            Some(k8s) => Some(
                KubernetesSettings::compile(k8s, base_dir)
                    .map_err(|(field, message)| (format!("kubernetes.{field}"), message))?,
            ),
            None => None,
        };
        Ok(Self { kubernetes })
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
