//! The compiled `platform:` and `projects:` sections: what the control
//! plane (the Deployments API) needs from the file, checked at load. Each
//! environment's policies are compiled once per configuration and shared
//! by every deployment of that environment.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use crate::config::platform::{PlatformSpec, ProjectSpec};
use crate::policy::{PolicyChain, Resources};
use crate::routing::HostPattern;

/// The control plane's settings and projects.
#[derive(Debug, Clone)]
pub struct PlatformSettings {
    pub base_domain: String,
    pub standby: Duration,
    pub ready_timeout: Duration,
    pub projects: Vec<Project>,
}

/// One project of the file.
#[derive(Debug, Clone)]
pub struct Project {
    pub id: String,
    pub slug: String,
    pub production_branch: String,
    pub domains: Vec<String>,
    /// Environment → its policy chain.
    pub environments: BTreeMap<String, PolicyChain>,
}

impl PlatformSettings {
    /// Errors are `(field, message)`, the field below the file's root.
    pub fn compile(
        spec: &PlatformSpec,
        projects: &[ProjectSpec],
        resources: &Resources<'_>,
    ) -> Result<Self, (String, String)> {
        let base_domain = spec.base_domain.clone().unwrap_or_else(|| "keygate.localhost".into());
        if !matches!(HostPattern::parse(&base_domain), Ok(HostPattern::Exact(_))) {
            return Err((
                "platform.base_domain".into(),
                format!("{base_domain:?} is not a DNS name"),
            ));
        }
        let mut ids = HashSet::new();
        let mut slugs = HashSet::new();
        let mut compiled = Vec::with_capacity(projects.len());
        for (i, project) in projects.iter().enumerate() {
            let field = |name: &str| format!("projects[{i}].{name}");
            if !ids.insert(project.id.as_str()) || project.id.is_empty() {
                return Err((field("id"), format!("{:?} is empty or not unique", project.id)));
            }
            if !is_slug(&project.slug, 40) || !slugs.insert(project.slug.as_str()) {
                return Err((
                    field("slug"),
                    format!(
                        "{:?} must be 1-40 lowercase letters, digits and '-', unique",
                        project.slug
                    ),
                ));
            }
            for (d, domain) in project.domains.iter().enumerate() {
                if !matches!(HostPattern::parse(domain), Ok(HostPattern::Exact(_))) {
                    return Err((
                        format!("projects[{i}].domains[{d}]"),
                        format!("{domain:?} is not a DNS name"),
                    ));
                }
            }
            let mut environments = BTreeMap::new();
            for (name, environment) in &project.environments {
                if !is_slug(name, 40) {
                    return Err((
                        format!("projects[{i}].environments.{name}"),
                        "an environment name is 1-40 lowercase letters, digits and '-'".into(),
                    ));
                }
                let owner = format!("projects.{}.{name}", project.id);
                let resources = Resources {
                    deployment: &owner,
                    ..resources.clone()
                };
                let chain = PolicyChain::compile(&environment.policies, &resources)
                    .map_err(|(f, message)| (format!("projects[{i}].environments.{name}.policies{f}"), message))?;
                environments.insert(name.clone(), chain);
            }
            compiled.push(Project {
                id: project.id.clone(),
                slug: project.slug.clone(),
                production_branch: project.production_branch.clone(),
                domains: project.domains.iter().map(|d| d.to_ascii_lowercase()).collect(),
                environments,
            });
        }
        Ok(Self {
            base_domain: base_domain.to_ascii_lowercase(),
            standby: spec.standby.map_or(Duration::from_secs(30 * 60), |d| d.0),
            ready_timeout: spec.ready_timeout.map_or(Duration::from_secs(5 * 60), |d| d.0),
            projects: compiled,
        })
    }

    pub fn project(&self, id: &str) -> Option<&Project> {
        self.projects.iter().find(|p| p.id == id)
    }
}

/// Lowercase ASCII letters, digits and `-`, 1 to `max` characters.
pub fn is_slug(text: &str, max: usize) -> bool {
    (1..=max).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}
