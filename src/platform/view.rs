//! What the API and the dashboard show of a deployment: its record plus
//! what follows from the state — whether it is live, its domains, the
//! health of its instances, and the actions that would succeed now.

use std::collections::BTreeMap;

use super::model::{DeploymentRecord, Status};
use super::{projects, routing, Platform, PlatformError, State};
use crate::runtime::{PlatformSettings, Project, Snapshot};

/// An action on a deployment (Unkey's `availableActions`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Promote,
    Rollback,
    Stop,
    Start,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::Promote => "promote",
            Action::Rollback => "rollback",
            Action::Stop => "stop",
            Action::Start => "start",
        }
    }
}

/// One instance and whether requests may reach it now.
#[derive(Debug, Clone)]
pub struct InstanceView {
    pub address: String,
    pub healthy: bool,
}

/// A deployment as shown.
#[derive(Debug, Clone)]
pub struct View {
    pub record: DeploymentRecord,
    pub project: Project,
    /// Its environment's live deployment.
    pub live: bool,
    pub domains: Vec<String>,
    pub instances: Vec<InstanceView>,
    /// What Unkey's rules allow now: promote and rollback in production,
    /// stop and start elsewhere.
    pub actions: Vec<Action>,
    pub region: String,
}

/// Which deployments a list shows; `None` matches all.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Id or slug.
    pub project: Option<String>,
    pub app: Option<String>,
    pub environment: Option<String>,
    pub statuses: Option<Vec<Status>>,
    pub branches: Option<Vec<String>>,
    /// Created at or after / before (unix ms).
    pub created_from: Option<i64>,
    pub created_until: Option<i64>,
}

impl Platform {
    /// The deployment as shown.
    pub fn describe(&self, id: &str) -> Result<View, PlatformError> {
        let snapshot = self.hub.current();
        let state = self.lock();
        let record = state.deployment(id)?;
        Ok(Shown::new(&state, &snapshot).view(record))
    }

    /// Deployments matching `filter`, newest first, after `cursor`.
    pub fn list(
        &self,
        filter: &Filter,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<(Vec<View>, Option<String>), PlatformError> {
        let snapshot = self.hub.current();
        let project = match &filter.project {
            Some(project) => Some(self.project(project)?),
            None => None,
        };
        let state = self.lock();
        let shown = Shown::new(&state, &snapshot);
        let mut matching: Vec<&DeploymentRecord> = state
            .deployments
            .values()
            .filter(|d| project.as_ref().is_none_or(|p| d.project_id == p.id))
            .filter(|d| filter.app.as_ref().is_none_or(|a| d.app == *a))
            .filter(|d| filter.environment.as_ref().is_none_or(|e| d.environment_slug == *e))
            .filter(|d| filter.statuses.as_ref().is_none_or(|s| s.contains(&d.status)))
            .filter(|d| filter.branches.as_ref().is_none_or(|b| b.contains(&d.branch)))
            .filter(|d| filter.created_from.is_none_or(|t| d.created_at >= t))
            .filter(|d| filter.created_until.is_none_or(|t| d.created_at <= t))
            .collect();
        matching.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
        let (page, next) = super::page(matching, limit, cursor, |d| d.id.as_str());
        Ok((page.into_iter().map(|d| shown.view(d)).collect(), next))
    }

    /// Every project with its deployments (newest first), for the dashboard.
    pub fn overview(&self) -> Vec<(Project, Vec<View>)> {
        let snapshot = self.hub.current();
        let state = self.lock();
        let shown = Shown::new(&state, &snapshot);
        shown
            .projects
            .iter()
            .map(|project| {
                let mut deployments: Vec<&DeploymentRecord> = state
                    .deployments
                    .values()
                    .filter(|d| d.project_id == project.id)
                    .collect();
                deployments.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
                let views = deployments.iter().map(|d| shown.view(d)).collect();
                (project.clone(), views)
            })
            .collect()
    }
}

/// What every view of one call shares: the state, the routing snapshot,
/// the projects and the domain assignment, computed once.
struct Shown<'a> {
    state: &'a State,
    snapshot: &'a Snapshot,
    projects: Vec<Project>,
    domains: BTreeMap<String, Vec<String>>,
}

impl<'a> Shown<'a> {
    fn new(state: &'a State, snapshot: &'a Snapshot) -> Self {
        let settings: &PlatformSettings = &snapshot.platform;
        let projects = projects::all(state, settings);
        let domains = routing::domains_by_deployment(state, settings, &projects);
        Shown {
            state,
            snapshot,
            projects,
            domains,
        }
    }

    fn view(&self, record: &DeploymentRecord) -> View {
        let (state, snapshot) = (self.state, self.snapshot);
        let serving = snapshot.deployments.iter().find(|d| *d.id == *record.id);
        let instances = record
            .instances
            .iter()
            .map(|address| InstanceView {
                address: address.clone(),
                healthy: record.routable()
                    && serving.is_some_and(|d| {
                        d.instances
                            .current()
                            .iter()
                            .any(|e| e.target.to_string() == *address && e.is_healthy())
                    }),
            })
            .collect();
        let project = self
            .projects
            .iter()
            .find(|p| p.id == record.project_id)
            .cloned()
            .unwrap_or_else(|| orphan(record));
        let live = state.is_live(record);
        View {
            actions: actions(state, record, live),
            domains: self.domains.get(&record.id).cloned().unwrap_or_default(),
            record: record.clone(),
            project,
            live,
            instances,
            region: snapshot.platform.region.clone(),
        }
    }
}

/// What may be done to `record` now, by Unkey's rules.
fn actions(state: &State, record: &DeploymentRecord, live: bool) -> Vec<Action> {
    let production = record.environment_slug == "production";
    let mut actions = Vec::new();
    if production {
        let revivable = matches!(record.status, Status::Ready | Status::Standby | Status::Archived);
        if revivable && !live {
            actions.push(Action::Promote);
            let was_live = state.live_of(record).is_some_and(|l| l.previous.contains(&record.id));
            if was_live {
                actions.push(Action::Rollback);
            }
        }
    } else {
        match record.status {
            Status::Archived => actions.push(Action::Start),
            Status::Pending | Status::Deploying | Status::Ready | Status::Standby => actions.push(Action::Stop),
            Status::Failed => {}
        }
    }
    actions
}

/// A project no longer in the file nor the store: shown by its id.
fn orphan(record: &DeploymentRecord) -> Project {
    Project {
        id: record.project_id.clone(),
        name: record.project_id.clone(),
        slug: record.project_id.clone(),
        production_branch: String::new(),
        domains: Vec::new(),
        environments: Default::default(),
        apps: vec![record.app.clone()],
        created_at: None,
    }
}
