//! The configuration file as a provider, and its hot reload: a new file is
//! loaded and compiled completely, then swapped in atomically; an invalid
//! file changes nothing but a log line and a counter. Triggered by the file
//! watcher, SIGHUP and the admin API. SIGUSR1 (log rotation) is handled here
//! too, with the other signals.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::{mpsc, Mutex};

use crate::config::ConfigError;
use crate::runtime::{Hub, Services, Snapshot};
use crate::telemetry::metrics;
use crate::telemetry::request_log::RequestLog;
use crate::tls::Tls;

/// How long file events are collected before one reload (editors write in bursts).
const WATCH_DEBOUNCE: Duration = Duration::from_millis(150);

/// Reloads the config file into the hub.
pub struct Reloader {
    path: PathBuf,
    /// The certificate store, when TLS is on: reloads apply `tls` settings to it.
    tls: Option<Arc<Tls>>,
    /// One reload at a time: two racing reloads must not swap out of order.
    running: Mutex<()>,
    /// Merges the file with the other routing providers and swaps the result in.
    hub: Arc<Hub>,
    /// What every compiled snapshot shares.
    services: Services,
}

impl Reloader {
    pub fn new(path: PathBuf, hub: Arc<Hub>, services: Services, tls: Option<Arc<Tls>>) -> Arc<Self> {
        Arc::new(Self {
            path,
            hub,
            services,
            tls,
            running: Mutex::new(()),
        })
    }

    /// Loads, validates and swaps in the file; on error the old snapshot stays.
    pub async fn reload(&self, trigger: &str) -> Result<(), ConfigError> {
        let _one_at_a_time = self.running.lock().await;
        let path = self.path.clone();
        let services = self.services.clone();
        let loaded = tokio::task::spawn_blocking(move || Snapshot::load(&path, &services))
            .await
            .unwrap_or_else(|e| {
                Err(ConfigError::Read {
                    path: self.path.clone(),
                    message: format!("reload task failed: {e}"),
                })
            });
        match loaded {
            Ok(next) => {
                let current = self.hub.current();
                if next.listen != current.listen {
                    tracing::warn!("listen settings changed: they take effect after a restart");
                }
                if next.providers != current.providers {
                    tracing::warn!("providers changed: they take effect after a restart");
                }
                let routes = next.routes.len();
                self.services.request_log.configure(&next.request_log);
                if let Err(e) = self.services.tracing.configure(next.tracing.as_ref()) {
                    tracing::error!("telemetry.tracing not applied, the previous one stays: {e}");
                }
                if let Some(tls) = &self.tls {
                    if next.tls != current.tls {
                        tls.apply(&next.tls);
                    }
                }
                self.hub.install_file(next);
                metrics().config_reloads.inc();
                tracing::info!(trigger, routes, "configuration reloaded");
                Ok(())
            }
            Err(error) => {
                metrics().config_reload_errors.inc();
                tracing::error!(
                    trigger,
                    "configuration rejected, still serving the previous one: {error}"
                );
                Err(error)
            }
        }
    }

    /// Reloads on every change to the config file and on SIGHUP, and rescans
    /// `tls.certs_dir` when it changes, until `shutdown`.
    pub async fn watch(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let (tx, mut rx) = mpsc::unbounded_channel::<&'static str>();
        let _watcher = match watch_path(&self.path, "file", tx.clone()) {
            Ok(watcher) => Some(watcher),
            Err(e) => {
                tracing::warn!(
                    "cannot watch {}: {e}; reload with SIGHUP or `keygate reload`",
                    self.path.display()
                );
                None
            }
        };
        let mut certs_watch = self.watch_certs_dir(None, &tx);
        spawn_signal_listeners(tx.clone(), self.services.request_log.clone());
        loop {
            let trigger = tokio::select! {
                trigger = rx.recv() => match trigger { Some(t) => t, None => return },
                _ = shutdown.changed() => return,
            };
            if trigger == "file" || trigger == "certs" {
                tokio::time::sleep(WATCH_DEBOUNCE).await;
                while rx.try_recv().is_ok() {}
            }
            if trigger == "certs" {
                if let (Some(tls), Some((dir, _))) = (&self.tls, &certs_watch) {
                    tls.rescan(dir);
                }
                continue;
            }
            if self.reload(trigger).await.is_ok() {
                certs_watch = self.watch_certs_dir(certs_watch, &tx);
            }
        }
    }

    /// Watches the current `tls.certs_dir` (keeping `current` when unchanged).
    fn watch_certs_dir(
        &self,
        current: Option<(PathBuf, notify::RecommendedWatcher)>,
        tx: &mpsc::UnboundedSender<&'static str>,
    ) -> Option<(PathBuf, notify::RecommendedWatcher)> {
        self.tls.as_ref()?;
        let dir = self.hub.current().tls.certs_dir.clone()?;
        if current.as_ref().is_some_and(|(watched, _)| *watched == dir) {
            return current;
        }
        let tx = tx.clone();
        let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            if event.is_ok_and(|e| !e.kind.is_access()) {
                let _ = tx.send("certs");
            }
        })
        .ok()?;
        match watcher.watch(&dir, RecursiveMode::NonRecursive) {
            Ok(()) => Some((dir, watcher)),
            Err(e) => {
                tracing::warn!(
                    "cannot watch tls.certs_dir {}: {e}; it is rescanned on reload",
                    dir.display()
                );
                current
            }
        }
    }
}

/// Watches the file's directory (editors replace files by rename) and
/// reports events that touch the file as `trigger`.
fn watch_path(
    path: &Path,
    trigger: &'static str,
    tx: mpsc::UnboundedSender<&'static str>,
) -> notify::Result<notify::RecommendedWatcher> {
    let file_name = path.file_name().map(|n| n.to_os_string());
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        if event.kind.is_access() {
            return;
        }
        let touches_file = event
            .paths
            .iter()
            .any(|p| p.file_name().map(|n| n.to_os_string()) == file_name);
        if touches_file {
            let _ = tx.send(trigger);
        }
    })?;
    watcher.watch(&dir, RecursiveMode::NonRecursive)?;
    Ok(watcher)
}

/// SIGHUP reloads; SIGUSR1 makes the request log reopen its file (after rotation).
fn spawn_signal_listeners(tx: mpsc::UnboundedSender<&'static str>, request_log: RequestLog) {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::hangup()) {
        Ok(mut hup) => {
            tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    if tx.send("SIGHUP").is_err() {
                        return;
                    }
                }
            });
        }
        Err(e) => tracing::warn!("cannot listen for SIGHUP: {e}"),
    }
    match signal(SignalKind::user_defined1()) {
        Ok(mut usr1) => {
            tokio::spawn(async move {
                while usr1.recv().await.is_some() {
                    request_log.reopen();
                }
            });
        }
        Err(e) => tracing::warn!("cannot listen for SIGUSR1: {e}"),
    }
}
