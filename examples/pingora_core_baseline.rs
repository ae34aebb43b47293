//! A second floor for `scripts/bench-proxy.sh`: the least an HTTP/1 proxy on
//! pingora-core can do — its listener, runtime, HTTP/1 sessions and upstream
//! connection pool, without pingora-proxy's request machinery (`ProxyHttp`
//! phases, task pipes, modules, cache hooks). Each request is read, sent to
//! the one upstream on a pooled connection, and its response written back;
//! no headers are added and nothing is logged. The gap between this row and
//! `examples/pingora_baseline.rs` is what pingora-proxy's layer costs per
//! request; the gap to nginx is pingora-core's HTTP/1 path and the runtime.
//!
//! Usage: pingora_core_baseline LISTEN UPSTREAM [THREADS]   (e.g. 127.0.0.1:18088 127.0.0.1:9100 1)

#[path = "common/baseline.rs"]
mod baseline;

use std::sync::Arc;

use async_trait::async_trait;
use pingora_core::apps::{HttpServerApp, ReusedHttpStream};
use pingora_core::connectors::http::Connector;
use pingora_core::protocols::http::client::HttpSession as UpstreamSession;
use pingora_core::protocols::http::{HttpTask, ServerSession};
use pingora_core::server::ShutdownWatch;
use pingora_core::services::listening::Service;
use pingora_core::upstreams::peer::HttpPeer;

/// Keep-alive for client connections, as keygate's default `idle_timeout`.
const CLIENT_IDLE_SECS: u64 = 60;

struct CoreBaseline {
    connector: Connector,
    upstream: HttpPeer,
}

impl CoreBaseline {
    /// One exchange; `None` drops the client connection (any failure).
    async fn proxy(&self, mut session: ServerSession) -> Option<ReusedHttpStream> {
        if !session.read_request().await.ok()? {
            return None;
        }
        let request = Box::new(session.req_header().clone());
        let (mut upstream, _reused) = self.connector.get_http_session(&self.upstream).await.ok()?;
        let UpstreamSession::H1(h1) = &mut upstream else {
            return None;
        };
        h1.write_request_header(request).await.ok()?;
        while let Some(body) = session.read_request_body().await.ok()? {
            h1.write_body(&body).await.ok()?;
        }
        h1.finish_body().await.ok()?;
        loop {
            let end = match h1.read_response_task().await.ok()? {
                HttpTask::Header(header, end) => {
                    session.write_response_header(header).await.ok()?;
                    end
                }
                HttpTask::Body(Some(body), end) => {
                    session.write_response_body(body, end).await.ok()?;
                    end
                }
                HttpTask::Body(None, end) => end,
                _ => true,
            };
            if end {
                break;
            }
        }
        h1.respect_keepalive();
        self.connector
            .release_http_session(upstream, &self.upstream, None)
            .await;
        session.set_keepalive(Some(CLIENT_IDLE_SECS));
        let (stream, _pipelined) = session.finish().await.ok()??.into_parts();
        Some(ReusedHttpStream::new(stream, None))
    }
}

#[async_trait]
impl HttpServerApp for CoreBaseline {
    async fn process_new_http(
        self: &Arc<Self>,
        session: ServerSession,
        _shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        self.proxy(session).await
    }
}

fn main() {
    baseline::run("127.0.0.1:18088", |_conf, upstream| {
        let app = CoreBaseline {
            connector: Connector::new(None),
            upstream: HttpPeer::new(upstream.as_str(), false, String::new()),
        };
        Service::new("pingora-core baseline".into(), app)
    });
}
