//! Assembles the running gateway: the proxy service on pingora, the admin
//! listener, the reloader and the instance supervisor, and the shutdown sequence (stop accepting,
//! drain in-flight requests, exit).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora_core::server::configuration::ServerConf;
use pingora_core::server::{RunArgs, Server, ShutdownSignal, ShutdownSignalWatch, ShutdownWatch};
use pingora_core::services::background::{background_service, BackgroundService};

use crate::admin::{self, AdminState};
use crate::config::ConfigError;
use crate::proxy::Gateway;
use crate::reload::Reloader;
use crate::snapshot::Snapshot;
use crate::tls::{AcmeTask, ChallengeTokens, Tls};

/// The longest a graceful shutdown waits for in-flight requests.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot listen on {addr} ({listener}): {source}")]
    Bind {
        addr: SocketAddr,
        listener: &'static str,
        source: std::io::Error,
    },
    #[error("TLS: {0}")]
    Tls(String),
    #[error(transparent)]
    Keys(#[from] crate::keys::store::StoreError),
}

/// Requests currently being served; a graceful shutdown waits for zero.
static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

/// Counts a request as in flight for as long as it lives.
#[derive(Debug)]
pub struct InFlight(());

impl InFlight {
    pub fn start() -> Self {
        IN_FLIGHT.fetch_add(1, Ordering::Relaxed);
        Self(())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        IN_FLIGHT.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Loads the config at `path` and serves until SIGTERM/SIGINT.
pub fn run(path: &Path) -> Result<(), StartupError> {
    // The embedded key store is opened once, on the first config's state.dir.
    let config = crate::config::Config::load(path)?;
    let keys = crate::keys::KeyService::open(&crate::state::StateSettings::compile(&config.file.state, config.base_dir()))?;
    let snapshot = Snapshot::compile(&config, &keys)?;
    let http = snapshot.listen_http;
    let admin_listener = match snapshot.listen_admin {
        Some(addr) => Some(bind_std(addr, "admin")?),
        None => None,
    };
    if let Some(addr) = http {
        // pingora binds inside its service and cannot report failure: check first.
        drop(bind_std(addr, "http")?);
    }

    crate::telemetry::request_log::configure(&snapshot.request_log);
    let https = snapshot.listen_https;
    if let Some(addr) = https {
        drop(bind_std(addr, "https")?);
    }
    let tls = match https {
        Some(_) => Some(Arc::new(Tls::start(&snapshot.tls).map_err(StartupError::Tls)?)),
        None => None,
    };
    let shared = Arc::new(ArcSwap::from_pointee(snapshot));
    let reloader = Reloader::new(path.to_path_buf(), shared.clone(), tls.clone());

    let conf = ServerConf {
        threads: worker_threads(shared.load().listen_threads),
        work_stealing: false,
        grace_period_seconds: Some(SHUTDOWN_GRACE.as_secs()),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    let challenges = Arc::new(ChallengeTokens::default());
    let gateway = Gateway::new(shared.clone(), challenges.clone());
    let mut proxy = pingora_proxy::http_proxy_service_with_name(&server.configuration, gateway, "keygate proxy");
    if let Some(addr) = http {
        proxy.add_tcp(&addr.to_string());
    }
    if let (Some(addr), Some(tls)) = (https, &tls) {
        let mut settings = pingora_core::listeners::tls::TlsSettings::intermediate("", "")
            .map_err(|e| StartupError::Tls(e.to_string()))?;
        settings.set_cert_resolver(tls.resolver.clone());
        settings.enable_h2();
        proxy.add_tls_with_settings(&addr.to_string(), None, settings);
    }
    server.add_service(proxy);

    let proxy_listeners: Vec<SocketAddr> = http.into_iter().chain(https).collect();
    let control = ControlPlane {
        reloader,
        admin: admin_listener.map(|listener| (listener, proxy_listeners)),
    };
    let mut control = background_service("control plane", control);
    control.threads = Some(1);
    server.add_service(control);
    if let Some(tls) = &tls {
        // Runs even without `tls.acme`: a reload may add it.
        let mut acme = background_service("acme", AcmeTask::new(shared.clone(), tls.store.clone(), challenges));
        acme.threads = Some(1);
        server.add_service(acme);
    }

    tracing::info!(http = ?http, https = ?https, "keygate started");
    server.run(RunArgs {
        shutdown_signal: Box::new(DrainOnSignal),
    });
    Ok(())
}

fn worker_threads(configured: usize) -> usize {
    if configured > 0 {
        return configured;
    }
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn bind_std(addr: SocketAddr, listener: &'static str) -> Result<std::net::TcpListener, StartupError> {
    std::net::TcpListener::bind(addr).map_err(|source| StartupError::Bind { addr, listener, source })
}

/// The admin listener and the reloader, on their own small runtime.
struct ControlPlane {
    reloader: Arc<Reloader>,
    admin: Option<(std::net::TcpListener, Vec<SocketAddr>)>,
}

#[async_trait]
impl BackgroundService for ControlPlane {
    async fn start(&self, shutdown: ShutdownWatch) {
        let watcher = tokio::spawn(self.reloader.clone().watch(shutdown.clone()));
        let supervisor = tokio::spawn(crate::upstream::supervisor::run(self.reloader.snapshot().clone(), shutdown.clone()));
        let openapi_fetcher = tokio::spawn(crate::openapi::fetch::run(self.reloader.snapshot().clone(), shutdown.clone()));
        let kubernetes = self.reloader.snapshot().load().providers.kubernetes.clone().map(|settings| {
            self.reloader.hub().await_first_publish(crate::providers::ProviderId::Kubernetes);
            let certs = self.reloader.tls().map(|tls| tls.store.clone());
            tokio::spawn(crate::providers::kubernetes::run(settings, self.reloader.hub().clone(), certs, shutdown.clone()))
        });
        if let Some((listener, proxy_listeners)) = &self.admin {
            let listener = listener
                .try_clone()
                .and_then(|l| l.set_nonblocking(true).map(|()| l))
                .and_then(tokio::net::TcpListener::from_std);
            match listener {
                Ok(listener) => {
                    let state = AdminState::new(self.reloader.clone(), proxy_listeners.clone());
                    admin::serve(listener, state, shutdown).await;
                }
                Err(e) => tracing::error!("admin listener unusable: {e}"),
            }
        }
        let _ = tokio::join!(watcher, supervisor, openapi_fetcher);
        if let Some(kubernetes) = kubernetes {
            let _ = kubernetes.await;
        }
    }
}

/// SIGTERM and SIGINT both start a graceful shutdown: pingora stops
/// accepting, and the process exits as soon as no request is in flight (at
/// most [`SHUTDOWN_GRACE`] later).
struct DrainOnSignal;

#[async_trait]
impl ShutdownSignalWatch for DrainOnSignal {
    async fn recv(&self) -> ShutdownSignal {
        use tokio::signal::unix::{signal, SignalKind};
        match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
            (Ok(mut term), Ok(mut int)) => {
                let name = tokio::select! {
                    _ = term.recv() => "SIGTERM",
                    _ = int.recv() => "SIGINT",
                };
                tracing::info!("{name}: shutting down once in-flight requests finish");
            }
            _ => {
                tracing::error!("cannot listen for shutdown signals; stopping now");
                return ShutdownSignal::FastShutdown;
            }
        }
        std::thread::spawn(exit_when_drained);
        ShutdownSignal::GracefulTerminate
    }
}

fn exit_when_drained() {
    let deadline = Instant::now() + SHUTDOWN_GRACE;
    // Let pingora close its listeners before counting.
    std::thread::sleep(Duration::from_millis(100));
    while IN_FLIGHT.load(Ordering::Relaxed) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    crate::keys::flush_before_exit();
    tracing::info!("drained; exiting");
    std::process::exit(0);
}
