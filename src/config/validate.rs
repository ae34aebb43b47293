//! Cross-checks that need the whole file: deployment ids are unique and
//! root keys are not empty. (Routes are checked where they are compiled.)

use std::collections::HashSet;

use super::{Config, ConfigError};

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
    fn duplicate_deployment_ids() {
        let err = error(&format!("{DEPLOYMENT}  - id: a\n"));
        assert!(err.starts_with("k.yaml:4: deployments[1].id: duplicate"), "{err}");
    }
}
