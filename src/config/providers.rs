//! The `providers:` section: routing sources besides this file.

use serde::Deserialize;

/// The `providers:` section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvidersSpec {
    #[serde(default)]
    pub kubernetes: Option<KubernetesSpec>,
}

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
