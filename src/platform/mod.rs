//! The control plane: deployments created through the admin API move
//! `pending → deploying → ready | failed`, get their domains, and go live —
//! automatically for the production branch, or by `promote` — while the
//! previous live one waits on `standby` for a rollback. Records persist in
//! the key store (so they survive restarts and, with `state.database`, are
//! shared by every replica); the routes they imply are published to the
//! [`Hub`] as the `api` provider, so a switch is one snapshot swap.
//!
//! [`Platform`] holds the state and the operations (`switch`: what goes
//! live; `projects`: the projects of the file and of the API; `view`: what
//! the API shows); `lifecycle` is the background task that checks
//! instances and applies timers; `routing` turns the state into routes.

mod domains;
mod lifecycle;
pub mod model;
mod projects;
mod routing;
mod switch;
mod view;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

use crate::clock::now_ms;
use crate::config::deployment::HealthCheckSpec;
use crate::keys::model::new_id;
use crate::keys::store::StoreError;
use crate::runtime::Hub;
use crate::upstream::health::HealthCheck;
use crate::upstream::Protocol;
pub use lifecycle::run;
use model::{DeploymentRecord, GitCommit, LiveRecord, ProjectRecord, Status, Trigger};
pub use projects::NewProject;
pub use view::{Action, Filter, InstanceView, View};

/// Record kinds in the store.
const DEPLOYMENT: &str = "deployment";
const LIVE: &str = "live";
const PROJECT: &str = "project";

/// Why an operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    #[error("project {0:?} does not exist")]
    ProjectNotFound(String),
    #[error("project {project:?} has no app {app:?}")]
    AppNotFound { project: String, app: String },
    #[error("deployment {0:?} does not exist")]
    DeploymentNotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What `deploy.createDeployment` (or `deployments.createDeployment`) asks for.
#[derive(Debug, Clone, Default)]
pub struct NewDeployment {
    /// The project's id or slug.
    pub project: String,
    /// The app's slug; none: the project's first.
    pub app: Option<String>,
    pub environment_slug: String,
    pub branch: String,
    pub git_commit: GitCommit,
    pub docker_image: Option<String>,
    pub keyspace_id: Option<String>,
    pub instances: Vec<String>,
    pub health_check: Option<HealthCheckSpec>,
    pub trigger: Trigger,
}

#[derive(Debug, Default)]
struct State {
    deployments: BTreeMap<String, DeploymentRecord>,
    /// By [`model::live_id`].
    live: BTreeMap<String, LiveRecord>,
    /// Projects created through the API, by id.
    projects: BTreeMap<String, ProjectRecord>,
}

/// The control plane's state and operations.
pub struct Platform {
    hub: Arc<Hub>,
    state: Mutex<State>,
    /// Wakes the lifecycle task after a change.
    changed: Notify,
}

impl Platform {
    /// Loads the stored records.
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
        let state = State {
            deployments: read(records.records(DEPLOYMENT)?, DEPLOYMENT),
            live: read(records.records(LIVE)?, LIVE),
            projects: read(records.records(PROJECT)?, PROJECT),
        };
        *self.lock() = state;
        Ok(())
    }

    /// Stamps and writes `deployments` and `live` records, puts them into
    /// `state`, and tells the lifecycle task and the other replicas.
    fn commit(
        &self,
        state: &mut State,
        deployments: Vec<DeploymentRecord>,
        live: Vec<(String, LiveRecord)>,
    ) -> Result<(), StoreError> {
        let keys = self.hub.current().keys.service.clone();
        let now = now_ms();
        for mut record in deployments {
            record.updated_at = Some(now);
            let text = serde_json::to_string(&record).map_err(|e| StoreError::Task(e.to_string()))?;
            keys.records().put_record(DEPLOYMENT, &record.id, &text, now)?;
            state.deployments.insert(record.id.clone(), record);
        }
        for (id, record) in live {
            let text = serde_json::to_string(&record).map_err(|e| StoreError::Task(e.to_string()))?;
            keys.records().put_record(LIVE, &id, &text, now)?;
            state.live.insert(id, record);
        }
        keys.records_written();
        self.changed.notify_one();
        Ok(())
    }

    /// A stored deployment, as it is.
    pub fn record(&self, id: &str) -> Result<DeploymentRecord, PlatformError> {
        self.lock().deployment(id).cloned()
    }

    /// Creates a deployment; it starts deploying once it has instances.
    pub fn create(&self, new: NewDeployment) -> Result<String, PlatformError> {
        check_instances(&new.instances)?;
        if let Some(check) = &new.health_check {
            HealthCheck::compile(check, Protocol::Http1)
                .map_err(|(field, message)| PlatformError::Invalid(format!("healthCheck.{field}: {message}")))?;
        }
        let settings = self.hub.current().platform.clone();
        let mut state = self.lock();
        let project = projects::find(&state, &settings, &new.project)
            .ok_or_else(|| PlatformError::ProjectNotFound(new.project.clone()))?;
        let app = match &new.app {
            Some(name) => project.app(name).ok_or_else(|| PlatformError::AppNotFound {
                project: project.id.clone(),
                app: name.clone(),
            })?,
            None => project.apps.first().map_or(crate::runtime::DEFAULT_APP, String::as_str),
        }
        .to_string();
        if !project.environments.is_empty() && !project.environments.contains_key(&new.environment_slug) {
            let known: Vec<&str> = project.environments.keys().map(String::as_str).collect();
            return Err(PlatformError::Invalid(format!(
                "environment {:?} is not an environment of {} ({})",
                new.environment_slug,
                project.id,
                known.join(", ")
            )));
        }
        if !crate::runtime::is_slug(&new.environment_slug, 40) {
            return Err(PlatformError::Invalid(format!(
                "environment {:?} must be 1-40 lowercase letters, digits and '-'",
                new.environment_slug
            )));
        }
        let now = now_ms();
        let deploying = !new.instances.is_empty();
        let record = DeploymentRecord {
            id: new_id("d"),
            project_id: project.id.clone(),
            app,
            environment_slug: new.environment_slug,
            branch: new.branch,
            git_commit: new.git_commit,
            docker_image: new.docker_image,
            keyspace_id: new.keyspace_id,
            instances: new.instances,
            health_check: new.health_check,
            trigger: new.trigger,
            status: if deploying { Status::Deploying } else { Status::Pending },
            created_at: now,
            updated_at: None,
            deploying_since: deploying.then_some(now),
            ready_at: None,
            failed_at: None,
            standby_since: None,
            error: None,
            promote_when_ready: false,
        };
        let id = record.id.clone();
        self.commit(&mut state, vec![record], Vec::new())?;
        Ok(id)
    }

    /// Adds instances; a pending deployment starts deploying.
    pub fn add_instances(&self, id: &str, instances: Vec<String>) -> Result<(), PlatformError> {
        check_instances(&instances)?;
        if instances.is_empty() {
            return Err(PlatformError::Invalid("instances: at least one ip:port".into()));
        }
        let mut state = self.lock();
        let mut next = state.deployment(id)?.clone();
        for instance in instances {
            if !next.instances.contains(&instance) {
                next.instances.push(instance);
            }
        }
        if next.status == Status::Pending {
            next.status = Status::Deploying;
            next.deploying_since = Some(now_ms());
        }
        self.commit(&mut state, vec![next], Vec::new())?;
        Ok(())
    }

    /// Removes a deployment that is not live.
    pub fn delete(&self, id: &str) -> Result<(), PlatformError> {
        let mut state = self.lock();
        let record = state.deployment(id)?;
        if state.is_live(record) {
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
}

impl State {
    /// The deployment `id`, or why not.
    fn deployment(&self, id: &str) -> Result<&DeploymentRecord, PlatformError> {
        self.deployments
            .get(id)
            .ok_or_else(|| PlatformError::DeploymentNotFound(id.to_string()))
    }

    /// The live record of `record`'s environment.
    fn live_of(&self, record: &DeploymentRecord) -> Option<&LiveRecord> {
        self.live.get(&model::live_id(
            &record.project_id,
            &record.app,
            &record.environment_slug,
        ))
    }

    /// Whether `record` is its environment's live deployment.
    fn is_live(&self, record: &DeploymentRecord) -> bool {
        self.live_of(record).is_some_and(|l| l.deployment_id == record.id)
    }
}

/// Parses stored records of `kind`; an unreadable one is logged and skipped.
fn read<T: serde::de::DeserializeOwned>(records: Vec<(String, String)>, kind: &str) -> BTreeMap<String, T> {
    let mut parsed = BTreeMap::new();
    for (id, text) in records {
        match serde_json::from_str(&text) {
            Ok(record) => {
                parsed.insert(id, record);
            }
            Err(e) => tracing::error!(record = id, "unreadable {kind} record skipped: {e}"),
        }
    }
    parsed
}

/// One page of `items` (already in order) after the item whose id is
/// `cursor`, and the cursor of the next page.
fn page<T>(items: Vec<T>, limit: usize, cursor: Option<&str>, id: impl Fn(&T) -> &str) -> (Vec<T>, Option<String>) {
    let start = match cursor {
        Some(cursor) => items
            .iter()
            .position(|item| id(item) == cursor)
            .map_or(items.len(), |i| i + 1),
        None => 0,
    };
    let total = items.len();
    let page: Vec<T> = items.into_iter().skip(start).take(limit).collect();
    let next = (start + page.len() < total)
        .then(|| page.last().map(|item| id(item).to_string()))
        .flatten();
    (page, next)
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
