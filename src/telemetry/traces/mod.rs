//! OpenTelemetry traces (`telemetry.tracing`): one server span per request,
//! a child span per policy that ran and per upstream attempt, W3C trace
//! context in and out, exported in batches over OTLP/HTTP.
//!
//! Off by default, and then free: [`Tracing::start_request`] is one atomic
//! load that finds no pipeline, and nothing downstream of it allocates or
//! reads a clock. When on, ending a span only queues it; a background thread
//! exports batches, and a full queue drops spans (counted in
//! `keygate_trace_spans_dropped_total`) instead of making a request wait —
//! an unreachable or slow collector never slows or fails traffic.

mod export;
mod span;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwapOption;

pub use opentelemetry::trace::TraceId;
pub use span::{PolicySpan, RequestTrace, ServerOutcome, ServerRequest, SpanParent};

use crate::config::telemetry::TracingSpec;
use export::Pipeline;

/// How long flushing the last spans may hold up an exit or a reconfiguration.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// A compiled `telemetry.tracing` section (present only when tracing is on).
#[derive(Debug, Clone, PartialEq)]
pub struct TracingSettings {
    /// The collector's OTLP/HTTP traces URL (`…/v1/traces`).
    pub endpoint: String,
    pub service_name: String,
    /// The share of new traces kept, 0.0–1.0.
    pub sample_ratio: f64,
}

impl TracingSettings {
    /// `None` when tracing is off; errors are `(field, message)` below `telemetry.tracing`.
    pub fn compile(spec: &TracingSpec) -> Result<Option<Self>, (String, String)> {
        let Some(endpoint) = spec.otlp_endpoint.as_deref() else {
            return Ok(None);
        };
        if !(0.0..=1.0).contains(&spec.sample_ratio) {
            return Err(("sample_ratio".into(), "must be between 0.0 and 1.0".into()));
        }
        if spec.service_name.trim().is_empty() {
            return Err(("service_name".into(), "must not be empty".into()));
        }
        Ok(Some(Self {
            endpoint: traces_url(endpoint).map_err(|message| ("otlp_endpoint".to_string(), message))?,
            service_name: spec.service_name.clone(),
            sample_ratio: spec.sample_ratio,
        }))
    }
}

/// The collector's traces URL: `otlp_endpoint` is the collector's base
/// address (`/v1/traces` is appended, as OpenTelemetry's
/// `OTEL_EXPORTER_OTLP_ENDPOINT` does) unless it already names that path.
fn traces_url(endpoint: &str) -> Result<String, String> {
    let invalid = || format!("invalid URL {endpoint:?} (use e.g. http://127.0.0.1:4318)");
    let uri: http::Uri = endpoint.parse().map_err(|_| invalid())?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none_or(str::is_empty) {
        return Err(invalid());
    }
    if uri.query().is_some() {
        return Err(format!("{endpoint:?}: a query string is not allowed"));
    }
    let path = uri.path().trim_end_matches('/');
    if path.ends_with("/v1/traces") {
        return Ok(endpoint.to_string());
    }
    let base = endpoint.trim_end_matches('/');
    Ok(format!("{base}/v1/traces"))
}

/// Why a trace pipeline could not start.
#[derive(Debug, thiserror::Error)]
pub enum TracingError {
    #[error("the trace exporter's HTTP client: {0}")]
    Client(#[from] crate::http_client::HttpError),
    #[error("the trace exporter: {0}")]
    Exporter(String),
}

/// The process's trace pipeline, swappable by a reload. Clones share it.
#[derive(Clone, Default)]
pub struct Tracing(Arc<Shared>);

#[derive(Default)]
struct Shared {
    current: ArcSwapOption<Pipeline>,
    configuring: Mutex<()>,
}

impl std::fmt::Debug for Tracing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracing").finish_non_exhaustive()
    }
}

impl Tracing {
    /// Applies a snapshot's settings at start-up and on reload: unchanged
    /// settings keep the pipeline; new ones start a new pipeline and the old
    /// one flushes what it holds in the background. On error nothing changes.
    pub fn configure(&self, settings: Option<&TracingSettings>) -> Result<(), TracingError> {
        let Ok(_one_at_a_time) = self.0.configuring.lock() else {
            return Ok(());
        };
        let current = self.0.current.load();
        if current.as_ref().map(|p| &p.settings) == settings {
            return Ok(());
        }
        let next = settings.map(Pipeline::start).transpose()?.map(Arc::new);
        match &next {
            Some(p) => tracing::info!(
                endpoint = %p.settings.endpoint,
                sample_ratio = p.settings.sample_ratio,
                "tracing: exporting spans over OTLP/HTTP"
            ),
            None => tracing::info!("tracing: off"),
        }
        if let Some(old) = self.0.current.swap(next) {
            // The old pipeline's flush blocks: not on the caller's (async) thread.
            std::thread::spawn(move || old.shutdown(SHUTDOWN_TIMEOUT));
        }
        Ok(())
    }

    /// Starts the server span of a request (continuing the caller's trace
    /// from `traceparent`/`tracestate`); `None` when tracing is off, and
    /// then `request` is not even made.
    pub fn start_request<'a>(&self, request: impl FnOnce() -> ServerRequest<'a>) -> Option<RequestTrace> {
        let current = self.0.current.load();
        let pipeline = current.as_ref()?;
        Some(pipeline.start_request(&request()))
    }

    /// Exports what is queued (bounded by a timeout) and stops: at exit.
    pub fn shutdown(&self) {
        if let Some(pipeline) = self.0.current.swap(None) {
            pipeline.shutdown(SHUTDOWN_TIMEOUT);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(endpoint: Option<&str>, ratio: f64) -> TracingSpec {
        TracingSpec {
            otlp_endpoint: endpoint.map(str::to_string),
            sample_ratio: ratio,
            ..TracingSpec::default()
        }
    }

    #[test]
    fn off_unless_an_endpoint_is_set() {
        assert_eq!(TracingSettings::compile(&TracingSpec::default()), Ok(None));
    }

    #[test]
    fn endpoint_gets_the_traces_path_once() {
        for (given, url) in [
            ("http://127.0.0.1:4318", "http://127.0.0.1:4318/v1/traces"),
            ("http://collector:4318/", "http://collector:4318/v1/traces"),
            (
                "https://otel.example.com/otlp",
                "https://otel.example.com/otlp/v1/traces",
            ),
            ("http://127.0.0.1:4318/v1/traces", "http://127.0.0.1:4318/v1/traces"),
        ] {
            let settings = TracingSettings::compile(&spec(Some(given), 1.0)).unwrap().unwrap();
            assert_eq!(settings.endpoint, url, "{given}");
            assert_eq!(settings.service_name, "keygate");
        }
    }

    #[test]
    fn bad_values_name_their_field() {
        let field = |endpoint: &str, ratio: f64| TracingSettings::compile(&spec(Some(endpoint), ratio)).unwrap_err().0;
        assert_eq!(field("http://127.0.0.1:4318", 1.5), "sample_ratio");
        assert_eq!(field("http://127.0.0.1:4318", -0.1), "sample_ratio");
        assert_eq!(field("127.0.0.1:4318", 1.0), "otlp_endpoint");
        assert_eq!(field("ftp://collector", 1.0), "otlp_endpoint");
        assert_eq!(field("http://collector:4318/?x=1", 1.0), "otlp_endpoint");
        let empty_name = TracingSpec {
            service_name: " ".into(),
            ..spec(Some("http://c:4318"), 1.0)
        };
        assert_eq!(TracingSettings::compile(&empty_name).unwrap_err().0, "service_name");
    }
}
