//! The compiled `providers:` section: which routing providers run besides
//! the file, with their settings checked at load. They start with the
//! process; a reload that changes this section is logged and takes effect
//! after a restart. Also the compiled `policy_sets:`, the named policy lists
//! providers attach to the deployments they build (these follow reloads).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::config::policy::PolicySetsSpec;
use crate::config::providers::{DockerSpec, KubernetesSpec, ProvidersSpec};
use crate::policy::{PolicyChain, Resources};

/// Which providers run besides the file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProvidersSettings {
    pub kubernetes: Option<KubernetesSettings>,
    pub docker: Option<DockerSettings>,
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
        let docker = match &spec.docker {
            Some(docker) => Some(
                DockerSettings::compile(docker, base_dir)
                    .map_err(|(field, message)| (format!("docker.{field}"), message))?,
            ),
            None => None,
        };
        Ok(Self { kubernetes, docker })
    }
}

/// The compiled `providers.kubernetes` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubernetesSettings {
    pub ingress_class: String,
    /// GatewayClasses with this `controllerName` are served.
    pub gateway_controller: String,
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
        if !is_controller_name(&spec.gateway_controller) {
            return Err((
                "gateway_controller".into(),
                format!(
                    "{:?} is not a controller name (<domain>/<path>, e.g. keygate.dev/gateway-controller)",
                    spec.gateway_controller
                ),
            ));
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
            gateway_controller: spec.gateway_controller.clone(),
            namespaces: spec.namespaces.clone(),
            kubeconfig: spec.kubeconfig.as_ref().map(|path| base_dir.join(path)),
            publish_service,
            base_dir: base_dir.to_path_buf(),
        })
    }
}

/// A Gateway API controller name: a domain, `/`, a path (at most 253 characters).
fn is_controller_name(name: &str) -> bool {
    let Some((domain, path)) = name.split_once('/') else {
        return false;
    };
    let label = |l: &str| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    name.len() <= 253
        && domain.contains('.')
        && domain.split('.').all(label)
        && !path.is_empty()
        && path.chars().all(|c| c.is_ascii_graphic())
}

/// The compiled `providers.docker` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerSettings {
    pub endpoint: DockerEndpoint,
    /// Containers without `keygate.enable` are served when they expose a port.
    pub exposed_by_default: bool,
    /// The network whose container address is dialled; `None`: the first.
    pub network: Option<String>,
}

/// Where the Docker Engine API listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DockerEndpoint {
    /// A unix socket (`unix:///var/run/docker.sock`).
    Unix(PathBuf),
    /// `host:port`, plain HTTP (`tcp://127.0.0.1:2375`).
    Tcp(String),
}

impl fmt::Display for DockerEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unix(path) => write!(f, "unix://{}", path.display()),
            Self::Tcp(address) => write!(f, "tcp://{address}"),
        }
    }
}

impl DockerSettings {
    /// Errors are `(field below providers.docker, message)`.
    pub fn compile(spec: &DockerSpec, base_dir: &Path) -> Result<Self, (String, String)> {
        let text = spec.endpoint.trim();
        let endpoint = if let Some(path) = text.strip_prefix("unix://").filter(|p| !p.is_empty()) {
            DockerEndpoint::Unix(base_dir.join(path))
        } else if let Some(address) = text.strip_prefix("tcp://").filter(|a| valid_host_port(a)) {
            DockerEndpoint::Tcp(address.to_string())
        } else {
            return Err((
                "endpoint".into(),
                format!("{text:?} is not unix:///path/to/docker.sock or tcp://host:port"),
            ));
        };
        let network = match spec.network.as_deref().map(str::trim) {
            Some("") => {
                return Err((
                    "network".into(),
                    "the network name cannot be empty (null = the first)".into(),
                ))
            }
            other => other.map(str::to_string),
        };
        Ok(Self {
            endpoint,
            exposed_by_default: spec.exposed_by_default,
            network,
        })
    }
}

/// `host:port` with a host and a numeric port.
fn valid_host_port(text: &str) -> bool {
    text.rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && !host.contains('/') && port.parse::<u16>().is_ok_and(|p| p > 0))
}

/// The compiled `policy_sets:`. Each set is compiled once per
/// configuration (validated like a deployment's policies) and shared by
/// every deployment a provider attaches it to: its rate-limit buckets count
/// across all of them.
#[derive(Debug, Default)]
pub struct PolicySets {
    sets: BTreeMap<String, PolicyChain>,
}

impl PolicySets {
    /// Compiles every set with `resources` (rate limits count under the
    /// set's own name). Errors are `(field below policy_sets, message)`.
    pub fn compile(spec: &PolicySetsSpec, resources: &Resources<'_>) -> Result<Self, (String, String)> {
        let mut sets = BTreeMap::new();
        for (name, policies) in spec {
            if !is_set_name(name) {
                return Err((
                    name.clone(),
                    format!("{name:?} is not a policy set name (letters, digits, '-' and '_')"),
                ));
            }
            let owner = format!("policy_sets.{name}");
            let resources = Resources {
                deployment: &owner,
                ..resources.clone()
            };
            let chain = PolicyChain::compile(policies, &resources)
                .map_err(|(field, message)| (format!("{name}{field}"), message))?;
            sets.insert(name.clone(), chain);
        }
        Ok(Self { sets })
    }

    /// The set called `name`.
    pub fn get(&self, name: &str) -> Option<&PolicyChain> {
        self.sets.get(name)
    }
}

fn is_set_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn docker(yaml: &str) -> Result<DockerSettings, (String, String)> {
        let spec: DockerSpec = serde_saphyr::from_str(yaml).unwrap();
        DockerSettings::compile(&spec, Path::new("/etc/keygate"))
    }

    #[test]
    fn docker_endpoints() {
        let default = docker("{}").unwrap();
        assert_eq!(default.endpoint, DockerEndpoint::Unix("/var/run/docker.sock".into()));
        assert_eq!(default.endpoint.to_string(), "unix:///var/run/docker.sock");
        assert!(!default.exposed_by_default);
        assert_eq!(default.network, None);
        assert_eq!(
            docker("{endpoint: 'tcp://127.0.0.1:2375'}").unwrap().endpoint,
            DockerEndpoint::Tcp("127.0.0.1:2375".into())
        );
        assert_eq!(
            docker("{endpoint: 'unix://run/d.sock'}").unwrap().endpoint,
            DockerEndpoint::Unix("/etc/keygate/run/d.sock".into())
        );
        for bad in [
            "http://x:1",
            "tcp://x",
            "tcp://:2375",
            "unix://",
            "/var/run/docker.sock",
        ] {
            assert_eq!(
                docker(&format!("{{endpoint: '{bad}'}}")).unwrap_err().0,
                "endpoint",
                "{bad}"
            );
        }
        assert_eq!(docker("{network: ' '}").unwrap_err().0, "network");
        assert_eq!(docker("{network: web}").unwrap().network.as_deref(), Some("web"));
    }

    #[test]
    fn gateway_controller_names() {
        let kubernetes = |yaml: &str| {
            let spec: KubernetesSpec = serde_saphyr::from_str(yaml).unwrap();
            KubernetesSettings::compile(&spec, Path::new("/etc/keygate"))
        };
        assert_eq!(
            kubernetes("{}").unwrap().gateway_controller,
            "keygate.dev/gateway-controller"
        );
        assert_eq!(
            kubernetes("{gateway_controller: example.com/gw}")
                .unwrap()
                .gateway_controller,
            "example.com/gw"
        );
        for bad in ["keygate", "keygate.dev/", "/x", "no_dots/x", "a.b/with space"] {
            assert_eq!(
                kubernetes(&format!("{{gateway_controller: '{bad}'}}")).unwrap_err().0,
                "gateway_controller",
                "{bad}"
            );
        }
    }

    #[test]
    fn policy_set_names_and_errors() {
        let services = crate::runtime::Services::in_memory().unwrap();
        let resources = services.policy_resources(&services.keys_without_statics());
        let compile = |yaml: &str| {
            let spec: PolicySetsSpec = serde_saphyr::from_str(yaml).unwrap();
            PolicySets::compile(&spec, &resources)
        };
        let sets = compile("public-api: [{id: deny, firewall: {action: deny}}]\nopen_1: []\n").unwrap();
        assert!(sets.get("public-api").is_some_and(|chain| !chain.is_empty()));
        assert!(sets.get("open_1").is_some_and(PolicyChain::is_empty));
        assert!(sets.get("other").is_none());
        assert_eq!(compile("a.b: []").unwrap_err().0, "a.b");
        assert_eq!(
            compile("x: [{id: a, keyauth: {keyspaces: [nope]}}]").unwrap_err().0,
            "x[0].keyauth.keyspaces[0]"
        );
    }
}
