//! What goes live: promote, rollback (to the previous live deployment or
//! to a named earlier one), stop and start. Going live is one write of the
//! environment's live record and one snapshot swap; the deployment it
//! replaces goes to standby.

use serde_json::Value;

use super::model::{live_id, DeploymentRecord, LiveRecord, Status};
use super::{Platform, PlatformError, State};
use crate::clock::now_ms;

impl Platform {
    /// Makes `id` its environment's live deployment (a ready, standby or
    /// archived one; an archived one is checked again first). An explicit
    /// promote lets the production branch go live on its own again after a
    /// rollback.
    pub fn promote(&self, id: &str) -> Result<(), PlatformError> {
        let mut state = self.lock();
        self.switch_to(&mut state, id, false)
    }

    /// Makes the environment's previous live deployment live again.
    pub fn rollback(&self, project: &str, app: Option<&str>, environment: &str) -> Result<String, PlatformError> {
        let project = self.project(project)?;
        let app = match app {
            Some(app) => project.app(app).ok_or_else(|| PlatformError::AppNotFound {
                project: project.id.clone(),
                app: app.to_string(),
            })?,
            None => project.apps.first().map_or(crate::runtime::DEFAULT_APP, String::as_str),
        };
        let mut state = self.lock();
        let live = state
            .live
            .get(&live_id(&project.id, app, environment))
            .cloned()
            .unwrap_or_default();
        let target = live
            .previous
            .iter()
            .rev()
            .find(|id| state.deployments.get(*id).is_some_and(DeploymentRecord::routable))
            .cloned()
            .ok_or_else(|| {
                PlatformError::Conflict(format!(
                    "{environment} of {} has no previous deployment on standby to roll back to",
                    project.id
                ))
            })?;
        self.switch_to(&mut state, &target, true)?;
        Ok(target)
    }

    /// Makes the earlier deployment `id` live again, as a rollback.
    pub fn rollback_to(&self, id: &str) -> Result<(), PlatformError> {
        let mut state = self.lock();
        let record = state.deployment(id)?;
        if state.is_live(record) {
            return Err(PlatformError::Conflict(format!("deployment {id} is already live")));
        }
        self.switch_to(&mut state, id, true)
    }

    /// Archives `id` now: its routes go, its instances are left alone.
    pub fn stop(&self, id: &str) -> Result<(), PlatformError> {
        let mut state = self.lock();
        let mut next = state.deployment(id)?.clone();
        if matches!(next.status, Status::Archived | Status::Failed) {
            return Err(PlatformError::Conflict(format!(
                "deployment {id} is {} already",
                next.status.name()
            )));
        }
        next.status = Status::Archived;
        next.promote_when_ready = false;
        tracing::info!(deployment = id, "deployment stopped");
        Ok(self.commit(&mut state, vec![next], Vec::new())?)
    }

    /// Brings an archived deployment back: it is checked again, and serves
    /// once ready.
    pub fn start(&self, id: &str) -> Result<(), PlatformError> {
        let mut state = self.lock();
        let mut next = state.deployment(id)?.clone();
        if next.status != Status::Archived {
            return Err(PlatformError::Conflict(format!(
                "deployment {id} is {}, not stopped",
                next.status.name()
            )));
        }
        redeploy(&mut next);
        Ok(self.commit(&mut state, vec![next], Vec::new())?)
    }

    /// Goes live now (ready or standby) or once checked again (archived).
    fn switch_to(&self, state: &mut State, id: &str, rollback: bool) -> Result<(), PlatformError> {
        let record = state.deployment(id)?;
        match record.status {
            Status::Ready | Status::Standby => self.make_live(state, id, Some(rollback)),
            Status::Archived => {
                let mut next = record.clone();
                redeploy(&mut next);
                // Once ready again, the lifecycle makes it live.
                next.promote_when_ready = true;
                let mut changed_live = Vec::new();
                if let Some(live) = state.live_of(&next) {
                    if live.rolled_back != rollback {
                        let key = live_id(&next.project_id, &next.app, &next.environment_slug);
                        changed_live.push((
                            key,
                            LiveRecord {
                                rolled_back: rollback,
                                ..live.clone()
                            },
                        ));
                    }
                }
                Ok(self.commit(state, vec![next], changed_live)?)
            }
            status => Err(PlatformError::Conflict(format!(
                "deployment {id} is {} and cannot be promoted",
                serde_json::to_value(status).unwrap_or(Value::Null)
            ))),
        }
    }

    /// `id` goes live in its environment; the one it replaces goes to
    /// standby. `rolled_back`: set (a rollback) or clear (a promote) the
    /// pause of automatic promotion; `None` leaves it (automatic promotion).
    pub(super) fn make_live(
        &self,
        state: &mut State,
        id: &str,
        rolled_back: Option<bool>,
    ) -> Result<(), PlatformError> {
        let now = now_ms();
        let record = state.deployment(id)?.clone();
        let key = live_id(&record.project_id, &record.app, &record.environment_slug);
        let mut live = state.live.get(&key).cloned().unwrap_or_default();
        let mut changed = Vec::new();
        if !live.deployment_id.is_empty() && live.deployment_id != id {
            if let Some(previous) = state.deployments.get(&live.deployment_id) {
                let mut previous = previous.clone();
                if previous.routable() {
                    previous.status = Status::Standby;
                    previous.standby_since = Some(now);
                    changed.push(previous);
                }
            }
            live.previous.retain(|p| p != &live.deployment_id && p != id);
            live.previous.push(live.deployment_id.clone());
        }
        live.previous.retain(|p| p != id);
        live.deployment_id = id.to_string();
        if let Some(rolled_back) = rolled_back {
            live.rolled_back = rolled_back;
        }
        let mut promoted = record;
        promoted.status = Status::Ready;
        promoted.standby_since = None;
        promoted.promote_when_ready = false;
        changed.push(promoted);
        self.commit(state, changed, vec![(key, live)])?;
        crate::telemetry::metrics().deployment_promotions.inc();
        tracing::info!(deployment = id, "deployment is live");
        Ok(())
    }
}

/// Back to `deploying`: checked again before it serves.
fn redeploy(record: &mut DeploymentRecord) {
    record.status = if record.instances.is_empty() {
        Status::Pending
    } else {
        Status::Deploying
    };
    record.deploying_since = Some(now_ms());
    record.error = None;
    record.failed_at = None;
}
