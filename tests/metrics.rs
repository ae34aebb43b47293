//! What operators chart: latency by deployment, build info, process
//! metrics, the OpenMetrics exposition when asked for, bounded label
//! cardinality, and the Grafana dashboard's queries against a live
//! `/metrics`.

mod support;

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;
use support::gateway::Gateway;
use support::metrics::{metric_in, parse_metrics};
use support::upstreams::Upstream;

/// Two deployments, `a.test` → dep_a (an instance) and `b.test` → dep_b (echo).
fn two_deployments(up: &Upstream) -> String {
    format!(
        "deployments:\n  - id: dep_a\n    instances: [\"{}\"]\n  - id: dep_b\n    instances: [\"builtin:echo\"]\n\
         routes:\n  - host: a.test\n    deployment: dep_a\n  - host: b.test\n    deployment: dep_b\n",
        up.addr_str()
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn latency_is_labelled_by_deployment() {
    let up = Upstream::counting("up").await;
    let gw = Gateway::start(&two_deployments(&up)).await;
    for (host, times) in [("a.test", 3), ("b.test", 2), ("nope.test", 1)] {
        for _ in 0..times {
            gw.get(host, "/").send().await.unwrap();
        }
    }
    gw.wait_metric(
        r#"keygate_request_duration_seconds_count{deployment="dep_a",part="total"}"#,
        3.0,
    )
    .await;
    gw.wait_metric(
        r#"keygate_request_duration_seconds_count{deployment="dep_a",part="instance"}"#,
        3.0,
    )
    .await;
    gw.wait_metric(
        r#"keygate_request_duration_seconds_count{deployment="dep_b",part="gateway"}"#,
        2.0,
    )
    .await;
    // No route: the empty deployment, and no instance time.
    gw.wait_metric(
        r#"keygate_request_duration_seconds_count{deployment="",part="total"}"#,
        1.0,
    )
    .await;
    let text = gw.metrics_text().await;
    assert_eq!(
        metric_in(
            &text,
            r#"keygate_request_duration_seconds_count{deployment="",part="instance"}"#
        ),
        None
    );
}

/// Every series's name and labels (values left out).
fn series(text: &str) -> BTreeSet<String> {
    parse_metrics(text)
        .into_iter()
        .map(|(name, labels, _)| format!("{name}{labels:?}"))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_random_hosts_and_paths_adds_no_series() {
    let up = Upstream::counting("up").await;
    let gw = Gateway::start(&two_deployments(&up)).await;
    // Every outcome the flood produces, once, so its series exist.
    gw.get("unknown.test", "/").send().await.unwrap();
    gw.get("a.test", "/first").send().await.unwrap();
    gw.wait_metric(r#"keygate_requests_total{status="404"}"#, 1.0).await;
    gw.wait_metric(r#"keygate_requests_total{deployment="dep_a",status="200"}"#, 1.0)
        .await;
    let before = series(&gw.metrics_text().await);

    const FLOOD: usize = 200;
    for i in 0..FLOOD {
        let host = format!("h{i}-{:08x}.random.test", rand_word(i));
        assert_eq!(gw.get(&host, &format!("/p/{i}")).send().await.unwrap().status(), 404);
        gw.get("a.test", &format!("/random/{i}?q={i}")).send().await.unwrap();
    }
    gw.wait_metric(r#"keygate_requests_total{status="404"}"#, (FLOOD + 1) as f64)
        .await;
    gw.wait_metric(
        r#"keygate_requests_total{deployment="dep_a",status="200"}"#,
        (FLOOD + 1) as f64,
    )
    .await;
    let after = series(&gw.metrics_text().await);
    let added: Vec<&String> = after.difference(&before).collect();
    assert!(added.is_empty(), "client input added series: {added:#?}");
}

/// A different word per request, without a random generator.
fn rand_word(i: usize) -> u32 {
    (i as u32).wrapping_mul(2_654_435_761)
}

#[tokio::test(flavor = "multi_thread")]
async fn build_info_and_process_metrics() {
    let gw = Gateway::start("").await;
    let text = gw.metrics_text().await;
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        metric_in(&text, &format!(r#"keygate_build_info{{version="{version}"}}"#)),
        Some(1.0),
        "{text}"
    );
    let commit = parse_metrics(&text)
        .into_iter()
        .find(|(name, _, _)| name == "keygate_build_info")
        .and_then(|(_, labels, _)| labels.into_iter().find(|(k, _)| k == "commit"))
        .map(|(_, v)| v)
        .unwrap();
    assert!(!commit.is_empty(), "{text}");
    let positive = |name: &str| metric_in(&text, name).is_some_and(|v| v > 0.0);
    for name in [
        "process_resident_memory_bytes",
        "process_virtual_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_threads",
    ] {
        assert!(positive(name), "{name}:\n{text}");
    }
    assert!(
        metric_in(&text, "process_cpu_seconds_total").is_some_and(|v| v >= 0.0),
        "{text}"
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let started = metric_in(&text, "process_start_time_seconds").unwrap();
    assert!(
        (now - 3600.0..=now + 5.0).contains(&started),
        "started {started}, now {now}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn openmetrics_when_the_scraper_asks_for_it() {
    let gw = Gateway::start("").await;
    let scrape = |accept: Option<&'static str>| {
        let mut request = gw.client().get(gw.admin_url("/metrics"));
        if let Some(accept) = accept {
            request = request.header("accept", accept);
        }
        async move {
            let r = request.send().await.unwrap();
            let content_type = r.headers()["content-type"].to_str().unwrap().to_string();
            (content_type, r.text().await.unwrap())
        }
    };
    let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,\
                      text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    let (content_type, body) = scrape(Some(prometheus)).await;
    assert_eq!(
        content_type,
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert!(body.ends_with("# EOF\n"), "{body}");
    for accept in [None, Some("text/plain;version=0.0.4"), Some("*/*")] {
        let (content_type, _) = scrape(accept).await;
        assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8", "{accept:?}");
    }
}

/// The PromQL of every panel and variable of the dashboard.
fn dashboard_queries() -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/grafana/keygate.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut queries: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|panel| panel["targets"].as_array().cloned().unwrap_or_default())
        .map(|target| target["expr"].as_str().unwrap().to_string())
        .collect();
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        if let Some(query) = variable["query"]["query"].as_str() {
            queries.push(query.to_string());
        }
    }
    queries
}

/// Metric selectors in PromQL: `name{labels}` or a bare name, as
/// (name, label names). keygate's metrics are `keygate_*` and `process_*`,
/// which no PromQL function or keyword is.
fn selectors(query: &str) -> Vec<(String, Vec<String>)> {
    identifiers(query)
        .into_iter()
        .filter(|(name, _)| name.starts_with("keygate_") || name.starts_with("process_"))
        .collect()
}

/// The identifiers of a query outside string literals, each with the label
/// names of a `{...}` right after it.
fn identifiers(query: &str) -> Vec<(String, Vec<String>)> {
    let bytes = query.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i] as char;
        if c == '"' {
            // Skip string literals (label values).
            i += 1;
            while i < bytes.len() && bytes[i] != b'"' {
                i += if bytes[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            continue;
        }
        if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_' || bytes[i] == b':') {
                i += 1;
            }
            let name = query[start..i].to_string();
            let mut labels = Vec::new();
            if bytes.get(i) == Some(&b'{') {
                let end = query[i..].find('}').map(|e| i + e).unwrap();
                for matcher in query[i + 1..end].split(',') {
                    let label: String = matcher
                        .trim()
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    if !label.is_empty() {
                        labels.push(label);
                    }
                }
                i = end + 1;
            }
            out.push((name, labels));
            continue;
        }
        i += 1;
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn every_dashboard_query_uses_exported_metrics() {
    let up = Upstream::counting("up").await;
    let gw = Gateway::start(&two_deployments(&up)).await;
    gw.get("a.test", "/").send().await.unwrap();
    gw.wait_metric(r#"keygate_requests_total{deployment="dep_a"}"#, 1.0)
        .await;
    let text = gw.metrics_text().await;
    let samples = parse_metrics(&text);
    // Families declared with `# TYPE` (a family without series yet, such as
    // certificate expiry without TLS, is still exported).
    let families: Vec<(String, String)> = text
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split_once(' '))
        .map(|(name, kind)| (name.to_string(), kind.to_string()))
        .collect();
    let exported = |name: &str| {
        samples.iter().any(|(n, _, _)| n == name)
            || families.iter().any(|(family, kind)| {
                let suffixes: &[&str] = match kind.as_str() {
                    "counter" => &["_total"],
                    "histogram" => &["_bucket", "_sum", "_count"],
                    _ => &[""],
                };
                suffixes.iter().any(|suffix| format!("{family}{suffix}") == name)
            })
    };
    // Labels Prometheus adds to every target, and the histogram bucket bound.
    let scrape_labels = ["job", "instance", "le"];
    let queries = dashboard_queries();
    assert!(queries.len() >= 20, "{queries:?}");
    let mut checked = 0;
    for query in &queries {
        for (name, labels) in selectors(query) {
            assert!(
                exported(&name),
                "the dashboard queries {name}, which /metrics does not export ({query})"
            );
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(&name);
            let known: BTreeSet<&str> = samples
                .iter()
                .filter(|(n, _, _)| n == &name || n.starts_with(base))
                .flat_map(|(_, labels, _)| labels.iter().map(|(k, _)| k.as_str()))
                .collect();
            for label in labels {
                let has = known.contains(label.as_str()) || scrape_labels.contains(&label.as_str()) || known.is_empty();
                assert!(
                    has,
                    "the dashboard selects {name} by `{label}`, a label it does not have ({query})"
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 20, "only {checked} selectors found");
}
