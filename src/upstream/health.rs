//! Active health checks (`upstream.health_check`): one task per
//! instance probes it in the background; `failure_threshold` consecutive
//! failures (non-2xx, timeout, connect error) take it out, one pass puts it
//! back. Never on the request path.

use std::net::SocketAddr;
use std::sync::Weak;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::rt::{TokioExecutor, TokioIo};

use super::endpoint::Endpoint;
use super::Protocol;
use crate::config::deployment::HealthCheckSpec;

/// A compiled health check; compared across reloads to restart checkers only when it changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    pub path: String,
    pub method: http::Method,
    pub interval: Duration,
    pub timeout: Duration,
    pub failure_threshold: u32,
    pub initial_delay: Duration,
    pub protocol: Protocol,
}

impl HealthCheck {
    /// Errors are `(sub-field, message)`.
    pub fn compile(spec: &HealthCheckSpec, protocol: Protocol) -> Result<Self, (String, String)> {
        if !spec.path.starts_with('/') {
            return Err((
                "path".into(),
                format!("health check path {:?} must start with /", spec.path),
            ));
        }
        let method = http::Method::from_bytes(spec.method.to_ascii_uppercase().as_bytes())
            .map_err(|_| ("method".to_string(), format!("invalid method {:?}", spec.method)))?;
        if spec.interval.0.is_zero() {
            return Err(("interval".into(), "interval must be more than 0".into()));
        }
        Ok(Self {
            path: spec.path.clone(),
            method,
            interval: spec.interval.0,
            timeout: spec.timeout.0,
            failure_threshold: spec.failure_threshold.max(1),
            initial_delay: spec.initial_delay.0,
            protocol,
        })
    }
}

/// Probes `addr` until the endpoint is dropped (the supervisor aborts the task on changes).
pub async fn run(endpoint: Weak<Endpoint>, addr: SocketAddr, check: HealthCheck) {
    tokio::time::sleep(check.initial_delay).await;
    let mut failures = 0u32;
    loop {
        let passed = probe(addr, &check).await;
        let Some(endpoint) = endpoint.upgrade() else { return };
        if passed {
            failures = 0;
            endpoint.check_passed();
        } else {
            failures = failures.saturating_add(1);
            if failures >= check.failure_threshold {
                endpoint.set_healthy(false);
            }
        }
        drop(endpoint);
        tokio::time::sleep(check.interval).await;
    }
}

/// One check: a 2xx within the timeout passes (also how the control plane
/// decides that a new deployment is ready).
pub async fn probe(addr: SocketAddr, check: &HealthCheck) -> bool {
    let attempt = async {
        let stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        let io = TokioIo::new(stream);
        let request = http::Request::builder()
            .method(check.method.clone())
            .uri(check.path.as_str())
            .header(http::header::HOST, addr.to_string())
            .header(http::header::USER_AGENT, "keygate-health-check")
            .body(Empty::<Bytes>::new())
            .ok()?;
        let status = match check.protocol {
            Protocol::Http1 => {
                let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await.ok()?;
                tokio::spawn(connection);
                sender.send_request(request).await.ok()?.status()
            }
            Protocol::H2c => {
                let (mut sender, connection) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                    .await
                    .ok()?;
                tokio::spawn(connection);
                sender.send_request(request).await.ok()?.status()
            }
        };
        Some(status.is_success())
    };
    matches!(tokio::time::timeout(check.timeout, attempt).await, Ok(Some(true)))
}
