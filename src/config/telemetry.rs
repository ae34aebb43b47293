//! The telemetry sections: `request_log:` (where `logging` policies write
//! their records) and `telemetry:` (OpenTelemetry traces).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The top-level `request_log:` section.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestLogSpec {
    /// `stdout`, or a file path (relative to the config file's directory).
    #[serde(default = "RequestLogSpec::default_sink")]
    pub sink: String,
    /// Records held while the sink is busy; more are dropped.
    #[serde(default = "RequestLogSpec::default_buffer")]
    pub buffer: usize,
}

impl RequestLogSpec {
    fn default_sink() -> String {
        "stdout".into()
    }
    pub fn default_buffer() -> usize {
        8192
    }
}

/// The top-level `telemetry:` section.
#[derive(Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TelemetrySpec {
    /// OpenTelemetry traces.
    #[serde(default)]
    pub tracing: TracingSpec,
}

/// `telemetry.tracing`: spans of every request exported to an
/// OpenTelemetry collector. Off unless `otlp_endpoint` is set.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TracingSpec {
    /// The collector's OTLP/HTTP address (`http://127.0.0.1:4318`); `null`
    /// (the default) turns tracing off.
    #[serde(default)]
    pub otlp_endpoint: Option<String>,
    /// `service.name` of the exported spans.
    #[serde(default = "TracingSpec::default_service_name")]
    pub service_name: String,
    /// The share of new traces kept (0.0–1.0); a request whose caller's
    /// trace is sampled is always kept.
    #[serde(default = "TracingSpec::default_sample_ratio")]
    pub sample_ratio: f64,
}

impl TracingSpec {
    fn default_service_name() -> String {
        "keygate".into()
    }
    fn default_sample_ratio() -> f64 {
        1.0
    }
}

impl Default for TracingSpec {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            service_name: Self::default_service_name(),
            sample_ratio: Self::default_sample_ratio(),
        }
    }
}
