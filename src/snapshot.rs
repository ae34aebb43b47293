//! The runtime form of a configuration: everything a request needs, compiled
//! once (hosts normalised, instances resolved, CIDRs parsed, deployments
//! resolved for routes) and swapped in whole. The request path loads one
//! `Arc<Snapshot>` and never sees config text.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;

use crate::config::file::Protocol;
use crate::config::{Config, ConfigError};
use crate::policy::PolicyChain;
use crate::telemetry::request_log::RequestLogSettings;
use crate::state::StateSettings;
use crate::tls::TlsSettings;
use crate::errors::ErrorCode;
use crate::providers::{ProviderId, ProvidersSettings, Routing};
use crate::routing::{HostPattern, PathMatch, PathPrefix, RouteTable};
use crate::upstream::health::HealthCheck;
use crate::upstream::{InstanceSet, PassivePolicy, Strategy};

/// A deployment as requests see it.
#[derive(Debug)]
pub struct Deployment {
    pub id: Arc<str>,
    pub environment: Box<str>,
    pub instances: InstanceSet,
    pub protocol: Protocol,
    pub selection: Strategy,
    pub passive: PassivePolicy,
    pub health_check: Option<HealthCheck>,
    pub dns_refresh: Duration,
    /// `openapi:` — the spec `openapi` policies check requests against.
    pub openapi: Option<Arc<crate::openapi::SpecSlot>>,
    pub policies: PolicyChain,
}

impl Deployment {
    /// A deployment with default upstream settings: plain HTTP/1.1 to fixed
    /// addresses, no health checks (what providers without an `upstream:`
    /// section, like Kubernetes, produce).
    pub fn plain(id: Arc<str>, instances: Vec<SocketAddr>, policies: PolicyChain) -> Self {
        let targets = instances.into_iter().map(crate::upstream::Target::Network).collect();
        Self {
            instances: InstanceSet::new(id.clone(), vec![crate::upstream::Entry::Fixed(targets)]),
            id,
            environment: "production".into(),
            protocol: Protocol::Http1,
            selection: Strategy::default(),
            passive: PassivePolicy::default(),
            health_check: None,
            dns_refresh: Duration::from_secs(10),
            openapi: None,
            policies,
        }
    }
}

/// Where a route sends a request; `host_label` is the route's host as
/// configured (bounded cardinality, for metrics).
#[derive(Debug, Clone)]
pub struct RouteTarget {
    pub deployment: Arc<Deployment>,
    pub host_label: Arc<str>,
    /// Set when a provider's route cannot be served as stated: the request
    /// is answered with this error before any policy or instance (e.g. an
    /// Ingress naming a policy that does not exist, SPEC §9.30).
    pub refusal: Option<ErrorCode>,
}

impl RouteTarget {
    pub fn new(deployment: Arc<Deployment>, host_label: &str) -> Self {
        Self {
            deployment,
            host_label: host_label.to_ascii_lowercase().into(),
            refusal: None,
        }
    }
}

/// Timeouts and sizes from `limits`.
#[derive(Debug, Clone)]
pub struct Limits {
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
    pub read_header_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_request_body: u64,
}

/// Peers whose forwarding headers are believed (SPEC §4).
#[derive(Debug, Default, Clone)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    pub fn new(nets: Vec<IpNet>) -> Self {
        Self(nets)
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical_ip(ip);
        self.0.iter().any(|net| net.contains(&ip))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// `::ffff:1.2.3.4` is `1.2.3.4` (dual-stack sockets report IPv4 peers that way).
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Everything compiled from one configuration file, with the routes and
/// deployments of every provider merged in (see `providers`).
#[derive(Debug)]
pub struct Snapshot {
    pub routes: RouteTable<RouteTarget>,
    pub deployments: Vec<Arc<Deployment>>,
    /// The file's own deployments and routes, kept to merge again when
    /// another provider changes.
    pub file_routing: Arc<Routing>,
    /// Which providers run besides the file.
    pub providers: ProvidersSettings,
    pub limits: Limits,
    pub trusted_proxies: TrustedProxies,
    pub docs_base: Box<str>,
    pub root_keys: Vec<Box<str>>,
    /// Listener addresses; they are bound at start-up and a reload cannot move them.
    pub listen_http: Option<SocketAddr>,
    pub listen_https: Option<SocketAddr>,
    pub listen_admin: Option<SocketAddr>,
    pub listen_threads: usize,
    pub request_log: RequestLogSettings,
    pub tls: TlsSettings,
    pub state: StateSettings,
    /// The key service and this config's static keys (`keyspaces`).
    pub keys: crate::keys::Keys,
}

impl Snapshot {
    /// Compiles `config`; `keys` is the process's key service (static keys
    /// join it, `keyauth` policies verify through it).
    pub fn compile(config: &Config, keys: &Arc<crate::keys::KeyService>) -> Result<Self, ConfigError> {
        let file = &config.file;
        let statics = crate::keys::StaticKeys::compile(&file.keyspaces, keys)
            .map_err(|(field, message)| config.error_at(&format!("keyspaces{field}"), message))?;
        let keys = crate::keys::Keys {
            service: keys.clone(),
            statics: Arc::new(statics),
        };
        let mut by_id: HashMap<&str, Arc<Deployment>> = HashMap::new();
        let mut deployments = Vec::with_capacity(file.deployments.len());
        for (i, spec) in file.deployments.iter().enumerate() {
            let id: Arc<str> = spec.id.as_str().into();
            let mut entries = Vec::with_capacity(spec.instances.len());
            for (j, addr) in spec.instances.iter().enumerate() {
                let entry = crate::upstream::resolve(addr)
                    .map_err(|message| config.error_at(&format!("deployments[{i}].instances[{j}]"), message))?;
                entries.push(entry);
            }
            let upstream = &spec.upstream;
            let health_check = match &upstream.health_check {
                Some(check) => Some(HealthCheck::compile(check, upstream.protocol).map_err(|(field, message)| {
                    config.error_at(&format!("deployments[{i}].upstream.health_check.{field}"), message)
                })?),
                None => None,
            };
            let openapi = match &spec.openapi {
                Some(source) => Some(Arc::new(
                    crate::openapi::SpecSlot::load(source, &spec.id, config.base_dir())
                        .map_err(|(field, message)| config.error_at(&format!("deployments[{i}].openapi{field}"), message))?,
                )),
                None => None,
            };
            let resources = crate::policy::DeploymentResources {
                openapi: openapi.as_ref(),
                base_dir: config.base_dir(),
                deployment: &id,
            };
            let policies = PolicyChain::compile_for(&spec.policies, &keys, resources)
                .map_err(|(field, message)| config.error_at(&format!("deployments[{i}].policies{field}"), message))?;
            let deployment = Arc::new(Deployment {
                instances: InstanceSet::new(id.clone(), entries),
                id,
                environment: spec.environment.as_str().into(),
                protocol: upstream.protocol,
                selection: upstream.selection,
                passive: PassivePolicy {
                    failures: upstream.passive.failures,
                    ejection: upstream.passive.ejection.0,
                },
                health_check,
                dns_refresh: upstream.dns_refresh.0.max(Duration::from_secs(1)),
                openapi,
                policies,
            });
            by_id.insert(spec.id.as_str(), deployment.clone());
            deployments.push(deployment);
        }

        let mut routes = Vec::with_capacity(file.routes.len());
        for (i, route) in file.routes.iter().enumerate() {
            let field = |name: &str| format!("routes[{i}].{name}");
            let host = HostPattern::parse(&route.host).map_err(|m| config.error_at(&field("host"), m))?;
            let prefix = match &route.path_prefix {
                Some(prefix) => PathPrefix::parse(prefix).map_err(|m| config.error_at(&field("path_prefix"), m))?,
                None => PathPrefix::root(),
            };
            let deployment = by_id
                .get(route.deployment.as_str())
                .cloned()
                .ok_or_else(|| config.error_at(&field("deployment"), format!("unknown deployment {:?}", route.deployment)))?;
            routes.push(crate::providers::Route {
                host: Some(host),
                path: PathMatch::Prefix(prefix),
                strip_prefix: route.strip_prefix,
                target: RouteTarget::new(deployment, &route.host),
            });
        }
        let file_routing = Arc::new(Routing { deployments, routes });
        let merged = crate::providers::merge(&[(ProviderId::File, &file_routing)]);

        let limits = &file.limits;
        Ok(Self {
            routes: merged.routes,
            deployments: merged.deployments,
            file_routing,
            providers: ProvidersSettings::compile(&file.providers, config.base_dir())
                .map_err(|(field, message)| config.error_at(&format!("providers.{field}"), message))?,
            limits: Limits {
                request_timeout: limits.request_timeout.0,
                connect_timeout: limits.connect_timeout.0,
                read_header_timeout: limits.read_header_timeout.0,
                idle_timeout: limits.idle_timeout.0,
                max_request_body: limits.max_request_body.0,
            },
            trusted_proxies: TrustedProxies::new(file.trusted_proxies.iter().map(|c| c.0).collect()),
            docs_base: file.errors.docs_base.as_str().into(),
            root_keys: file.admin.root_keys.iter().map(|k| k.as_str().into()).collect(),
            listen_http: file.listen.http.map(|a| a.0),
            listen_https: file.listen.https.map(|a| a.0),
            listen_admin: file.listen.admin.map(|a| a.0),
            listen_threads: file.listen.threads,
            request_log: RequestLogSettings::compile(file.request_log.as_ref(), config.base_dir()),
            tls: TlsSettings::compile(&file.tls, &file.listen, config.base_dir())
                .map_err(|(field, message)| config.error_at(&format!("tls.{field}"), message))?,
            state: StateSettings::compile(&file.state, config.base_dir()),
            keys,
        })
    }

    /// This snapshot with another routing table: the file's settings stay,
    /// the routes and deployments are `routes` and `deployments`.
    pub fn with_routing(&self, routes: RouteTable<RouteTarget>, deployments: Vec<Arc<Deployment>>) -> Self {
        Self {
            routes,
            deployments,
            file_routing: self.file_routing.clone(),
            providers: self.providers.clone(),
            limits: self.limits.clone(),
            trusted_proxies: self.trusted_proxies.clone(),
            docs_base: self.docs_base.clone(),
            root_keys: self.root_keys.clone(),
            listen_http: self.listen_http,
            listen_https: self.listen_https,
            listen_admin: self.listen_admin,
            listen_threads: self.listen_threads,
            request_log: self.request_log.clone(),
            tls: self.tls.clone(),
            state: self.state.clone(),
            keys: self.keys.clone(),
        }
    }

    /// Loads and compiles the file at `path`.
    pub fn load(path: &std::path::Path, keys: &Arc<crate::keys::KeyService>) -> Result<Self, ConfigError> {
        Self::compile(&Config::load(path)?, keys)
    }
}

/// The resolved routing table as JSON, for `GET /v1/routes` and `keygate routes`.
pub fn describe(snapshot: &Snapshot) -> serde_json::Value {
    let mut routes: Vec<serde_json::Value> = snapshot
        .routes
        .iter()
        .map(|(host, routed)| {
            serde_json::json!({
                "host": host,
                "path_prefix": routed.prefix.as_str(),
                "strip_prefix": routed.strip_prefix,
                "exact": routed.exact,
                "deployment": &*routed.target.deployment.id,
                "refusal": routed.target.refusal.map(ErrorCode::code),
            })
        })
        .collect();
    routes.sort_by(|a, b| {
        (a["host"].as_str(), a["path_prefix"].as_str()).cmp(&(b["host"].as_str(), b["path_prefix"].as_str()))
    });
    let deployments: Vec<serde_json::Value> = snapshot
        .deployments
        .iter()
        .map(|d| {
            serde_json::json!({
                "id": &*d.id,
                "environment": &*d.environment,
                "protocol": match d.protocol { Protocol::Http1 => "http1", Protocol::H2c => "h2c" },
                "selection": match d.selection { Strategy::Random => "random", Strategy::P2c => "p2c" },
                "instances": d.instances.current().iter().map(|e| serde_json::json!({
                    "address": e.target.to_string(),
                    "healthy": e.is_healthy(),
                    "available": e.is_available(),
                    "in_flight": e.in_flight(),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    serde_json::json!({"routes": routes, "deployments": deployments})
}
