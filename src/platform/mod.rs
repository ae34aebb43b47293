//! The control plane: deployments created through the admin API
//! (`deploy.*`) move `pending → deploying → ready | failed`, get their
//! domains, and go live — automatically for the production branch, or by
//! `promote` — while the previous live one waits on `standby` for a
//! rollback. Records persist in the key store (so they survive restarts
//! and, with `state.database`, are shared by every replica); the routes
//! they imply are published to the [`Hub`] as the `api` provider, so a
//! switch is one snapshot swap.
//!
//! [`Platform`] holds the state and the operations; `lifecycle` is the
//! background task that probes instances and applies timeouts; `routing`
//! turns the state into routes.

mod domains;
mod lifecycle;
pub mod model;
mod routing;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use serde_json::{json, Value};
use tokio::sync::Notify;

use crate::clock::now_ms;
use crate::keys::model::new_id;
use crate::keys::store::StoreError;
use crate::runtime::{Hub, Project};
pub use lifecycle::run;
use model::{live_id, DeploymentRecord, GitCommit, LiveRecord, Status};

/// Record kinds in the store.
const DEPLOYMENT: &str = "deployment";
const LIVE: &str = "live";

/// Why an operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    #[error("project {0:?} is not in the configuration's projects")]
    ProjectNotFound(String),
    #[error("deployment {0:?} does not exist")]
    DeploymentNotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What `deploy.createDeployment` asks for.
#[derive(Debug, Clone)]
pub struct NewDeployment {
    pub project_id: String,
    pub environment_slug: String,
    pub branch: String,
    pub git_commit: GitCommit,
    pub docker_image: Option<String>,
    pub keyspace_id: Option<String>,
    pub instances: Vec<String>,
}

#[derive(Debug, Default)]
struct State {
    deployments: BTreeMap<String, DeploymentRecord>,
    /// By [`live_id`].
    live: BTreeMap<String, LiveRecord>,
}

/// The control plane's state and operations.
pub struct Platform {
    hub: Arc<Hub>,
    state: Mutex<State>,
    /// Wakes the lifecycle task after a change.
    changed: Notify,
}

impl Platform {
    /// Loads the stored deployments.
    pub fn open(hub: Arc<Hub>) -> Result<Arc<Self>, StoreError> {
        let platform = Arc::new(Self {
            hub,
            state: Mutex::new(State::default()),
            changed: Notify::new(),
        });
        platform.reload()?;
        Ok(platform)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reads every record again (another replica changed them).
    fn reload(&self) -> Result<(), StoreError> {
        let keys = self.hub.current().keys.service.clone();
        let records = keys.records();
        let mut state = State::default();
        for (id, text) in records.records(DEPLOYMENT)? {
            match serde_json::from_str(&text) {
                Ok(record) => {
                    state.deployments.insert(id, record);
                }
                Err(e) => tracing::error!(deployment = id, "unreadable deployment record skipped: {e}"),
            }
        }
        for (id, text) in records.records(LIVE)? {
            match serde_json::from_str(&text) {
                Ok(record) => {
                    state.live.insert(id, record);
                }
                Err(e) => tracing::error!(environment = id, "unreadable live record skipped: {e}"),
            }
        }
        *self.lock() = state;
        Ok(())
    }

    /// Writes `deployments` and `live` records, then tells the other replicas.
    fn save(&self, deployments: &[&DeploymentRecord], live: &[(&str, &LiveRecord)]) -> Result<(), StoreError> {
        let keys = self.hub.current().keys.service.clone();
        let now = now_ms();
        for record in deployments {
            let text = serde_json::to_string(record).map_err(|e| StoreError::Task(e.to_string()))?;
            keys.records().put_record(DEPLOYMENT, &record.id, &text, now)?;
        }
        for (id, record) in live {
            let text = serde_json::to_string(record).map_err(|e| StoreError::Task(e.to_string()))?;
            keys.records().put_record(LIVE, id, &text, now)?;
        }
        keys.records_written();
        self.changed.notify_one();
        Ok(())
    }

    fn project(&self, id: &str) -> Result<Project, PlatformError> {
        self.hub
            .current()
            .platform
            .project(id)
            .cloned()
            .ok_or_else(|| PlatformError::ProjectNotFound(id.to_string()))
    }

    /// Creates a deployment; it starts deploying once it has instances.
    pub fn create(&self, new: NewDeployment) -> Result<String, PlatformError> {
        let project = self.project(&new.project_id)?;
        if !project.environments.is_empty() && !project.environments.contains_key(&new.environment_slug) {
            let known: Vec<&str> = project.environments.keys().map(String::as_str).collect();
            return Err(PlatformError::Invalid(format!(
                "environmentSlug {:?} is not an environment of {} ({})",
                new.environment_slug,
                project.id,
                known.join(", ")
            )));
        }
        check_instances(&new.instances)?;
        let now = now_ms();
        let record = DeploymentRecord {
            id: new_id("d"),
            project_id: new.project_id,
            environment_slug: new.environment_slug,
            branch: new.branch,
            git_commit: new.git_commit,
            docker_image: new.docker_image,
            keyspace_id: new.keyspace_id,
            status: if new.instances.is_empty() {
                Status::Pending
            } else {
                Status::Deploying
            },
            deploying_since: (!new.instances.is_empty()).then_some(now),
            instances: new.instances,
            created_at: now,
            ready_at: None,
            standby_since: None,
            error: None,
            promote_when_ready: false,
        };
        self.save(&[&record], &[])?;
        let id = record.id.clone();
        self.lock().deployments.insert(id.clone(), record);
        Ok(id)
    }

    /// Adds instances; a pending deployment starts deploying.
    pub fn add_instances(&self, id: &str, instances: Vec<String>) -> Result<(), PlatformError> {
        check_instances(&instances)?;
        if instances.is_empty() {
            return Err(PlatformError::Invalid("instances: at least one ip:port".into()));
        }
        let mut state = self.lock();
        let record = state
            .deployments
            .get_mut(id)
            .ok_or_else(|| PlatformError::DeploymentNotFound(id.to_string()))?;
        let mut next = record.clone();
        for instance in instances {
            if !next.instances.contains(&instance) {
                next.instances.push(instance);
            }
        }
        if next.status == Status::Pending {
            next.status = Status::Deploying;
            next.deploying_since = Some(now_ms());
        }
        self.save(&[&next], &[])?;
        *record = next;
        Ok(())
    }

    /// Makes `id` its environment's live deployment (a ready, standby or
    /// archived one; an archived one is probed again first).
    pub fn promote(&self, id: &str) -> Result<(), PlatformError> {
        let mut state = self.lock();
        let record = state
            .deployments
            .get(id)
            .ok_or_else(|| PlatformError::DeploymentNotFound(id.to_string()))?;
        match record.status {
            Status::Ready | Status::Standby => self.make_live(&mut state, id),
            Status::Archived => {
                let mut next = record.clone();
                next.status = Status::Deploying;
                next.deploying_since = Some(now_ms());
                next.error = None;
                // Once ready again, the lifecycle makes it live.
                next.promote_when_ready = true;
                self.save(&[&next], &[])?;
                state.deployments.insert(id.to_string(), next);
                Ok(())
            }
            status => Err(PlatformError::Conflict(format!(
                "deployment {id} is {} and cannot be promoted",
                serde_json::to_value(status).unwrap_or(Value::Null)
            ))),
        }
    }

    /// Makes the environment's previous live deployment live again.
    pub fn rollback(&self, project_id: &str, environment: &str) -> Result<String, PlatformError> {
        self.project(project_id)?;
        let mut state = self.lock();
        let key = live_id(project_id, environment);
        let live = state.live.get(&key).cloned().unwrap_or_default();
        let target = live
            .previous
            .iter()
            .rev()
            .find(|id| {
                state
                    .deployments
                    .get(*id)
                    .is_some_and(|d| matches!(d.status, Status::Standby | Status::Ready))
            })
            .cloned()
            .ok_or_else(|| {
                PlatformError::Conflict(format!(
                    "{environment} of {project_id} has no previous deployment on standby to roll back to"
                ))
            })?;
        self.make_live(&mut state, &target)?;
        Ok(target)
    }

    /// Removes a deployment that is not live.
    pub fn delete(&self, id: &str) -> Result<(), PlatformError> {
        let mut state = self.lock();
        let record = state
            .deployments
            .get(id)
            .ok_or_else(|| PlatformError::DeploymentNotFound(id.to_string()))?;
        let key = live_id(&record.project_id, &record.environment_slug);
        if state.live.get(&key).is_some_and(|l| l.deployment_id == id) {
            return Err(PlatformError::Conflict(format!(
                "deployment {id} is live; promote another one first"
            )));
        }
        let keys = self.hub.current().keys.service.clone();
        keys.records().delete_record(DEPLOYMENT, id)?;
        keys.records_written();
        state.deployments.remove(id);
        self.changed.notify_one();
        Ok(())
    }

    /// `id` goes live in its environment; the one it replaces goes to standby.
    fn make_live(&self, state: &mut State, id: &str) -> Result<(), PlatformError> {
        let now = now_ms();
        let Some(record) = state.deployments.get(id).cloned() else {
            return Err(PlatformError::DeploymentNotFound(id.to_string()));
        };
        let key = live_id(&record.project_id, &record.environment_slug);
        let mut live = state.live.get(&key).cloned().unwrap_or_default();
        let mut changed = Vec::new();
        if !live.deployment_id.is_empty() && live.deployment_id != id {
            if let Some(previous) = state.deployments.get(&live.deployment_id) {
                let mut previous = previous.clone();
                previous.status = Status::Standby;
                previous.standby_since = Some(now);
                changed.push(previous);
            }
            live.previous.retain(|p| p != &live.deployment_id && p != id);
            live.previous.push(live.deployment_id.clone());
        }
        live.previous.retain(|p| p != id);
        live.deployment_id = id.to_string();
        let mut promoted = record;
        promoted.status = Status::Ready;
        promoted.standby_since = None;
        promoted.promote_when_ready = false;
        changed.push(promoted);
        self.save(&changed.iter().collect::<Vec<_>>(), &[(&key, &live)])?;
        for record in changed {
            state.deployments.insert(record.id.clone(), record);
        }
        state.live.insert(key, live);
        crate::telemetry::metrics().deployment_promotions.inc();
        tracing::info!(deployment = id, "deployment is live");
        Ok(())
    }

    /// The deployment as the API shows it.
    pub fn get(&self, id: &str) -> Result<Value, PlatformError> {
        let state = self.lock();
        let record = state
            .deployments
            .get(id)
            .ok_or_else(|| PlatformError::DeploymentNotFound(id.to_string()))?;
        Ok(self.view(&state, record))
    }

    /// Deployments of `project_id` (and `environment`), newest first, after `cursor`.
    pub fn list(
        &self,
        project_id: &str,
        environment: Option<&str>,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<(Vec<Value>, Option<String>), PlatformError> {
        self.project(project_id)?;
        let state = self.lock();
        let mut matching: Vec<&DeploymentRecord> = state
            .deployments
            .values()
            .filter(|d| d.project_id == project_id && environment.is_none_or(|e| d.environment_slug == e))
            .collect();
        matching.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
        let start = match cursor {
            Some(cursor) => matching
                .iter()
                .position(|d| d.id == cursor)
                .map_or(matching.len(), |i| i + 1),
            None => 0,
        };
        let page: Vec<&DeploymentRecord> = matching.iter().skip(start).take(limit).copied().collect();
        let next = (start + page.len() < matching.len())
            .then(|| page.last().map(|d| d.id.clone()))
            .flatten();
        Ok((page.iter().map(|d| self.view(&state, d)).collect(), next))
    }

    /// Every project of the configuration with its deployments (newest
    /// first), for the dashboard.
    pub fn overview(&self) -> Value {
        let snapshot = self.hub.current();
        let state = self.lock();
        let projects: Vec<Value> = snapshot
            .platform
            .projects
            .iter()
            .map(|project| {
                let mut deployments: Vec<&DeploymentRecord> = state
                    .deployments
                    .values()
                    .filter(|d| d.project_id == project.id)
                    .collect();
                deployments.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
                json!({
                    "id": project.id,
                    "slug": project.slug,
                    "productionBranch": project.production_branch,
                    "deployments": deployments.iter().map(|d| self.view(&state, d)).collect::<Vec<_>>(),
                })
            })
            .collect();
        json!({"projects": projects})
    }

    fn view(&self, state: &State, record: &DeploymentRecord) -> Value {
        let snapshot = self.hub.current();
        let settings = &snapshot.platform;
        let domains = routing::domains_of(state, settings, record);
        let healthy: Vec<Value> = record
            .instances
            .iter()
            .map(|address| {
                let healthy = snapshot
                    .deployments
                    .iter()
                    .find(|d| *d.id == *record.id)
                    .map(|d| {
                        d.instances
                            .current()
                            .iter()
                            .any(|e| e.target.to_string() == *address && e.is_healthy())
                    })
                    .unwrap_or(false);
                json!({"address": address, "healthy": healthy && record.status != Status::Failed})
            })
            .collect();
        let live = state
            .live
            .get(&live_id(&record.project_id, &record.environment_slug))
            .is_some_and(|l| l.deployment_id == record.id);
        json!({
            "id": record.id,
            "projectId": record.project_id,
            "environmentSlug": record.environment_slug,
            "branch": record.branch,
            "gitCommit": record.git_commit,
            "dockerImage": record.docker_image,
            "status": record.status,
            "live": live,
            "domains": domains,
            "instances": healthy,
            "createdAt": record.created_at,
            "readyAt": record.ready_at,
            "error": record.error,
        })
    }
}

/// Every instance must be `ip:port`.
fn check_instances(instances: &[String]) -> Result<(), PlatformError> {
    if instances.len() > 100 {
        return Err(PlatformError::Invalid("instances: at most 100".into()));
    }
    for instance in instances {
        if instance.parse::<std::net::SocketAddr>().is_err() {
            return Err(PlatformError::Invalid(format!(
                "instances: {instance:?} is not ip:port"
            )));
        }
    }
    Ok(())
}
