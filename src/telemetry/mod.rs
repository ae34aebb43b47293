//! Process logs (tracing, to stderr, as text or JSON lines), metrics
//! (Prometheus, served by the admin listener) and traces (OpenTelemetry,
//! exported to a collector: [`traces`]).

mod histogram;
mod metrics;
mod process;
pub mod recent;
pub mod request_log;
pub mod traces;

pub use metrics::{metrics, Durations, Exposition, Label, Metrics, Part};

use http::HeaderValue;
use rand::Rng;

/// A request id: returned to the client, sent to the instance, and in
/// every log line about the request. Kept as the header value both
/// `X-Request-Id` fields share, so neither copies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(HeaderValue);

impl RequestId {
    /// A new id, `req_` + 20 random alphanumerics. Ten digits in base 62
    /// from each of two random 64-bit numbers: the same alphabet as sampling
    /// characters one by one, at a third of the cost.
    pub fn generate() -> Self {
        const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        let mut rng = rand::thread_rng();
        let mut id = [0u8; 24];
        id[..4].copy_from_slice(b"req_");
        let mut digits = id[4..].iter_mut();
        for mut n in [rng.gen::<u64>(), rng.gen::<u64>()] {
            for digit in digits.by_ref().take(10) {
                *digit = ALPHABET[(n % 62) as usize];
                n /= 62;
            }
        }
        // Alphanumerics are always a valid field value.
        Self(HeaderValue::from_bytes(&id).unwrap_or(HeaderValue::from_static("req_")))
    }

    /// A trusted proxy's id (`X-Request-Id`), trimmed, when it is 1–200
    /// visible ASCII characters; otherwise the gateway makes its own.
    pub fn from_trusted(value: &HeaderValue) -> Option<Self> {
        let text = value.to_str().ok()?;
        let trimmed = text.trim();
        let usable = !trimmed.is_empty() && trimmed.len() <= 200 && trimmed.bytes().all(|b| b.is_ascii_graphic());
        if !usable {
            return None;
        }
        match trimmed.len() == text.len() {
            true => Some(Self(value.clone())),
            false => HeaderValue::from_str(trimmed).ok().map(Self),
        }
    }

    pub fn as_str(&self) -> &str {
        // Only visible ASCII gets in (see the constructors).
        self.0.to_str().unwrap_or_default()
    }

    /// The id as a field value, borrowed.
    pub fn value(&self) -> &HeaderValue {
        &self.0
    }
}

impl Default for RequestId {
    /// No id yet (a request before `begin_request`).
    fn default() -> Self {
        Self(HeaderValue::from_static(""))
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
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
    use super::RequestId;
    use http::HeaderValue;

    #[test]
    fn request_ids_are_req_and_twenty_alphanumerics_and_all_differ() {
        let ids: std::collections::HashSet<String> =
            (0..1_000).map(|_| RequestId::generate().as_str().to_owned()).collect();
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

    #[test]
    fn a_trusted_id_is_kept_only_when_it_is_visible_ascii_and_not_too_long() {
        let kept = RequestId::from_trusted(&HeaderValue::from_static("edge-123")).expect("kept");
        assert_eq!(
            (kept.as_str(), kept.value()),
            ("edge-123", &HeaderValue::from_static("edge-123"))
        );
        let trimmed = RequestId::from_trusted(&HeaderValue::from_static(" edge-9 ")).expect("trimmed");
        assert_eq!(trimmed.as_str(), "edge-9");
        for refused in ["", "a b", &"x".repeat(201)] {
            assert!(
                RequestId::from_trusted(&HeaderValue::from_str(refused).unwrap()).is_none(),
                "{refused:?}"
            );
        }
        assert!(RequestId::from_trusted(&HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap()).is_none());
    }
}
