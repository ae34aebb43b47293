//! A fake OpenTelemetry collector: a fake, but faithful to the OTLP/HTTP
//! protobuf transport of the OTLP specification — `POST /v1/traces` with
//! `Content-Type: application/x-protobuf` and an `ExportTraceServiceRequest`
//! body, answered `200` with an (empty) `ExportTraceServiceResponse`. The
//! bodies are decoded with the `opentelemetry-proto` types, so what a test
//! reads is what a real collector would have received. [`Collector::silent`]
//! accepts connections and never answers (a hung collector). Stops on drop.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use prost::Message;
use tokio::task::JoinHandle;

use super::upstreams::serve_loopback;
use super::wait::poll_until;

/// `Span.kind` and `Status.code` values of the OTLP protobuf.
pub const KIND_INTERNAL: i32 = 1;
pub const KIND_SERVER: i32 = 2;
pub const KIND_CLIENT: i32 = 3;
pub const STATUS_ERROR: i32 = 2;

/// An attribute value as the tests compare it.
#[derive(Debug, Clone, PartialEq)]
pub enum Attr {
    Str(String),
    Int(i64),
    Other,
}

/// One received span, ids as lowercase hex (an empty parent: a root span).
#[derive(Debug, Clone)]
pub struct ReceivedSpan {
    pub service_name: Option<String>,
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: String,
    pub name: String,
    pub kind: i32,
    pub attributes: HashMap<String, Attr>,
    pub status_code: i32,
}

impl ReceivedSpan {
    pub fn str(&self, key: &str) -> Option<&str> {
        match self.attributes.get(key) {
            Some(Attr::Str(s)) => Some(s),
            _ => None,
        }
    }
    pub fn int(&self, key: &str) -> Option<i64> {
        match self.attributes.get(key) {
            Some(Attr::Int(i)) => Some(*i),
            _ => None,
        }
    }
}

#[derive(Default)]
struct Received {
    spans: Mutex<Vec<ReceivedSpan>>,
    /// Content types of the export requests (all must be protobuf).
    content_types: Mutex<Vec<String>>,
}

pub struct Collector {
    pub addr: SocketAddr,
    received: Arc<Received>,
    task: JoinHandle<()>,
}

impl Collector {
    /// A collector that accepts every export.
    pub async fn start() -> Collector {
        let received = Arc::new(Received::default());
        let state = received.clone();
        let (addr, task) = serve_loopback(move |stream| {
            let state = state.clone();
            async move {
                let svc = hyper::service::service_fn(move |req| export(state.clone(), req));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            }
        })
        .await;
        Collector { addr, received, task }
    }

    /// A collector that accepts connections, reads, and never answers.
    pub async fn silent() -> Collector {
        let (addr, task) = serve_loopback(|mut stream| async move {
            let mut sink = [0u8; 16 << 10];
            while let Ok(n) = tokio::io::AsyncReadExt::read(&mut stream, &mut sink).await {
                if n == 0 {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_secs(600)).await;
        })
        .await;
        Collector {
            addr,
            received: Arc::default(),
            task,
        }
    }

    /// The base address for `telemetry.tracing.otlp_endpoint`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.received.spans.lock().unwrap().clone()
    }

    pub fn content_types(&self) -> Vec<String> {
        self.received.content_types.lock().unwrap().clone()
    }

    /// The spans of `trace_id`, once `count` of them arrived (bounded wait).
    pub async fn wait_for_trace(&self, trace_id: &str, count: usize) -> Vec<ReceivedSpan> {
        poll_until(
            format!("{count} spans of trace {trace_id}"),
            super::wait::WAIT,
            || async {
                let spans: Vec<ReceivedSpan> = self.spans().into_iter().filter(|s| s.trace_id == trace_id).collect();
                (spans.len() >= count).then_some(spans)
            },
        )
        .await
    }

    /// The first server span received whose `keygate.request.id` is `request_id`.
    pub async fn wait_for_request(&self, request_id: &str) -> ReceivedSpan {
        poll_until(
            format!("the server span of {request_id}"),
            super::wait::WAIT,
            || async {
                self.spans()
                    .into_iter()
                    .find(|s| s.kind == KIND_SERVER && s.str("keygate.request.id") == Some(request_id))
            },
        )
        .await
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn export(received: Arc<Received>, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let reply = |status: u16, body: Vec<u8>| {
        Ok(Response::builder()
            .status(status)
            .header("content-type", "application/x-protobuf")
            .body(Full::new(Bytes::from(body)))
            .unwrap())
    };
    if req.method() != hyper::Method::POST || req.uri().path() != "/v1/traces" {
        return reply(404, Vec::new());
    }
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    received.content_types.lock().unwrap().push(content_type.clone());
    let Ok(body) = req.into_body().collect().await else {
        return reply(400, Vec::new());
    };
    if content_type != "application/x-protobuf" {
        return reply(415, Vec::new());
    }
    let Ok(request) = ExportTraceServiceRequest::decode(body.to_bytes()) else {
        return reply(400, Vec::new());
    };
    let mut spans = Vec::new();
    for resource_spans in request.resource_spans {
        let service_name = resource_spans
            .resource
            .as_ref()
            .and_then(|r| r.attributes.iter().find(|kv| kv.key == "service.name"))
            .and_then(|kv| match attr(kv) {
                Attr::Str(s) => Some(s),
                _ => None,
            });
        for scope in resource_spans.scope_spans {
            for span in scope.spans {
                spans.push(ReceivedSpan {
                    service_name: service_name.clone(),
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    name: span.name,
                    kind: span.kind,
                    attributes: span.attributes.iter().map(|kv| (kv.key.clone(), attr(kv))).collect(),
                    status_code: span.status.map_or(0, |s| s.code),
                });
            }
        }
    }
    received.spans.lock().unwrap().extend(spans);
    reply(200, ExportTraceServiceResponse::default().encode_to_vec())
}

fn attr(kv: &KeyValue) -> Attr {
    match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(AnyValue::StringValue(s)) => Attr::Str(s.clone()),
        Some(AnyValue::IntValue(i)) => Attr::Int(*i),
        _ => Attr::Other,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
