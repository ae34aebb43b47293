//! Routing: Host → deployment, then path prefix and
//! the 404 `config_not_found` error.

mod support;

use serde_json::Value;
use support::gateway::{one_route, Gateway};
use support::problem::assert_problem;
use support::upstreams::Upstream;

/// Sends `GET path` with `Host: host` and returns the name of the upstream
/// that answered, or `404` when the gateway answered config_not_found.
async fn served_by(gw: &Gateway, host: &str, path: &str) -> String {
    let r = gw.get(host, path).send().await.expect("request through gateway");
    let status = r.status().as_u16();
    if status == 404 && r.headers().get("x-unkey-error-source").is_some() {
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "err:frontline:routing:config_not_found", "{v}");
        return "404".into();
    }
    assert_eq!(status, 200, "{host}{path}");
    let v: Value = r.json().await.unwrap();
    v["name"].as_str().unwrap().to_string()
}

/// Upstream's view of the last request's URI.
async fn uri_seen(gw: &Gateway, up: &Upstream, host: &str, path: &str) -> String {
    let r = gw.get(host, path).send().await.unwrap();
    assert_eq!(r.status(), 200, "{host}{path}");
    up.last_seen().uri
}

#[tokio::test(flavor = "multi_thread")]
async fn exact_wildcard_and_unknown_hosts() {
    let exact = Upstream::inspector("exact").await;
    let wild = Upstream::inspector("wild").await;
    let special = Upstream::inspector("special").await;
    let gw = Gateway::start(&format!(
        r#"
deployments:
  - id: dep_exact
    instances: ["{exact}"]
  - id: dep_wild
    instances: ["{wild}"]
  - id: dep_special
    instances: ["{special}"]
routes:
  - host: api.example.test
    deployment: dep_exact
  - host: "*.preview.example.test"
    deployment: dep_wild
  - host: special.preview.example.test
    deployment: dep_special
"#,
        exact = exact.addr_str(),
        wild = wild.addr_str(),
        special = special.addr_str()
    ))
    .await;

    let cases = [
        ("api.example.test", "exact"),
        ("a.preview.example.test", "wild"),
        ("pr-42.preview.example.test", "wild"),
        // exact beats wildcard, whatever the declaration order
        ("special.preview.example.test", "special"),
        // one label only
        ("a.b.preview.example.test", "404"),
        ("preview.example.test", "404"),
        ("other.example.test", "404"),
        ("example.test", "404"),
        ("xapi.example.test", "404"),
    ];
    for (host, want) in cases {
        assert_eq!(served_by(&gw, host, "/").await, want, "Host: {host}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn host_match_ignores_case_port_and_trailing_dot() {
    let a = Upstream::inspector("a").await;
    let w = Upstream::inspector("w").await;
    let gw = Gateway::start(&format!(
        r#"
deployments:
  - id: dep_a
    instances: ["{a}"]
  - id: dep_w
    instances: ["{w}"]
routes:
  - host: Api.Example.Test
    deployment: dep_a
  - host: "*.Apps.Example.Test"
    deployment: dep_w
"#,
        a = a.addr_str(),
        w = w.addr_str()
    ))
    .await;

    for host in [
        "api.example.test",
        "API.EXAMPLE.TEST",
        "aPi.ExAmple.test",
        "api.example.test:8080",
        "api.example.test.",
        "api.example.test.:443",
        "API.Example.Test.:1",
    ] {
        assert_eq!(served_by(&gw, host, "/").await, "a", "Host: {host}");
    }
    for host in [
        "x.apps.example.test",
        "X.APPS.EXAMPLE.TEST:9000",
        "x.apps.example.test.",
    ] {
        assert_eq!(served_by(&gw, host, "/").await, "w", "Host: {host}");
    }
    assert_eq!(served_by(&gw, "api.example.tes", "/").await, "404");
}

#[tokio::test(flavor = "multi_thread")]
async fn longest_path_prefix_wins_on_segment_boundaries() {
    let root = Upstream::inspector("root").await;
    let api = Upstream::inspector("api").await;
    let v2 = Upstream::inspector("v2").await;
    let gw = Gateway::start(&format!(
        r#"
deployments:
  - id: dep_root
    instances: ["{root}"]
  - id: dep_api
    instances: ["{api}"]
  - id: dep_v2
    instances: ["{v2}"]
routes:
  - host: paths.test
    path_prefix: /api/v2
    deployment: dep_v2
  - host: paths.test
    deployment: dep_root
  - host: paths.test
    path_prefix: /api
    deployment: dep_api
"#,
        root = root.addr_str(),
        api = api.addr_str(),
        v2 = v2.addr_str()
    ))
    .await;

    let cases = [
        ("/", "root"),
        ("/other", "root"),
        ("/api", "api"),
        ("/api/", "api"),
        ("/api/x", "api"),
        ("/api?q=1", "api"),
        ("/apix", "root"),
        ("/api-v2", "root"),
        ("/api/v2", "v2"),
        ("/api/v2/", "v2"),
        ("/api/v2/users/1?x=y", "v2"),
        ("/api/v2x", "api"),
        ("/api/v20", "api"),
        // prefixes are case-sensitive
        ("/API", "root"),
        ("/Api/v2", "root"),
    ];
    for (path, want) in cases {
        assert_eq!(served_by(&gw, "paths.test", path).await, want, "path {path}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn prefix_route_does_not_match_a_longer_segment() {
    let api = Upstream::inspector("api").await;
    let gw = Gateway::start(&format!(
        r#"
deployments:
  - id: dep_api
    instances: ["{api}"]
routes:
  - host: only-api.test
    path_prefix: /api
    deployment: dep_api
"#,
        api = api.addr_str()
    ))
    .await;

    assert_eq!(served_by(&gw, "only-api.test", "/api").await, "api");
    assert_eq!(served_by(&gw, "only-api.test", "/api/deep/er").await, "api");
    for path in ["/apix", "/ap", "/", "/x/api", "/API"] {
        assert_eq!(served_by(&gw, "only-api.test", path).await, "404", "path {path}");
    }
    assert_eq!(api.hits(), 2, "only the two matching requests reached the instance");
}

#[tokio::test(flavor = "multi_thread")]
async fn strip_prefix_removes_prefix_and_keeps_query() {
    let up = Upstream::inspector("up").await;
    let gw = Gateway::start(&format!(
        r#"
deployments:
  - id: dep_up
    instances: ["{up}"]
routes:
  - host: strip.test
    path_prefix: /api
    strip_prefix: true
    deployment: dep_up
  - host: strip.test
    path_prefix: /keep
    strip_prefix: false
    deployment: dep_up
  - host: strip.test
    path_prefix: /deep/er
    strip_prefix: true
    deployment: dep_up
"#,
        up = up.addr_str()
    ))
    .await;

    let cases = [
        ("/api/x?q=1", "/x?q=1"),
        ("/api/x/y", "/x/y"),
        ("/api", "/"),
        ("/api/", "/"),
        ("/api?q=1&r=2", "/?q=1&r=2"),
        ("/keep/x?q=1", "/keep/x?q=1"),
        ("/keep", "/keep"),
        ("/deep/er/z?a=b", "/z?a=b"),
        ("/deep/er", "/"),
    ];
    for (path, want) in cases {
        assert_eq!(uri_seen(&gw, &up, "strip.test", path).await, want, "request {path}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn host_is_chosen_before_path_without_wildcard_fallback() {
    let v1 = Upstream::inspector("v1").await;
    let wild = Upstream::inspector("wild").await;
    let gw = Gateway::start(&format!(
        r#"
deployments:
  - id: dep_v1
    instances: ["{v1}"]
  - id: dep_wild
    instances: ["{wild}"]
routes:
  - host: api.host-first.test
    path_prefix: /v1
    deployment: dep_v1
  - host: "*.host-first.test"
    deployment: dep_wild
"#,
        v1 = v1.addr_str(),
        wild = wild.addr_str()
    ))
    .await;

    assert_eq!(served_by(&gw, "api.host-first.test", "/v1/users").await, "v1");
    // The exact host is chosen; its only prefix does not match → 404, even
    // though the wildcard would have matched.
    assert_eq!(served_by(&gw, "api.host-first.test", "/v2/users").await, "404");
    assert_eq!(served_by(&gw, "api.host-first.test", "/").await, "404");
    assert_eq!(served_by(&gw, "other.host-first.test", "/v2/users").await, "wild");
    assert_eq!(wild.hits(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn config_not_found_is_a_problem_json_404() {
    let up = Upstream::inspector("up").await;
    let gw = Gateway::start(&one_route("known.test", "dep_known", &[&up.addr_str()])).await;

    let r = gw
        .get("unknown.test", "/some/path?x=1")
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    let server_timing = r
        .headers()
        .get("server-timing")
        .map(|v| v.to_str().unwrap().to_string());
    let v = assert_problem(r, 404, "err:frontline:routing:config_not_found", "Not Found").await;
    assert_eq!(
        v["error"]["type"], "https://unkey.com/docs/errors/frontline/routing/config_not_found",
        "{v}"
    );
    let st = server_timing.expect("Server-Timing on gateway-made errors");
    assert!(st.contains("gateway;dur="), "Server-Timing {st:?}");

    // No Accept header at all: still problem+json; request ids differ per request.
    let r1 = gw.get("unknown.test", "/").send().await.unwrap();
    let v1 = assert_problem(r1, 404, "err:frontline:routing:config_not_found", "Not Found").await;
    assert_ne!(
        v1["meta"]["requestId"], v["meta"]["requestId"],
        "request ids are unique"
    );
    assert_eq!(up.hits(), 0, "nothing was forwarded");
}
