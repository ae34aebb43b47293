//! The admin listener: health, readiness, metrics and the admin API. Plain
//! hyper, on its own runtime; never serves proxied traffic.
//!
//! Adding an endpoint: a handler in the module that owns its subject
//! (`routes` for the gateway's own state; for Unkey's v2 API, `keys/`,
//! `identities`, `permissions`, `roles`, `ratelimit/` and one line in the
//! [`rpc`] table), and one line in [`Endpoint::of`]. Handlers return
//! [`envelope::Reply`] or a [`GatewayError`]; the envelope and the error
//! body (JSON, as Unkey's API sends it) are written here. An unknown path
//! is a JSON 404, a known one with another method a JSON 405.

mod activity;
mod auth;
mod dashboard;
mod deploy;
pub mod envelope;
pub mod fields;
mod identities;
mod keys;
mod permissions;
mod ratelimit;
mod roles;
pub mod routes;
pub mod rpc;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
use tokio::net::TcpListener;

use crate::errors::{ErrorCode, GatewayError, Representation};
use crate::platform::Platform;
use crate::providers::file::Reloader;
use crate::runtime::Hub;
use crate::telemetry::{metrics, Exposition, RequestId};
use crate::tls::Tls;
use deploy::PlatformOp;
use envelope::{text, Reply};
use rpc::Op;

/// What the admin handlers share.
pub struct AdminState {
    pub hub: Arc<Hub>,
    pub reloader: Arc<Reloader>,
    /// The certificate store, when TLS is on.
    pub tls: Option<Arc<Tls>>,
    /// The Deployments API's state.
    pub platform: Arc<Platform>,
    /// Proxy listeners that must accept connections before `/readyz` says yes.
    pub proxy_listeners: Vec<SocketAddr>,
    ready: AtomicBool,
}

impl AdminState {
    pub fn new(
        hub: Arc<Hub>,
        reloader: Arc<Reloader>,
        tls: Option<Arc<Tls>>,
        platform: Arc<Platform>,
        proxy_listeners: Vec<SocketAddr>,
    ) -> Arc<Self> {
        Arc::new(Self {
            hub,
            reloader,
            tls,
            platform,
            proxy_listeners,
            ready: AtomicBool::new(false),
        })
    }

    /// Ready once every proxy listener accepts a connection and every routing
    /// provider has published its routes (checked until true).
    async fn is_ready(&self) -> bool {
        if self.ready.load(Ordering::Relaxed) {
            return true;
        }
        if !self.hub.synced() {
            return false;
        }
        for addr in &self.proxy_listeners {
            let target = loopback_for(*addr);
            let connect = tokio::net::TcpStream::connect(target);
            if !matches!(tokio::time::timeout(Duration::from_secs(1), connect).await, Ok(Ok(_))) {
                return false;
            }
        }
        self.ready.store(true, Ordering::Relaxed);
        true
    }
}

/// A wildcard listen address is reached through loopback.
fn loopback_for(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V4(v4) if v4.ip().is_unspecified() => SocketAddr::from(([127, 0, 0, 1], v4.port())),
        SocketAddr::V6(v6) if v6.ip().is_unspecified() => SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, v6.port())),
        other => other,
    }
}

/// Serves the admin API on `listener` until `shutdown` flips.
pub async fn serve(listener: TcpListener, state: Arc<AdminState>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!("admin accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(route(&state, request).await) }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            if let Err(e) = builder.serve_connection(TokioIo::new(stream), service).await {
                tracing::debug!("admin connection ended: {e}");
            }
        });
    }
}

/// What the admin listener serves, by path.
enum Endpoint {
    Health,
    Ready,
    Metrics,
    /// The dashboard's page and assets (no data in them).
    Dashboard,
    /// Behind a root key.
    Call(Call),
}

/// The endpoints behind a root key.
enum Call {
    Reload,
    Routes,
    Certs,
    /// The dashboard's data: recent requests, per-deployment series.
    Requests,
    Stats,
    /// Every project's deployments, for the dashboard.
    Deployments,
    /// The Deployments API.
    Deploy(PlatformOp),
    Rpc(Op),
}

impl Endpoint {
    /// The endpoint table.
    fn of(path: &str) -> Option<Self> {
        Some(match path {
            "/healthz" => Self::Health,
            "/readyz" => Self::Ready,
            "/metrics" => Self::Metrics,
            "/v1/admin.reload" => Self::Call(Call::Reload),
            "/v1/routes" => Self::Call(Call::Routes),
            "/v1/certs" => Self::Call(Call::Certs),
            "/v1/requests" => Self::Call(Call::Requests),
            "/v1/stats" => Self::Call(Call::Stats),
            "/v1/deployments" => Self::Call(Call::Deployments),
            page if dashboard::owns(page) => Self::Dashboard,
            // Unkey's newer create (an `oci` source), same model.
            "/v3/deployments.createDeployment" => {
                Self::Call(Call::Deploy(PlatformOp::from_name("deployments.createDeployment")?))
            }
            path => {
                let name = path.strip_prefix("/v2/")?;
                match PlatformOp::from_name(name) {
                    Some(op) => Self::Call(Call::Deploy(op)),
                    None => Self::Call(Call::Rpc(Op::from_name(name)?)),
                }
            }
        })
    }

    fn method(&self) -> Method {
        match self {
            Self::Health
            | Self::Ready
            | Self::Metrics
            | Self::Dashboard
            | Self::Call(Call::Routes | Call::Certs | Call::Requests | Call::Stats | Call::Deployments) => Method::GET,
            Self::Call(Call::Reload | Call::Deploy(_) | Call::Rpc(_)) => Method::POST,
        }
    }
}

/// Routes a request: open endpoints first, then those behind a root key.
async fn route(state: &AdminState, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = request.uri().path();
    let Some(endpoint) = Endpoint::of(path) else {
        let error = GatewayError::with_detail(
            ErrorCode::RouteNotFound,
            format!("The admin API has no endpoint {path}."),
        );
        return refuse(state, &error);
    };
    let allowed = endpoint.method();
    if request.method() != allowed {
        let detail = format!("{path} accepts {allowed} only.");
        let mut response = refuse(state, &GatewayError::with_detail(ErrorCode::MethodNotAllowed, detail));
        if let Ok(value) = http::HeaderValue::from_str(allowed.as_str()) {
            response.headers_mut().insert(http::header::ALLOW, value);
        }
        return response;
    }
    let call = match endpoint {
        Endpoint::Health => return text(StatusCode::OK, "ok\n"),
        Endpoint::Ready => return readiness(state).await,
        Endpoint::Metrics => return prometheus(state, request.headers()),
        Endpoint::Dashboard => {
            let accept = request
                .headers()
                .get(http::header::ACCEPT_ENCODING)
                .and_then(|v| v.to_str().ok());
            return dashboard::serve(path, accept).unwrap_or_else(|| {
                let detail = format!("The dashboard has no asset {path} (reload the page).");
                refuse(state, &GatewayError::with_detail(ErrorCode::RouteNotFound, detail))
            });
        }
        Endpoint::Call(call) => call,
    };
    let request_id = RequestId::generate();
    let snapshot = state.hub.current();
    let representation = match call {
        Call::Rpc(op) => op.error_representation(),
        Call::Reload
        | Call::Routes
        | Call::Certs
        | Call::Requests
        | Call::Stats
        | Call::Deployments
        | Call::Deploy(_) => Representation::Json,
    };
    let answer = match auth::require_root_key(&snapshot.root_keys, request.headers(), &snapshot.keys).await {
        Ok(()) => authorized(state, call, request).await,
        Err(error) => Err(error),
    };
    match answer {
        Ok(reply) => envelope::ok(request_id.as_str(), reply),
        Err(error) => envelope::error(request_id.as_str(), &snapshot.docs_base, &error, representation),
    }
}

/// An error answer outside any endpoint.
fn refuse(state: &AdminState, error: &GatewayError) -> Response<Full<Bytes>> {
    envelope::error(
        RequestId::generate().as_str(),
        &state.hub.current().docs_base,
        error,
        Representation::Json,
    )
}

async fn authorized(state: &AdminState, call: Call, request: Request<Incoming>) -> Result<Reply, GatewayError> {
    match call {
        Call::Reload => match state.reloader.reload("admin API").await {
            Ok(()) => Ok(Reply::data(json!({"reloaded": true}))),
            Err(e) => Err(envelope::invalid_input(e.to_string())),
        },
        Call::Routes => Ok(Reply::data(routes::describe(&state.hub.current()))),
        Call::Certs => {
            let certs = state.tls.as_ref().map(|tls| tls.store.list()).unwrap_or_default();
            Ok(Reply::data(json!({"certificates": certs})))
        }
        Call::Requests => Ok(Reply::data(activity::requests(request.uri().query()))),
        Call::Stats => Ok(Reply::data(activity::stats())),
        Call::Deployments => Ok(Reply::data(deploy::dashboard_overview(state.platform.overview()))),
        Call::Deploy(op) => {
            let caller = deploy::caller(request.headers());
            let body = envelope::read_body(request).await?;
            deploy::run(op, body.to_vec(), caller, state.platform.clone()).await
        }
        Call::Rpc(op) => {
            let body = envelope::read_body(request).await?;
            let keys = state.hub.current().keys.clone();
            rpc::run(op, &body, &keys).await
        }
    }
}

async fn readiness(state: &AdminState) -> Response<Full<Bytes>> {
    if state.is_ready().await {
        text(StatusCode::OK, "ready\n")
    } else {
        text(
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: listeners or routing providers are starting\n",
        )
    }
}

/// The metrics, as OpenMetrics when the scraper asks for it and in the
/// Prometheus text format otherwise; instance health is counted as of now.
fn prometheus(state: &AdminState, headers: &http::HeaderMap) -> Response<Full<Bytes>> {
    let snapshot = state.hub.current();
    metrics().set_instances_healthy(snapshot.deployments.iter().map(|d| (&*d.id, d.instances.available())));
    let accept = headers.get(http::header::ACCEPT).and_then(|v| v.to_str().ok());
    let exposition = Exposition::for_accept(accept);
    let mut response = text(StatusCode::OK, metrics().encode());
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(exposition.content_type()),
    );
    response
}
