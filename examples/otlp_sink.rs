//! A minimal OTLP/HTTP (protobuf) trace receiver for proxy benchmarks with
//! tracing on (`TRACING=1 scripts/bench-proxy.sh`): a live collector that
//! decodes every export, so keygate pays the real cost of sending.
//!
//! ```text
//! cargo run --release --example otlp_sink -- [ADDR]   # default 127.0.0.1:4318
//! ```
//!
//! * `POST /v1/traces` (`application/x-protobuf`) → 200 with an empty
//!   `ExportTraceServiceResponse`; the spans are counted
//! * `GET /count` → the number of spans received so far
//! * anything else → 404

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use prost::Message;
use tokio::net::TcpListener;

const DEFAULT_ADDR: &str = "127.0.0.1:4318";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr: SocketAddr = std::env::args().nth(1).as_deref().unwrap_or(DEFAULT_ADDR).parse()?;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(serve(addr))
}

async fn serve(addr: SocketAddr) -> Result<(), Box<dyn std::error::Error>> {
    let spans = Arc::new(AtomicU64::new(0));
    let listener = TcpListener::bind(addr).await?;
    eprintln!("otlp_sink listening on http://{}", listener.local_addr()?);
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let spans = spans.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| handle(spans.clone(), req));
            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
        });
    }
}

async fn handle(spans: Arc<AtomicU64>, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let reply = |status: StatusCode, body: Vec<u8>| {
        let mut resp = Response::new(Full::new(Bytes::from(body)));
        *resp.status_mut() = status;
        Ok(resp)
    };
    match (req.method().as_str(), req.uri().path()) {
        ("GET", "/count") => reply(StatusCode::OK, spans.load(Ordering::Relaxed).to_string().into_bytes()),
        ("POST", "/v1/traces") => {
            let Ok(body) = req.into_body().collect().await else {
                return reply(StatusCode::BAD_REQUEST, Vec::new());
            };
            let Ok(export) = ExportTraceServiceRequest::decode(body.to_bytes()) else {
                return reply(StatusCode::BAD_REQUEST, Vec::new());
            };
            let received: usize = export
                .resource_spans
                .iter()
                .flat_map(|r| &r.scope_spans)
                .map(|s| s.spans.len())
                .sum();
            spans.fetch_add(received as u64, Ordering::Relaxed);
            reply(StatusCode::OK, ExportTraceServiceResponse::default().encode_to_vec())
        }
        _ => reply(StatusCode::NOT_FOUND, Vec::new()),
    }
}
