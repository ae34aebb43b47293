//! The control plane's background task: deploying deployments are probed
//! (every instance must pass the deployment's health check, or accept a
//! TCP connection when it has none) until ready or
//! `platform.ready_timeout`; a ready production deployment of the
//! project's production branch goes live (unless a rollback paused that);
//! a standby deployment is archived after `platform.standby`, an idle
//! preview after `platform.preview_idle_archive`; and after every change —
//! its own, an API call's, another replica's, a config reload — the routes
//! are published again.

use std::sync::Arc;
use std::time::Duration;

use super::model::{DeploymentRecord, Status};
use super::{projects, routing, Platform};
use crate::clock::now_ms;
use crate::runtime::ProviderId;
use crate::upstream::health::HealthCheck;
use crate::upstream::Protocol;

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
    // Published at once (readiness waits for it), then after every change —
    // before anything else, so a promote switches traffic without waiting
    // for probes.
    publish(&platform);
    loop {
        let mut dirty = false;
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
        if dirty {
            publish(&platform);
        }
        if advance(&platform).await {
            publish(&platform);
        }
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
        match probe(&record).await {
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
    let projects = projects::all(&state, &settings);
    let mut changed = Vec::new();
    let mut to_promote = Vec::new();
    // The API may have changed a record while it was probed.
    let still_deploying = |id: &str| state.deployments.get(id).is_some_and(|d| d.status == Status::Deploying);
    for mut next in ready.into_iter().filter(|r| still_deploying(&r.id)) {
        next.status = Status::Ready;
        next.ready_at = Some(now);
        let production_branch = projects
            .iter()
            .find(|p| p.id == next.project_id)
            .is_some_and(|p| next.environment_slug == "production" && next.branch == p.production_branch);
        let paused = state.live_of(&next).is_some_and(|l| l.rolled_back);
        if (production_branch && !paused) || next.promote_when_ready {
            to_promote.push(next.id.clone());
        }
        tracing::info!(deployment = next.id, "deployment ready");
        changed.push(next);
    }
    for (mut next, unreachable) in failed.into_iter().filter(|(r, _)| still_deploying(&r.id)) {
        next.status = Status::Failed;
        next.failed_at = Some(now);
        next.error = Some(format!(
            "instances not healthy within {:?}: {unreachable}",
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
    let idle = settings.preview_idle_archive.as_millis() as i64;
    let recent = crate::telemetry::recent::recent();
    for record in state.deployments.values() {
        if record.status == Status::Standby && record.standby_since.is_some_and(|since| now - since >= standby) {
            let mut next = record.clone();
            next.status = Status::Archived;
            tracing::info!(deployment = next.id, "standby over: deployment archived");
            changed.push(next);
        } else if record.status == Status::Ready && is_preview(record, &projects) {
            let last_used = recent
                .last_request(&record.id)
                .max(record.ready_at)
                .unwrap_or(record.created_at);
            if now - last_used >= idle {
                let mut next = record.clone();
                next.status = Status::Archived;
                tracing::info!(deployment = next.id, "idle preview archived");
                changed.push(next);
            }
        }
    }
    let any = !changed.is_empty() || !to_promote.is_empty();
    if !changed.is_empty() {
        platform.commit(&mut state, changed, Vec::new())?;
    }
    for id in to_promote {
        platform.make_live(&mut state, &id, None)?;
    }
    Ok(any)
}

/// Anything but the production branch in production.
fn is_preview(record: &DeploymentRecord, projects: &[crate::runtime::Project]) -> bool {
    let production_branch = projects
        .iter()
        .find(|p| p.id == record.project_id)
        .map(|p| p.production_branch.as_str());
    record.environment_slug != "production" || Some(record.branch.as_str()) != production_branch
}

/// `Ok` when every instance passes the deployment's health check (or
/// accepts a connection, without one), else the failing ones.
async fn probe(record: &DeploymentRecord) -> Result<(), String> {
    let check = record
        .health_check
        .as_ref()
        .and_then(|spec| HealthCheck::compile(spec, Protocol::Http1).ok());
    let instances = &record.instances;
    let attempts = instances.iter().map(|instance| {
        let check = check.clone();
        async move {
            let connected = match (instance.parse::<std::net::SocketAddr>(), check) {
                (Ok(address), Some(check)) => crate::upstream::health::probe(address, &check).await,
                (Ok(address), None) => matches!(
                    tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect(address)).await,
                    Ok(Ok(_))
                ),
                (Err(_), _) => false,
            };
            (instance, connected)
        }
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
        *counts.entry(record.status.name()).or_default() += 1;
    }
    crate::telemetry::metrics().set_deployments(counts);
    let routing = routing::routing(&state, &snapshot);
    drop(state);
    platform.hub.publish(ProviderId::Api, routing);
}
