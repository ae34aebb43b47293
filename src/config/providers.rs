//! The `providers:` section: routing sources besides this file.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The `providers:` section. Changing it needs a restart.
#[derive(Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProvidersSpec {
    /// Ingress controller and Gateway API mode: Ingresses of a class, and
    /// HTTPRoutes of the Gateways of keygate's GatewayClasses, become routes.
    #[serde(default)]
    pub kubernetes: Option<KubernetesSpec>,
    /// Labelled containers of a Docker engine become deployments and routes.
    #[serde(default)]
    pub docker: Option<DockerSpec>,
}

/// `providers.kubernetes`.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KubernetesSpec {
    /// Ingresses with this class are served.
    #[serde(default = "KubernetesSpec::default_class")]
    pub ingress_class: String,
    /// Gateway API: GatewayClasses with this `controllerName` are served
    /// (their Gateways and the HTTPRoutes attached to them).
    #[serde(default = "KubernetesSpec::default_gateway_controller")]
    pub gateway_controller: String,
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

    fn default_gateway_controller() -> String {
        "keygate.dev/gateway-controller".to_string()
    }
}

/// `providers.docker`: labelled containers become deployments and routes.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DockerSpec {
    /// The Docker Engine API: `unix:///path/to/docker.sock` or `tcp://host:port`.
    #[serde(default = "DockerSpec::default_endpoint")]
    pub endpoint: String,
    /// `true`: every container with an exposed port is served unless it is
    /// labelled `keygate.enable=false`; `false`: only `keygate.enable=true`.
    #[serde(default)]
    pub exposed_by_default: bool,
    /// The container network whose address keygate dials; null = the
    /// container's first network (by name).
    #[serde(default)]
    pub network: Option<String>,
}

impl DockerSpec {
    fn default_endpoint() -> String {
        "unix:///var/run/docker.sock".to_string()
    }
}
