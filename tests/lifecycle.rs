//! Process lifecycle: health endpoints, metrics from
//! start-up, the default subcommand, and graceful SIGTERM.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::gateway::{one_route, Gateway, Launch};
use support::metrics::metric_in;
use support::upstreams::Upstream;
use support::wait::{wait_for, WAIT};

#[tokio::test(flavor = "multi_thread")]
async fn health_endpoints_answer_without_auth() {
    let up = Upstream::counting("up").await;
    let gw = Gateway::start(&one_route("a.test", "dep_a", &[&up.addr_str()])).await;
    for path in ["/healthz", "/readyz", "/metrics"] {
        let r = gw.client().get(gw.admin_url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
    // The admin listener never proxies traffic: `/` is its dashboard, any other path is its own 404.
    let r = gw
        .client()
        .get(gw.admin_url("/"))
        .header("host", "a.test")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], "text/html; charset=utf-8");
    let r = gw
        .client()
        .get(gw.admin_url("/a/path"))
        .header("host", "a.test")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "admin listener must not proxy");
    assert_eq!(up.hits(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn default_subcommand_is_run() {
    let up = Upstream::counting("up").await;
    let gw = Launch::new(one_route("a.test", "dep_a", &[&up.addr_str()]))
        .no_subcommand()
        .start()
        .await;
    let r = gw.get("a.test", "/").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(up.hits(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn counters_exist_at_zero_from_start_up_and_count() {
    let up = Upstream::counting("up").await;
    let gw = Gateway::start(&one_route("a.test", "dep_a", &[&up.addr_str()])).await;
    let text = gw.metrics_text().await;
    for name in [
        "keygate_config_reloads_total",
        "keygate_config_reload_errors_total",
        "keygate_upstream_connect_failures_total",
    ] {
        assert_eq!(
            metric_in(&text, name),
            Some(0.0),
            "{name} exported at 0 from start-up:\n{text}"
        );
    }
    assert!(
        text.contains("keygate_requests_total") || text.contains("# TYPE keygate_requests"),
        "{text}"
    );
    assert!(text.contains("keygate_request_duration_seconds"), "{text}");

    for _ in 0..3 {
        assert_eq!(gw.get("a.test", "/").send().await.unwrap().status(), 200);
    }
    let r = gw.get("nope.test", "/").send().await.unwrap();
    assert_eq!(r.status(), 404);

    gw.wait_metric(
        r#"keygate_requests_total{host="a.test",deployment="dep_a",status="200"}"#,
        3.0,
    )
    .await;
    // The error_code label holds the full code.
    gw.wait_metric(
        r#"keygate_requests_total{status="404",error_code="err:frontline:routing:config_not_found"}"#,
        1.0,
    )
    .await;
    gw.wait_metric_at_least("keygate_request_duration_seconds_count", 3.0)
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_in_flight_request_finish() {
    let held = Upstream::held("held").await;
    let mut gw = Gateway::start(&one_route("a.test", "dep_a", &[&held.addr_str()])).await;

    let in_flight = tokio::spawn(gw.get("a.test", "/slow").send());
    wait_for("the slow request reached the instance", WAIT, || async {
        held.hits() == 1
    })
    .await;

    gw.signal("TERM");
    // Stops accepting new connections while the request is still in flight.
    // Checked here, asserted at the end so the in-flight outcome is reported too.
    let http = gw.http;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut refused = false;
    while std::time::Instant::now() < deadline {
        if tokio::net::TcpStream::connect(http).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(
        gw.try_exit_status().is_none(),
        "exited before the in-flight request finished\n{}",
        gw.logs()
    );

    held.release();
    let r = tokio::time::timeout(WAIT, in_flight)
        .await
        .expect("in-flight request answered")
        .unwrap();
    let r = r.expect("in-flight request completed despite SIGTERM");
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["name"], "held");

    let status = gw.wait_exit(Duration::from_secs(15)).await;
    assert!(
        status.success(),
        "graceful shutdown exits 0, got {status}\n{}",
        gw.logs()
    );
    assert!(
        refused,
        "the proxy listener kept accepting connections for 5s after SIGTERM"
    );
}
