//! Cross-checks that need the whole file: ids are unique, routes name known
//! deployments, no two routes claim the same host and path.

use std::collections::{HashMap, HashSet};

use super::{Config, ConfigError};
use crate::routing::{HostPattern, PathPrefix};

pub(super) fn cross_check(config: &Config) -> Result<(), ConfigError> {
    let file = &config.file;

    let mut deployment_ids = HashSet::new();
    for (i, deployment) in file.deployments.iter().enumerate() {
        if deployment.id.trim().is_empty() {
            return Err(config.error_at(&format!("deployments[{i}].id"), "a deployment id cannot be empty"));
        }
        if !deployment_ids.insert(deployment.id.as_str()) {
            return Err(config.error_at(
                &format!("deployments[{i}].id"),
                format!("duplicate deployment id {:?}", deployment.id),
            ));
        }
    }

    let mut claimed: HashMap<(HostPattern, String), usize> = HashMap::new();
    for (i, route) in file.routes.iter().enumerate() {
        let host = HostPattern::parse(&route.host)
            .map_err(|message| config.error_at(&format!("routes[{i}].host"), message))?;
        let prefix = PathPrefix::parse(route.path_prefix.as_deref().unwrap_or("/"))
            .map_err(|message| config.error_at(&format!("routes[{i}].path_prefix"), message))?;
        if !deployment_ids.contains(route.deployment.as_str()) {
            return Err(config.error_at(
                &format!("routes[{i}].deployment"),
                format!("unknown deployment {:?}", route.deployment),
            ));
        }
        if let Some(first) = claimed.insert((host, prefix.as_str().to_string()), i) {
            return Err(config.error_at(
                &format!("routes[{i}].host"),
                format!(
                    "duplicate route: host {:?} with path prefix {:?} is already routed by routes[{first}]",
                    route.host,
                    prefix.as_str()
                ),
            ));
        }
    }

    for (i, key) in file.admin.root_keys.iter().enumerate() {
        if key.trim().is_empty() {
            return Err(config.error_at(&format!("admin.root_keys[{i}]"), "a root key cannot be empty"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::Config;

    fn error(text: &str) -> String {
        Config::parse(text, Path::new("k.yaml")).unwrap_err().to_string()
    }

    const DEPLOYMENT: &str = "deployments:\n  - id: a\n    instances: [\"builtin:echo\"]\n";

    #[test]
    fn route_to_unknown_deployment() {
        let err = error(&format!("{DEPLOYMENT}routes:\n  - host: x.com\n    deployment: b\n"));
        assert_eq!(err, "k.yaml:6: routes[0].deployment: unknown deployment \"b\"");
    }

    #[test]
    fn duplicate_deployment_ids() {
        let err = error(&format!("{DEPLOYMENT}  - id: a\n"));
        assert!(err.starts_with("k.yaml:4: deployments[1].id: duplicate"), "{err}");
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
        assert!(Config::parse(&text, Path::new("k.yaml")).is_ok());
    }

    #[test]
    fn bad_host_and_prefix() {
        assert!(error(&format!("{DEPLOYMENT}routes:\n  - host: \"a.*.com\"\n    deployment: a\n")).contains("routes[0].host"));
        assert!(error(&format!("{DEPLOYMENT}routes:\n  - host: a.com\n    path_prefix: v1\n    deployment: a\n")).contains("routes[0].path_prefix"));
    }
}
