//! `deploy.*`: keygate's Deployments API under Unkey's internal wire names
//! (`deploy.createDeployment`, `deploy.getDeployment`), plus keygate's own
//! list, instances, promote, rollback and delete.

use http::StatusCode;
use serde_json::json;

use super::render::internal as render;
use super::{deployment_id, empty, health_check, instances, refused};
use crate::admin::envelope::{invalid_input, Reply};
use crate::admin::fields::{Fields, Patch, Text};
use crate::admin::rpc::required;
use crate::errors::GatewayError;
use crate::platform::model::{GitCommit, Trigger};
use crate::platform::{Filter, NewDeployment, Platform};

/// The `deploy.*` operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Create,
    Get,
    List,
    AddInstances,
    Promote,
    Rollback,
    Delete,
}

impl Op {
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

pub fn handle(op: Op, mut f: Fields, caller: Trigger, platform: &Platform) -> Result<Reply, GatewayError> {
    let reply = match op {
        Op::Create => {
            let new = new_deployment(&mut f, caller);
            f.finish()?;
            let id = platform.create(new?).map_err(refused)?;
            Reply::data(json!({"deploymentId": id})).with_status(StatusCode::CREATED)
        }
        Op::Get => {
            let id = deployment_id(&mut f);
            f.finish()?;
            Reply::data(render(
                &platform.describe(&required(id, "deploymentId")?).map_err(refused)?,
            ))
        }
        Op::List => {
            let project = f
                .text("projectId", Text::len(1, 255), false)
                .or_else(|| f.text("project", Text::len(1, 255), false));
            let filter = Filter {
                project: Some(required(project, "projectId")?),
                app: f.text("app", Text::len(1, 40), false),
                environment: f.text("environmentSlug", Text::len(1, 40), false),
                ..Filter::default()
            };
            let limit = f.int("limit", 1, 100, false).unwrap_or(100) as usize;
            let cursor = f.text("cursor", Text::len(1, 255), false);
            f.finish()?;
            let (page, next) = platform.list(&filter, limit, cursor.as_deref()).map_err(refused)?;
            Reply::page(page.iter().map(render).collect(), next)
        }
        Op::AddInstances => {
            let id = deployment_id(&mut f);
            let instances = instances(&mut f);
            f.finish()?;
            platform
                .add_instances(&required(id, "deploymentId")?, instances)
                .map_err(refused)?;
            Reply::data(json!({}))
        }
        Op::Promote => {
            let id = deployment_id(&mut f);
            f.finish()?;
            platform.promote(&required(id, "deploymentId")?).map_err(refused)?;
            empty(StatusCode::OK)
        }
        Op::Rollback => {
            let project = f.text("projectId", Text::len(1, 255), true);
            let app = f.text("app", Text::len(1, 40), false);
            let environment = f.text("environmentSlug", Text::len(1, 40), true);
            f.finish()?;
            let live = platform
                .rollback(
                    &required(project, "projectId")?,
                    app.as_deref(),
                    &required(environment, "environmentSlug")?,
                )
                .map_err(refused)?;
            Reply::data(json!({"deploymentId": live}))
        }
        Op::Delete => {
            let id = deployment_id(&mut f);
            f.finish()?;
            platform.delete(&required(id, "deploymentId")?).map_err(refused)?;
            empty(StatusCode::OK)
        }
    };
    Ok(reply)
}

/// Unkey's createDeployment body (`projectId`, or `project` + `app` as its
/// SDKs send it) and keygate's `instances` and `healthCheck`.
fn new_deployment(f: &mut Fields, trigger: Trigger) -> Result<NewDeployment, GatewayError> {
    let project = f
        .text("projectId", Text::len(1, 255), false)
        .or_else(|| f.text("project", Text::len(1, 255), false));
    let app = f.text("app", Text::len(1, 255), false);
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
    let health_check = health_check(f);
    let project = project.ok_or_else(|| invalid_input("body.projectId (or body.project) is required"))?;
    Ok(NewDeployment {
        project,
        app,
        environment_slug: required(environment, "environmentSlug")?,
        branch: branch.unwrap_or_else(|| "main".into()),
        git_commit,
        docker_image,
        keyspace_id,
        instances,
        health_check,
        trigger,
    })
}
