//! What the control plane keeps, as stored (JSON records of kinds
//! `deployment`, `live` and `project`) — the API's views are built from it.

use serde::{Deserialize, Serialize};

use crate::config::deployment::HealthCheckSpec;
use crate::runtime::DEFAULT_APP;

/// Where a deployment is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// No instances yet.
    Pending,
    /// Waiting for every instance to pass the health check (or accept a connection).
    Deploying,
    /// Healthy: its commit and branch domains route to it.
    Ready,
    /// Not healthy within `platform.ready_timeout`; nothing else changed.
    Failed,
    /// Was live; still routable and a rollback target until `platform.standby` ends.
    Standby,
    /// No longer routed (standby over, stopped, or idle); can be promoted or started again.
    Archived,
}

impl Status {
    /// keygate's name of the status (`keygate_deployments{status}`, the dashboard).
    pub fn name(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Deploying => "deploying",
            Status::Ready => "ready",
            Status::Failed => "failed",
            Status::Standby => "standby",
            Status::Archived => "archived",
        }
    }
}

/// The commit a deployment was built from (Unkey's `gitCommit`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GitCommit {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit_sha: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit_message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author_handle: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author_avatar_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<i64>,
}

/// Who asked for a deployment: the interface and the root key (by a
/// fingerprint, never the key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Trigger {
    /// `api` or `cli`.
    pub via: String,
    pub actor_id: String,
}

impl Default for Trigger {
    fn default() -> Self {
        Self {
            via: "api".into(),
            actor_id: "unknown".into(),
        }
    }
}

fn default_app() -> String {
    DEFAULT_APP.to_string()
}

/// One deployment: immutable but for its instances and status.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentRecord {
    pub id: String,
    pub project_id: String,
    #[serde(default = "default_app")]
    pub app: String,
    pub environment_slug: String,
    pub branch: String,
    #[serde(default)]
    pub git_commit: GitCommit,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker_image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyspace_id: Option<String>,
    /// `ip:port` of each instance.
    pub instances: Vec<String>,
    /// Checked before the deployment is ready and while it serves; none:
    /// an instance is ready once it accepts a connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheckSpec>,
    #[serde(default)]
    pub trigger: Trigger,
    pub status: Status,
    pub created_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deploying_since: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standby_since: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Promoted while archived: goes live once ready again.
    #[serde(default)]
    pub promote_when_ready: bool,
}

impl DeploymentRecord {
    /// Whether requests may reach it.
    pub fn routable(&self) -> bool {
        matches!(self.status, Status::Ready | Status::Standby)
    }
}

/// What is live in one environment of one app, and what was before
/// (newest last), for rollback.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LiveRecord {
    pub deployment_id: String,
    #[serde(default)]
    pub previous: Vec<String>,
    /// Set by a rollback: newly ready deployments of the production branch
    /// no longer go live on their own until the next explicit promote.
    #[serde(default)]
    pub rolled_back: bool,
}

/// The record id of what is live in `environment` of `app` of `project`.
pub fn live_id(project: &str, app: &str, environment: &str) -> String {
    format!("{project}/{app}/{environment}")
}

/// A project created through the API (those of the file are not stored).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProjectRecord {
    pub id: String,
    pub name: String,
    pub slug: String,
    pub production_branch: String,
    #[serde(default)]
    pub domains: Vec<String>,
    #[serde(default)]
    pub apps: Vec<String>,
    pub created_at: i64,
}
