//! `deployments.*`: Unkey's public deployments API, as `@unkey/api` and
//! `unkey-py` call it, over the same control plane. Unkey's rules apply:
//! promote and rollback in production, stop and start elsewhere — an
//! action the deployment's `availableActions` lacks is a 412.

use http::StatusCode;
use serde_json::json;

use super::render::{unkey as render, unkey_status};
use super::{deployment_id, empty, health_check, instances, refused};
use crate::admin::envelope::{invalid_input, Reply};
use crate::admin::fields::{Fields, Patch, Text};
use crate::admin::rpc::required;
use crate::errors::{ErrorCode, GatewayError};
use crate::platform::model::{GitCommit, Status, Trigger};
use crate::platform::{Action, Filter, NewDeployment, Platform};

/// The `deployments.*` operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Create,
    Get,
    List,
    Promote,
    Rollback,
    Stop,
    Start,
    /// keygate builds nothing: always an empty list.
    BuildLogs,
}

impl Op {
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "deployments.createDeployment" => Self::Create,
            "deployments.getDeployment" => Self::Get,
            "deployments.listDeployments" => Self::List,
            "deployments.promoteDeployment" => Self::Promote,
            "deployments.rollbackDeployment" => Self::Rollback,
            "deployments.stopDeployment" => Self::Stop,
            "deployments.startDeployment" => Self::Start,
            "deployments.listBuildLogs" => Self::BuildLogs,
            _ => return None,
        })
    }

    /// The action an operation performs, if it is one.
    fn action(self) -> Option<Action> {
        match self {
            Self::Promote => Some(Action::Promote),
            Self::Rollback => Some(Action::Rollback),
            Self::Stop => Some(Action::Stop),
            Self::Start => Some(Action::Start),
            Self::Create | Self::Get | Self::List | Self::BuildLogs => None,
        }
    }
}

pub fn handle(op: Op, mut f: Fields, caller: Trigger, platform: &Platform) -> Result<Reply, GatewayError> {
    if let Some(action) = op.action() {
        let id = deployment_id(&mut f);
        f.finish()?;
        let id = required(id, "deploymentId")?;
        let view = platform.describe(&id).map_err(refused)?;
        if !view.actions.contains(&action) {
            let available: Vec<&str> = view.actions.iter().map(|a| a.name()).collect();
            return Err(GatewayError::with_detail(
                ErrorCode::ActionNotAvailable,
                format!(
                    "Deployment {id} ({}, {} in {}) cannot {} now; available: [{}].",
                    unkey_status(view.record.status),
                    if view.live { "current" } else { "not current" },
                    view.record.environment_slug,
                    action.name(),
                    available.join(", ")
                ),
            ));
        }
        match action {
            Action::Promote => platform.promote(&id),
            Action::Rollback => platform.rollback_to(&id),
            Action::Stop => platform.stop(&id),
            Action::Start => platform.start(&id),
        }
        .map_err(refused)?;
        return Ok(empty(StatusCode::ACCEPTED));
    }
    match op {
        Op::Create => {
            let new = new_deployment(&mut f, caller, platform);
            f.finish()?;
            let id = platform.create(new?).map_err(refused)?;
            Ok(Reply::data(json!({"deploymentId": id})).with_status(StatusCode::CREATED))
        }
        Op::Get => {
            let id = deployment_id(&mut f);
            f.finish()?;
            Ok(Reply::data(render(
                &platform.describe(&required(id, "deploymentId")?).map_err(refused)?,
            )))
        }
        Op::BuildLogs => {
            let id = deployment_id(&mut f);
            f.text("stepId", Text::len(1, 255), false);
            f.text("cursor", Text::len(1, 255), false);
            f.int("limit", 1, 1000, false);
            f.finish()?;
            platform.describe(&required(id, "deploymentId")?).map_err(refused)?;
            Ok(Reply::page(Vec::new(), None))
        }
        _ => {
            let filter = Filter {
                project: f.text("project", Text::len(1, 255), false),
                app: f.text("app", Text::len(1, 255), false),
                environment: f.text("environment", Text::len(1, 40), false),
                statuses: statuses(&mut f),
                branches: match f.text_list("branch", 100, Text::len(1, 255)) {
                    Patch::Set(branches) => Some(branches),
                    Patch::Keep | Patch::Clear => None,
                },
                created_from: f.int("startTime", 0, i64::MAX, false),
                created_until: f.int("endTime", 0, i64::MAX, false),
            };
            let limit = f.int("limit", 1, 100, false).unwrap_or(100) as usize;
            let cursor = f.text("cursor", Text::len(1, 255), false);
            f.finish()?;
            let (page, next) = platform.list(&filter, limit, cursor.as_deref()).map_err(refused)?;
            Ok(Reply::page(page.iter().map(render).collect(), next))
        }
    }
}

/// `status: [...]` in Unkey's names; those keygate never uses match nothing.
fn statuses(f: &mut Fields) -> Option<Vec<Status>> {
    const UNKEY: [&str; 13] = [
        "pending",
        "starting",
        "building",
        "deploying",
        "network",
        "finalizing",
        "ready",
        "failed",
        "skipped",
        "awaiting_approval",
        "stopped",
        "superseded",
        "cancelled",
    ];
    let Patch::Set(names) = f.text_list("status", UNKEY.len(), Text::len(1, 32)) else {
        return None;
    };
    let mut statuses = Vec::new();
    for name in names {
        match name.as_str() {
            "pending" => statuses.push(Status::Pending),
            "deploying" => statuses.push(Status::Deploying),
            "ready" => statuses.push(Status::Ready),
            "failed" => statuses.push(Status::Failed),
            "superseded" => statuses.push(Status::Standby),
            "stopped" => statuses.push(Status::Archived),
            other if UNKEY.contains(&other) => {}
            other => f.reject("status", &format!("{other:?} is not one of {}", UNKEY.join(", "))),
        }
    }
    Some(statuses)
}

/// `{project, app, environment}` and one source: `image: {dockerImage}`
/// (`oci: {image}` in the v3 form), `git: {branch?, commitSha?,
/// repository?}`, or `deployment: {deploymentId}` (that deployment's
/// settings again); keygate's `instances` and `healthCheck` too.
fn new_deployment(f: &mut Fields, trigger: Trigger, platform: &Platform) -> Result<NewDeployment, GatewayError> {
    let project = f.text("project", Text::len(1, 255), true);
    let app = f.text("app", Text::len(1, 255), true);
    let environment = f.text("environment", Text::len(1, 40), true);
    let image = match f.nested("image") {
        Patch::Set(mut image) => {
            let docker = image.text("dockerImage", Text::len(1, 1024), true);
            f.absorb(image);
            docker
        }
        Patch::Keep | Patch::Clear => match f.nested("oci") {
            Patch::Set(mut oci) => {
                let image = oci.text("image", Text::len(1, 1024), true);
                f.absorb(oci);
                image
            }
            Patch::Keep | Patch::Clear => None,
        },
    };
    let git = match f.nested("git") {
        Patch::Set(mut git) => {
            let branch = git.text("branch", Text::len(1, 255), false);
            let sha = git.text("commitSha", Text::len(1, 64), false);
            git.text("repository", Text::len(1, 1024), false);
            f.absorb(git);
            Some((branch, sha))
        }
        Patch::Keep | Patch::Clear => None,
    };
    let copied = match f.nested("deployment") {
        Patch::Set(mut source) => {
            let id = source.text("deploymentId", Text::id(1), true);
            f.absorb(source);
            id
        }
        Patch::Keep | Patch::Clear => None,
    };
    let instances = instances(f);
    let health_check = health_check(f);
    let mut new = match &copied {
        Some(id) => {
            let source = platform.record(id).map_err(refused)?;
            NewDeployment {
                branch: source.branch,
                git_commit: source.git_commit,
                docker_image: source.docker_image,
                keyspace_id: source.keyspace_id,
                instances: source.instances,
                health_check: source.health_check,
                ..NewDeployment::default()
            }
        }
        None if image.is_none() && git.is_none() => {
            return Err(invalid_input(
                "one source is required: body.image (or body.oci), body.git or body.deployment",
            ))
        }
        None => NewDeployment {
            branch: "main".into(),
            ..NewDeployment::default()
        },
    };
    if let Some(image) = image {
        new.docker_image = Some(image);
    }
    if let Some((branch, sha)) = git {
        if let Some(branch) = branch {
            new.branch = branch;
        }
        if sha.is_some() {
            new.git_commit = GitCommit {
                commit_sha: sha,
                ..GitCommit::default()
            };
        }
    }
    if !instances.is_empty() {
        new.instances = instances;
    }
    if health_check.is_some() {
        new.health_check = health_check;
    }
    new.project = required(project, "project")?;
    new.app = Some(required(app, "app")?);
    new.environment_slug = required(environment, "environment")?;
    new.trigger = trigger;
    Ok(new)
}
