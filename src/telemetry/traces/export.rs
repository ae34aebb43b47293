//! The export side of a trace pipeline: the tracer provider with its
//! sampler, a bounded queue in front of the SDK's batch span processor, and
//! the OTLP/HTTP exporter sending through keygate's own HTTP client.
//!
//! Every span that never reaches the collector is counted in
//! `keygate_trace_spans_dropped_total`: refused by the full queue
//! ([`BoundedQueue`]) or lost with a failed export ([`CountingExporter`]).
//! The SDK's processor keeps its own drop count private, so the queue bound
//! is enforced here, in front of it, where it can be counted.

use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::{Context, KeyValue};
use opentelemetry_http::{HttpClient, HttpError};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracer, SdkTracerProvider, Span, SpanData, SpanExporter,
    SpanProcessor,
};
use opentelemetry_sdk::Resource;

use super::{TracingError, TracingSettings};
use crate::telemetry::metrics;

/// Spans waiting for export; more are dropped (and counted).
const QUEUE_CAPACITY: usize = 2048;
/// The longest one export (one HTTP request to the collector) may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// The most of a collector's answer that is read (an OTLP answer is tiny).
const MAX_ANSWER_BYTES: u64 = 64 << 10;

/// A running trace pipeline: what requests start their spans with.
pub(super) struct Pipeline {
    pub(super) settings: TracingSettings,
    pub(super) tracer: SdkTracer,
    provider: SdkTracerProvider,
}

impl Pipeline {
    /// Builds the exporter, the batch processor's thread and the provider.
    pub(super) fn start(settings: &TracingSettings) -> Result<Self, TracingError> {
        // reqwest builds its blocking client only outside an async runtime.
        let client = std::thread::scope(|scope| {
            scope
                .spawn(|| crate::http_client::blocking_client(EXPORT_TIMEOUT))
                .join()
                .map_err(|_| TracingError::Exporter("building the HTTP client panicked".into()))
        })??;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(CollectorClient(client))
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(settings.endpoint.as_str())
            .with_timeout(EXPORT_TIMEOUT)
            .build()
            .map_err(|e| TracingError::Exporter(e.to_string()))?;
        let backlog = Arc::new(Backlog::default());
        let exporter = CountingExporter {
            inner: exporter,
            backlog: backlog.clone(),
            endpoint: settings.endpoint.clone(),
            failing: AtomicBool::new(false),
        };
        // The schedule delay and batch size follow OTEL_BSP_* when set; the
        // queue bound is keygate's, enforced (and counted) by BoundedQueue.
        let batch_config = BatchConfigBuilder::default()
            .with_max_queue_size(QUEUE_CAPACITY)
            .build();
        let batch = BatchSpanProcessor::new(exporter, batch_config);
        let resource = Resource::builder()
            .with_service_name(settings.service_name.clone())
            .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(BoundedQueue {
                batch,
                backlog,
                closed: AtomicBool::new(false),
            })
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                settings.sample_ratio,
            ))))
            .with_resource(resource)
            .build();
        Ok(Self {
            settings: settings.clone(),
            tracer: provider.tracer("keygate"),
            provider,
        })
    }

    /// Exports what is queued, within `timeout`, and stops the exporter thread.
    pub(super) fn shutdown(&self, timeout: Duration) {
        if let Err(e) = self.provider.shutdown_with_timeout(timeout) {
            tracing::warn!("tracing: flushing the last spans: {e}");
        }
    }
}

/// Spans admitted to the queue and not yet handed to the exporter.
#[derive(Debug, Default)]
struct Backlog(AtomicUsize);

impl Backlog {
    /// Takes a place in the queue; `false` when it is full.
    fn admit(&self) -> bool {
        self.0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |queued| {
                (queued < QUEUE_CAPACITY).then_some(queued + 1)
            })
            .is_ok()
    }

    fn release(&self, spans: usize) {
        self.0.fetch_sub(spans, Ordering::AcqRel);
    }
}

/// The SDK's batch processor behind a counted bound: the SDK's own queue
/// (of the same size) can never fill, as every span in it holds a place here.
/// Spans ending after a shutdown (requests in flight across a
/// reconfiguration) are dropped and counted too.
#[derive(Debug)]
struct BoundedQueue {
    batch: BatchSpanProcessor,
    backlog: Arc<Backlog>,
    closed: AtomicBool,
}

impl SpanProcessor for BoundedQueue {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        self.batch.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        if !self.closed.load(Ordering::Relaxed) && self.backlog.admit() {
            self.batch.on_end(span);
        } else {
            metrics().trace_spans_dropped.inc();
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.batch.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.closed.store(true, Ordering::Relaxed);
        self.batch.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.batch.set_resource(resource);
    }
}

/// The OTLP exporter, releasing queue places as batches leave and counting
/// the spans of failed exports; logs when the collector stops and starts
/// accepting (once each, not per batch).
#[derive(Debug)]
struct CountingExporter {
    inner: opentelemetry_otlp::SpanExporter,
    backlog: Arc<Backlog>,
    endpoint: String,
    failing: AtomicBool,
}

impl SpanExporter for CountingExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len();
        self.backlog.release(spans);
        let result = self.inner.export(batch).await;
        match &result {
            Err(e) => {
                metrics().trace_spans_dropped.inc_by(spans as u64);
                if !self.failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        "tracing: export to {} failed, spans are dropped until it works: {e}",
                        self.endpoint
                    );
                }
            }
            Ok(()) => {
                if self.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!("tracing: export to {} works again", self.endpoint);
                }
            }
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// keygate's HTTP client (reqwest on rustls-ring, see `http_client`) in its
/// blocking form: the batch processor exports on a plain thread of its
/// own, outside any async runtime, so a blocking call is the right shape.
#[derive(Debug)]
struct CollectorClient(reqwest::blocking::Client);

#[async_trait]
impl HttpClient for CollectorClient {
    async fn send_bytes(&self, request: http::Request<Bytes>) -> Result<http::Response<Bytes>, HttpError> {
        let response = self.0.execute(request.try_into()?)?;
        let mut answer = http::Response::builder().status(response.status());
        if let Some(headers) = answer.headers_mut() {
            headers.extend(response.headers().iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        let mut body = Vec::new();
        response.take(MAX_ANSWER_BYTES).read_to_end(&mut body)?;
        Ok(answer.body(Bytes::from(body))?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backlog_refuses_past_its_capacity_until_a_batch_leaves() {
        let backlog = Backlog::default();
        assert!((0..QUEUE_CAPACITY).all(|_| backlog.admit()));
        assert!(!backlog.admit(), "full");
        backlog.release(512);
        assert!((0..512).all(|_| backlog.admit()));
        assert!(!backlog.admit());
    }
}
