//! Compiling the configuration file into a [`Snapshot`]: every section
//! becomes its runtime form, errors name the field and line. A snapshot is
//! only swapped in once all of it compiled.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::platform::PlatformSettings;
use super::providers::{PolicySets, ProvidersSettings};
use super::publish::{merge, ProviderId, Route, Routing};
use super::services::Services;
use super::snapshot::{Deployment, Limits, Listeners, RouteTarget, Snapshot};
use crate::config::deployment::DeploymentSpec;
use crate::config::route::RouteSpec;
use crate::config::{Config, ConfigError};
use crate::keys::{Keys, StaticKeys};
use crate::net::IpSet;
use crate::openapi::SpecSlot;
use crate::policy::{PolicyChain, Resources};
use crate::routing::{compile_path, compile_rule, Backends, HostPattern, PathMatch, RouteRule};
use crate::state::StateSettings;
use crate::telemetry::request_log::RequestLogSettings;
use crate::telemetry::traces::TracingSettings;
use crate::tls::TlsSettings;
use crate::upstream::health::HealthCheck;
use crate::upstream::{InstanceSet, PassivePolicy};

impl Snapshot {
    /// Loads and compiles the file at `path`.
    pub fn load(path: &Path, services: &Services) -> Result<Self, ConfigError> {
        Self::compile(&Config::load(path)?, services)
    }

    /// Compiles `config` against the process's `services` (static keys join
    /// the key service, policies count in its limiter).
    pub fn compile(config: &Config, services: &Services) -> Result<Self, ConfigError> {
        let file = &config.file;
        let parsed_routes = parse_routes(config)?;
        let statics = StaticKeys::compile(&file.keyspaces, &services.keys)
            .map_err(|(field, message)| config.error_at(&format!("keyspaces{field}"), message))?;
        let keys = Keys {
            service: services.keys.clone(),
            statics: Arc::new(statics),
        };
        let mut by_id: HashMap<&str, Arc<Deployment>> = HashMap::new();
        let mut deployments = Vec::with_capacity(file.deployments.len());
        for (i, spec) in file.deployments.iter().enumerate() {
            let deployment = Arc::new(compile_deployment(config, i, spec, &keys, services)?);
            by_id.insert(spec.id.as_str(), deployment.clone());
            deployments.push(deployment);
        }

        let mut routes = Vec::with_capacity(file.routes.len());
        for (parsed, spec) in parsed_routes.into_iter().zip(&file.routes) {
            // parse_routes checked that every backend is a deployment of the file.
            let backends = route_backends(spec)
                .filter_map(|(id, weight)| Some((by_id.get(id)?.clone(), weight)))
                .collect();
            routes.push(Route {
                host: Some(parsed.host),
                path: parsed.path,
                strip_prefix: spec.strip_prefix,
                rule: parsed.rule,
                target: RouteTarget::weighted(Backends::new(backends), &spec.host),
            });
        }
        let file_routing = Arc::new(Routing { deployments, routes });
        let merged = merge(&[(ProviderId::File, &file_routing)]);
        let set_resources = Resources {
            base_dir: config.base_dir(),
            ..services.policy_resources(&keys)
        };
        let policy_sets = PolicySets::compile(&file.policy_sets, &set_resources)
            .map_err(|(field, message)| config.error_at(&format!("policy_sets.{field}"), message))?;
        let platform = PlatformSettings::compile(&file.platform, &file.projects, &set_resources)
            .map_err(|(field, message)| config.error_at(&field, message))?;

        let limits = &file.limits;
        if !(1..=Limits::MAX_HEADERS_CEILING).contains(&limits.max_headers) {
            return Err(config.error_at(
                "limits.max_headers",
                format!("must be between 1 and {}", Limits::MAX_HEADERS_CEILING),
            ));
        }
        let max_header_bytes = usize::try_from(limits.max_header_bytes.0).unwrap_or(usize::MAX);
        if max_header_bytes < 1024 {
            return Err(config.error_at("limits.max_header_bytes", "must be at least 1KiB".to_string()));
        }
        if limits.max_connections == 0 {
            return Err(config.error_at("limits.max_connections", "must be at least 1".to_string()));
        }
        Ok(Self {
            routes: merged.routes,
            deployments: merged.deployments,
            file_routing,
            providers: ProvidersSettings::compile(&file.providers, config.base_dir())
                .map_err(|(field, message)| config.error_at(&format!("providers.{field}"), message))?,
            policy_sets: Arc::new(policy_sets),
            platform: Arc::new(platform),
            limits: Limits {
                request_timeout: limits.request_timeout.0,
                connect_timeout: limits.connect_timeout.0,
                read_header_timeout: limits.read_header_timeout.0,
                idle_timeout: limits.idle_timeout.0,
                max_request_body: limits.max_request_body.0,
                read_body_timeout: limits.read_body_timeout.0,
                max_header_bytes,
                max_headers: limits.max_headers,
                max_connections: limits.max_connections,
                allow_underscores_in_headers: limits.allow_underscores_in_headers,
            },
            trusted_proxies: IpSet::new(file.trusted_proxies.iter().map(|c| c.0).collect()),
            docs_base: file.errors.docs_base.as_str().into(),
            root_keys: match (&file.admin.root_keys[..], &services.local_root_key) {
                ([], Some(local)) => vec![local.as_ref().into()],
                (configured, _) => configured.iter().map(|k| k.as_str().into()).collect(),
            },
            listen: Listeners {
                http: file.listen.http.map(|a| a.0),
                https: file.listen.https.map(|a| a.0),
                admin: file.listen.admin.map(|a| a.0),
                threads: file.listen.threads,
            },
            request_log: RequestLogSettings::compile(file.request_log.as_ref(), config.base_dir()),
            tracing: TracingSettings::compile(&file.telemetry.tracing)
                .map_err(|(field, message)| config.error_at(&format!("telemetry.tracing.{field}"), message))?,
            tls: TlsSettings::compile(&file.tls, &file.listen, config.base_dir())
                .map_err(|(field, message)| config.error_at(&format!("tls.{field}"), message))?,
            state: StateSettings::of(config),
            keys,
            services: services.clone(),
        })
    }
}

/// `deployments[i]`: its instances resolved, health check, OpenAPI spec and policies compiled.
fn compile_deployment(
    config: &Config,
    i: usize,
    spec: &DeploymentSpec,
    keys: &Keys,
    services: &Services,
) -> Result<Deployment, ConfigError> {
    let at = |field: &str| format!("deployments[{i}]{field}");
    let id: Arc<str> = spec.id.as_str().into();
    let mut entries = Vec::with_capacity(spec.instances.len());
    for (j, addr) in spec.instances.iter().enumerate() {
        let entry = crate::upstream::resolve(addr)
            .map_err(|message| config.error_at(&at(&format!(".instances[{j}]")), message))?;
        entries.push(entry);
    }
    let upstream = &spec.upstream;
    let protocol = upstream.protocol.into();
    let health_check =
        match &upstream.health_check {
            Some(check) => Some(HealthCheck::compile(check, protocol).map_err(|(field, message)| {
                config.error_at(&at(&format!(".upstream.health_check.{field}")), message)
            })?),
            None => None,
        };
    let openapi = match &spec.openapi {
        Some(source) => Some(Arc::new(
            SpecSlot::load(source, &spec.id, config.base_dir(), &services.fetched_specs)
                .map_err(|(field, message)| config.error_at(&at(&format!(".openapi{field}")), message))?,
        )),
        None => None,
    };
    let resources = Resources {
        openapi: openapi.as_ref(),
        base_dir: config.base_dir(),
        deployment: &id,
        ..services.policy_resources(keys)
    };
    let policies = PolicyChain::compile(&spec.policies, &resources)
        .map_err(|(field, message)| config.error_at(&at(&format!(".policies{field}")), message))?;
    Ok(Deployment {
        instances: InstanceSet::new(id.clone(), entries, &services.endpoints),
        durations: Deployment::durations_of(&id),
        recent_series: std::sync::OnceLock::new(),
        id_header: http::HeaderValue::from_str(&id).ok(),
        id,
        environment: spec.environment.as_str().into(),
        protocol,
        selection: upstream.selection.into(),
        passive: PassivePolicy {
            failures: upstream.passive.failures,
            ejection: upstream.passive.ejection.0,
        },
        health_check,
        dns_refresh: upstream.dns_refresh.0.max(Duration::from_secs(1)),
        openapi,
        policies,
    })
}

/// A route of the file, compiled but for its deployments.
struct ParsedRoute {
    host: HostPattern,
    path: PathMatch,
    rule: Arc<RouteRule>,
}

/// A route's `(deployment, weight)` pairs: `deployment:` is one backend of weight 1.
fn route_backends(spec: &RouteSpec) -> impl Iterator<Item = (&str, u32)> {
    let single = spec.deployment.as_deref().map(|id| (id, 1));
    single
        .into_iter()
        .chain(spec.backends.iter().map(|b| (b.deployment.as_str(), b.weight)))
}

/// Each route's host, path and rule, checked before anything else is
/// compiled: valid, naming deployments of the file (or redirecting), and no
/// host and path routed twice without match expressions to tell them apart.
fn parse_routes(config: &Config) -> Result<Vec<ParsedRoute>, ConfigError> {
    let file = &config.file;
    let deployment_ids: HashSet<&str> = file.deployments.iter().map(|d| d.id.as_str()).collect();
    let mut claimed: HashMap<(HostPattern, PathMatch), usize> = HashMap::new();
    let mut parsed = Vec::with_capacity(file.routes.len());
    for (i, route) in file.routes.iter().enumerate() {
        let field = |name: &str| format!("routes[{i}].{name}");
        let fail = |(name, message): (String, String)| config.error_at(&field(&name), message);
        let host = HostPattern::parse(&route.host).map_err(|message| config.error_at(&field("host"), message))?;
        let path = compile_path(route).map_err(fail)?;
        let rule = compile_rule(route, &path).map_err(fail)?;
        check_backends(route, rule.redirect.is_some(), &deployment_ids).map_err(fail)?;
        if !rule.is_conditional() {
            if let Some(first) = claimed.insert((host.clone(), path.clone()), i) {
                return Err(config.error_at(
                    &field("host"),
                    format!(
                        "duplicate route: host {:?} with path {} is already routed by routes[{first}] (match expressions can tell them apart)",
                        route.host,
                        path
                    ),
                ));
            }
        }
        parsed.push(ParsedRoute {
            host,
            path,
            rule: Arc::new(rule),
        });
    }
    Ok(parsed)
}

/// `deployment` or `backends` (not both; none only for a redirect), every
/// one a deployment of the file, some weight above 0.
fn check_backends(route: &RouteSpec, redirects: bool, deployment_ids: &HashSet<&str>) -> Result<(), (String, String)> {
    match (&route.deployment, route.backends.is_empty()) {
        (Some(_), false) => return Err(("backends".into(), "set deployment or backends, not both".into())),
        (None, true) if !redirects => {
            return Err((
                "deployment".into(),
                "a route needs a deployment, backends, or a redirect filter".into(),
            ))
        }
        (None, false) if route.backends.iter().all(|b| b.weight == 0) => {
            return Err(("backends".into(), "at least one backend needs a weight above 0".into()))
        }
        _ => {}
    }
    if let Some(id) = &route.deployment {
        if !deployment_ids.contains(id.as_str()) {
            return Err(("deployment".into(), format!("unknown deployment {id:?}")));
        }
    }
    for (j, backend) in route.backends.iter().enumerate() {
        if !deployment_ids.contains(backend.deployment.as_str()) {
            return Err((
                format!("backends[{j}].deployment"),
                format!("unknown deployment {:?}", backend.deployment),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn error(text: &str) -> String {
        let config = match Config::parse(text, Path::new("k.yaml")) {
            Ok(config) => config,
            Err(e) => return e.to_string(),
        };
        Snapshot::compile(&config, &Services::in_memory().unwrap())
            .unwrap_err()
            .to_string()
    }

    fn compiles(text: &str) -> bool {
        let config = Config::parse(text, Path::new("k.yaml")).unwrap();
        Snapshot::compile(&config, &Services::in_memory().unwrap()).is_ok()
    }

    const DEPLOYMENT: &str = "deployments:\n  - id: a\n    instances: [\"builtin:echo\"]\n";

    #[test]
    fn route_to_unknown_deployment() {
        let err = error(&format!("{DEPLOYMENT}routes:\n  - host: x.com\n    deployment: b\n"));
        assert_eq!(err, "k.yaml:6: routes[0].deployment: unknown deployment \"b\"");
    }

    #[test]
    fn duplicate_hosts_after_normalisation() {
        let err = error(&format!(
            "{DEPLOYMENT}routes:\n  - host: X.com\n    deployment: a\n  - host: x.com.\n    deployment: a\n"
        ));
        assert!(err.contains("routes[1].host: duplicate route"), "{err}");
    }

    #[test]
    fn same_host_different_prefixes_is_fine() {
        let text = format!(
            "{DEPLOYMENT}routes:\n  - host: x.com\n    deployment: a\n  - host: x.com\n    path_prefix: /v1\n    deployment: a\n"
        );
        assert!(compiles(&text));
    }

    #[test]
    fn the_local_root_key_stands_in_for_empty_root_keys() {
        let services = Services {
            local_root_key: Some("kg_root_local".into()),
            ..Services::in_memory().unwrap()
        };
        let root_keys = |text: &str| {
            let config = Config::parse(text, Path::new("k.yaml")).unwrap();
            Snapshot::compile(&config, &services).unwrap().root_keys
        };
        assert_eq!(root_keys(DEPLOYMENT), vec![Box::from("kg_root_local")]);
        assert_eq!(
            root_keys(&format!("admin:\n  root_keys: [set]\n{DEPLOYMENT}")),
            vec![Box::from("set")]
        );
    }

    #[test]
    fn policy_sets_are_checked_at_load() {
        let err =
            error("policy_sets:\n  open: []\n  public-api:\n    - id: auth\n      keyauth: {keyspaces: [nope]}\n");
        assert!(
            err.starts_with("k.yaml:5: policy_sets.public-api[0].keyauth.keyspaces[0]: "),
            "{err}"
        );
        let err = error("policy_sets:\n  bad.name: []\n");
        assert!(err.starts_with("k.yaml:2: policy_sets.bad.name: "), "{err}");
        let config = Config::parse(
            "policy_sets:\n  deny: [{id: d, firewall: {action: deny}}]\n",
            Path::new("k.yaml"),
        )
        .unwrap();
        let snapshot = Snapshot::compile(&config, &Services::in_memory().unwrap()).unwrap();
        assert!(snapshot.policy_sets.get("deny").is_some_and(|chain| !chain.is_empty()));
    }

    #[test]
    fn bad_host_and_prefix() {
        assert!(error(&format!(
            "{DEPLOYMENT}routes:\n  - host: \"a.*.com\"\n    deployment: a\n"
        ))
        .contains("routes[0].host"));
        assert!(error(&format!(
            "{DEPLOYMENT}routes:\n  - host: a.com\n    path_prefix: v1\n    deployment: a\n"
        ))
        .contains("routes[0].path_prefix"));
    }
}
