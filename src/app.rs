//! Assembles the running gateway: the proxy service on pingora, the admin
//! listener, the file watcher and the background tasks, and the shutdown
//! sequence (stop accepting, drain in-flight requests, exit). Nothing here
//! decides anything; it only connects the parts.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora_core::apps::HttpServerOptions;
use pingora_core::listeners::{L4BufferSettings, ListenerConfig};
use pingora_core::protocols::http::v2::server::{default_h2_options, H2Options};
use pingora_core::server::configuration::ServerConf;
use pingora_core::server::{RunArgs, Server, ShutdownSignal, ShutdownSignalWatch, ShutdownWatch};
use pingora_core::services::background::{background_service, BackgroundService};
use pingora_core::services::listening::{ConnectionLimit, Service};

use crate::admin::{self, AdminState};
use crate::config::{Config, ConfigError};
use crate::keys::KeyService;
use crate::platform::Platform;
use crate::providers::file::Reloader;
use crate::proxy::{FastPath, Gateway};
use crate::runtime::{
    DockerSettings, Hub, InFlightCounter, KubernetesSettings, Limits, ProviderId, Services, Snapshot,
};
use crate::state::StateSettings;
use crate::telemetry::traces::Tracing;
use crate::tls::{AcmeTask, ChallengeTokens, Tls};

/// The longest a graceful shutdown waits for in-flight requests.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// The socket buffers of a client connection. pingora puts a 64 KiB read
/// buffer in front of every accepted socket, allocated at accept and held
/// while the connection idles; the HTTP/1 reader, rustls and h2 each read
/// into buffers of their own, so it only copied bytes a second time. Without
/// it an idle keep-alive connection costs a few KiB instead of ~70. The small
/// write buffer stays: it joins a response head and a short body into one
/// write.
fn client_socket_buffers() -> L4BufferSettings {
    L4BufferSettings {
        read: Some(0),
        write: None,
    }
}

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
    Services(#[from] crate::runtime::ServicesError),
    #[error(transparent)]
    RootKey(#[from] crate::state::RootKeyError),
    #[error("telemetry.tracing: {0}")]
    Tracing(#[from] crate::telemetry::traces::TracingError),
    #[error("deployments: {0}")]
    Platform(#[from] crate::keys::store::StoreError),
}

/// Loads the config at `path` and serves until SIGTERM/SIGINT.
pub fn run(path: &Path) -> Result<(), StartupError> {
    // The services (key store, limiter) are opened once, on the first config's state.
    let config = Config::load(path)?;
    let state = StateSettings::of(&config);
    let mut services = Services::open(&state)?;
    if config.file.admin.root_keys.is_empty() {
        services = services.with_local_root_key(&state)?;
        tracing::info!(
            "admin.root_keys is not set: the admin API accepts the local root key in {}",
            state.root_key_path().display()
        );
    }
    let snapshot = Snapshot::compile(&config, &services)?;
    let listen = snapshot.listen;
    let limits = snapshot.limits.clone();
    let admin_listener = match listen.admin {
        Some(addr) => Some(bind_std(addr, "admin")?),
        None => None,
    };
    // pingora binds inside its service and cannot report failure: check first.
    if let Some(addr) = listen.http {
        drop(bind_std(addr, "http")?);
    }
    if let Some(addr) = listen.https {
        drop(bind_std(addr, "https")?);
    }

    services.request_log.configure(&snapshot.request_log);
    services.tracing.configure(snapshot.tracing.as_ref())?;
    let routes = snapshot.routes.len();
    let tls = match listen.https {
        Some(_) => Some(Arc::new(Tls::start(&snapshot.tls).map_err(StartupError::Tls)?)),
        None => None,
    };
    let kubernetes = snapshot.providers.kubernetes.clone();
    let docker = snapshot.providers.docker.clone();
    let hub = Hub::new(snapshot);
    let platform = Platform::open(hub.clone())?;
    let reloader = Reloader::new(path.to_path_buf(), hub.clone(), services.clone(), tls.clone());
    let in_flight = InFlightCounter::default();

    let conf = ServerConf {
        threads: worker_threads(listen.threads),
        work_stealing: false,
        grace_period_seconds: Some(SHUTDOWN_GRACE.as_secs()),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    let challenges = Arc::new(ChallengeTokens::default());
    let gateway = Gateway::new(hub.shared().clone(), challenges.clone(), in_flight.clone());
    let mut full = pingora_proxy::http_proxy(&server.configuration, gateway.clone());
    full.h2_options = Some(h2_options(&limits));
    let mut options = HttpServerOptions::default();
    options.h2_idle_timeout = (!limits.idle_timeout.is_zero()).then_some(limits.idle_timeout);
    full.server_options = Some(options);
    let app = FastPath::new(gateway, full);
    let mut proxy = Service::new("keygate proxy".to_string(), app);
    let connections = Arc::new(ConnectionLimit::new(limits.max_connections));
    proxy.set_connection_limit(connections.clone());
    if let Some(addr) = listen.http {
        proxy.add_listener(ListenerConfig::tcp(addr.to_string()).l4_buffer(client_socket_buffers()));
    }
    if let (Some(addr), Some(tls)) = (listen.https, &tls) {
        let mut settings = pingora_core::listeners::tls::TlsSettings::intermediate("", "")
            .map_err(|e| StartupError::Tls(e.to_string()))?;
        settings.set_cert_resolver(tls.resolver.clone());
        settings.enable_h2();
        proxy.add_listener(
            ListenerConfig::tcp(addr.to_string())
                .tls(settings)
                .l4_buffer(client_socket_buffers()),
        );
    }
    server.add_service(proxy);

    if let Some(tls) = &tls {
        // Runs even without `tls.acme`: a reload may add it.
        let mut acme = background_service("acme", AcmeTask::new(hub.subscribe(), tls.store.clone(), challenges));
        acme.threads = Some(1);
        server.add_service(acme);
    }
    let proxy_listeners: Vec<SocketAddr> = listen.http.into_iter().chain(listen.https).collect();
    let admin = admin_listener.map(|listener| {
        (
            listener,
            AdminState::new(
                hub.clone(),
                reloader.clone(),
                tls.clone(),
                platform.clone(),
                proxy_listeners,
            ),
        )
    });
    let control = ControlPlane {
        connections,
        hub,
        reloader,
        services: services.clone(),
        tls,
        kubernetes,
        docker,
        platform,
        admin,
    };
    let mut control = background_service("control plane", control);
    control.threads = Some(1);
    server.add_service(control);

    tracing::info!(
        http = %Listener(listen.http),
        https = %Listener(listen.https),
        admin = %Listener(listen.admin),
        routes,
        "keygate started"
    );
    server.run(RunArgs {
        shutdown_signal: Box::new(DrainOnSignal {
            in_flight,
            keys: services.keys,
            traces: services.tracing,
        }),
    });
    Ok(())
}

/// A listener's address for the start-up line, `off` when it is not configured.
struct Listener(Option<SocketAddr>);

impl std::fmt::Display for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(addr) => addr.fmt(f),
            None => f.write_str("off"),
        }
    }
}

/// HTTP/2 on the TLS listener: pingora's bounded defaults (100 concurrent
/// streams) with the header list capped like an HTTP/1 head; the h2 crate
/// answers a rapid-reset flood (streams reset before they are served) with
/// GOAWAY (`ENHANCE_YOUR_CALM`).
fn h2_options(limits: &Limits) -> H2Options {
    /// Streams a client may reset before the gateway served them, at once.
    const MAX_PENDING_RESETS: usize = 20;
    let mut options = default_h2_options();
    options.max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
    options.max_pending_accept_reset_streams(MAX_PENDING_RESETS);
    options
}

/// Applies `limits.max_connections` from every new snapshot.
async fn follow_connection_limit(
    mut changes: tokio::sync::watch::Receiver<Arc<Snapshot>>,
    connections: Arc<ConnectionLimit>,
) {
    while changes.changed().await.is_ok() {
        let max = changes.borrow_and_update().limits.max_connections;
        connections.set_max(max);
    }
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

/// The admin listener, the file watcher and the background tasks that
/// follow the configuration, on their own small runtime.
struct ControlPlane {
    /// The proxy's connection cap; `limits.max_connections` follows reloads.
    connections: Arc<ConnectionLimit>,
    hub: Arc<Hub>,
    reloader: Arc<Reloader>,
    services: Services,
    tls: Option<Arc<Tls>>,
    kubernetes: Option<KubernetesSettings>,
    docker: Option<DockerSettings>,
    platform: Arc<Platform>,
    admin: Option<(std::net::TcpListener, Arc<AdminState>)>,
}

#[async_trait]
impl BackgroundService for ControlPlane {
    async fn start(&self, shutdown: ShutdownWatch) {
        let watcher = tokio::spawn(self.reloader.clone().watch(shutdown.clone()));
        let connection_cap = tokio::spawn(follow_connection_limit(self.hub.subscribe(), self.connections.clone()));
        let supervisor = tokio::spawn(crate::upstream::supervisor::run(self.hub.subscribe(), shutdown.clone()));
        let openapi_fetcher = tokio::spawn(crate::openapi::fetch::run(
            self.services.fetched_specs.clone(),
            self.services.http.clone(),
            self.hub.subscribe(),
            shutdown.clone(),
        ));
        let kubernetes = self.kubernetes.clone().map(|settings| {
            self.hub.await_first_publish(ProviderId::Kubernetes);
            let certs = self.tls.as_ref().map(|tls| tls.store.clone());
            tokio::spawn(crate::providers::kubernetes::run(
                settings,
                self.hub.clone(),
                certs,
                shutdown.clone(),
            ))
        });
        let docker = self.docker.clone().map(|settings| {
            self.hub.await_first_publish(ProviderId::Docker);
            tokio::spawn(crate::providers::docker::run(
                settings,
                self.hub.clone(),
                shutdown.clone(),
            ))
        });
        self.hub.await_first_publish(ProviderId::Api);
        let platform = tokio::spawn(crate::platform::run(self.platform.clone(), shutdown.clone()));
        if let Some((listener, state)) = &self.admin {
            let listener = listener
                .try_clone()
                .and_then(|l| l.set_nonblocking(true).map(|()| l))
                .and_then(tokio::net::TcpListener::from_std);
            match listener {
                Ok(listener) => admin::serve(listener, state.clone(), shutdown).await,
                Err(e) => tracing::error!("admin listener unusable: {e}"),
            }
        }
        let _ = tokio::join!(watcher, supervisor, openapi_fetcher);
        connection_cap.abort();
        for provider in [kubernetes, docker, Some(platform)].into_iter().flatten() {
            let _ = provider.await;
        }
    }
}

/// SIGTERM and SIGINT both start a graceful shutdown: pingora stops
/// accepting, and the process exits as soon as no request is in flight (at
/// most [`SHUTDOWN_GRACE`] later), after writing spent credits and
/// exporting the last trace spans.
struct DrainOnSignal {
    in_flight: InFlightCounter,
    keys: Arc<KeyService>,
    traces: Tracing,
}

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
        let (in_flight, keys, traces) = (self.in_flight.clone(), self.keys.clone(), self.traces.clone());
        std::thread::spawn(move || exit_when_drained(&in_flight, &keys, &traces));
        ShutdownSignal::GracefulTerminate
    }
}

fn exit_when_drained(in_flight: &InFlightCounter, keys: &KeyService, traces: &Tracing) {
    let deadline = Instant::now() + SHUTDOWN_GRACE;
    // Let pingora close its listeners before counting.
    std::thread::sleep(Duration::from_millis(100));
    while in_flight.current() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    keys.flush_before_exit();
    traces.shutdown();
    tracing::info!("drained; exiting");
    std::process::exit(0);
}
