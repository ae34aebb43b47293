//! The `logging` policy end to end: records written
//! as JSON lines to a file sink with bodies, redaction and the latency split;
//! the file follows log rotation (inode change and SIGUSR1); a sink that
//! cannot keep up drops records and never holds up a request.

mod support;

use std::path::Path;

use serde_json::Value;
use support::gateway::Gateway;
use support::upstreams::Upstream;
use support::wait::{poll_until, WAIT};

fn config(up: &Upstream, request_log: &str) -> String {
    format!(
        "request_log:\n{request_log}deployments:\n  - id: dep\n    instances: [\"{}\"]\n    policies:\n      - id: audit\n        logging: {{bodies: true, max_body_bytes: 8, redact_headers: [X-Secret]}}\nroutes:\n  - host: app.test\n    deployment: dep\n",
        up.addr_str()
    )
}

fn records(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect()
}

async fn wait_for_records(path: &Path, count: usize) -> Vec<Value> {
    poll_until(format!("{count} records in {}", path.display()), WAIT, || async {
        let found = records(path);
        (found.len() >= count).then_some(found)
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn records_go_to_the_file_with_bodies_redaction_and_latency() {
    let up = Upstream::inspector("app").await;
    let gw = Gateway::start(&config(&up, "  sink: requests.log\n")).await;
    let log = gw.dir.path().join("requests.log");
    let resp = gw
        .request(reqwest::Method::POST, "app.test", "/orders?id=7")
        .header("authorization", "Bearer sk_live_secret")
        .header("x-secret", "hunter2")
        .header("user-agent", "keygate-test")
        .body("a request body longer than eight bytes")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let request_id = resp.headers()["x-request-id"].to_str().unwrap().to_string();

    let record = wait_for_records(&log, 1).await.remove(0);
    assert_eq!(record["request_id"], request_id.as_str());
    assert_eq!(record["method"], "POST");
    assert_eq!(record["host"], "app.test");
    assert_eq!(record["path"], "/orders");
    assert_eq!(record["query"], "id=7");
    assert_eq!(record["client_ip"], "127.0.0.1");
    assert_eq!(record["user_agent"], "keygate-test");
    assert_eq!(record["deployment_id"], "dep");
    assert_eq!(record["instance"], up.addr_str().as_str());
    assert_eq!(record["status"], 200);
    assert_eq!(record["request_headers"]["authorization"], "[REDACTED]");
    assert_eq!(record["request_headers"]["x-secret"], "[REDACTED]");
    assert_eq!(record["request_body"], "a reques", "capped at max_body_bytes");
    assert_eq!(record["response_body"].as_str().map(str::len), Some(8));
    assert_eq!(record["response_headers"]["x-request-id"], request_id.as_str());
    let latency = &record["latency_ms"];
    let (total, instance, gateway) = (
        latency["total"].as_f64().unwrap(),
        latency["instance"].as_f64().unwrap(),
        latency["gateway"].as_f64().unwrap(),
    );
    assert!(total >= instance && instance > 0.0, "{latency}");
    assert!((total - instance - gateway).abs() < 0.01, "{latency}");
    assert!(
        !std::fs::read_to_string(&log).unwrap().contains("sk_live_secret"),
        "credentials never reach the log"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn gateway_rejections_are_logged_when_logging_runs_first() {
    let up = Upstream::counting("app").await;
    let yaml = format!(
        "request_log:\n  sink: requests.log\ndeployments:\n  - id: dep\n    instances: [\"{}\"]\n    policies:\n      - {{id: audit, logging: {{}}}}\n      - {{id: fw, firewall: {{action: deny}}}}\nroutes:\n  - host: app.test\n    deployment: dep\n",
        up.addr_str()
    );
    let gw = Gateway::start(&yaml).await;
    assert_eq!(gw.get("app.test", "/").send().await.unwrap().status(), 403);
    let record = wait_for_records(&gw.dir.path().join("requests.log"), 1).await.remove(0);
    assert_eq!(record["status"], 403);
    assert!(record.get("request_body").is_none(), "bodies are off by default");
    assert_eq!(up.hits(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn file_sink_follows_rotation() {
    let up = Upstream::counting("app").await;
    let gw = Gateway::start(&config(&up, "  sink: requests.log\n")).await;
    let log = gw.dir.path().join("requests.log");
    assert_eq!(gw.get("app.test", "/before").send().await.unwrap().status(), 200);
    wait_for_records(&log, 1).await;

    // logrotate's "create" mode: move the file away; the gateway notices the new inode.
    std::fs::rename(&log, gw.dir.path().join("requests.log.1")).unwrap();
    poll_until("a record in the new file after rename", WAIT, || async {
        assert_eq!(gw.get("app.test", "/after-rename").send().await.unwrap().status(), 200);
        records(&log).iter().any(|r| r["path"] == "/after-rename").then_some(())
    })
    .await;

    // Rotation announced by SIGUSR1.
    std::fs::rename(&log, gw.dir.path().join("requests.log.2")).unwrap();
    gw.signal("USR1");
    poll_until("a record in the new file after SIGUSR1", WAIT, || async {
        assert_eq!(gw.get("app.test", "/after-usr1").send().await.unwrap().status(), 200);
        records(&log).iter().any(|r| r["path"] == "/after-usr1").then_some(())
    })
    .await;
    let first = records(&gw.dir.path().join("requests.log.1"));
    assert!(
        first.iter().any(|r| r["path"] == "/before"),
        "old records stay in the rotated file"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stuck_sink_drops_records_and_never_holds_requests() {
    let up = Upstream::counting("app").await;
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("stuck.fifo");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    // Nobody ever reads the FIFO: the writer blocks opening it, the buffer (4) fills.
    let gw = Gateway::start(&config(&up, &format!("  sink: {}\n  buffer: 4\n", fifo.display()))).await;
    let requests = 60;
    for i in 0..requests {
        let resp = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            gw.get("app.test", &format!("/{i}")).send(),
        )
        .await
        .unwrap_or_else(|_| panic!("request {i} waited on the sink"))
        .unwrap();
        assert_eq!(resp.status(), 200);
    }
    let dropped = gw.metric("keygate_log_records_dropped_total").await;
    assert!(
        dropped >= (requests - 4) as f64,
        "dropped {dropped} of {requests} with a buffer of 4"
    );
}
