//! The Kubernetes Gateway API, against the real binary over loopback: the
//! fake API server (`kubernetes/fake_api.rs`) serves GatewayClasses,
//! Gateways, HTTPRoutes and ReferenceGrants with list, watch and `/status`;
//! instances are loopback upstreams named by EndpointSlices; every
//! assertion is a real request through the gateway, a status keygate
//! patched, or an Event it recorded.

mod support;

// Its restart helpers serve the Ingress tests only.
#[allow(dead_code)]
#[path = "kubernetes/fake_api.rs"]
mod fake_api;

#[path = "kubernetes/cluster.rs"]
mod cluster;

use std::collections::BTreeMap;
use std::time::Duration;

use cluster::{Cluster, NS, PUBLISHED_IP};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::ByteString;
use keygate::providers::kubernetes::{Gateway, GatewayClass, HttpRoute, KeygatePolicy, ReferenceGrant};
use serde_json::{json, Value};
use support::gateway::Gateway as Keygate;
use support::net::free_addr;
use support::problem::assert_problem;
use support::tls::{https_get, self_signed_pem, tls_handshake, TLS_ANY};
use support::upstreams::Upstream;
use support::wait::{poll_until, wait_for, WAIT};

const CONTROLLER: &str = "keygate.dev/gateway-controller";
/// Where the Gateway lives (routes are in [`NS`]).
const INFRA: &str = "infra";

/// Our GatewayClass `keygate` and Gateway `infra/web` with `listeners`.
fn gateway_objects(cluster: &Cluster, listeners: Value) {
    cluster
        .api
        .apply(&GatewayClass::new("", "keygate", json!({"controllerName": CONTROLLER})));
    cluster.api.apply(&Gateway::new(
        INFRA,
        "web",
        json!({"gatewayClassName": "keygate", "listeners": listeners}),
    ));
}

/// One HTTP listener for every host, taking routes from every namespace.
fn open_listener() -> Value {
    json!([{"name": "http", "port": 80, "protocol": "HTTP", "allowedRoutes": {"namespaces": {"from": "All"}}}])
}

/// HTTPRoute `NS/name` on Gateway `infra/web` with `hostnames` and `rules`.
fn http_route(name: &str, hostnames: &[&str], rules: Value) -> HttpRoute {
    HttpRoute::new(
        NS,
        name,
        json!({"parentRefs": [{"name": "web", "namespace": INFRA}], "hostnames": hostnames, "rules": rules}),
    )
}

/// A rule sending everything to Service `service`:80.
fn to(service: &str) -> Value {
    json!([{"backendRefs": [{"name": service, "port": 80}]}])
}

/// Which upstream answered (`x-upstream`), or the status the gateway answered with.
async fn served_by(gw: &Keygate, host: &str, path: &str) -> Result<String, u16> {
    let response = gw.get(host, path).send().await.expect("request through the gateway");
    match response.headers().get("x-upstream") {
        Some(name) => Ok(name.to_str().unwrap().to_string()),
        None => Err(response.status().as_u16()),
    }
}

async fn wait_served_by(gw: &Keygate, host: &str, path: &str, want: Result<&str, u16>) {
    let want = want.map(str::to_string);
    wait_for(format!("{host}{path} served by {want:?}"), WAIT, || async {
        served_by(gw, host, path).await == want
    })
    .await;
}

/// The status keygate wrote on `kind namespace/name`, once `ready` holds for it.
async fn wait_status<K>(cluster: &Cluster, namespace: &str, name: &str, ready: impl Fn(&Value) -> bool) -> Value
where
    K: kube::Resource<DynamicType = ()>,
{
    poll_until(
        format!("the status of {} {namespace}/{name}", K::kind(&())),
        WAIT,
        || async {
            cluster
                .api
                .get::<K>(namespace, name)
                .map(|object| object["status"].clone())
                .filter(|status| ready(status))
        },
    )
    .await
}

/// The condition `type_` in `conditions`, as `(status, reason)`.
fn condition<'v>(conditions: &'v Value, type_: &str) -> Option<(&'v str, &'v str)> {
    let found = conditions.as_array()?.iter().find(|c| c["type"] == type_)?;
    Some((found["status"].as_str()?, found["reason"].as_str()?))
}

/// The conditions of keygate's entry in a route status's `parents`.
fn route_conditions(status: &Value) -> &Value {
    status["parents"]
        .as_array()
        .and_then(|parents| parents.iter().find(|p| p["controllerName"] == CONTROLLER))
        .map_or(&Value::Null, |parent| &parent["conditions"])
}

#[tokio::test]
async fn a_route_serves_its_hosts_and_every_object_gets_its_status() {
    let cluster = Cluster::start().await;
    let a = Upstream::inspector("a").await;
    cluster.service("svc-a", &[&a]);
    gateway_objects(
        &cluster,
        json!([{"name": "shop", "port": 80, "protocol": "HTTP", "hostname": "*.shop.test",
                "allowedRoutes": {"namespaces": {"from": "All"}}}]),
    );
    // other.test is outside the listener's *.shop.test: not served.
    cluster
        .api
        .apply(&http_route("app", &["api.shop.test", "other.test"], to("svc-a")));
    let gw = cluster.gateway().await;
    wait_served_by(&gw, "api.shop.test", "/x", Ok("a")).await;
    assert_eq!(served_by(&gw, "other.test", "/x").await, Err(404));
    assert_eq!(
        served_by(&gw, "www.shop.test", "/x").await,
        Err(404),
        "the route names its hosts"
    );

    let class = wait_status::<GatewayClass>(&cluster, "", "keygate", |s| !s.is_null()).await;
    assert_eq!(condition(&class["conditions"], "Accepted"), Some(("True", "Accepted")));
    let gateway = wait_status::<Gateway>(&cluster, INFRA, "web", |s| s["listeners"][0]["attachedRoutes"] == 1).await;
    assert_eq!(
        condition(&gateway["conditions"], "Accepted"),
        Some(("True", "Accepted"))
    );
    assert_eq!(
        condition(&gateway["conditions"], "Programmed"),
        Some(("True", "Programmed"))
    );
    assert_eq!(
        gateway["addresses"],
        json!([{"type": "IPAddress", "value": PUBLISHED_IP}])
    );
    assert_eq!(gateway["conditions"][0]["observedGeneration"], 1);
    assert!(gateway["conditions"][0]["lastTransitionTime"].is_string(), "{gateway}");
    let listener = &gateway["listeners"][0];
    assert_eq!(listener["name"], "shop");
    assert_eq!(
        listener["supportedKinds"],
        json!([{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute"}])
    );
    assert_eq!(
        condition(&listener["conditions"], "Accepted"),
        Some(("True", "Accepted"))
    );
    assert_eq!(
        condition(&listener["conditions"], "ResolvedRefs"),
        Some(("True", "ResolvedRefs"))
    );
    let route = wait_status::<HttpRoute>(&cluster, NS, "app", |s| !route_conditions(s).is_null()).await;
    assert_eq!(
        route["parents"][0]["parentRef"],
        json!({"name": "web", "namespace": INFRA})
    );
    assert_eq!(
        condition(route_conditions(&route), "Accepted"),
        Some(("True", "Accepted"))
    );
    assert_eq!(
        condition(route_conditions(&route), "ResolvedRefs"),
        Some(("True", "ResolvedRefs"))
    );

    // Written once: keygate's own status patch does not make it write again.
    let version = |name: &str| cluster.api.get::<HttpRoute>(NS, name).unwrap()["metadata"]["resourceVersion"].clone();
    let written = version("app");
    cluster
        .api
        .apply(&http_route("other", &["other.shop.test"], to("svc-a")));
    wait_served_by(&gw, "other.shop.test", "/", Ok("a")).await;
    wait_status::<Gateway>(&cluster, INFRA, "web", |s| s["listeners"][0]["attachedRoutes"] == 2).await;
    assert_eq!(version("app"), written, "an unchanged status is not written again");

    // A route moved to another controller's Gateway loses keygate's entry.
    wait_status::<HttpRoute>(&cluster, NS, "other", |s| !route_conditions(s).is_null()).await;
    cluster.api.apply(&HttpRoute::new(
        NS,
        "other",
        json!({"parentRefs": [{"name": "nginx"}], "hostnames": ["other.shop.test"], "rules": to("svc-a")}),
    ));
    wait_served_by(&gw, "other.shop.test", "/", Err(404)).await;
    wait_status::<HttpRoute>(&cluster, NS, "other", |s| s["parents"] == json!([])).await;

    cluster.api.delete::<HttpRoute>(NS, "app");
    wait_served_by(&gw, "api.shop.test", "/x", Err(404)).await;
    wait_status::<Gateway>(&cluster, INFRA, "web", |s| s["listeners"][0]["attachedRoutes"] == 0).await;
}

#[tokio::test]
async fn section_name_attaches_to_one_listener_and_namespaces_are_checked() {
    let cluster = Cluster::start().await;
    let a = Upstream::inspector("a").await;
    cluster.service("svc-a", &[&a]);
    gateway_objects(
        &cluster,
        json!([
            {"name": "public", "port": 80, "protocol": "HTTP", "hostname": "public.test",
             "allowedRoutes": {"namespaces": {"from": "All"}}},
            {"name": "internal", "port": 80, "protocol": "HTTP", "hostname": "internal.test",
             "allowedRoutes": {"namespaces": {"from": "All"}}},
            // Routes from the Gateway's own namespace only (the default).
            {"name": "infra-only", "port": 80, "protocol": "HTTP", "hostname": "infra.test"},
            // Routes from namespaces labelled team=shop.
            {"name": "team", "port": 80, "protocol": "HTTP", "hostname": "team.test",
             "allowedRoutes": {"namespaces": {"from": "Selector", "selector": {"matchLabels": {"team": "shop"}}}}},
        ]),
    );
    let mut namespace = Namespace {
        metadata: cluster::meta("", NS),
        ..Namespace::default()
    };
    namespace.metadata.labels = Some(BTreeMap::from([("team".to_string(), "shop".to_string())]));
    cluster.api.apply(&namespace);
    let on = |section: &str| json!([{"name": "web", "namespace": INFRA, "sectionName": section}]);
    cluster.api.apply(&HttpRoute::new(
        NS,
        "internal",
        json!({"parentRefs": on("internal"), "rules": to("svc-a")}),
    ));
    cluster.api.apply(&HttpRoute::new(
        NS,
        "refused",
        json!({"parentRefs": on("infra-only"), "rules": to("svc-a")}),
    ));
    cluster.api.apply(&HttpRoute::new(
        NS,
        "team",
        json!({"parentRefs": on("team"), "rules": to("svc-a")}),
    ));
    let gw = cluster.gateway().await;
    wait_served_by(&gw, "internal.test", "/", Ok("a")).await;
    wait_served_by(&gw, "team.test", "/", Ok("a")).await;
    assert_eq!(served_by(&gw, "public.test", "/").await, Err(404));
    assert_eq!(served_by(&gw, "infra.test", "/").await, Err(404));

    let refused = wait_status::<HttpRoute>(&cluster, NS, "refused", |s| !route_conditions(s).is_null()).await;
    assert_eq!(
        condition(route_conditions(&refused), "Accepted"),
        Some(("False", "NotAllowedByListeners"))
    );
    let gateway = wait_status::<Gateway>(&cluster, INFRA, "web", |s| s["listeners"][1]["attachedRoutes"] == 1).await;
    assert_eq!(gateway["listeners"][0]["attachedRoutes"], 0);
    assert_eq!(gateway["listeners"][2]["attachedRoutes"], 0);
    assert_eq!(gateway["listeners"][3]["attachedRoutes"], 1);

    // The namespace loses its label: the selector no longer admits the route.
    namespace.metadata.labels = None;
    cluster.api.apply(&namespace);
    wait_served_by(&gw, "team.test", "/", Err(404)).await;
    let team = wait_status::<HttpRoute>(&cluster, NS, "team", |s| {
        condition(route_conditions(s), "Accepted") == Some(("False", "NotAllowedByListeners"))
    })
    .await;
    assert_eq!(team["parents"][0]["controllerName"], CONTROLLER);
    wait_for("a NotAllowedByListeners Event", WAIT, || async {
        cluster.api.events().iter().any(|e| {
            e["involvedObject"]["kind"] == "HTTPRoute"
                && e["involvedObject"]["name"] == "refused"
                && e["reason"] == "NotAllowedByListeners"
        })
    })
    .await;
}

#[tokio::test]
async fn matches_choose_the_rule() {
    let cluster = Cluster::start().await;
    let names = ["exact", "prefix", "regex", "header", "query", "post"];
    let mut upstreams = Vec::new();
    for name in names {
        let upstream = Upstream::inspector(name).await;
        cluster.service(name, &[&upstream]);
        upstreams.push(upstream);
    }
    gateway_objects(&cluster, open_listener());
    let rule =
        |matches: Value, service: &str| json!({"matches": matches, "backendRefs": [{"name": service, "port": 80}]});
    cluster.api.apply(&http_route(
        "matches",
        &["api.test"],
        json!([
            rule(
                json!([{"path": {"type": "RegularExpression", "value": "/v[0-9]+/.*"}}]),
                "regex"
            ),
            rule(json!([{"path": {"type": "PathPrefix", "value": "/v1"}}]), "prefix"),
            rule(json!([{"path": {"type": "Exact", "value": "/v1/ping"}}]), "exact"),
            rule(
                json!([{"path": {"value": "/v1"}, "headers": [{"name": "X-Canary", "value": "1"}]}]),
                "header"
            ),
            rule(
                json!([{"path": {"value": "/v1"}, "queryParams": [{"name": "beta", "value": "yes"}]}]),
                "query"
            ),
            rule(json!([{"path": {"value": "/v1"}, "method": "POST"}]), "post"),
        ]),
    ));
    let gw = cluster.gateway().await;
    wait_served_by(&gw, "api.test", "/v1/orders", Ok("prefix")).await;
    let send = |method: &str, path: &str, header: Option<(&str, &str)>| {
        let mut request = gw.request(
            reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
            "api.test",
            path,
        );
        if let Some((name, value)) = header {
            request = request.header(name, value);
        }
        async move {
            let response = request.send().await.unwrap();
            match response.headers().get("x-upstream") {
                Some(name) => name.to_str().unwrap().to_string(),
                None => response.status().as_str().to_string(),
            }
        }
    };
    /// `(method, path, header, the upstream that answers)`.
    type Case<'a> = (&'a str, &'a str, Option<(&'a str, &'a str)>, &'a str);
    let cases: &[Case] = &[
        ("GET", "/v1/ping", None, "exact"),
        ("GET", "/v1/ping/x", None, "prefix"),
        ("GET", "/v1/orders", Some(("x-canary", "1")), "header"),
        ("GET", "/v1/orders", Some(("x-canary", "2")), "prefix"),
        ("GET", "/v1/orders?beta=yes", None, "query"),
        ("GET", "/v1/orders?beta=no", None, "prefix"),
        ("POST", "/v1/orders", None, "post"),
        ("GET", "/v2/anything", None, "regex"),
        // The regex matches the whole path: /x/v2/a is not /v[0-9]+/.*
        ("GET", "/x/v2/a", None, "404"),
    ];
    for (method, path, header, want) in cases {
        assert_eq!(send(method, path, *header).await, *want, "{method} {path} {header:?}");
    }
}

#[tokio::test]
async fn weighted_backends_split_and_a_zero_weight_gets_nothing() {
    let cluster = Cluster::start().await;
    let (a, b, never) = (
        Upstream::inspector("a").await,
        Upstream::inspector("b").await,
        Upstream::inspector("never").await,
    );
    cluster.service("svc-a", &[&a]);
    cluster.service("svc-b", &[&b]);
    cluster.service("svc-never", &[&never]);
    gateway_objects(&cluster, open_listener());
    cluster.api.apply(&http_route(
        "split",
        &["split.test"],
        json!([{"backendRefs": [
            {"name": "svc-a", "port": 80, "weight": 1},
            {"name": "svc-b", "port": 80, "weight": 1},
            {"name": "svc-never", "port": 80, "weight": 0},
        ]}]),
    ));
    let gw = cluster.gateway().await;
    wait_for("both weighted backends get traffic", WAIT, || async {
        let _ = served_by(&gw, "split.test", "/").await;
        a.hits() > 0 && b.hits() > 0
    })
    .await;
    for _ in 0..30 {
        assert!(served_by(&gw, "split.test", "/").await.is_ok());
    }
    assert!(a.hits() >= 3 && b.hits() >= 3, "a {} b {}", a.hits(), b.hits());
    assert_eq!(never.hits(), 0, "a backend of weight 0 gets nothing");
}

#[tokio::test]
async fn filters_edit_headers_redirect_and_rewrite() {
    let cluster = Cluster::start().await;
    let a = Upstream::inspector("a").await;
    cluster.service("svc-a", &[&a]);
    gateway_objects(&cluster, open_listener());
    let backend = json!([{"name": "svc-a", "port": 80}]);
    cluster.api.apply(&http_route(
        "filters",
        &["filters.test"],
        json!([
            {"matches": [{"path": {"value": "/headers"}}], "backendRefs": backend, "filters": [
                {"type": "RequestHeaderModifier", "requestHeaderModifier": {
                    "set": [{"name": "X-Env", "value": "prod"}], "add": [{"name": "X-Via", "value": "keygate"}],
                    "remove": ["X-Debug"]}},
                {"type": "ResponseHeaderModifier", "responseHeaderModifier": {
                    "set": [{"name": "X-Served", "value": "yes"}], "remove": ["X-Upstream"]}},
            ]},
            {"matches": [{"path": {"value": "/old"}}], "filters": [
                {"type": "RequestRedirect", "requestRedirect": {
                    "scheme": "https", "hostname": "new.test", "statusCode": 301,
                    "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/new"}}},
            ]},
            {"matches": [{"path": {"value": "/api"}}], "backendRefs": backend, "filters": [
                {"type": "URLRewrite", "urlRewrite": {
                    "hostname": "internal.test",
                    "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/v2"}}},
            ]},
        ]),
    ));
    let gw = cluster.gateway().await;
    wait_served_by(&gw, "filters.test", "/api", Ok("a")).await;

    let response = gw
        .get("filters.test", "/headers/x")
        .header("x-env", "dev")
        .header("x-via", "client")
        .header("x-debug", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-served"], "yes");
    assert!(
        !response.headers().contains_key("x-upstream"),
        "removed from the response"
    );
    let seen = a.last_seen();
    assert_eq!(seen.all("x-env"), ["prod"]);
    assert_eq!(seen.all("x-via"), ["client", "keygate"]);
    assert!(seen.all("x-debug").is_empty());

    let hits = a.hits();
    let no_redirects = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let response = no_redirects
        .get(gw.http_url("/old/page?q=1"))
        .header("host", "filters.test")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 301);
    assert_eq!(response.headers()["location"], "https://new.test/new/page?q=1");
    assert_eq!(a.hits(), hits, "a redirect never reaches an instance");

    assert_eq!(
        served_by(&gw, "filters.test", "/api/users?page=2").await,
        Ok("a".into())
    );
    let seen = a.last_seen();
    assert_eq!(seen.uri, "/v2/users?page=2");
    assert_eq!(seen.one("host"), Some("internal.test"));
}

#[tokio::test]
async fn the_request_timeout_answers_504() {
    let cluster = Cluster::start().await;
    let slow = Upstream::slow("slow", Duration::from_secs(3)).await;
    cluster.service("svc-slow", &[&slow]);
    gateway_objects(&cluster, open_listener());
    cluster.api.apply(&http_route(
        "slow",
        &["slow.test"],
        json!([{"backendRefs": [{"name": "svc-slow", "port": 80}], "timeouts": {"request": "300ms"}}]),
    ));
    let gw = cluster.gateway().await;
    wait_for("the route is served", WAIT, || async {
        served_by(&gw, "slow.test", "/").await != Err(404)
    })
    .await;
    let started = std::time::Instant::now();
    let response = gw.get("slow.test", "/").send().await.unwrap();
    assert_eq!(response.status(), 504);
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
}

#[tokio::test]
async fn an_extension_ref_policy_is_enforced_and_fails_closed_while_missing() {
    let cluster = Cluster::start().await;
    let a = Upstream::inspector("a").await;
    cluster.service("svc-a", &[&a]);
    gateway_objects(&cluster, open_listener());
    cluster.api.apply(&http_route(
        "guarded",
        &["guarded.test"],
        json!([{"backendRefs": [{"name": "svc-a", "port": 80}], "filters": [
            {"type": "ExtensionRef", "extensionRef": {"group": "keygate.dev", "kind": "KeygatePolicy", "name": "office"}},
        ]}]),
    ));
    let gw = cluster.gateway().await;
    wait_served_by(&gw, "guarded.test", "/", Err(422)).await;
    let response = gw.get("guarded.test", "/").send().await.unwrap();
    assert_problem(
        response,
        422,
        "err:frontline:config:invalid_configuration",
        "Unprocessable Entity",
    )
    .await;
    assert_eq!(a.hits(), 0, "never served without its policy");
    let route = wait_status::<HttpRoute>(&cluster, NS, "guarded", |s| !route_conditions(s).is_null()).await;
    assert_eq!(
        condition(route_conditions(&route), "ResolvedRefs"),
        Some(("False", "PolicyNotFound"))
    );

    let policies = json!({"policies": [
        {"id": "no-admin", "match": [{"path": {"prefix": "/admin"}}], "firewall": {"action": "deny"}}
    ]});
    cluster.api.apply(&KeygatePolicy::new(NS, "office", policies));
    wait_served_by(&gw, "guarded.test", "/", Ok("a")).await;
    let response = gw.get("guarded.test", "/admin/x").send().await.unwrap();
    assert_problem(response, 403, "err:frontline:client:firewall_denied", "Forbidden").await;
    wait_status::<HttpRoute>(&cluster, NS, "guarded", |s| {
        condition(route_conditions(s), "ResolvedRefs") == Some(("True", "ResolvedRefs"))
    })
    .await;
}

#[tokio::test]
async fn a_backend_in_another_namespace_needs_a_reference_grant() {
    let cluster = Cluster::start().await;
    let db = Upstream::inspector("db").await;
    cluster.service_in("data", "db", &[&db]);
    gateway_objects(&cluster, open_listener());
    cluster.api.apply(&http_route(
        "cross",
        &["cross.test"],
        json!([{"backendRefs": [{"name": "db", "namespace": "data", "port": 80}]}]),
    ));
    let gw = cluster.gateway().await;
    wait_served_by(&gw, "cross.test", "/", Err(503)).await;
    let response = gw.get("cross.test", "/").send().await.unwrap();
    assert_problem(
        response,
        503,
        "err:frontline:capacity:no_running_instances",
        "Service Unavailable",
    )
    .await;
    let route = wait_status::<HttpRoute>(&cluster, NS, "cross", |s| !route_conditions(s).is_null()).await;
    assert_eq!(
        condition(route_conditions(&route), "ResolvedRefs"),
        Some(("False", "RefNotPermitted"))
    );
    assert_eq!(
        condition(route_conditions(&route), "Accepted"),
        Some(("True", "Accepted"))
    );
    assert_eq!(db.hits(), 0);

    cluster.api.apply(&ReferenceGrant::new(
        "data",
        "routes-from-shop",
        json!({"from": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "namespace": NS}],
               "to": [{"group": "", "kind": "Service", "name": "db"}]}),
    ));
    wait_served_by(&gw, "cross.test", "/", Ok("db")).await;
    wait_status::<HttpRoute>(&cluster, NS, "cross", |s| {
        condition(route_conditions(s), "ResolvedRefs") == Some(("True", "ResolvedRefs"))
    })
    .await;
}

#[tokio::test]
async fn a_bad_route_is_an_event_and_a_condition_and_the_rest_keeps_serving() {
    let cluster = Cluster::start().await;
    let a = Upstream::inspector("a").await;
    cluster.service("svc-a", &[&a]);
    gateway_objects(&cluster, open_listener());
    cluster.api.apply(&http_route("good", &["good.test"], to("svc-a")));
    // An unbalanced regex: the rule cannot be compiled.
    cluster.api.apply(&http_route(
        "bad",
        &["bad.test"],
        json!([{"matches": [{"path": {"type": "RegularExpression", "value": "/(unclosed"}}],
                "backendRefs": [{"name": "svc-a", "port": 80}]}]),
    ));
    // A spec keygate cannot even read.
    cluster.api.apply(&HttpRoute::new(
        NS,
        "garbled",
        json!({"parentRefs": [{"name": "web", "namespace": INFRA}], "hostnames": "not-a-list"}),
    ));
    let gw = cluster.gateway().await;
    wait_served_by(&gw, "good.test", "/", Ok("a")).await;
    assert_eq!(served_by(&gw, "bad.test", "/").await, Err(404));

    let bad = wait_status::<HttpRoute>(&cluster, NS, "bad", |s| !route_conditions(s).is_null()).await;
    assert_eq!(
        condition(route_conditions(&bad), "Accepted"),
        Some(("False", "UnsupportedValue"))
    );
    let garbled = wait_status::<HttpRoute>(&cluster, NS, "garbled", |s| !route_conditions(s).is_null()).await;
    assert_eq!(
        condition(route_conditions(&garbled), "Accepted"),
        Some(("False", "UnsupportedValue"))
    );
    wait_for("Events on both bad routes", WAIT, || async {
        let events = cluster.api.events();
        let on = |name: &str, reason: &str| {
            events.iter().any(|e| {
                e["involvedObject"]["kind"] == "HTTPRoute"
                    && e["involvedObject"]["apiVersion"] == "gateway.networking.k8s.io/v1"
                    && e["involvedObject"]["name"] == name
                    && e["reason"] == reason
                    && e["type"] == "Warning"
            })
        };
        on("bad", "UnsupportedValue") && on("garbled", "InvalidHTTPRoute")
    })
    .await;
    assert!(
        !cluster
            .api
            .events()
            .iter()
            .any(|e| e["involvedObject"]["name"] == "good"),
        "{:?}",
        cluster.api.events()
    );

    // Fixed, it is served; the good route never stopped.
    cluster.api.apply(&http_route("bad", &["bad.test"], to("svc-a")));
    wait_served_by(&gw, "bad.test", "/", Ok("a")).await;
    assert_eq!(served_by(&gw, "good.test", "/").await, Ok("a".into()));
}

#[tokio::test]
async fn an_https_listener_serves_its_certificate_ref() {
    let cluster = Cluster::start().await;
    let a = Upstream::inspector("a").await;
    cluster.service("svc-a", &[&a]);
    let (cert, key) = self_signed_pem(&["secure.test"]);
    cluster.api.apply(&Secret {
        metadata: cluster::meta(INFRA, "secure-tls"),
        type_: Some("kubernetes.io/tls".into()),
        data: Some(BTreeMap::from([
            ("tls.crt".to_string(), ByteString(cert.into_bytes())),
            ("tls.key".to_string(), ByteString(key.into_bytes())),
        ])),
        ..Secret::default()
    });
    gateway_objects(
        &cluster,
        json!([
            {"name": "https", "port": 443, "protocol": "HTTPS", "hostname": "secure.test",
             "tls": {"mode": "Terminate", "certificateRefs": [{"kind": "Secret", "name": "secure-tls"}]},
             "allowedRoutes": {"namespaces": {"from": "All"}}},
            // A certificate in another namespace, without a ReferenceGrant.
            {"name": "foreign", "port": 443, "protocol": "HTTPS", "hostname": "foreign.test",
             "tls": {"certificateRefs": [{"name": "theirs", "namespace": NS}]}},
        ]),
    );
    cluster.api.apply(&http_route("secure", &["secure.test"], to("svc-a")));
    let https = free_addr();
    let listen = format!(
        "listen:\n  http: \"@HTTP@\"\n  https: \"{https}\"\n  admin: \"@ADMIN@\"\ntls:\n  redirect_http: false\n"
    );
    let _gw = Keygate::start(&cluster.config(&listen)).await;
    wait_for("the Secret's certificate is served", WAIT, || async {
        tls_handshake(https, "secure.test", TLS_ANY, &[])
            .await
            .is_ok_and(|hs| hs.sans == ["secure.test"])
    })
    .await;
    let response = https_get(https, "secure.test", "/").await.unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.header("x-upstream"), Some("a"));

    let gateway = wait_status::<Gateway>(&cluster, INFRA, "web", |s| s["listeners"][0]["attachedRoutes"] == 1).await;
    assert_eq!(
        condition(&gateway["listeners"][0]["conditions"], "ResolvedRefs"),
        Some(("True", "ResolvedRefs"))
    );
    assert_eq!(
        condition(&gateway["listeners"][1]["conditions"], "ResolvedRefs"),
        Some(("False", "RefNotPermitted"))
    );
}
