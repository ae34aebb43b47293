//! Gateway-made errors and instance failure handling: content negotiation, 503 in both flavours, 504,
//! 502, and retry past an instance that refuses connections.

mod support;

use std::time::{Duration, Instant};

use support::gateway::{one_route, Gateway};
use support::net::closed_addr;
use support::problem::assert_problem;
use support::raw_http::{raw_request, RawConn};
use support::upstreams::{DroppingUpstream, Upstream};

#[tokio::test(flavor = "multi_thread")]
async fn html_only_when_accept_strictly_prefers_it() {
    let gw = Gateway::start(&one_route("known.test", "dep_k", &[&closed_addr()])).await;

    // (Accept, expect HTML?)
    let cases: &[(Option<&str>, bool)] = &[
        (None, false),
        (Some("application/json"), false),
        (Some("application/problem+json"), false),
        (Some("*/*"), false),
        (Some("text/html"), true),
        (Some("Text/HTML"), true),
        (
            Some("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
            true,
        ),
        (Some("text/html, application/json"), false),
        (Some("text/html, */*"), false),
        (Some("text/html;q=0.5, application/json"), false),
        (Some("application/json;q=0.9, text/html"), true),
        (Some("text/html;q=0.9, application/problem+json;q=0.8"), true),
        (
            Some("text/html;q=0.8, application/problem+json;q=0.8, application/json;q=0.1"),
            false,
        ),
        (Some("text/html ; q=0.8 , application/json ; q=0.7"), true),
        (Some("text/html;q=0"), false),
        (Some("text/html;q=0, */*"), false),
        (Some("text/plain"), false),
    ];
    for (accept, want_html) in cases {
        let mut req = gw.get("nowhere.test", "/page");
        if let Some(a) = accept {
            req = req.header("accept", *a);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 404, "Accept {accept:?}");
        assert_eq!(
            r.headers().get("x-unkey-error-source").map(|v| v.to_str().unwrap()),
            Some("gateway")
        );
        assert!(
            r.headers().get("x-request-id").is_some(),
            "X-Request-Id on every gateway error"
        );
        let ct = r
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let body = r.text().await.unwrap();
        if *want_html {
            assert!(ct.starts_with("text/html"), "Accept {accept:?}: content-type {ct:?}");
            assert!(
                body.to_lowercase().contains("<html"),
                "Accept {accept:?}: not an HTML page: {body}"
            );
        } else {
            assert!(
                ct.starts_with("application/problem+json"),
                "Accept {accept:?}: content-type {ct:?}"
            );
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(
                v["error"]["code"], "err:frontline:routing:config_not_found",
                "Accept {accept:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn no_instances_is_503_no_running_instances() {
    let gw = Gateway::start(
        "deployments:\n  - id: dep_empty\n    instances: []\nroutes:\n  - host: empty.test\n    deployment: dep_empty\n",
    )
    .await;
    let r = gw.get("empty.test", "/").send().await.unwrap();
    assert_problem(
        r,
        503,
        "err:frontline:capacity:no_running_instances",
        "Service Unavailable",
    )
    .await;

    // Browsers get the same error as a page.
    let r = gw
        .get("empty.test", "/")
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
}

#[tokio::test(flavor = "multi_thread")]
async fn every_instance_refusing_is_503_service_unavailable() {
    let gw = Gateway::start(&one_route("down.test", "dep_down", &[&closed_addr(), &closed_addr()])).await;
    let before = gw.metric("keygate_upstream_connect_failures_total").await;
    let started = Instant::now();
    let r = gw.get("down.test", "/").send().await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "refused connections fail fast"
    );
    assert_problem(
        r,
        503,
        "err:frontline:upstream:service_unavailable",
        "Service Unavailable",
    )
    .await;

    gw.wait_metric_at_least("keygate_upstream_connect_failures_total", before + 1.0)
        .await;
    // requests_total carries the full error code.
    gw.wait_metric(
        r#"keygate_requests_total{host="down.test",deployment="dep_down",status="503",error_code="err:frontline:upstream:service_unavailable"}"#,
        1.0,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn connect_failure_moves_on_to_the_next_instance() {
    let good = Upstream::counting("good").await;
    // The refusing instances are listed first: an implementation that tries
    // instances in order hits them on every request.
    let gw = Gateway::start(&one_route(
        "retry.test",
        "dep_retry",
        &[&closed_addr(), &closed_addr(), &good.addr_str()],
    ))
    .await;
    for i in 0..20 {
        let r = gw
            .request(reqwest::Method::POST, "retry.test", "/write")
            .body("payload")
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            200,
            "request {i} should have been retried past refused instances"
        );
        assert_eq!(r.headers()["x-upstream"], "good");
    }
    assert_eq!(good.hits(), 20, "each request reached the good instance exactly once");
    // With two of three instances refusing, 20 requests must have met a refusal.
    gw.wait_metric_at_least("keygate_upstream_connect_failures_total", 1.0)
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_instance_beyond_request_timeout_is_504() {
    let held = Upstream::held("held").await;
    let gw = Gateway::start(&format!(
        "limits:\n  request_timeout: 400ms\n{}",
        one_route("slow.test", "dep_slow", &[&held.addr_str()])
    ))
    .await;
    let started = Instant::now();
    let r = gw.get("slow.test", "/slow").send().await.unwrap();
    let took = started.elapsed();
    assert_problem(r, 504, "err:frontline:upstream:gateway_timeout", "Gateway Timeout").await;
    assert!(
        took >= Duration::from_millis(350),
        "answered before the timeout: {took:?}"
    );
    assert!(took < Duration::from_secs(5), "timeout not enforced promptly: {took:?}");
    assert_eq!(held.hits(), 1, "the request was sent once, not retried");
}

#[tokio::test(flavor = "multi_thread")]
async fn dropped_connection_is_502_and_not_retried() {
    let dropper = DroppingUpstream::start().await;
    let gw = Gateway::start(&one_route("drop.test", "dep_drop", &[&dropper.addr_str()])).await;
    for i in 1..=3 {
        // A fresh connection per request: keep-alive handling is tested below.
        let r = raw_request(
            gw.http,
            b"POST /pay HTTP/1.1\r\nHost: drop.test\r\nContent-Length: 4\r\nConnection: close\r\n\r\nonce",
        )
        .await;
        assert_eq!(r.status, 502, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.header("x-unkey-error-source"), Some("gateway"));
        assert_eq!(r.json()["error"]["code"], "err:frontline:upstream:bad_gateway");
        // Only connect failures are retried: the request was sent once.
        assert_eq!(dropper.hits(), i, "request {i} sent more than once");
    }
}

/// A gateway-made error must not leave a keep-alive client with a dead
/// connection: either it says `Connection: close`, or the connection keeps
/// serving the next request (RFC 9112 §9.6).
#[tokio::test(flavor = "multi_thread")]
async fn gateway_errors_keep_the_connection_usable_or_say_close() {
    let dropper = DroppingUpstream::start().await;
    let gw = Gateway::start(&format!(
        "deployments:\n  - id: dep_drop\n    instances: [\"{}\"]\n  - id: dep_down\n    instances: [\"{}\"]\n  - id: dep_empty\n    instances: []\nroutes:\n  - host: drop.test\n    deployment: dep_drop\n  - host: down.test\n    deployment: dep_down\n  - host: empty.test\n    deployment: dep_empty\n",
        dropper.addr_str(),
        closed_addr()
    ))
    .await;
    let cases = [
        ("POST", "drop.test", "Content-Length: 4\r\n", "once", 502),
        ("GET", "drop.test", "", "", 502),
        ("GET", "down.test", "", "", 503),
        ("GET", "empty.test", "", "", 503),
        ("GET", "nowhere.test", "", "", 404),
    ];
    let mut broken = Vec::new();
    for (method, host, extra, body, status) in cases {
        let mut conn = RawConn::connect(gw.http).await;
        let req = format!("{method} /x HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n{body}");
        let first = conn
            .roundtrip(req.as_bytes())
            .await
            .unwrap_or_else(|e| panic!("{method} {host}: {e}"));
        assert_eq!(first.status, status, "{method} {host}");
        if first
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
        {
            continue;
        }
        if let Err(e) = conn.roundtrip(req.as_bytes()).await {
            broken.push(format!(
                "{method} {host}: {status} sent with Connection: {:?}, but the next request on the connection failed: {e}",
                first.header("connection")
            ));
        }
    }
    assert!(broken.is_empty(), "{broken:#?}");
}
