//! The `request_log:` section: where `logging` policies write their records.

use serde::Deserialize;

/// The top-level `request_log:` section.
#[derive(Debug, Deserialize)]
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
