//! What the control plane keeps per deployment, as stored (JSON records of
//! kind `deployment`) and as the API shows it.

use serde::{Deserialize, Serialize};

/// Where a deployment is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// No instances yet.
    Pending,
    /// Waiting for every instance to accept a connection.
    Deploying,
    /// Reachable: its commit and branch domains route to it.
    Ready,
    /// Not reachable within `platform.ready_timeout`; nothing else changed.
    Failed,
    /// Was live; still routable and a rollback target until `platform.standby` ends.
    Standby,
    /// No longer routed; can be promoted again.
    Archived,
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

/// One deployment: immutable but for its instances and status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentRecord {
    pub id: String,
    pub project_id: String,
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
    pub status: Status,
    pub created_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deploying_since: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standby_since: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Promoted while archived: goes live once ready again.
    #[serde(default)]
    pub promote_when_ready: bool,
}

/// What is live in one environment of one project, and what was before
/// (newest last), for rollback.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LiveRecord {
    pub deployment_id: String,
    #[serde(default)]
    pub previous: Vec<String>,
}

/// The record id of what is live in `environment` of `project`.
pub fn live_id(project: &str, environment: &str) -> String {
    format!("{project}/{environment}")
}
