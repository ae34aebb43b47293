//! Policy chains through the gateway: firewall and ip
//! rules on the real client address (IPv4, IPv6 on ::1, X-Forwarded-For from
//! trusted and untrusted peers), disabled policies, declaration order,
//! WebSocket upgrades refused before they reach the instance, decision
//! metrics, and load-time errors for bad policy config.

mod support;

use std::net::SocketAddr;

use support::gateway::Gateway;
use support::load_errors::{assert_load_error, check_config};
use support::net::client;
use support::problem::assert_problem;
use support::upstreams::Upstream;
use support::wait::{poll_until, RELOAD_DEADLINE};
use support::websocket::{ws_connect, WsUpstream};

const FIREWALL_DETAIL: &str = "The request was denied by a firewall rule.";
const IP_DETAIL: &str = "The client address is not allowed to reach this deployment.";

fn deployment_with_policies(up: &Upstream, policies: &str) -> String {
    format!(
        "deployments:\n  - id: dep\n    instances: [\"{}\"]\n    policies:\n{policies}routes:\n  - host: app.test\n    deployment: dep\n",
        up.addr_str()
    )
}

async fn denied(resp: reqwest::Response) -> String {
    let body = assert_problem(resp, 403, "err:frontline:client:firewall_denied", "Forbidden").await;
    body["error"]["detail"].as_str().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn firewall_denies_matching_requests_only() {
    let up = Upstream::counting("app").await;
    let gw = Gateway::start(&deployment_with_policies(
        &up,
        "      - id: no_admin\n        match:\n          - path: {prefix: /admin}\n          - method: [POST, DELETE]\n        firewall: {action: deny}\n",
    ))
    .await;

    assert_eq!(
        gw.get("app.test", "/admin/users").send().await.unwrap().status(),
        200,
        "GET is not matched"
    );
    let resp = gw
        .request(reqwest::Method::POST, "app.test", "/admin/users")
        .send()
        .await
        .unwrap();
    assert_eq!(denied(resp).await, FIREWALL_DETAIL);
    let resp = gw
        .request(reqwest::Method::DELETE, "app.test", "/admin")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(up.hits(), 1, "denied requests never reach the instance");
    gw.wait_metric(
        r#"keygate_policy_decisions_total{policy_type="firewall",decision="deny"}"#,
        2.0,
    )
    .await;
    gw.wait_metric(r#"keygate_requests_total{host="app.test",deployment="dep",status="403",error_code="err:frontline:client:firewall_denied"}"#, 2.0).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn header_and_query_matches() {
    let up = Upstream::counting("app").await;
    let gw = Gateway::start(&deployment_with_policies(
        &up,
        "      - id: beta_debug\n        match:\n          - header: {name: X-Debug, present: true}\n          - query: {name: version, value: {exact: 'beta 2'}}\n        firewall: {action: deny}\n",
    ))
    .await;
    let ok = gw.get("app.test", "/?version=beta%202").send().await.unwrap();
    assert_eq!(ok.status(), 200, "header absent");
    let ok = gw
        .get("app.test", "/?version=beta")
        .header("x-debug", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200, "query value differs");
    let no = gw
        .get("app.test", "/?version=alpha&version=beta%202")
        .header("X-DEBUG", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(no.status(), 403, "any of several values matches, percent-decoded");
}

#[tokio::test(flavor = "multi_thread")]
async fn disabled_policy_is_skipped() {
    let up = Upstream::counting("app").await;
    let gw = Gateway::start(&deployment_with_policies(
        &up,
        "      - id: everything\n        name: Deny everything (off)\n        enabled: false\n        firewall: {action: deny}\n",
    ))
    .await;
    assert_eq!(gw.get("app.test", "/").send().await.unwrap().status(), 200);
    assert_eq!(up.hits(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn declaration_order_decides_which_policy_answers() {
    let up = Upstream::counting("app").await;
    let firewall = "      - id: fw\n        firewall: {action: deny}\n";
    let ip = "      - id: ip\n        ip: {deny: [127.0.0.0/8]}\n";
    let gw = Gateway::start(&deployment_with_policies(&up, &format!("{firewall}{ip}"))).await;
    assert_eq!(
        denied(gw.get("app.test", "/").send().await.unwrap()).await,
        FIREWALL_DETAIL
    );

    gw.write_config(&deployment_with_policies(&up, &format!("{ip}{firewall}")));
    poll_until("reordered chain in effect", RELOAD_DEADLINE, || async {
        let detail = denied(gw.get("app.test", "/").send().await.unwrap()).await;
        (detail == IP_DETAIL).then_some(())
    })
    .await;
    assert_eq!(up.hits(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn ip_rules_on_ipv4_and_ipv6_loopback() {
    let up = Upstream::counting("app").await;
    let template = format!(
        "listen:\n  http: \"[::]:@HTTP_PORT@\"\n  admin: \"@ADMIN@\"\n{}",
        deployment_with_policies(
            &up,
            "      - id: v4_only\n        ip: {allow: [127.0.0.0/8], deny: ['::1/128']}\n"
        )
    );
    let gw = Gateway::start(&template).await;
    let v6: SocketAddr = format!("[::1]:{}", gw.http.port()).parse().unwrap();
    let client = client();

    let v4 = client
        .get(gw.http_url("/"))
        .header("host", "app.test")
        .send()
        .await
        .unwrap();
    assert_eq!(v4.status(), 200, "127.0.0.1 is allowed");
    let v6_resp = client
        .get(format!("http://{v6}/"))
        .header("host", "app.test")
        .send()
        .await
        .unwrap();
    assert_eq!(denied(v6_resp).await, IP_DETAIL, "::1 is denied");
    assert_eq!(up.hits(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn forwarded_for_is_believed_only_from_trusted_proxies() {
    let up = Upstream::counting("app").await;
    let policies = "      - id: block_net\n        ip: {deny: ['203.0.113.0/24', '2001:db8::/32']}\n";
    let untrusted = deployment_with_policies(&up, policies);
    let gw = Gateway::start(&untrusted).await;
    let spoofed = gw
        .get("app.test", "/")
        .header("x-forwarded-for", "203.0.113.7")
        .send()
        .await
        .unwrap();
    assert_eq!(spoofed.status(), 200, "an untrusted peer cannot pick its address");

    gw.write_config(&format!("trusted_proxies: [127.0.0.1]\n{untrusted}"));
    poll_until("trusted proxy in effect", RELOAD_DEADLINE, || async {
        let resp = gw
            .get("app.test", "/")
            .header("x-forwarded-for", "203.0.113.7")
            .send()
            .await
            .unwrap();
        (resp.status() == 403).then_some(())
    })
    .await;
    let v6_client = gw
        .get("app.test", "/")
        .header("x-forwarded-for", "2001:db8::5, 127.0.0.1")
        .send()
        .await
        .unwrap();
    assert_eq!(v6_client.status(), 403, "right-most untrusted address of the chain");
    let other = gw
        .get("app.test", "/")
        .header("x-forwarded-for", "203.0.113.7, 198.51.100.1")
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 200, "the right-most untrusted address is 198.51.100.1");
}

#[tokio::test(flavor = "multi_thread")]
async fn websocket_upgrade_denied_never_reaches_the_instance() {
    let ws = WsUpstream::start("ws").await;
    let yaml = format!(
        "deployments:\n  - id: dep\n    instances: [\"{}\"]\n    policies:\n      - id: no_ws\n        match:\n          - header: {{name: Upgrade, value: {{exact: websocket, ignore_case: true}}}}\n        firewall: {{action: deny}}\nroutes:\n  - host: app.test\n    deployment: dep\n",
        ws.addr_str()
    );
    let gw = Gateway::start(&yaml).await;
    match ws_connect(gw.http, "app.test", "/socket").await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 403),
        Err(other) => panic!("expected an HTTP 403 answer, got {other}"),
        Ok(_) => panic!("the upgrade was let through"),
    }
    assert_eq!(ws.accepted(), 0, "no connection was opened to the instance");
}

#[test]
fn bad_policy_config_is_a_load_error_with_path_and_line() {
    let base = "deployments:\n  - id: dep\n    instances: [\"builtin:echo\"]\n    policies:\n";
    let cases: &[(&str, &str, &[&str], usize)] = &[
        (
            "duplicate ids",
            "      - {id: a, firewall: {action: deny}}\n      - {id: a, firewall: {action: deny}}\n",
            &["deployments[0].policies[1].id", "duplicate policy id"],
            6,
        ),
        (
            "no action",
            "      - {id: a}\n",
            &["deployments[0].policies[0]", "exactly one action"],
            5,
        ),
        (
            "two actions",
            "      - {id: a, firewall: {action: deny}, ip: {deny: [10.0.0.0/8]}}\n",
            &["deployments[0].policies[0]", "exactly one action"],
            5,
        ),
        (
            "unknown action",
            "      - {id: a, waf: {}}\n",
            &["unknown field `waf`"],
            5,
        ),
        (
            "bad CIDR",
            "      - {id: a, ip: {allow: [10.0.0.0/33]}}\n",
            &["invalid CIDR"],
            5,
        ),
        (
            "bad regex",
            "      - id: a\n        match:\n          - path: {regex: '(unclosed'}\n        firewall: {action: deny}\n",
            &["deployments[0].policies[0].match[0].path.regex", "invalid regex"],
            7,
        ),
    ];
    for (what, policies, needles, line) in cases {
        assert_load_error(what, &check_config(&format!("{base}{policies}")), needles, &[*line]);
    }
}
