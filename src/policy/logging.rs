//! `logging`: a full record of the request and its response. Matching the policy arms a [`LogCapture`] for the request; the
//! proxy feeds it the bytes it streams anyway (never buffering the forwarded
//! body) and hands it the final facts once the response is done. No record
//! holds a credential (see [`super::redact`]): those headers, and those query
//! parameters' values in `query`, are written as `[REDACTED]`.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use serde::Serialize;
use serde_json::{Map, Value};

use super::redact::{redact_query, CredentialNames, REDACTED};
use super::{CompileError, Outcome, Policy, PolicyState, RequestSummary, RequestView, Resources};
use crate::config::policy::LoggingSpec;
use crate::telemetry::request_log::RequestLog;

/// A compiled `logging` policy.
#[derive(Debug)]
pub struct Logging {
    settings: Arc<LogSettings>,
}

#[derive(Debug)]
struct LogSettings {
    /// Byte cap per body; 0 when bodies are not recorded.
    max_body_bytes: usize,
    /// `redact_headers`, the usual credential headers and, once the chain is
    /// compiled ([`Logging::redacting`]), the deployment's `keyauth` locations.
    redact: CredentialNames,
    sink: RequestLog,
}

impl LogSettings {
    fn from_spec(spec: &LoggingSpec, sink: RequestLog) -> Self {
        let redact = CredentialNames::default().with_headers(&spec.redact_headers);
        let max_body_bytes = if spec.bodies {
            usize::try_from(spec.max_body_bytes.0).unwrap_or(usize::MAX)
        } else {
            0
        };
        Self {
            max_body_bytes,
            redact,
            sink,
        }
    }
}

impl Policy for Logging {
    type Spec = LoggingSpec;
    const KIND: &'static str = "logging";

    fn from_spec(spec: &LoggingSpec, resources: &Resources<'_>) -> Result<Self, CompileError> {
        Ok(Self {
            settings: Arc::new(LogSettings::from_spec(spec, resources.request_log.clone())),
        })
    }

    async fn evaluate(&self, _request: &RequestView<'_>, state: &mut PolicyState) -> Outcome {
        state.log.get_or_insert_with(|| LogCapture::new(self.settings.clone()));
        Outcome::Continue
    }
}

impl Logging {
    /// Also redacts the credential locations of the deployment's chain.
    pub fn redacting(self, chain: &CredentialNames) -> Self {
        let settings = LogSettings {
            max_body_bytes: self.settings.max_body_bytes,
            redact: chain.clone().union(&self.settings.redact),
            sink: self.settings.sink.clone(),
        };
        Self {
            settings: Arc::new(settings),
        }
    }
}

/// Up to `cap` bytes of a streamed body.
#[derive(Debug, Default)]
struct BodyCapture {
    bytes: Vec<u8>,
}

impl BodyCapture {
    fn push(&mut self, chunk: &[u8], cap: usize) {
        let room = cap.saturating_sub(self.bytes.len());
        self.bytes.extend_from_slice(&chunk[..chunk.len().min(room)]);
    }
}

/// What one request's log record collects while it is served.
#[derive(Debug)]
pub struct LogCapture {
    settings: Arc<LogSettings>,
    request_body: BodyCapture,
    response_body: BodyCapture,
}

impl LogCapture {
    fn new(settings: Arc<LogSettings>) -> Self {
        Self {
            settings,
            request_body: BodyCapture::default(),
            response_body: BodyCapture::default(),
        }
    }

    pub fn on_request_body(&mut self, chunk: &[u8]) {
        self.request_body.push(chunk, self.settings.max_body_bytes);
    }

    pub fn on_response_body(&mut self, chunk: &[u8]) {
        self.response_body.push(chunk, self.settings.max_body_bytes);
    }

    /// Builds the record and queues it for the sink (never blocks).
    pub fn finish(self, facts: &RequestSummary<'_>) {
        match serde_json::to_string(&self.record(facts)) {
            Ok(line) => self.settings.sink.submit(line),
            Err(e) => tracing::warn!("cannot encode a request-log record: {e}"),
        }
    }

    fn record(&self, facts: &RequestSummary<'_>) -> Value {
        let head = facts.request;
        let header = |name: http::HeaderName| head.headers.get(name).and_then(|v| v.to_str().ok());
        let record = Record {
            ts: humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
            request_id: facts.request_id,
            trace_id: facts.trace_id.map(|id| id.to_string()),
            method: head.method.as_str(),
            host: header(http::header::HOST)
                .or_else(|| head.uri.authority().map(|a| a.as_str()))
                .unwrap_or(""),
            path: head.uri.path(),
            query: redact_query(head.uri.query().unwrap_or(""), |name| {
                self.settings.redact.is_credential_param(name)
            }),
            client_ip: facts.client_ip.map(|ip| ip.to_string()),
            user_agent: header(http::header::USER_AGENT),
            deployment_id: facts.deployment_id,
            instance: facts.instance.map(|i| i.to_string()),
            status: facts.status,
            request_headers: self.headers(&head.headers),
            response_headers: facts.response_headers.map(|h| self.headers(h)).unwrap_or_default(),
            latency_ms: Latency {
                total: millis(facts.total),
                instance: millis(facts.instance_time),
                gateway: millis(facts.total.saturating_sub(facts.instance_time)),
            },
        };
        let mut value = serde_json::to_value(record).unwrap_or(Value::Null);
        if let Value::Object(map) = &mut value {
            if self.settings.max_body_bytes > 0 {
                insert_body(map, "request_body", &self.request_body.bytes);
                insert_body(map, "response_body", &self.response_body.bytes);
            }
        }
        value
    }

    /// Header map as `{name: value}` (repeated headers joined), redacted.
    fn headers(&self, headers: &http::HeaderMap) -> Map<String, Value> {
        let mut out = Map::new();
        for (name, value) in headers {
            let value = if self.settings.redact.is_credential_header(name.as_str()) {
                REDACTED.to_string()
            } else {
                String::from_utf8_lossy(value.as_bytes()).into_owned()
            };
            match out.get_mut(name.as_str()) {
                Some(Value::String(existing)) if existing != REDACTED => {
                    existing.push_str(", ");
                    existing.push_str(&value);
                }
                Some(_) => {}
                None => {
                    out.insert(name.as_str().to_string(), Value::String(value));
                }
            }
        }
        out
    }
}

#[derive(Serialize)]
struct Record<'a> {
    ts: String,
    request_id: &'a str,
    /// Present when tracing is on.
    #[serde(skip_serializing_if = "Option::is_none")]
    trace_id: Option<String>,
    method: &'a str,
    host: &'a str,
    path: &'a str,
    query: std::borrow::Cow<'a, str>,
    client_ip: Option<String>,
    user_agent: Option<&'a str>,
    deployment_id: Option<&'a str>,
    instance: Option<String>,
    status: u16,
    request_headers: Map<String, Value>,
    response_headers: Map<String, Value>,
    latency_ms: Latency,
}

#[derive(Serialize)]
struct Latency {
    total: f64,
    instance: f64,
    gateway: f64,
}

fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1_000_000.0).round() / 1000.0
}

/// Text when UTF-8, else base64 with `<field>_encoding: "base64"`.
fn insert_body(map: &mut Map<String, Value>, field: &str, bytes: &[u8]) {
    match std::str::from_utf8(bytes) {
        Ok(text) => {
            map.insert(field.into(), text.into());
        }
        Err(_) => {
            map.insert(
                field.into(),
                base64::engine::general_purpose::STANDARD.encode(bytes).into(),
            );
            map.insert(format!("{field}_encoding"), "base64".into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::traces::TraceId;

    fn capture(yaml: &str) -> LogCapture {
        let spec: LoggingSpec = serde_saphyr::from_str(yaml).unwrap();
        LogCapture::new(Arc::new(LogSettings::from_spec(&spec, RequestLog::default())))
    }

    fn request() -> http::request::Parts {
        http::Request::post("/orders?id=7")
            .header("host", "api.example.com")
            .header("user-agent", "curl/8")
            .header("Authorization", "Bearer secret")
            .header("Cookie", "session=1")
            .header("x-multi", "a")
            .header("x-multi", "b")
            .body(())
            .unwrap()
            .into_parts()
            .0
    }

    fn record(capture: &LogCapture, response_headers: &http::HeaderMap) -> Value {
        record_traced(capture, response_headers, None)
    }

    fn record_traced(capture: &LogCapture, response_headers: &http::HeaderMap, trace_id: Option<TraceId>) -> Value {
        let head = request();
        capture.record(&RequestSummary {
            request: &head,
            request_id: "req_1",
            trace_id,
            client_ip: Some("203.0.113.9".parse().unwrap()),
            deployment_id: Some("dep"),
            instance: Some(&"127.0.0.1:3000"),
            status: 201,
            response_headers: Some(response_headers),
            total: Duration::from_micros(12_500),
            instance_time: Duration::from_micros(10_000),
        })
    }

    #[test]
    fn record_fields_and_redaction() {
        let mut c = capture("{bodies: true, max_body_bytes: 4, redact_headers: [Cookie]}");
        c.on_request_body(b"hello world");
        c.on_response_body(&[0xff, 0x00]);
        let mut response_headers = http::HeaderMap::new();
        response_headers.insert("content-type", "text/plain".parse().unwrap());
        let v = record(&c, &response_headers);
        for field in [
            "ts",
            "request_id",
            "method",
            "host",
            "path",
            "query",
            "client_ip",
            "user_agent",
            "deployment_id",
            "instance",
            "status",
            "request_headers",
            "request_body",
            "response_headers",
            "response_body",
            "latency_ms",
        ] {
            assert!(v.get(field).is_some(), "missing {field}: {v}");
        }
        assert_eq!(v["method"], "POST");
        assert_eq!(v["host"], "api.example.com");
        assert_eq!(v["path"], "/orders");
        assert_eq!(v["query"], "id=7");
        assert_eq!(v["client_ip"], "203.0.113.9");
        assert_eq!(v["user_agent"], "curl/8");
        assert_eq!(v["status"], 201);
        assert_eq!(v["request_headers"]["authorization"], "[REDACTED]");
        assert_eq!(v["request_headers"]["cookie"], "[REDACTED]");
        assert_eq!(v["request_headers"]["x-multi"], "a, b");
        assert_eq!(v["request_body"], "hell", "capped at max_body_bytes");
        assert_eq!(v["response_body"], "/wA=");
        assert_eq!(v["response_body_encoding"], "base64");
        assert_eq!(v["latency_ms"]["total"], 12.5);
        assert_eq!(v["latency_ms"]["instance"], 10.0);
        assert_eq!(v["latency_ms"]["gateway"], 2.5);
        assert!(v["ts"].as_str().unwrap().ends_with('Z'));
    }

    #[test]
    fn trace_id_only_when_traced() {
        let c = capture("{}");
        assert!(record(&c, &http::HeaderMap::new()).get("trace_id").is_none());
        let trace = TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap();
        let v = record_traced(&c, &http::HeaderMap::new(), Some(trace));
        assert_eq!(v["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    }

    #[test]
    fn bodies_off_records_none() {
        let mut c = capture("{}");
        c.on_request_body(b"secret payload");
        let v = record(&c, &http::HeaderMap::new());
        assert!(v.get("request_body").is_none());
        assert_eq!(v["request_headers"]["authorization"], "[REDACTED]");
    }
}
