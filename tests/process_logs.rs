//! The process log (docs/operations.md, "Logs"): JSON lines with
//! `KEYGATE_LOG_FORMAT=json`, a start-up line naming every listener and the
//! number of routes, and a client that hangs up mid-request logged as what
//! it is — not a gateway error, whether it left mid-body, while waiting for
//! the instance or before finishing its request head.

mod support;

use serde_json::Value;
use support::gateway::{one_route, Gateway, Launch};
use support::upstreams::Upstream;
use support::wait::{poll_until, WAIT};
use tokio::io::AsyncWriteExt;

async fn json_gateway(template: &str) -> Gateway {
    Launch::new(template).env("KEYGATE_LOG_FORMAT", "json").start().await
}

/// Every stderr line, each of which must be a JSON object.
fn json_lines(gw: &Gateway) -> Vec<Value> {
    gw.stderr()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn json_lines_with_a_startup_line_naming_the_listeners() {
    let up = Upstream::inspector("app").await;
    let routes = format!(
        "{}  - host: other.test\n    deployment: dep\n",
        one_route("app.test", "dep", &[&up.addr_str()])
    );
    let gw = json_gateway(&routes).await;
    let started = poll_until("the start-up line", WAIT, || async {
        json_lines(&gw).into_iter().find(|l| l["message"] == "keygate started")
    })
    .await;
    assert_eq!(started["level"], "INFO");
    assert_eq!(started["http"], gw.http.to_string());
    assert_eq!(started["admin"], gw.admin.to_string());
    assert_eq!(started["https"], "off");
    assert_eq!(started["routes"], 2);
    assert!(json_lines(&gw)
        .iter()
        .all(|l| l["timestamp"].is_string() && l["level"].is_string()));
}

/// Sends `request` on a new connection, waits until it reaches `up`, then
/// hangs up.
async fn hang_up_once_it_reaches(gw: &Gateway, up: &Upstream, request: &[u8]) {
    let mut stream = tokio::net::TcpStream::connect(gw.http).await.unwrap();
    stream.write_all(request).await.unwrap();
    poll_until("the request at the instance", WAIT, || async {
        (up.hits() > 0).then_some(())
    })
    .await;
    drop(stream);
}

/// The log line saying a client hung up (waited for, bounded).
async fn hang_up_line(gw: &Gateway) -> Value {
    poll_until("the hang-up in the log", WAIT, || async {
        json_lines(gw).into_iter().find(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.contains("client closed the connection"))
        })
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_hanging_up_mid_request_is_not_an_error() {
    let up = Upstream::inspector("app").await;
    let gw = json_gateway(&one_route("app.test", "dep", &[&up.addr_str()])).await;
    hang_up_once_it_reaches(
        &gw,
        &up,
        b"POST /upload HTTP/1.1\r\nHost: app.test\r\nContent-Length: 100000\r\n\r\nonly the start",
    )
    .await;

    let logged = hang_up_line(&gw).await;
    assert_eq!(logged["level"], "INFO", "{logged}");
    // pingora logs a proxy failure before the request's last phase, which counts it.
    gw.wait_metric_at_least("keygate_requests_total", 1.0).await;
    let errors: Vec<Value> = json_lines(&gw).into_iter().filter(|l| l["level"] == "ERROR").collect();
    assert!(errors.is_empty(), "a hang-up logged as an error: {errors:#?}");
}

/// A bodiless request waits for its answer with nothing left to read from
/// the client, yet a client that hangs up meanwhile is noticed at once (the
/// instance has not answered): the exchange is abandoned and logged as a
/// hang-up, not held until the instance answers.
#[tokio::test(flavor = "multi_thread")]
async fn a_client_hanging_up_while_its_get_waits_for_the_instance_is_noticed() {
    let up = Upstream::held("app").await;
    let gw = json_gateway(&one_route("app.test", "dep", &[&up.addr_str()])).await;
    hang_up_once_it_reaches(&gw, &up, b"GET /slow HTTP/1.1\r\nHost: app.test\r\n\r\n").await;

    let logged = hang_up_line(&gw).await;
    assert_eq!(logged["level"], "INFO", "{logged}");
    assert_eq!(
        up.completed(),
        0,
        "the instance answered before the hang-up was noticed"
    );
    up.release();
}

/// A client that hangs up before finishing its request head (a port scanner,
/// a half-open connection) is logged at info: not a gateway error.
#[tokio::test(flavor = "multi_thread")]
async fn a_client_hanging_up_mid_head_is_not_an_error() {
    let up = Upstream::inspector("app").await;
    let gw = json_gateway(&one_route("app.test", "dep", &[&up.addr_str()])).await;
    let mut stream = tokio::net::TcpStream::connect(gw.http).await.unwrap();
    stream.write_all(b"GET /half HTTP/1.1\r\nHost: app.te").await.unwrap();
    drop(stream);

    let logged = poll_until("the early hang-up in the log", WAIT, || async {
        json_lines(&gw).into_iter().find(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.contains("before sending a whole request head"))
        })
    })
    .await;
    assert_eq!(logged["level"], "INFO", "{logged}");
    let errors: Vec<Value> = json_lines(&gw).into_iter().filter(|l| l["level"] == "ERROR").collect();
    assert!(errors.is_empty(), "an early hang-up logged as an error: {errors:#?}");
    assert_eq!(up.hits(), 0);
}
