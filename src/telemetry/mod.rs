//! Process logs (tracing, to stderr, as text or JSON lines), metrics
//! (Prometheus, served by the admin listener) and traces (OpenTelemetry,
//! exported to a collector: [`traces`]).

mod metrics;
mod process;
pub mod recent;
pub mod request_log;
pub mod traces;

pub use metrics::{metrics, Exposition, Label, Metrics, Part, RequestLabels};

use rand::distributions::Alphanumeric;
use rand::Rng;

/// A request id (`req_` + 20 random alphanumerics): returned to the client,
/// sent to the instance, and in every log line about the request.
pub fn new_request_id() -> String {
    let mut id = String::with_capacity(24);
    id.push_str("req_");
    id.extend(rand::thread_rng().sample_iter(&Alphanumeric).take(20).map(char::from));
    id
}

/// How process log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines (colours on a terminal).
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text.to_ascii_lowercase().as_str() {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            _ => Err(format!("unknown log format {text:?} (use text or json)")),
        }
    }
}

/// Installs the log subscriber once: `RUST_LOG` filters (default `info`);
/// pingora's `log` records are bridged in.
pub fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = match format {
        LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
        LogFormat::Json => logs
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
    };
}
