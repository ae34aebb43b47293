//! The `platform:` and `projects:` sections: the control plane's settings
//! and the projects whose deployments the Deployments API creates.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::policy::PolicySpec;
use super::units::HumanDuration;

/// `platform:` — how API-created deployments get domains and go live.
#[derive(Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlatformSpec {
    /// Generated domains live under it (`{project}-{sha7}.{base_domain}`, …).
    /// Default `keygate.localhost`.
    #[serde(default)]
    pub base_domain: Option<String>,
    /// How long the previous live deployment stays routable and can be
    /// rolled back to before it is archived. Default 30m.
    #[serde(default)]
    pub standby: Option<HumanDuration>,
    /// A deployment whose instances are not all healthy within this
    /// fails (and nothing else changes). Default 5m.
    #[serde(default)]
    pub ready_timeout: Option<HumanDuration>,
    /// Preview deployments (any but the production branch in production)
    /// that get no request for this long are archived. Default 6h.
    #[serde(default)]
    pub preview_idle_archive: Option<HumanDuration>,
    /// The region name deployments report (`regions` in Unkey's model). Default `local`.
    #[serde(default)]
    pub region: Option<String>,
}

/// One entry of `projects:`.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProjectSpec {
    /// The id the API names it by (`projectId`).
    pub id: String,
    /// Lowercase letters, digits and `-`, at most 40: the first label of its domains.
    pub slug: String,
    /// Ready production deployments of this branch go live automatically.
    #[serde(default = "ProjectSpec::default_branch")]
    pub production_branch: String,
    /// Custom domains served by the production environment's live deployment.
    #[serde(default)]
    pub domains: Vec<String>,
    /// Per environment (`production`, `preview`, …), the policies applied to
    /// every deployment in it.
    #[serde(default)]
    pub environments: BTreeMap<String, EnvironmentSpec>,
    /// The apps deployments belong to; default one app, `default`. With
    /// several, generated domains start with `{app}-{slug}`.
    #[serde(default)]
    pub apps: Vec<AppSpec>,
}

/// One app of a project.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AppSpec {
    /// Lowercase letters, digits and `-`, at most 40.
    pub slug: String,
}

impl ProjectSpec {
    fn default_branch() -> String {
        "main".to_string()
    }
}

/// One environment of a project.
#[derive(Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentSpec {
    /// Applied, in order, to every deployment of the environment.
    #[serde(default)]
    pub policies: Vec<PolicySpec>,
}
