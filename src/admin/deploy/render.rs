//! The JSON shapes of deployments and projects: keygate's (`deploy.*`,
//! which also carries the fields of Unkey's internal model), Unkey's
//! public `Deployment` and `Project` models (which its SDKs validate field
//! by field), and the dashboard's overview.

use serde_json::{json, Value};

use crate::platform::model::Status;
use crate::platform::View;
use crate::runtime::Project;

/// `deploy.getDeployment`: keygate's fields plus Unkey's internal ones
/// (`hostnames`, `errorMessage`, `steps`); `status` upper-case as there.
pub fn internal(view: &View) -> Value {
    let record = &view.record;
    let instances: Vec<Value> = view
        .instances
        .iter()
        .map(|i| json!({"address": i.address, "healthy": i.healthy}))
        .collect();
    let mut steps = vec![step("PENDING", "deployment created", record.created_at)];
    if let Some(at) = record.deploying_since {
        steps.push(step(
            "DEPLOYING",
            "waiting for the instances to pass the health check",
            at,
        ));
    }
    if let Some(at) = record.ready_at {
        steps.push(step("READY", "instances healthy, domains assigned", at));
    }
    if let Some(at) = record.failed_at {
        let mut failed = step("FAILED", "instances not healthy in time", at);
        failed["errorMessage"] = json!(record.error);
        steps.push(failed);
    }
    if let Some(at) = record.standby_since {
        steps.push(step("STANDBY", "replaced as the live deployment", at));
    }
    steps.sort_by_key(|s| s["createdAt"].as_i64());
    let mut out = json!({
        "id": record.id,
        "projectId": record.project_id,
        "app": record.app,
        "environmentSlug": record.environment_slug,
        "branch": record.branch,
        "gitCommit": record.git_commit,
        "dockerImage": record.docker_image,
        "status": record.status.name().to_ascii_uppercase(),
        "live": view.live,
        "domains": view.domains,
        "hostnames": view.domains,
        "instances": instances,
        "healthCheck": record.health_check.as_ref().map(|check| json!({
            "path": check.path,
            "method": check.method,
            "interval": check.interval,
            "timeout": check.timeout,
            "failureThreshold": check.failure_threshold,
            "initialDelay": check.initial_delay,
        })),
        "createdAt": record.created_at,
        "updatedAt": record.updated_at,
        "readyAt": record.ready_at,
        "error": record.error,
        "errorMessage": record.error,
        "steps": steps,
    });
    // Absent, not null: Unkey's SDKs reject a null where they expect a string.
    if let Value::Object(fields) = &mut out {
        fields.retain(|_, value| !value.is_null());
    }
    out
}

fn step(status: &str, message: &str, at: i64) -> Value {
    json!({"status": status, "message": message, "createdAt": at})
}

/// Unkey's `status` for keygate's.
pub fn unkey_status(status: Status) -> &'static str {
    match status {
        Status::Pending => "pending",
        Status::Deploying => "deploying",
        Status::Ready => "ready",
        Status::Failed => "failed",
        Status::Standby => "superseded",
        Status::Archived => "stopped",
    }
}

/// Unkey's public `Deployment` model.
pub fn unkey(view: &View) -> Value {
    let record = &view.record;
    let port = record
        .instances
        .first()
        .and_then(|i| i.parse::<std::net::SocketAddr>().ok())
        .map_or(0, |a| a.port());
    let mut runtime = json!({
        "vCpus": 0,
        "memoryMib": 0,
        "storageMib": 0,
        "port": port,
        "command": [],
        "shutdownSignal": "SIGTERM",
        "upstreamProtocol": "http1",
    });
    if let Some(check) = &record.health_check {
        let method = if check.method.eq_ignore_ascii_case("POST") {
            "POST"
        } else {
            "GET"
        };
        runtime["healthcheck"] = json!({
            "method": method,
            "path": check.path,
            "intervalSeconds": check.interval.0.as_secs(),
            "timeoutSeconds": check.timeout.0.as_secs(),
            "failureThreshold": check.failure_threshold,
            "initialDelaySeconds": check.initial_delay.0.as_secs(),
        });
    }
    let mut out = json!({
        "id": record.id,
        "status": unkey_status(record.status),
        "isCurrent": view.live,
        "environment": record.environment_slug,
        "app": record.app,
        "project": record.project_id,
        "trigger": {"via": record.trigger.via, "actor": {"type": "root_key", "id": record.trigger.actor_id}},
        "availableActions": view.actions.iter().map(|a| a.name()).collect::<Vec<_>>(),
        "regions": [view.region],
        "domains": view.domains,
        "runtime": runtime,
        "createdAt": record.created_at,
    });
    if let Some(sha) = &record.git_commit.commit_sha {
        let mut git = json!({"commitSha": sha, "branch": record.branch});
        if let Some(message) = &record.git_commit.commit_message {
            git["commitMessage"] = json!(message);
        }
        if let Some(at) = record.git_commit.timestamp {
            git["commitTimestamp"] = json!(at);
        }
        if let Some(handle) = &record.git_commit.author_handle {
            git["author"] = json!({"handle": handle});
            if let Some(avatar) = &record.git_commit.author_avatar_url {
                git["author"]["avatarUrl"] = json!(avatar);
            }
        }
        out["git"] = git;
    }
    if let Some(image) = &record.docker_image {
        out["docker"] = json!({"image": image});
    }
    if let (Status::Failed, Some(message)) = (record.status, &record.error) {
        // Unkey's closed list has no health-check code; `unknown` is the closest.
        out["error"] = json!({"code": "unknown", "step": "deploying", "message": message});
    }
    if let Some(at) = record.updated_at {
        out["updatedAt"] = json!(at);
    }
    if let Some(at) = record.ready_at.or(record.failed_at) {
        out["finishedAt"] = json!(at);
    }
    out
}

/// Unkey's `Project` model, with keygate's own fields.
pub fn project(project: &Project) -> Value {
    json!({
        "id": project.id,
        "name": project.name,
        "slug": project.slug,
        "createdAt": project.created_at.unwrap_or(0),
        "deleteProtection": project.created_at.is_none(),
        "productionBranch": project.production_branch,
        "domains": project.domains,
        "apps": project.apps,
        "environments": project.environments.keys().collect::<Vec<_>>(),
        "source": if project.created_at.is_some() { "api" } else { "file" },
    })
}

/// Every project with its deployments, for the dashboard (keygate's
/// lower-case status names).
pub fn dashboard_overview(overview: Vec<(Project, Vec<View>)>) -> Value {
    let projects: Vec<Value> = overview
        .into_iter()
        .map(|(project, views)| {
            let deployments: Vec<Value> = views
                .iter()
                .map(|view| {
                    let mut shown = internal(view);
                    shown["status"] = json!(view.record.status.name());
                    shown
                })
                .collect();
            json!({
                "id": project.id,
                "slug": project.slug,
                "productionBranch": project.production_branch,
                "deployments": deployments,
            })
        })
        .collect();
    json!({"projects": projects})
}
