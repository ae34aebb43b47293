//! Route rules: path exact/prefix/regex, header/query/method matches with
//! Gateway API precedence and fall-through, weighted backends, header
//! filters, rewrites, redirects and per-route timeouts — each seen from a
//! real client and by real upstreams.

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::gateway::Gateway;
use support::load_errors::{assert_load_error, check_config};
use support::net::free_addr;
use support::problem::assert_problem;
use support::upstreams::Upstream;
use support::wait::{wait_for, WAIT};

/// The name of the upstream that answered, or `404` for config_not_found.
async fn served_by(gw: &Gateway, method: &str, path: &str, headers: &[(&str, &str)]) -> String {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut request = gw.request(method, "api.test", path);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let r = request.send().await.expect("request through gateway");
    if r.status() == 404 && r.headers().contains_key("x-unkey-error-source") {
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "err:frontline:routing:config_not_found", "{v}");
        return "404".into();
    }
    assert_eq!(r.status(), 200, "{path}");
    let v: Value = r.json().await.unwrap();
    v["name"].as_str().unwrap().to_string()
}

/// `deployments:` with one deployment per upstream, named after it.
fn deployments(upstreams: &[&Upstream]) -> String {
    let mut text = String::from("deployments:\n");
    for up in upstreams {
        text.push_str(&format!(
            "  - id: {}\n    instances: [\"{}\"]\n",
            up.name(),
            up.addr_str()
        ));
    }
    text
}

#[tokio::test(flavor = "multi_thread")]
async fn precedence_and_fall_through() {
    let names = [
        "exact",
        "prefix",
        "longer",
        "regex",
        "canary",
        "two_headers",
        "query",
        "post",
        "only_if",
    ];
    let mut ups = Vec::new();
    for name in names {
        ups.push(Upstream::inspector(name).await);
    }
    let refs: Vec<&Upstream> = ups.iter().collect();
    // Declared in an order that differs from precedence on purpose.
    let gw = Gateway::start(&format!(
        r#"{}routes:
  - {{ host: api.test, path: {{ regex: "^/v[0-9]+/" }}, deployment: regex }}
  - {{ host: api.test, path_prefix: /v1, deployment: prefix }}
  - {{ host: api.test, path_prefix: /v1, deployment: post, match: [{{ method: [POST] }}] }}
  - {{ host: api.test, path_prefix: /v1, deployment: query, match: [{{ query: {{ name: beta, present: true }} }}] }}
  - {{ host: api.test, path_prefix: /v1, deployment: canary, match: [{{ header: {{ name: X-Canary, value: {{ exact: "1" }} }} }}] }}
  - host: api.test
    path_prefix: /v1
    deployment: two_headers
    match:
      - {{ header: {{ name: X-Canary, value: {{ exact: "1" }} }} }}
      - {{ header: {{ name: X-Team, present: true }} }}
  - {{ host: api.test, path_prefix: /v1/users, deployment: longer }}
  - {{ host: api.test, path: {{ exact: /v1/ping }}, deployment: exact }}
  - {{ host: api.test, path_prefix: /only, deployment: only_if, match: [{{ header: {{ name: X-Yes, present: true }} }}] }}
"#,
        deployments(&refs)
    ))
    .await;

    // (method, target, headers, expected route)
    type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        ("GET", "/v1/ping", &[("x-canary", "1")], "exact"),
        ("GET", "/v1/ping/", &[], "prefix"),
        ("GET", "/v1/users/7", &[("x-canary", "1")], "longer"),
        ("GET", "/v1/orders", &[], "prefix"),
        ("GET", "/v1/orders", &[("x-canary", "1")], "canary"),
        ("GET", "/v1/orders", &[("x-canary", "2")], "prefix"),
        (
            "GET",
            "/v1/orders",
            &[("x-canary", "1"), ("x-team", "a")],
            "two_headers",
        ),
        ("GET", "/v1/orders?beta", &[], "query"),
        ("POST", "/v1/orders?beta", &[], "query"),
        ("POST", "/v1/orders", &[], "post"),
        ("POST", "/v1/orders?beta", &[("x-canary", "1")], "canary"),
        ("GET", "/v2/anything", &[], "regex"),
        ("GET", "/v22", &[], "404"),
        ("GET", "/only/x", &[("x-yes", "")], "only_if"),
        ("GET", "/only/x", &[], "404"),
    ];
    for (method, path, headers, want) in cases {
        assert_eq!(
            &served_by(&gw, method, path, headers).await,
            want,
            "{method} {path} {headers:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn weights_split_traffic_and_skip_a_backend_without_healthy_instances() {
    let stable = Upstream::counting("stable").await;
    let canary = Upstream::counting("canary").await;
    let never = Upstream::counting("never").await;
    let dead = free_addr();
    let gw = Gateway::start(&format!(
        r#"{}  - id: down
    instances: ["{dead}"]
    upstream:
      health_check: {{ path: /healthz, interval: 100ms, timeout: 300ms, failure_threshold: 1 }}
routes:
  - host: api.test
    path_prefix: /split
    backends:
      - {{ deployment: stable, weight: 90 }}
      - {{ deployment: canary, weight: 10 }}
      - {{ deployment: never, weight: 0 }}
  - host: api.test
    path_prefix: /failover
    backends:
      - {{ deployment: down, weight: 99 }}
      - {{ deployment: canary, weight: 1 }}
"#,
        deployments(&[&stable, &canary, &never])
    ))
    .await;

    const N: usize = 400;
    for _ in 0..N {
        let r = gw.get("api.test", "/split").send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    // Binomial(400, 0.1): mean 40, sd 6; ±5 sd is 10..70.
    let to_canary = canary.hits();
    assert!((10..=70).contains(&to_canary), "canary took {to_canary} of {N}");
    assert_eq!(stable.hits() + to_canary, N);
    assert_eq!(never.hits(), 0, "weight 0 takes nothing");

    gw.wait_metric(r#"keygate_instances_healthy{deployment="down"}"#, 0.0)
        .await;
    let before = canary.hits();
    for _ in 0..20 {
        let r = gw.get("api.test", "/failover").send().await.unwrap();
        assert_eq!(r.status(), 200, "the healthy backend serves");
    }
    assert_eq!(
        canary.hits() - before,
        20,
        "every request went to the only healthy backend"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn header_filters_as_the_upstream_and_the_client_see_them() {
    let up = Upstream::inspector("app").await;
    let gw = Gateway::start(&format!(
        r#"{}routes:
  - host: api.test
    deployment: app
    filters:
      - request_headers: {{ set: {{ X-Env: prod }}, add: {{ X-Via: keygate }}, remove: [X-Debug] }}
      - request_headers: {{ set: {{ X-Second: "2" }} }}
      - response_headers: {{ set: {{ X-Served-By: keygate }}, add: {{ X-Extra: one }}, remove: [X-Upstream-Secret] }}
"#,
        deployments(&[&up])
    ))
    .await;
    let r = gw
        .get("api.test", "/x")
        .header("x-env", "dev")
        .header("x-via", "client")
        .header("x-debug", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-served-by"], "keygate");
    assert_eq!(r.headers()["x-extra"], "one");
    let seen = up.last_seen();
    assert_eq!(seen.all("x-env"), ["prod"], "set replaces the client's value");
    assert_eq!(seen.all("x-via"), ["client", "keygate"], "add keeps the client's value");
    assert_eq!(seen.one("x-debug"), None, "remove drops it");
    assert_eq!(seen.one("x-second"), Some("2"), "filters apply in order");
    assert!(
        seen.one("x-request-id").is_some(),
        "the gateway's own headers are still sent"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rewrites_change_host_and_path_and_keep_the_query() {
    let up = Upstream::inspector("app").await;
    let gw = Gateway::start(&format!(
        r#"{}routes:
  - host: api.test
    path_prefix: /v1
    deployment: app
    filters:
      - rewrite: {{ hostname: internal.example, path: {{ replace_prefix: /api }} }}
  - host: api.test
    path_prefix: /health
    deployment: app
    filters:
      - rewrite: {{ path: {{ replace_full: /status }} }}
  - host: api.test
    path_prefix: /root
    deployment: app
    filters:
      - rewrite: {{ path: {{ replace_prefix: / }} }}
"#,
        deployments(&[&up])
    ))
    .await;
    let seen = |path: &'static str| {
        let gw = &gw;
        let up = &up;
        async move {
            let r = gw.get("api.test", path).send().await.unwrap();
            assert_eq!(r.status(), 200, "{path}");
            up.last_seen()
        }
    };
    let v1 = seen("/v1/users?id=7").await;
    assert_eq!(v1.uri, "/api/users?id=7");
    assert_eq!(v1.one("host"), Some("internal.example"));
    assert_eq!(
        v1.one("x-forwarded-host"),
        Some("api.test"),
        "X-Forwarded-Host keeps the client's host"
    );
    assert_eq!(seen("/v1").await.uri, "/api");
    let health = seen("/health/deep?verbose=1").await;
    assert_eq!(health.uri, "/status?verbose=1");
    assert_eq!(
        health.one("host"),
        Some("api.test"),
        "no hostname rewrite: Host unchanged"
    );
    assert_eq!(seen("/root/a/b").await.uri, "/a/b");
}

#[tokio::test(flavor = "multi_thread")]
async fn redirects_are_answered_by_the_gateway() {
    let up = Upstream::counting("app").await;
    let gw = Gateway::start(&format!(
        r#"{}routes:
  - host: api.test
    path_prefix: /old
    filters:
      - redirect: {{ scheme: https, hostname: new.example.com, path: {{ replace_prefix: /v2 }}, status: 301 }}
  - host: api.test
    path_prefix: /moved
    deployment: app
    filters:
      - redirect: {{ port: 8080 }}
  - host: api.test
    deployment: app
"#,
        deployments(&[&up])
    ))
    .await;
    let client = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let get = |path: &str| client.get(gw.http_url(path)).header("host", "api.test").send();

    let r = get("/old/items?page=2").await.unwrap();
    assert_eq!(r.status(), 301);
    assert_eq!(r.headers()["location"], "https://new.example.com/v2/items?page=2");

    let r = get("/moved/x?q=1").await.unwrap();
    assert_eq!(r.status(), 302, "302 by default");
    assert_eq!(
        r.headers()["location"],
        "http://api.test:8080/moved/x?q=1",
        "the rest of the URL is kept"
    );

    assert_eq!(up.hits(), 0, "a redirect never reaches an instance");
    assert_eq!(get("/other").await.unwrap().status(), 200);
    assert_eq!(up.hits(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_route_timeout_overrides_the_request_timeout() {
    let held = Upstream::held("held").await;
    let gw = Gateway::start(&format!(
        r#"limits:
  request_timeout: 30s
{}routes:
  - {{ host: api.test, path_prefix: /slow/short, deployment: held, timeout: 300ms }}
  - {{ host: api.test, deployment: held }}
"#,
        deployments(&[&held])
    ))
    .await;
    let started = Instant::now();
    let r = gw.get("api.test", "/slow/short").send().await.unwrap();
    let took = started.elapsed();
    assert_problem(r, 504, "err:frontline:upstream:gateway_timeout", "Gateway Timeout").await;
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(10),
        "took {took:?}"
    );

    // The other route keeps the file's 30 s: it is still waiting when released.
    let hits_before = held.hits();
    let long = tokio::spawn({
        let request = gw.get("api.test", "/slow/long").send();
        async move { request.await.map(|r| r.status().as_u16()) }
    });
    wait_for("the long request reaches the instance", WAIT, || async {
        held.hits() > hits_before
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await; // longer than the short route's timeout
    held.release();
    assert_eq!(long.await.unwrap().unwrap(), 200);
}

#[test]
fn bad_route_rules_name_the_field_and_line() {
    let base = "deployments:\n  - { id: a, instances: [\"127.0.0.1:1\"] }\n  - { id: b, instances: [\"127.0.0.1:2\"] }\nroutes:\n";
    let cases: &[(&str, &str, &[&str])] = &[
        ("  - { host: a.test, deployment: a, path: { regex: \"(\" } }\n", "bad regex", &["routes[0].path.regex"]),
        ("  - { host: a.test, deployment: a, backends: [{ deployment: b }] }\n", "both", &["routes[0].backends"]),
        ("  - { host: a.test, backends: [{ deployment: nope, weight: 1 }] }\n", "unknown", &["routes[0].backends[0].deployment", "nope"]),
        ("  - { host: a.test, backends: [{ deployment: a, weight: 0 }] }\n", "zero weights", &["routes[0].backends"]),
        ("  - { host: a.test }\n", "no backend", &["routes[0].deployment"]),
        (
            "  - { host: a.test, deployment: a, filters: [{ request_headers: { set: { Content-Length: \"1\" } } }] }\n",
            "framing header",
            &["routes[0].filters[0].request_headers.set.Content-Length"],
        ),
        ("  - { host: a.test, deployment: a, filters: [{ redirect: { status: 200 } }] }\n", "status", &["routes[0].filters[0].redirect.status"]),
        (
            "  - { host: a.test, deployment: a, path: { exact: /x }, filters: [{ rewrite: { path: { replace_prefix: /y } } }] }\n",
            "replace_prefix on exact",
            &["routes[0].filters[0].rewrite.path.replace_prefix"],
        ),
        ("  - { host: a.test, deployment: a, timeout: 0s }\n", "zero timeout", &["routes[0].timeout"]),
    ];
    for (route, what, needles) in cases {
        let checked = check_config(&format!("{base}{route}"));
        assert_load_error(what, &checked, needles, &[5]);
    }
    let conditional_twins = format!(
        "{base}  - {{ host: a.test, deployment: a }}\n  - {{ host: a.test, deployment: b, match: [{{ method: [POST] }}] }}\n"
    );
    assert!(
        check_config(&conditional_twins).success(),
        "match expressions tell two routes of one path apart"
    );
    let twins = format!("{base}  - {{ host: a.test, deployment: a }}\n  - {{ host: a.test, deployment: b }}\n");
    assert_load_error(
        "duplicate",
        &check_config(&twins),
        &["routes[1].host", "duplicate route"],
        &[6],
    );
}
