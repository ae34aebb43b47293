//! OpenTelemetry traces end to end (docs/operations.md, "Tracing"): spans
//! exported over OTLP/HTTP to a fake collector (tests/support/collector.rs,
//! faithful to the OTLP/HTTP protobuf transport), W3C trace context
//! continued from the caller and handed to the instance, policy and retry
//! spans, sampling, the trace id in log records and error bodies, and a down
//! or hung collector that costs requests nothing but counted drops.

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::collector::{Collector, ReceivedSpan, KIND_CLIENT, KIND_INTERNAL, KIND_SERVER, STATUS_ERROR};
use support::gateway::{Gateway, Launch};
use support::net::closed_addr;
use support::upstreams::Upstream;
use support::wait::{poll_until, WAIT};

const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

/// `telemetry.tracing` for `endpoint` plus an app behind an `ip` and a
/// `logging` policy (records in `requests.log`), an `/admin` firewall, and a
/// deployment whose two instances refuse connections.
fn config(endpoint: Option<&str>, ratio: f64, up: &Upstream) -> String {
    let telemetry = match endpoint {
        Some(endpoint) => format!(
            "telemetry:\n  tracing:\n    otlp_endpoint: \"{endpoint}\"\n    service_name: keygate-test\n    sample_ratio: {ratio}\n"
        ),
        None => String::new(),
    };
    format!(
        "{telemetry}request_log:\n  sink: requests.log\n\
         deployments:\n  - id: dep\n    instances: [\"{up}\"]\n    policies:\n\
         \x20     - id: no-admin\n        match: [{{path: {{prefix: /admin}}}}]\n        firewall: {{action: deny}}\n\
         \x20     - id: office\n        ip: {{allow: [127.0.0.0/8]}}\n\
         \x20     - id: audit\n        logging: {{}}\n\
         \x20 - id: down\n    instances: [\"{closed1}\", \"{closed2}\"]\n\
         routes:\n  - host: app.test\n    deployment: dep\n  - host: down.test\n    deployment: down\n",
        up = up.addr_str(),
        closed1 = closed_addr(),
        closed2 = closed_addr(),
    )
}

/// A gateway exporting every 50 ms (the standard `OTEL_BSP_SCHEDULE_DELAY`).
async fn traced_gateway(endpoint: Option<&str>, ratio: f64, up: &Upstream) -> Gateway {
    Launch::new(config(endpoint, ratio, up))
        .env("OTEL_BSP_SCHEDULE_DELAY", "50")
        .start()
        .await
}

/// `(trace id, parent id, flags)` of a `traceparent` value.
fn traceparent(value: &str) -> (String, String, String) {
    let parts: Vec<&str> = value.split('-').collect();
    assert_eq!(parts.len(), 4, "traceparent {value:?}");
    assert_eq!(parts[0], "00", "version of {value:?}");
    (parts[1].to_string(), parts[2].to_string(), parts[3].to_string())
}

fn one<'a>(spans: &'a [ReceivedSpan], what: &str, pick: impl Fn(&ReceivedSpan) -> bool) -> &'a ReceivedSpan {
    let found: Vec<&ReceivedSpan> = spans.iter().filter(|s| pick(s)).collect();
    assert_eq!(found.len(), 1, "exactly one {what} among {spans:#?}");
    found[0]
}

fn server_span(spans: &[ReceivedSpan]) -> &ReceivedSpan {
    one(spans, "server span", |s| s.kind == KIND_SERVER)
}

#[tokio::test(flavor = "multi_thread")]
async fn continues_the_callers_trace_and_parents_the_instance() {
    let collector = Collector::start().await;
    let up = Upstream::inspector("app").await;
    let gw = traced_gateway(Some(&collector.endpoint()), 1.0, &up).await;
    let resp = gw
        .get("app.test:8080", "/hello?x=1")
        .header("traceparent", format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01"))
        .header("tracestate", "vendor=opaque")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    // The instance gets one traceparent (replaced, not appended): the same
    // trace, a new parent (keygate's span), still sampled.
    let seen = up.last_seen();
    let sent = seen.all("traceparent");
    assert_eq!(sent.len(), 1, "one traceparent: {sent:?}");
    let (trace, parent, flags) = traceparent(sent[0]);
    assert_eq!(trace, CALLER_TRACE);
    assert_ne!(parent, CALLER_SPAN);
    assert_eq!(flags, "01");
    assert_eq!(seen.all("tracestate"), ["vendor=opaque"]);

    let spans = collector.wait_for_trace(CALLER_TRACE, 4).await;
    let server = server_span(&spans);
    assert_eq!(
        server.parent_span_id, CALLER_SPAN,
        "the caller's span is the server span's parent"
    );
    assert_eq!(server.name, "GET");
    assert_eq!(server.service_name.as_deref(), Some("keygate-test"));
    assert_eq!(server.str("http.request.method"), Some("GET"));
    assert_eq!(server.str("url.path"), Some("/hello"));
    assert_eq!(server.str("server.address"), Some("app.test"));
    assert_eq!(server.int("server.port"), Some(8080));
    assert_eq!(server.int("http.response.status_code"), Some(200));
    assert_eq!(server.str("keygate.deployment.id"), Some("dep"));
    assert_eq!(server.str("keygate.error.code"), None);
    assert_ne!(server.status_code, STATUS_ERROR);

    let upstream = one(&spans, "upstream span", |s| s.name == "upstream");
    assert_eq!(upstream.kind, KIND_CLIENT);
    assert_eq!(upstream.parent_span_id, server.span_id);
    assert_eq!(
        upstream.span_id, parent,
        "the instance's parent is keygate's upstream span"
    );
    assert_eq!(upstream.str("server.address"), Some("127.0.0.1"));
    assert_eq!(upstream.int("server.port"), Some(i64::from(up.addr.port())));
    assert_eq!(upstream.int("http.response.status_code"), Some(200));

    for (name, kind) in [("policy office", "ip"), ("policy audit", "logging")] {
        let policy = one(&spans, name, |s| s.name == name);
        assert_eq!(policy.kind, KIND_INTERNAL);
        assert_eq!(policy.parent_span_id, server.span_id);
        assert_eq!(policy.str("keygate.policy.type"), Some(kind));
        assert_eq!(policy.str("keygate.policy.decision"), Some("allow"));
    }
    assert!(
        spans.iter().all(|s| s.name != "policy no-admin"),
        "a policy that did not match has no span"
    );
    assert!(collector.content_types().iter().all(|t| t == "application/x-protobuf"));
}

#[tokio::test(flavor = "multi_thread")]
async fn starts_a_trace_when_the_caller_has_none() {
    let collector = Collector::start().await;
    let up = Upstream::inspector("app").await;
    let gw = traced_gateway(Some(&collector.endpoint()), 1.0, &up).await;

    // No trace context, and one that does not parse (its tracestate is dropped with it).
    for incoming in [None, Some("00-not-a-trace-01")] {
        let mut request = gw.get("app.test", "/new");
        if let Some(value) = incoming {
            request = request
                .header("traceparent", value)
                .header("tracestate", "vendor=stale");
        }
        assert_eq!(request.send().await.unwrap().status(), 200);
        let seen = up.last_seen();
        let sent = seen.all("traceparent");
        assert_eq!(sent.len(), 1, "{incoming:?}: {sent:?}");
        let (trace, _, flags) = traceparent(sent[0]);
        assert_eq!(trace.len(), 32);
        assert_eq!(flags, "01");
        assert!(
            seen.all("tracestate").is_empty(),
            "{incoming:?}: no tracestate without a valid traceparent"
        );
        let spans = collector.wait_for_trace(&trace, 4).await;
        assert_eq!(
            server_span(&spans).parent_span_id,
            "",
            "{incoming:?}: a new trace starts at keygate"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn gateway_errors_carry_the_trace_id_and_mark_the_span() {
    let collector = Collector::start().await;
    let up = Upstream::inspector("app").await;
    let gw = traced_gateway(Some(&collector.endpoint()), 1.0, &up).await;

    let resp = gw.get("app.test", "/admin/users").send().await.unwrap();
    assert_eq!(resp.status(), 403);
    let body: Value = resp.json().await.unwrap();
    let trace = body["meta"]["traceId"].as_str().expect("meta.traceId").to_string();
    let spans = collector.wait_for_trace(&trace, 2).await;
    let server = server_span(&spans);
    assert_eq!(server.status_code, STATUS_ERROR);
    assert_eq!(
        server.str("keygate.error.code"),
        Some("err:frontline:client:firewall_denied")
    );
    assert_eq!(server.int("http.response.status_code"), Some(403));
    let denied = one(&spans, "firewall span", |s| s.name == "policy no-admin");
    assert_eq!(denied.str("keygate.policy.type"), Some("firewall"));
    assert_eq!(denied.str("keygate.policy.decision"), Some("deny"));
    assert!(
        spans.iter().all(|s| s.name != "upstream" && s.name != "policy office"),
        "the chain stopped"
    );

    // No route: the error still names its trace, and the span has no deployment.
    let resp = gw.get("nowhere.test", "/").send().await.unwrap();
    assert_eq!(resp.status(), 404);
    let body: Value = resp.json().await.unwrap();
    let trace = body["meta"]["traceId"].as_str().expect("meta.traceId").to_string();
    let spans = collector.wait_for_trace(&trace, 1).await;
    let server = server_span(&spans);
    assert_eq!(
        server.str("keygate.error.code"),
        Some("err:frontline:routing:config_not_found")
    );
    assert_eq!(server.str("keygate.deployment.id"), None);
}

#[tokio::test(flavor = "multi_thread")]
async fn every_upstream_attempt_has_its_span() {
    let collector = Collector::start().await;
    let up = Upstream::inspector("app").await;
    let gw = traced_gateway(Some(&collector.endpoint()), 1.0, &up).await;
    let resp = gw.get("down.test", "/").send().await.unwrap();
    assert_eq!(resp.status(), 503);
    let body: Value = resp.json().await.unwrap();
    let trace = body["meta"]["traceId"].as_str().expect("meta.traceId").to_string();

    let spans = collector.wait_for_trace(&trace, 3).await;
    let server = server_span(&spans);
    assert_eq!(server.status_code, STATUS_ERROR);
    assert_eq!(server.int("http.response.status_code"), Some(503));
    assert_eq!(
        server.str("keygate.error.code"),
        Some("err:frontline:upstream:service_unavailable")
    );
    let attempts: Vec<&ReceivedSpan> = spans.iter().filter(|s| s.name == "upstream").collect();
    assert_eq!(attempts.len(), 2, "one span per instance tried: {spans:#?}");
    for attempt in &attempts {
        assert_eq!(attempt.parent_span_id, server.span_id);
        assert_eq!(attempt.status_code, STATUS_ERROR);
        assert_eq!(attempt.str("error.type"), Some("ConnectRefused"));
    }
    assert_ne!(
        attempts[0].int("server.port"),
        attempts[1].int("server.port"),
        "the retry went to the other instance"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sampling_keeps_sampled_callers_and_the_ratio_decides_the_rest() {
    let collector = Collector::start().await;
    let up = Upstream::inspector("app").await;
    let gw = traced_gateway(Some(&collector.endpoint()), 0.0, &up).await;

    // Ratio 0: a new trace is not exported, nor is a caller's unsampled one;
    // the instance still gets the trace context (flag 00).
    assert_eq!(gw.get("app.test", "/").send().await.unwrap().status(), 200);
    let unsampled_caller = "0af7651916cd43dd8448eb211c80319c";
    let resp = gw
        .get("app.test", "/")
        .header("traceparent", format!("00-{unsampled_caller}-b7ad6b7169203331-00"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let (trace, _, flags) = traceparent(up.last_seen().one("traceparent").unwrap());
    assert_eq!((trace.as_str(), flags.as_str()), (unsampled_caller, "00"));

    // A sampled caller is always kept.
    let resp = gw
        .get("app.test", "/")
        .header("traceparent", format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    collector.wait_for_trace(CALLER_TRACE, 4).await;
    // Spans are exported in the order they end: the earlier requests' would be here by now.
    let others: Vec<ReceivedSpan> = collector
        .spans()
        .into_iter()
        .filter(|s| s.trace_id != CALLER_TRACE)
        .collect();
    assert!(others.is_empty(), "unsampled traces were exported: {others:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn log_records_carry_the_trace_id() {
    let collector = Collector::start().await;
    let up = Upstream::inspector("app").await;
    let gw = traced_gateway(Some(&collector.endpoint()), 1.0, &up).await;
    let resp = gw
        .get("app.test", "/logged")
        .header("traceparent", format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let log = gw.dir.path().join("requests.log");
    let record: Value = poll_until("a request-log record", WAIT, || async {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        text.lines().next().map(|line| serde_json::from_str(line).unwrap())
    })
    .await;
    assert_eq!(record["trace_id"], CALLER_TRACE);
}

#[tokio::test(flavor = "multi_thread")]
async fn tracing_off_changes_nothing() {
    let up = Upstream::inspector("app").await;
    let gw = traced_gateway(None, 1.0, &up).await;
    let incoming = format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01");
    let resp = gw
        .get("app.test", "/")
        .header("traceparent", &incoming)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        up.last_seen().all("traceparent"),
        [incoming.as_str()],
        "passed through unchanged"
    );
    let resp = gw.get("app.test", "/admin").send().await.unwrap();
    let body: Value = resp.json().await.unwrap();
    assert!(body["meta"].get("traceId").is_none(), "{body}");
    let log = gw.dir.path().join("requests.log");
    let record: Value = poll_until("a request-log record", WAIT, || async {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        text.lines().next().map(|line| serde_json::from_str(line).unwrap())
    })
    .await;
    assert!(record.get("trace_id").is_none(), "{record}");
    assert_eq!(gw.metric("keygate_trace_spans_dropped_total").await, 0.0);
}

/// The time each of `count` sequential requests took (each must succeed).
async fn latencies(gw: &Gateway, count: usize) -> Vec<Duration> {
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let started = Instant::now();
        let resp = gw.get("app.test", "/").send().await.unwrap();
        assert_eq!(resp.status(), 200);
        resp.bytes().await.unwrap();
        out.push(started.elapsed());
    }
    out.sort();
    out
}

/// Requests through a gateway whose collector is `broken` take no longer
/// than through one without tracing: the median within a few milliseconds,
/// no request anywhere near an export's timeout.
async fn assert_no_added_latency(broken: &Gateway, off: &Gateway, count: usize) {
    let with = latencies(broken, count).await;
    let without = latencies(off, count).await;
    let (median_with, median_without) = (with[count / 2], without[count / 2]);
    assert!(
        median_with <= median_without + Duration::from_millis(20),
        "median {median_with:?} with a broken collector vs {median_without:?} without tracing"
    );
    let slowest = with[count - 1];
    assert!(slowest < Duration::from_millis(500), "slowest request {slowest:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_collector_costs_requests_nothing_and_drops_are_counted() {
    let up = Upstream::inspector("app").await;
    let endpoint = format!("http://{}", closed_addr());
    let down = traced_gateway(Some(&endpoint), 1.0, &up).await;
    let off = traced_gateway(None, 1.0, &up).await;
    let requests = 40;
    assert_no_added_latency(&down, &off, requests).await;
    // Each request: a server, an upstream and two policy spans.
    down.wait_metric_at_least("keygate_trace_spans_dropped_total", (requests * 4) as f64)
        .await;
    assert!(
        down.stderr().contains("spans are dropped until it works"),
        "the failure is logged once:\n{}",
        down.stderr()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hung_collector_costs_requests_nothing() {
    let collector = Collector::silent().await;
    let up = Upstream::inspector("app").await;
    let hung = traced_gateway(Some(&collector.endpoint()), 1.0, &up).await;
    let off = traced_gateway(None, 1.0, &up).await;
    assert_no_added_latency(&hung, &off, 40).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reload_turns_tracing_on_and_off() {
    let collector = Collector::start().await;
    let up = Upstream::inspector("app").await;
    let gw = traced_gateway(None, 1.0, &up).await;

    let reloads = gw.metric("keygate_config_reloads_total").await;
    gw.write_config(&config(Some(&collector.endpoint()), 1.0, &up));
    gw.wait_metric_at_least("keygate_config_reloads_total", reloads + 1.0)
        .await;
    let resp = gw.get("app.test", "/").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let request_id = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    let server = collector.wait_for_request(&request_id).await;
    let (trace, _, _) = traceparent(up.last_seen().one("traceparent").unwrap());
    assert_eq!(server.trace_id, trace);

    let reloads = gw.metric("keygate_config_reloads_total").await;
    gw.write_config(&config(None, 1.0, &up));
    gw.wait_metric_at_least("keygate_config_reloads_total", reloads + 1.0)
        .await;
    let resp = gw.get("app.test", "/admin").send().await.unwrap();
    let body: Value = resp.json().await.unwrap();
    assert!(body["meta"].get("traceId").is_none(), "tracing is off again: {body}");
}
