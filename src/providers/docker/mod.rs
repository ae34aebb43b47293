//! The Docker provider (`providers.docker`): labelled containers become
//! deployments and routes. A watcher keeps the running containers of the
//! engine current from its event stream (`watch`, through `engine`); every
//! change is translated into a complete [`Routing`](crate::runtime::Routing)
//! (`translate`, from the `keygate.*` labels in `labels`) and published to
//! the [`Hub`]. Problems with a container are logged once while they last.

mod container;
mod engine;
mod labels;
mod translate;
mod watch;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::runtime::{DockerSettings, Hub, ProviderId};

/// How long changes are collected before one translation: `docker compose
/// up --scale` starts many containers within milliseconds.
const DEBOUNCE: Duration = Duration::from_millis(50);

/// Runs the provider until `shutdown`, publishing to `hub`.
pub async fn run(settings: DockerSettings, hub: Arc<Hub>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let changed = Arc::new(Notify::new());
    let watcher = watch::Watcher::start(&settings, changed.clone());
    tracing::info!(endpoint = %settings.endpoint, exposed_by_default = settings.exposed_by_default, "Docker provider watching");
    // A file reload brings new policy sets (and file deployments a label
    // must not take): translate again then, not on the other swaps.
    let mut config = hub.subscribe();
    let mut policy_sets = hub.current().policy_sets.clone();
    let mut problems = ProblemLog::default();
    loop {
        tokio::select! {
            _ = changed.notified() => {}
            changed = config.changed() => {
                if changed.is_err() {
                    return;
                }
                let now = config.borrow_and_update().policy_sets.clone();
                if Arc::ptr_eq(&now, &policy_sets) {
                    continue;
                }
                policy_sets = now;
            }
            _ = shutdown.changed() => return,
        }
        tokio::time::sleep(DEBOUNCE).await;
        // Nothing is published before the first list: an empty view would
        // answer 404 for every container.
        if !watcher.synced() {
            continue;
        }
        let snapshot = hub.current();
        let containers = watcher.containers();
        let context = translate::Context {
            exposed_by_default: settings.exposed_by_default,
            network: settings.network.as_deref(),
            policy_sets: &snapshot.policy_sets,
            file_deployments: snapshot.file_routing.deployments.iter().map(|d| &*d.id).collect(),
            endpoints: &snapshot.services.endpoints,
        };
        let translation = translate::translate(&containers, &context);
        hub.publish(ProviderId::Docker, translation.routing);
        problems.report(&translation.problems);
    }
}

/// Logs each problem once when it appears; one that goes away and comes
/// back is logged again.
#[derive(Default)]
struct ProblemLog {
    reported: HashSet<translate::Problem>,
}

impl ProblemLog {
    fn report(&mut self, problems: &[translate::Problem]) {
        let current: HashSet<translate::Problem> = problems.iter().cloned().collect();
        for problem in problems {
            if !self.reported.contains(problem) {
                tracing::warn!(container = problem.container, "Docker provider: {problem}");
            }
        }
        self.reported = current;
    }
}
