//! The control plane's endpoints: keygate's Deployments API (`deploy.*`,
//! Unkey's internal wire names plus keygate's `instances` and
//! `healthCheck`), Unkey's public `deployments.*` API, and `projects.*`.
//! Each call runs on a blocking thread: it writes the store.

mod internal;
mod projects;
mod public;
mod render;

use std::sync::Arc;

use http::StatusCode;

pub use render::dashboard_overview;

use super::envelope::{invalid_input, Reply};
use super::fields::{Fields, Patch, Text};
use super::rpc::internal as store_failure;
use crate::config::deployment::HealthCheckSpec;
use crate::errors::{ErrorCode, GatewayError};
use crate::platform::model::Trigger;
use crate::platform::{Platform, PlatformError};

/// The control plane's operations, by wire name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlatformOp {
    Deploy(internal::Op),
    Deployments(public::Op),
    Projects(projects::Op),
}

impl PlatformOp {
    /// The operation called `name` (after `/v2/`).
    pub fn from_name(name: &str) -> Option<Self> {
        internal::Op::from_name(name)
            .map(Self::Deploy)
            .or_else(|| public::Op::from_name(name).map(Self::Deployments))
            .or_else(|| projects::Op::from_name(name).map(Self::Projects))
    }
}

/// Who calls: the interface (keygate's CLI or anything else) and a
/// fingerprint of the root key.
pub fn caller(headers: &http::HeaderMap) -> Trigger {
    let via = headers
        .get(http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .filter(|agent| agent.starts_with("keygate/"))
        .map_or("api", |_| "cli");
    let token = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .map(|(_, key)| key.trim())
        .unwrap_or_default();
    let hash = crate::keys::model::hash_key(token);
    let fingerprint: String = hash[..6].iter().map(|b| format!("{b:02x}")).collect();
    Trigger {
        via: via.into(),
        actor_id: format!("root_{fingerprint}"),
    }
}

/// Runs `op` with `body` against `platform`.
pub async fn run(
    op: PlatformOp,
    body: Vec<u8>,
    caller: Trigger,
    platform: Arc<Platform>,
) -> Result<Reply, GatewayError> {
    tokio::task::spawn_blocking(move || {
        let f = Fields::parse(&body)?;
        match op {
            PlatformOp::Deploy(op) => internal::handle(op, f, caller, &platform),
            PlatformOp::Deployments(op) => public::handle(op, f, caller, &platform),
            PlatformOp::Projects(op) => projects::handle(op, f, &platform),
        }
    })
    .await
    .map_err(|e| store_failure(crate::keys::store::StoreError::Task(e.to_string())))?
}

/// `{}` with `status` (Unkey answers its asynchronous actions 202).
fn empty(status: StatusCode) -> Reply {
    Reply::data(serde_json::json!({})).with_status(status)
}

fn deployment_id(f: &mut Fields) -> Option<String> {
    f.text("deploymentId", Text::id(1), true)
}

/// keygate's `instances`: `ip:port` each.
fn instances(f: &mut Fields) -> Vec<String> {
    match f.text_list("instances", 100, Text::len(3, 64)) {
        Patch::Set(list) => list,
        Patch::Keep | Patch::Clear => Vec::new(),
    }
}

/// keygate's `healthCheck`: the `upstream.health_check` shape in camelCase
/// (`{path, method, interval: "10s", timeout, failureThreshold, initialDelay}`).
fn health_check(f: &mut Fields) -> Option<HealthCheckSpec> {
    let Patch::Set(mut check) = f.nested("healthCheck") else {
        return None;
    };
    let mut spec = serde_json::Map::new();
    for (wire, field, max) in [("path", "path", 1024), ("method", "method", 16)] {
        if let Some(text) = check.text(wire, Text::len(1, max), false) {
            spec.insert(field.into(), text.into());
        }
    }
    for (wire, field) in [
        ("interval", "interval"),
        ("timeout", "timeout"),
        ("initialDelay", "initial_delay"),
    ] {
        if let Some(text) = check.text(wire, Text::len(1, 32), false) {
            match humantime::parse_duration(&text) {
                Ok(_) => {
                    spec.insert(field.into(), text.into());
                }
                Err(e) => check.reject(wire, &format!("{text:?} is not a duration ({e}); use e.g. 500ms, 10s")),
            }
        }
    }
    if let Some(threshold) = check.int("failureThreshold", 1, 100, false) {
        spec.insert("failure_threshold".into(), threshold.into());
    }
    f.absorb(check);
    serde_json::from_value::<HealthCheckSpec>(serde_json::Value::Object(spec)).ok()
}

/// A refusal as the admin API answers it.
fn refused(error: PlatformError) -> GatewayError {
    match error {
        PlatformError::ProjectNotFound(id) => {
            GatewayError::with_detail(ErrorCode::ProjectNotFound, format!("Project {id:?} does not exist."))
        }
        PlatformError::AppNotFound { project, app } => GatewayError::with_detail(
            ErrorCode::ProjectNotFound,
            format!("Project {project:?} has no app {app:?}."),
        ),
        PlatformError::DeploymentNotFound(id) => GatewayError::with_detail(
            ErrorCode::AdminDeploymentNotFound,
            format!("Deployment {id:?} does not exist."),
        ),
        PlatformError::Invalid(message) => invalid_input(message),
        PlatformError::Conflict(message) => GatewayError::with_detail(ErrorCode::DataConflict, message),
        PlatformError::Store(e) => store_failure(e),
    }
}
