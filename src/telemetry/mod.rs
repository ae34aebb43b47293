//! Process logs (tracing, to stderr, as text or JSON lines), metrics
//! (Prometheus, served by the admin listener) and traces (OpenTelemetry,
//! exported to a collector: [`traces`]).

mod metrics;
mod process;
pub mod recent;
pub mod request_log;
pub mod traces;

pub use metrics::{metrics, Durations, Exposition, Label, Metrics, Part, RequestLabels};

use rand::Rng;

/// A request id (`req_` + 20 random alphanumerics): returned to the client,
/// sent to the instance, and in every log line about the request.
/// Ten digits in base 62 from each of two random 64-bit numbers: the same
/// alphabet as sampling characters one by one, at a third of the cost.
pub fn new_request_id() -> String {
    const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut rng = rand::thread_rng();
    let mut id = String::with_capacity(24);
    id.push_str("req_");
    for mut n in [rng.gen::<u64>(), rng.gen::<u64>()] {
        for _ in 0..10 {
            id.push(char::from(ALPHABET[(n % 62) as usize]));
            n /= 62;
        }
    }
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

#[cfg(test)]
mod tests {
    use super::new_request_id;

    #[test]
    fn request_ids_are_req_and_twenty_alphanumerics_and_all_differ() {
        let ids: std::collections::HashSet<String> = (0..1_000).map(|_| new_request_id()).collect();
        assert_eq!(ids.len(), 1_000);
        for id in &ids {
            let tail = id.strip_prefix("req_").expect("prefix");
            assert_eq!(tail.len(), 20, "{id}");
            assert!(tail.bytes().all(|b| b.is_ascii_alphanumeric()), "{id}");
        }
        // Every position uses the whole alphabet, not a part of it.
        let last_chars: std::collections::HashSet<u8> = ids.iter().map(|id| id.as_bytes()[23]).collect();
        assert!(last_chars.len() > 40, "{}", last_chars.len());
    }
}
