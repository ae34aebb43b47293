//! `deploy.*`: the Deployments API (Unkey's wire names and bodies, plus
//! keygate's `instances`). Each call runs on a blocking thread: it writes
//! the store.

use std::sync::Arc;

use serde_json::{json, Value};

use super::envelope::{invalid_input, Reply};
use super::fields::{Fields, Patch, Text};
use super::rpc::{internal, required};
use crate::errors::{ErrorCode, GatewayError};
use crate::platform::model::GitCommit;
use crate::platform::{NewDeployment, Platform, PlatformError};

/// The `deploy.*` operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeployOp {
    Create,
    Get,
    List,
    AddInstances,
    Promote,
    Rollback,
    Delete,
}

impl DeployOp {
    /// The operation called `name` (after `/v2/`).
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "deploy.createDeployment" => Self::Create,
            "deploy.getDeployment" => Self::Get,
            "deploy.listDeployments" => Self::List,
            "deploy.addInstances" => Self::AddInstances,
            "deploy.promote" => Self::Promote,
            "deploy.rollback" => Self::Rollback,
            "deploy.deleteDeployment" => Self::Delete,
            _ => return None,
        })
    }
}

/// Runs `op` with `body` against `platform`.
pub async fn run(op: DeployOp, body: Vec<u8>, platform: Arc<Platform>) -> Result<Reply, GatewayError> {
    tokio::task::spawn_blocking(move || handle(op, &body, &platform))
        .await
        .map_err(|e| internal(crate::keys::store::StoreError::Task(e.to_string())))?
}

fn handle(op: DeployOp, body: &[u8], platform: &Platform) -> Result<Reply, GatewayError> {
    let mut f = Fields::parse(body)?;
    match op {
        DeployOp::Create => {
            let new = new_deployment(&mut f);
            f.finish()?;
            let id = platform.create(new?).map_err(refused)?;
            Ok(Reply::data(json!({"deploymentId": id})))
        }
        DeployOp::Get => {
            let id = deployment_id(&mut f);
            f.finish()?;
            Ok(Reply::data(
                platform.get(&required(id, "deploymentId")?).map_err(refused)?,
            ))
        }
        DeployOp::List => {
            let project = f.text("projectId", Text::len(1, 255), true);
            let environment = f.text("environmentSlug", Text::len(1, 40), false);
            let limit = f.int("limit", 1, 100, false).unwrap_or(100) as usize;
            let cursor = f.text("cursor", Text::len(1, 255), false);
            f.finish()?;
            let (page, next) = platform
                .list(
                    &required(project, "projectId")?,
                    environment.as_deref(),
                    limit,
                    cursor.as_deref(),
                )
                .map_err(refused)?;
            let mut pagination = json!({"hasMore": next.is_some()});
            if let Some(cursor) = next {
                pagination["cursor"] = json!(cursor);
            }
            Ok(Reply {
                data: Value::Array(page),
                pagination: Some(pagination),
            })
        }
        DeployOp::AddInstances => {
            let id = deployment_id(&mut f);
            let instances = instances(&mut f);
            f.finish()?;
            platform
                .add_instances(&required(id, "deploymentId")?, instances)
                .map_err(refused)?;
            Ok(Reply::data(json!({})))
        }
        DeployOp::Promote => {
            let id = deployment_id(&mut f);
            f.finish()?;
            platform.promote(&required(id, "deploymentId")?).map_err(refused)?;
            Ok(Reply::data(json!({})))
        }
        DeployOp::Rollback => {
            let project = f.text("projectId", Text::len(1, 255), true);
            let environment = f.text("environmentSlug", Text::len(1, 40), true);
            f.finish()?;
            let live = platform
                .rollback(
                    &required(project, "projectId")?,
                    &required(environment, "environmentSlug")?,
                )
                .map_err(refused)?;
            Ok(Reply::data(json!({"deploymentId": live})))
        }
        DeployOp::Delete => {
            let id = deployment_id(&mut f);
            f.finish()?;
            platform.delete(&required(id, "deploymentId")?).map_err(refused)?;
            Ok(Reply::data(json!({})))
        }
    }
}

fn deployment_id(f: &mut Fields) -> Option<String> {
    f.text("deploymentId", Text::id(1), true)
}

fn instances(f: &mut Fields) -> Vec<String> {
    match f.text_list("instances", 100, Text::len(3, 64)) {
        Patch::Set(list) => list,
        Patch::Keep | Patch::Clear => Vec::new(),
    }
}

/// Unkey's createDeployment body (with `project` accepted for `projectId`)
/// and keygate's `instances`.
fn new_deployment(f: &mut Fields) -> Result<NewDeployment, GatewayError> {
    let project = f
        .text("projectId", Text::len(1, 255), false)
        .or_else(|| f.text("project", Text::len(1, 255), false));
    let environment = f.text("environmentSlug", Text::len(1, 40), true);
    let branch = f.text("branch", Text::len(1, 255), false);
    let docker_image = f.text("dockerImage", Text::len(1, 1024), false);
    let keyspace_id = f.text("keyspaceId", Text::len(1, 255), false);
    let git_commit = match f.nested("gitCommit") {
        Patch::Set(mut commit) => {
            let parsed = GitCommit {
                commit_sha: commit.text("commitSha", Text::len(1, 64), false),
                commit_message: commit.text("commitMessage", Text::len(0, 10_000), false),
                author_handle: commit.text("authorHandle", Text::len(0, 255), false),
                author_avatar_url: commit.text("authorAvatarUrl", Text::len(0, 2048), false),
                timestamp: commit.int("timestamp", 0, i64::MAX, false),
            };
            f.absorb(commit);
            parsed
        }
        Patch::Keep | Patch::Clear => GitCommit::default(),
    };
    let instances = instances(f);
    let project = project.ok_or_else(|| invalid_input("projectId is required"))?;
    Ok(NewDeployment {
        project_id: project,
        environment_slug: required(environment, "environmentSlug")?,
        branch: branch.unwrap_or_else(|| "main".into()),
        git_commit,
        docker_image,
        keyspace_id,
        instances,
    })
}

/// A refusal as the admin API answers it.
fn refused(error: PlatformError) -> GatewayError {
    match error {
        PlatformError::ProjectNotFound(id) => GatewayError::with_detail(
            ErrorCode::ProjectNotFound,
            format!("Project {id:?} is not in `projects:`."),
        ),
        PlatformError::DeploymentNotFound(id) => GatewayError::with_detail(
            ErrorCode::AdminDeploymentNotFound,
            format!("Deployment {id:?} does not exist."),
        ),
        PlatformError::Invalid(message) => invalid_input(message),
        PlatformError::Conflict(message) => GatewayError::with_detail(ErrorCode::DataConflict, message),
        PlatformError::Store(e) => internal(e),
    }
}
