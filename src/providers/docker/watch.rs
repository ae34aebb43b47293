//! Follows one Docker engine: lists the running containers once, then
//! applies the event stream (no polling loop), reconnecting with backoff
//! when the engine goes away.
//!
//! Why this cannot open a 404 window: while the engine is unreachable the
//! known containers stay as they were (the gateway keeps serving them), and
//! a reconnect swaps in a complete new list in one step, so a container that
//! did not change is in every view. Events between the list and the start
//! of the stream are not lost: the stream starts `since` a moment before
//! the list did.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use futures::StreamExt;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::container::Container;
use super::engine::{Engine, EngineError};
use crate::runtime::DockerSettings;

/// The first wait after a failed connection; it doubles…
const MIN_BACKOFF: Duration = Duration::from_millis(250);
/// …up to this.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Replayed on top of the time the list took: the events stream starts this
/// much earlier than needed (replayed events are harmless).
const SINCE_SLACK: Duration = Duration::from_secs(2);

/// What the watcher and the translation share.
struct Shared {
    /// The containers that have a process, by id.
    containers: Mutex<BTreeMap<String, Container>>,
    /// The containers were listed once.
    synced: AtomicBool,
    /// Told whenever `containers` changed.
    changed: Arc<Notify>,
}

impl Shared {
    fn replace(&self, containers: Vec<Container>) {
        if let Ok(mut known) = self.containers.lock() {
            *known = containers.into_iter().map(|c| (c.id.clone(), c)).collect();
        }
        self.synced.store(true, Ordering::Relaxed);
        self.changed.notify_one();
    }

    fn set(&self, id: &str, container: Option<Container>) {
        if let Ok(mut known) = self.containers.lock() {
            let changed = match container {
                Some(container) => known
                    .insert(id.to_string(), container.clone())
                    .is_none_or(|before| before != container),
                None => known.remove(id).is_some(),
            };
            if changed {
                self.changed.notify_one();
            }
        }
    }
}

/// The containers of one engine, kept current in the background; dropping
/// it stops the task.
pub struct Watcher {
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Watcher {
    /// Starts following the engine of `settings`; `changed` is notified
    /// whenever the containers change.
    pub fn start(settings: &DockerSettings, changed: Arc<Notify>) -> Self {
        let shared = Arc::new(Shared {
            containers: Mutex::new(BTreeMap::new()),
            synced: AtomicBool::new(false),
            changed,
        });
        let task = tokio::spawn(follow(settings.clone(), shared.clone()));
        Self { shared, task }
    }

    /// Whether the containers were listed at least once.
    pub fn synced(&self) -> bool {
        self.shared.synced.load(Ordering::Relaxed)
    }

    /// The containers known now.
    pub fn containers(&self) -> Vec<Container> {
        self.shared
            .containers
            .lock()
            .map(|known| known.values().cloned().collect())
            .unwrap_or_default()
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Sessions one after the other: a failed one is retried with exponential
/// backoff, which starts over after a session that got as far as a list.
async fn follow(settings: DockerSettings, shared: Arc<Shared>) {
    let schedule = ExponentialBuilder::new()
        .with_min_delay(MIN_BACKOFF)
        .with_max_delay(MAX_BACKOFF)
        .with_factor(2.0)
        .with_jitter()
        .without_max_times();
    let mut delays = schedule.build();
    let mut failing = false;
    loop {
        let (error, listed) = session(&settings, &shared, &mut failing).await;
        if listed {
            delays = schedule.build();
        }
        let wait = delays.next().unwrap_or(MAX_BACKOFF);
        if std::mem::replace(&mut failing, true) {
            tracing::debug!(endpoint = %settings.endpoint, "Docker API still unreachable: {error}; retrying in {wait:?}");
        } else {
            tracing::warn!(
                endpoint = %settings.endpoint,
                "Docker API unreachable, serving the containers known and retrying with backoff: {error}"
            );
        }
        tokio::time::sleep(wait).await;
    }
}

/// Connects, lists, then applies events until something fails; returns why
/// and whether the list was reached.
async fn session(settings: &DockerSettings, shared: &Shared, failing: &mut bool) -> (EngineError, bool) {
    let engine = match Engine::connect(&settings.endpoint, !settings.exposed_by_default).await {
        Ok(engine) => engine,
        Err(error) => return (error, false),
    };
    let started = Instant::now();
    let containers = match engine.running().await {
        Ok(containers) => containers,
        Err(error) => return (error, false),
    };
    let count = containers.len();
    shared.replace(containers);
    if std::mem::take(failing) {
        tracing::info!(endpoint = %settings.endpoint, containers = count, "Docker API is back: containers listed again");
    } else {
        tracing::info!(endpoint = %settings.endpoint, containers = count, "Docker containers listed; following events");
    }

    let since = format!("{}s", (started.elapsed() + SINCE_SLACK).as_secs());
    let mut events = engine.events(&since);
    loop {
        let event = match events.next().await {
            Some(Ok(event)) => event,
            Some(Err(error)) => return (error, true),
            None => return (EngineError::EventsEnded, true),
        };
        tracing::debug!(container = event.id, action = event.action, "Docker event");
        match engine.inspect(&event.id).await {
            Ok(container) => shared.set(&event.id, container),
            Err(error) => {
                if event.takes_out() {
                    shared.set(&event.id, None);
                }
                return (error, true);
            }
        }
    }
}
