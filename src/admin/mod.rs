//! The admin listener (SPEC §7): health, readiness, metrics and the admin
//! API. Plain hyper, on its own runtime; never serves proxied traffic.

mod auth;

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
use tokio::net::TcpListener;

use crate::keys::admin as keys;
use crate::reload::Reloader;
use crate::telemetry::{metrics, new_request_id};

pub use auth::{require_root_key, AdminError};

/// What the admin handlers share.
pub struct AdminState {
    pub reloader: Arc<Reloader>,
    /// Proxy listeners that must accept connections before `/readyz` says yes.
    pub proxy_listeners: Vec<SocketAddr>,
    ready: AtomicBool,
}

impl AdminState {
    pub fn new(reloader: Arc<Reloader>, proxy_listeners: Vec<SocketAddr>) -> Arc<Self> {
        Arc::new(Self {
            reloader,
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
        if !self.reloader.hub().synced() {
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
                async move { Ok::<_, Infallible>(handle(&state, request).await) }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            if let Err(e) = builder.serve_connection(TokioIo::new(stream), service).await {
                tracing::debug!("admin connection ended: {e}");
            }
        });
    }
}

async fn handle(state: &AdminState, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = request.uri().path().to_string();
    match (request.method(), path.as_str()) {
        (&Method::GET, "/healthz") => text(StatusCode::OK, "ok\n"),
        (&Method::GET, "/readyz") => {
            if state.is_ready().await {
                text(StatusCode::OK, "ready\n")
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, "not ready: listeners or routing providers are starting\n")
            }
        }
        (&Method::GET, "/metrics") => {
            let mut response = text(StatusCode::OK, metrics().encode());
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            response
        }
        (&Method::POST, "/v1/admin.reload") => {
            let request_id = new_request_id();
            if let Err(error) = auth::require_root_key(&state.reloader, request.headers()) {
                return error.into_response(&request_id);
            }
            match state.reloader.reload("admin API").await {
                Ok(()) => json(StatusCode::OK, serde_json::json!({"meta": {"requestId": request_id}, "data": {"reloaded": true}})),
                Err(e) => AdminError::invalid_input(e.to_string()).into_response(&request_id),
            }
        }
        (&Method::GET, "/v1/routes") => {
            let request_id = new_request_id();
            if let Err(error) = auth::require_root_key(&state.reloader, request.headers()) {
                return error.into_response(&request_id);
            }
            let snapshot = state.reloader.snapshot().load();
            json(StatusCode::OK, serde_json::json!({"meta": {"requestId": request_id}, "data": crate::snapshot::describe(&snapshot)}))
        }
        (&Method::GET, "/v1/certs") => {
            let request_id = new_request_id();
            if let Err(error) = auth::require_root_key(&state.reloader, request.headers()) {
                return error.into_response(&request_id);
            }
            let certs = state.reloader.tls().map(|tls| tls.store.list()).unwrap_or_default();
            json(StatusCode::OK, serde_json::json!({"meta": {"requestId": request_id}, "data": {"certificates": certs}}))
        }
        (&Method::POST, "/v2/apis.createApi") => keys::serve(&state.reloader, request, keys::Op::CreateApi).await,
        (&Method::POST, "/v2/apis.getApi") => keys::serve(&state.reloader, request, keys::Op::GetApi).await,
        (&Method::POST, "/v2/apis.listKeys") => keys::serve(&state.reloader, request, keys::Op::ListKeys).await,
        (&Method::POST, "/v2/apis.deleteApi") => keys::serve(&state.reloader, request, keys::Op::DeleteApi).await,
        (&Method::POST, "/v2/keys.createKey") => keys::serve(&state.reloader, request, keys::Op::CreateKey).await,
        (&Method::POST, "/v2/keys.getKey") => keys::serve(&state.reloader, request, keys::Op::GetKey).await,
        (&Method::POST, "/v2/keys.updateKey") => keys::serve(&state.reloader, request, keys::Op::UpdateKey).await,
        (&Method::POST, "/v2/keys.deleteKey") => keys::serve(&state.reloader, request, keys::Op::DeleteKey).await,
        (&Method::POST, "/v2/keys.updateCredits") => keys::serve(&state.reloader, request, keys::Op::UpdateCredits).await,
        (&Method::POST, "/v2/keys.rerollKey") => keys::serve(&state.reloader, request, keys::Op::RerollKey).await,
        (&Method::POST, "/v2/keys.verifyKey") => keys::serve(&state.reloader, request, keys::Op::VerifyKey).await,
        (&Method::POST, "/v2/ratelimit.limit") => keys::serve(&state.reloader, request, keys::Op::RatelimitLimit).await,
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

pub(crate) fn json(status: StatusCode, body: serde_json::Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    response
}
