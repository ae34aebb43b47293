//! Hot reload: file saves, invalid
//! files, SIGHUP, `keygate reload`, and in-flight requests across a swap.

mod support;

use std::time::Instant;

use serde_json::Value;
use support::gateway::{Gateway, Launch};
use support::load_errors::names_some_line;
use support::upstreams::{Seen, Upstream};
use support::wait::{wait_for, RELOAD_DEADLINE, WAIT};

const ROOT_KEY: &str = "test-root-key-3f9c2a";

/// `reload.test` → `dep`, with deployments `dep_a` → a and `dep_b` → b.
fn two_deployments(a: &str, b: &str, dep: &str) -> String {
    format!(
        r#"
admin:
  root_keys: ["${{KEYGATE_ROOT_KEY}}"]
deployments:
  - id: dep_a
    instances: ["{a}"]
  - id: dep_b
    instances: ["{b}"]
routes:
  - host: reload.test
    deployment: {dep}
"#
    )
}

async fn served_by(gw: &Gateway) -> Option<String> {
    let r = gw.get("reload.test", "/").send().await.ok()?;
    if r.status() != 200 {
        return None;
    }
    let v: Value = r.json().await.ok()?;
    v["name"].as_str().map(str::to_string)
}

async fn start(a: &Upstream, b: &Upstream, dep: &str) -> Gateway {
    Launch::new(two_deployments(&a.addr_str(), &b.addr_str(), dep))
        .env("KEYGATE_ROOT_KEY", ROOT_KEY)
        .start()
        .await
}

/// Waits until `reload.test` is served by `name`; returns how long it took.
async fn wait_served_by(gw: &Gateway, name: &str) -> std::time::Duration {
    let t = Instant::now();
    wait_for(
        format!("traffic moves to {name} within 2s of the save"),
        RELOAD_DEADLINE,
        || async { served_by(gw).await.as_deref() == Some(name) },
    )
    .await;
    t.elapsed()
}

#[tokio::test(flavor = "multi_thread")]
async fn saved_file_moves_traffic_within_two_seconds() {
    let a = Upstream::inspector("a").await;
    let b = Upstream::inspector("b").await;
    let gw = start(&a, &b, "dep_a").await;
    assert_eq!(served_by(&gw).await.as_deref(), Some("a"));
    let reloads = gw.metric("keygate_config_reloads_total").await;

    // Save by rename (vim, kubectl-mounted configmaps, most editors).
    gw.write_config(&two_deployments(&a.addr_str(), &b.addr_str(), "dep_b"));
    wait_served_by(&gw, "b").await;
    // Save again by rewriting in place (echo > file, some editors).
    gw.write_config_in_place(&two_deployments(&a.addr_str(), &b.addr_str(), "dep_a"));
    wait_served_by(&gw, "a").await;
    // And once more by rename, to show the watch survived both kinds.
    gw.write_config(&two_deployments(&a.addr_str(), &b.addr_str(), "dep_b"));
    wait_served_by(&gw, "b").await;

    assert_eq!(b.last_seen().one("x-deployment-id"), Some("dep_b"));
    gw.wait_metric_at_least("keygate_config_reloads_total", reloads + 3.0)
        .await;
    assert_eq!(
        gw.metric("keygate_config_reload_errors_total").await,
        0.0,
        "no reload failed"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_file_keeps_old_config_serving() {
    let a = Upstream::inspector("a").await;
    let b = Upstream::inspector("b").await;
    let gw = start(&a, &b, "dep_a").await;
    let errors_before = gw.metric("keygate_config_reload_errors_total").await;
    let reloads_before = gw.metric("keygate_config_reloads_total").await;

    // Semantically invalid: the route moves to b but names an unknown deployment.
    let bad =
        two_deployments(&a.addr_str(), &b.addr_str(), "dep_b").replace("deployment: dep_b", "deployment: dep_nope");
    gw.write_config(&bad);
    wait_for("reload error counted", RELOAD_DEADLINE, || async {
        gw.metric("keygate_config_reload_errors_total").await >= errors_before + 1.0
    })
    .await;
    for _ in 0..5 {
        assert_eq!(served_by(&gw).await.as_deref(), Some("a"), "old config keeps serving");
    }
    assert_eq!(
        gw.metric("keygate_config_reloads_total").await,
        reloads_before,
        "a failed reload is not a reload"
    );

    // Syntactically broken file: same.
    let errors_mid = gw.metric("keygate_config_reload_errors_total").await;
    gw.write_config("deployments:\n  - id: [unclosed\nroutes: {{{\n");
    wait_for("second reload error counted", RELOAD_DEADLINE, || async {
        gw.metric("keygate_config_reload_errors_total").await >= errors_mid + 1.0
    })
    .await;
    assert_eq!(served_by(&gw).await.as_deref(), Some("a"), "old config keeps serving");
    assert!(
        names_some_line(&gw.logs()),
        "the reload error is logged with its line:\n{}",
        gw.logs()
    );

    // A valid file afterwards is picked up.
    gw.write_config(&two_deployments(&a.addr_str(), &b.addr_str(), "dep_b"));
    wait_served_by(&gw, "b").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads() {
    let a = Upstream::inspector("a").await;
    let b = Upstream::inspector("b").await;
    let mut gw = start(&a, &b, "dep_a").await;
    let before = gw.metric("keygate_config_reloads_total").await;

    // An unchanged file: only the signal can cause this reload (every
    // successful reload, also of an unchanged file, counts).
    gw.signal("HUP");
    wait_for("SIGHUP reload counted", WAIT, || async {
        gw.metric("keygate_config_reloads_total").await >= before + 1.0
    })
    .await;
    assert!(gw.try_exit_status().is_none(), "SIGHUP must not stop the gateway");
    assert_eq!(served_by(&gw).await.as_deref(), Some("a"));
}

#[tokio::test(flavor = "multi_thread")]
async fn keygate_reload_cli_reloads() {
    let a = Upstream::inspector("a").await;
    let b = Upstream::inspector("b").await;
    let gw = start(&a, &b, "dep_a").await;
    let before = gw.metric("keygate_config_reloads_total").await;
    let config = gw.config_path.to_str().unwrap().to_string();

    let out = gw
        .cli(&["reload", "--config", &config], &[("KEYGATE_ROOT_KEY", ROOT_KEY)])
        .await;
    assert!(
        out.status.success(),
        "keygate reload failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        gw.logs()
    );
    wait_for("CLI reload counted", WAIT, || async {
        gw.metric("keygate_config_reloads_total").await >= before + 1.0
    })
    .await;
    let after_ok = gw.metric("keygate_config_reloads_total").await;

    // A wrong root key is refused and reloads nothing.
    let out = gw
        .cli(&["reload", "--config", &config], &[("KEYGATE_ROOT_KEY", "wrong-key")])
        .await;
    assert!(!out.status.success(), "keygate reload with a wrong key must fail");
    assert_eq!(gw.metric("keygate_config_reloads_total").await, after_ok);
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_reload_endpoint_requires_the_root_key() {
    let a = Upstream::inspector("a").await;
    let b = Upstream::inspector("b").await;
    let gw = start(&a, &b, "dep_a").await;
    let before = gw.metric("keygate_config_reloads_total").await;
    let url = gw.admin_url("/v1/admin.reload");

    let r = gw.client().post(&url).send().await.unwrap();
    assert_eq!(r.status(), 401, "no bearer");
    let r = gw.client().post(&url).bearer_auth("wrong").send().await.unwrap();
    assert!(r.status() == 401 || r.status() == 403, "wrong bearer: {}", r.status());
    assert_eq!(gw.metric("keygate_config_reloads_total").await, before);

    let r = gw.client().post(&url).bearer_auth(ROOT_KEY).send().await.unwrap();
    assert!(r.status().is_success(), "root key: {}", r.status());
    wait_for("admin reload counted", WAIT, || async {
        gw.metric("keygate_config_reloads_total").await >= before + 1.0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn in_flight_request_finishes_on_the_old_deployment() {
    let a = Upstream::held("a").await;
    let b = Upstream::inspector("b").await;
    let gw = start(&a, &b, "dep_a").await;

    let req = gw.get("reload.test", "/slow").send();
    let in_flight = tokio::spawn(req);
    wait_for("the slow request reached a", WAIT, || async { a.hits() == 1 }).await;

    gw.write_config(&two_deployments(&a.addr_str(), &b.addr_str(), "dep_b"));
    wait_served_by(&gw, "b").await;

    a.release();
    let r = tokio::time::timeout(WAIT, in_flight)
        .await
        .expect("in-flight request finished")
        .unwrap()
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["name"], "a", "finished where it started");
    let slow: Vec<Seen> = a.seen().into_iter().filter(|s| s.uri.starts_with("/slow")).collect();
    assert_eq!(slow.len(), 1, "not re-sent");
    assert_eq!(slow[0].one("x-deployment-id"), Some("dep_a"));
}
