//! The control plane's background task: deploying deployments are probed
//! (every instance must accept a TCP connection) until ready or
//! `platform.ready_timeout`; a ready production deployment of the
//! project's production branch goes live; a standby deployment is
//! archived after `platform.standby`; and after every change — its own, an
//! API call's, another replica's, a config reload — the routes are
//! published again.

use std::sync::Arc;
use std::time::Duration;

use super::model::{DeploymentRecord, Status};
use super::{routing, Platform};
use crate::clock::now_ms;
use crate::runtime::ProviderId;

/// How often deploying instances are probed and timers checked.
const TICK: Duration = Duration::from_millis(500);
/// One connection attempt.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Runs until `shutdown`, publishing the `api` provider's routes.
pub async fn run(platform: Arc<Platform>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let keys = platform.hub.current().keys.service.clone();
    let mut others = keys.follow_records();
    let mut config = platform.hub.subscribe();
    let mut published_platform = platform.hub.current().platform.clone();
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Published at once (readiness waits for it), then after every change.
    let mut dirty = true;
    loop {
        if dirty {
            publish(&platform);
            dirty = false;
        }
        tokio::select! {
            _ = ticker.tick() => {}
            _ = platform.changed.notified() => dirty = true,
            changed = others.changed() => {
                if changed.is_ok() {
                    let platform = platform.clone();
                    let reloaded = tokio::task::spawn_blocking(move || platform.reload()).await;
                    if let Ok(Err(e)) = reloaded {
                        tracing::warn!("cannot reload the deployments another replica changed: {e}");
                    }
                    dirty = true;
                }
            }
            changed = config.changed() => {
                if changed.is_err() {
                    return;
                }
                // Only a config change matters here, not the swaps this task causes.
                let now = config.borrow_and_update().platform.clone();
                if !Arc::ptr_eq(&now, &published_platform) {
                    published_platform = now;
                    dirty = true;
                }
            }
            _ = shutdown.changed() => return,
        }
        dirty |= advance(&platform).await;
    }
}

/// Probes what is deploying and applies timers; persists what changed and
/// says whether anything did.
async fn advance(platform: &Arc<Platform>) -> bool {
    let settings = platform.hub.current().platform.clone();
    let deploying: Vec<DeploymentRecord> = platform
        .lock()
        .deployments
        .values()
        .filter(|d| d.status == Status::Deploying)
        .cloned()
        .collect();
    let now = now_ms();
    let mut ready = Vec::new();
    let mut failed = Vec::new();
    for record in deploying {
        match probe(&record.instances).await {
            Ok(()) => ready.push(record),
            Err(unreachable) => {
                let since = record.deploying_since.unwrap_or(record.created_at);
                if now - since >= settings.ready_timeout.as_millis() as i64 {
                    failed.push((record, unreachable));
                }
            }
        }
    }
    let platform = platform.clone();
    match tokio::task::spawn_blocking(move || apply(&platform, ready, failed, now)).await {
        Ok(Ok(changed)) => changed,
        Ok(Err(e)) => {
            tracing::warn!("cannot record a deployment's new status (retrying): {e}");
            false
        }
        Err(_) => false,
    }
}

/// Records the probes' results and the timers' effects.
fn apply(
    platform: &Platform,
    ready: Vec<DeploymentRecord>,
    failed: Vec<(DeploymentRecord, String)>,
    now: i64,
) -> Result<bool, super::PlatformError> {
    let settings = platform.hub.current().platform.clone();
    let mut state = platform.lock();
    let mut changed = Vec::new();
    let mut to_promote = Vec::new();
    for record in ready {
        // The API may have changed it while it was probed.
        if state
            .deployments
            .get(&record.id)
            .is_none_or(|d| d.status != Status::Deploying)
        {
            continue;
        }
        let mut next = record;
        next.status = Status::Ready;
        next.ready_at = Some(now);
        let automatic = settings
            .project(&next.project_id)
            .is_some_and(|project| next.environment_slug == "production" && next.branch == project.production_branch);
        if automatic || next.promote_when_ready {
            to_promote.push(next.id.clone());
        }
        tracing::info!(deployment = next.id, "deployment ready");
        changed.push(next);
    }
    for (record, unreachable) in failed {
        if state
            .deployments
            .get(&record.id)
            .is_none_or(|d| d.status != Status::Deploying)
        {
            continue;
        }
        let mut next = record;
        next.status = Status::Failed;
        next.error = Some(format!(
            "instances not reachable within {:?}: {unreachable}",
            settings.ready_timeout
        ));
        tracing::warn!(
            deployment = next.id,
            "deployment failed: {}",
            next.error.as_deref().unwrap_or_default()
        );
        changed.push(next);
    }
    let standby = settings.standby.as_millis() as i64;
    for record in state.deployments.values() {
        if record.status == Status::Standby && record.standby_since.is_some_and(|since| now - since >= standby) {
            let mut next = record.clone();
            next.status = Status::Archived;
            tracing::info!(deployment = next.id, "standby over: deployment archived");
            changed.push(next);
        }
    }
    let any = !changed.is_empty() || !to_promote.is_empty();
    if !changed.is_empty() {
        platform.save(&changed.iter().collect::<Vec<_>>(), &[])?;
        for record in changed {
            state.deployments.insert(record.id.clone(), record);
        }
    }
    for id in to_promote {
        platform.make_live(&mut state, &id)?;
    }
    Ok(any)
}

/// `Ok` when every instance accepts a connection, else the unreachable ones.
async fn probe(instances: &[String]) -> Result<(), String> {
    let attempts = instances.iter().map(|instance| async move {
        let connected = match instance.parse::<std::net::SocketAddr>() {
            Ok(address) => matches!(
                tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect(address)).await,
                Ok(Ok(_))
            ),
            Err(_) => false,
        };
        (instance, connected)
    });
    let unreachable: Vec<&String> = futures::future::join_all(attempts)
        .await
        .into_iter()
        .filter(|(_, connected)| !connected)
        .map(|(instance, _)| instance)
        .collect();
    match unreachable.as_slice() {
        [] if !instances.is_empty() => Ok(()),
        [] => Err("no instances".into()),
        list => Err(list.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")),
    }
}

/// Publishes the routes of the current state (the hub merges and swaps).
fn publish(platform: &Platform) {
    let snapshot = platform.hub.current();
    let state = platform.lock();
    let mut counts: std::collections::BTreeMap<&'static str, usize> = std::collections::BTreeMap::new();
    for record in state.deployments.values() {
        *counts.entry(status_name(record.status)).or_default() += 1;
    }
    crate::telemetry::metrics().set_deployments(counts);
    let routing = routing::routing(&state, &snapshot);
    drop(state);
    platform.hub.publish(ProviderId::Api, routing);
}

fn status_name(status: Status) -> &'static str {
    match status {
        Status::Pending => "pending",
        Status::Deploying => "deploying",
        Status::Ready => "ready",
        Status::Failed => "failed",
        Status::Standby => "standby",
        Status::Archived => "archived",
    }
}
