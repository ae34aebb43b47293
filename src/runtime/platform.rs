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
    pub preview_idle_archive: Duration,
    pub region: String,
    pub projects: Vec<Project>,
}

/// One project: of the file, or created through the API (then without
/// environments' policies).
#[derive(Debug, Clone)]
pub struct Project {
    pub id: String,
    /// The display name (the slug for the file's projects).
    pub name: String,
    pub slug: String,
    pub production_branch: String,
    pub domains: Vec<String>,
    /// Environment → its policy chain; empty: every environment, no policies.
    pub environments: BTreeMap<String, PolicyChain>,
    /// App slugs, at least one.
    pub apps: Vec<String>,
    /// Created through the API (unix ms); `None` for the file's.
    pub created_at: Option<i64>,
}

impl Project {
    /// The first label of the app's generated domains: the project's slug,
    /// or `{app}-{slug}` when the project has several apps.
    pub fn label(&self, app: &str) -> String {
        if self.apps.len() > 1 {
            format!("{app}-{}", self.slug)
        } else {
            self.slug.clone()
        }
    }

    /// The app named by `name` (its slug), if the project has it.
    pub fn app(&self, name: &str) -> Option<&str> {
        self.apps.iter().map(String::as_str).find(|app| *app == name)
    }
}

/// The app every project has when it names none.
pub const DEFAULT_APP: &str = "default";

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
            let mut apps = Vec::new();
            for (a, app) in project.apps.iter().enumerate() {
                if !is_slug(&app.slug, 40) || apps.contains(&app.slug) {
                    return Err((
                        format!("projects[{i}].apps[{a}].slug"),
                        format!("{:?} must be 1-40 lowercase letters, digits and '-', unique", app.slug),
                    ));
                }
                apps.push(app.slug.clone());
            }
            if apps.is_empty() {
                apps.push(DEFAULT_APP.to_string());
            }
            compiled.push(Project {
                id: project.id.clone(),
                name: project.slug.clone(),
                slug: project.slug.clone(),
                production_branch: project.production_branch.clone(),
                domains: project.domains.iter().map(|d| d.to_ascii_lowercase()).collect(),
                environments,
                apps,
                created_at: None,
            });
        }
        let region = spec.region.clone().unwrap_or_else(|| "local".into());
        if !is_slug(&region, 63) {
            return Err((
                "platform.region".into(),
                format!("{region:?} must be 1-63 lowercase letters, digits and '-'"),
            ));
        }
        Ok(Self {
            base_domain: base_domain.to_ascii_lowercase(),
            standby: spec.standby.map_or(Duration::from_secs(30 * 60), |d| d.0),
            ready_timeout: spec.ready_timeout.map_or(Duration::from_secs(5 * 60), |d| d.0),
            preview_idle_archive: spec.preview_idle_archive.map_or(Duration::from_secs(6 * 3600), |d| d.0),
            region,
            projects: compiled,
        })
    }

    /// The file's project with this id or slug.
    pub fn project(&self, id_or_slug: &str) -> Option<&Project> {
        self.projects
            .iter()
            .find(|p| p.id == id_or_slug || p.slug == id_or_slug)
    }
}

/// Lowercase ASCII letters, digits and `-`, 1 to `max` characters.
pub fn is_slug(text: &str, max: usize) -> bool {
    (1..=max).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}
