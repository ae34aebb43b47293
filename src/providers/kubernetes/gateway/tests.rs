use std::path::Path;

use k8s_openapi::api::core::v1::Namespace;
use serde_json::json;

use super::*;
use crate::errors::ErrorCode;
use crate::providers::kubernetes::fixtures::{self, meta};
use crate::providers::kubernetes::resolve::CertCache;

const CONTROLLER: &str = "keygate.dev/gateway-controller";

/// Service `namespace/name` (port 80 `http`) with one ready endpoint at `ip`:8080.
fn service(view: &mut View, namespace: &str, name: &str, ip: &str) {
    view.services.push(fixtures::service(namespace, name));
    view.slices.push(fixtures::slice(namespace, name, &[(ip, Some(true))]));
}

/// Our class `keygate`, a foreign class `other`, and Gateway `infra/web`
/// with listeners `http` (every host, routes from all namespaces) and
/// `shop` (`*.shop.test`, routes from its own namespace).
fn cluster() -> View {
    let mut view = View {
        gateway_classes: vec![
            Arc::new(GatewayClass::new("", "keygate", json!({"controllerName": CONTROLLER}))),
            Arc::new(GatewayClass::new(
                "",
                "other",
                json!({"controllerName": "example.com/other"}),
            )),
        ],
        ..View::default()
    };
    view.gateways.push(Arc::new(Gateway::new(
        "infra",
        "web",
        json!({"gatewayClassName": "keygate", "listeners": [
            {"name": "http", "port": 80, "protocol": "HTTP", "allowedRoutes": {"namespaces": {"from": "All"}}},
            {"name": "shop", "port": 80, "protocol": "HTTP", "hostname": "*.shop.test"},
            {"name": "tcp", "port": 9000, "protocol": "TCP"},
        ]}),
    )));
    view.namespaces.push(Arc::new(Namespace {
        metadata: meta("", "shop"),
        ..Namespace::default()
    }));
    service(&mut view, "shop", "api", "10.0.0.1");
    view
}

fn route(namespace: &str, name: &str, spec: serde_json::Value) -> Arc<HttpRoute> {
    Arc::new(HttpRoute::new(namespace, name, spec))
}

fn run(view: &View) -> Translation {
    let services = crate::runtime::Services::in_memory().unwrap();
    let keys = services.keys_without_statics();
    let context = Context {
        ingress_class: "keygate",
        gateway_controller: CONTROLLER,
        publish_service: None,
        keys: &keys,
        base_dir: Path::new("."),
        services: &services,
    };
    crate::providers::kubernetes::translate::translate(view, &context, &mut CertCache::new())
}

/// `(deployment id, refusal)` for `GET host path`.
fn resolve(t: &Translation, host: &str, path: &str) -> Option<(String, Option<ErrorCode>)> {
    let merged = crate::runtime::merge(&[(crate::runtime::ProviderId::Kubernetes, &t.routing)]);
    let routed = merged
        .routes
        .resolve(host, &crate::routing::request_head("GET", path, &[]))?;
    Some((routed.target.deployment()?.id.to_string(), routed.target.refusal))
}

fn status<'t>(t: &'t Translation, kind: StatusKind, name: &str) -> &'t Value {
    &t.statuses
        .iter()
        .find(|s| s.kind == kind && s.name == name)
        .unwrap_or_else(|| panic!("no status for {name}"))
        .desired
}

fn condition<'v>(conditions: &'v Value, type_: &str) -> (&'v str, &'v str) {
    let found = conditions
        .as_array()
        .and_then(|list| list.iter().find(|c| c["type"] == type_))
        .unwrap_or_else(|| panic!("no {type_} in {conditions}"));
    (found["status"].as_str().unwrap(), found["reason"].as_str().unwrap())
}

#[test]
fn routes_attach_by_section_hostname_and_namespace() {
    let mut view = cluster();
    view.http_routes = vec![
        // Attached to both listeners, narrowed by hostnames.
        route(
            "shop",
            "api",
            json!({"parentRefs": [{"name": "web", "namespace": "infra"}], "hostnames": ["api.test"],
                   "rules": [{"backendRefs": [{"name": "api", "port": 80}]}]}),
        ),
        // `shop` admits only routes of namespace infra.
        route(
            "shop",
            "refused",
            json!({"parentRefs": [{"name": "web", "namespace": "infra", "sectionName": "shop"}],
                   "rules": [{"backendRefs": [{"name": "api", "port": 80}]}]}),
        ),
        // A host outside `*.shop.test`.
        route(
            "infra",
            "elsewhere",
            json!({"parentRefs": [{"name": "web", "sectionName": "shop"}], "hostnames": ["blog.test"]}),
        ),
        // Another controller's Gateway: not ours, no status.
        route("shop", "theirs", json!({"parentRefs": [{"name": "nginx"}]})),
    ];
    let t = run(&view);
    assert_eq!(resolve(&t, "api.test", "/x"), Some(("shop/api:80".into(), None)));
    assert_eq!(resolve(&t, "other.test", "/x"), None, "the route names its hosts");

    let api = status(&t, StatusKind::HttpRoute, "api");
    assert_eq!(api["parents"][0]["controllerName"], CONTROLLER);
    assert_eq!(
        api["parents"][0]["parentRef"],
        json!({"name": "web", "namespace": "infra"})
    );
    assert_eq!(
        condition(&api["parents"][0]["conditions"], "Accepted"),
        ("True", "Accepted")
    );
    assert_eq!(
        condition(&api["parents"][0]["conditions"], "ResolvedRefs"),
        ("True", "ResolvedRefs")
    );
    let refused = status(&t, StatusKind::HttpRoute, "refused");
    assert_eq!(
        condition(&refused["parents"][0]["conditions"], "Accepted"),
        ("False", "NotAllowedByListeners")
    );
    let elsewhere = status(&t, StatusKind::HttpRoute, "elsewhere");
    assert_eq!(
        condition(&elsewhere["parents"][0]["conditions"], "Accepted"),
        ("False", "NoMatchingListenerHostname")
    );
    assert!(!t.statuses.iter().any(|s| s.name == "theirs"));

    let gateway = status(&t, StatusKind::Gateway, "web");
    assert_eq!(gateway["listeners"][0]["attachedRoutes"], 1);
    assert_eq!(gateway["listeners"][1]["attachedRoutes"], 0);
    assert_eq!(
        condition(&gateway["listeners"][2]["conditions"], "Accepted"),
        ("False", "UnsupportedProtocol")
    );
    assert_eq!(condition(&gateway["conditions"], "Accepted"), ("True", "Accepted"));
    let class = status(&t, StatusKind::GatewayClass, "keygate");
    assert_eq!(condition(&class["conditions"], "Accepted"), ("True", "Accepted"));
    assert!(!t.statuses.iter().any(|s| s.name == "other"));
}

#[test]
fn backends_need_a_grant_across_namespaces_and_fail_closed_on_policies() {
    let mut view = cluster();
    service(&mut view, "data", "db", "10.0.0.2");
    let parent = json!([{"name": "web", "namespace": "infra", "sectionName": "http"}]);
    view.http_routes = vec![
        route(
            "shop",
            "cross",
            json!({"parentRefs": parent, "hostnames": ["cross.test"],
                   "rules": [{"backendRefs": [{"name": "db", "namespace": "data", "port": 80}]}]}),
        ),
        route(
            "shop",
            "policy",
            json!({"parentRefs": parent, "hostnames": ["policy.test"],
                   "rules": [{"filters": [{"type": "ExtensionRef",
                                            "extensionRef": {"group": "keygate.dev", "kind": "KeygatePolicy", "name": "missing"}}],
                              "backendRefs": [{"name": "api", "port": 80}]}]}),
        ),
        route(
            "shop",
            "mixed",
            json!({"parentRefs": parent, "hostnames": ["mixed.test"], "rules": [
                {"matches": [{"path": {"type": "PathPrefix", "value": "/ok"}}], "backendRefs": [{"name": "api", "port": 80}]},
                {"matches": [{"path": {"type": "PathPrefix", "value": "/mirror"}}],
                 "filters": [{"type": "RequestMirror", "requestMirror": {}}]},
            ]}),
        ),
    ];
    let t = run(&view);
    let cross = status(&t, StatusKind::HttpRoute, "cross");
    assert_eq!(
        condition(&cross["parents"][0]["conditions"], "ResolvedRefs"),
        ("False", "RefNotPermitted")
    );
    let (id, refusal) = resolve(&t, "cross.test", "/").unwrap();
    assert_eq!((id.as_str(), refusal), ("data/db:80", None));
    let (_, refusal) = resolve(&t, "policy.test", "/").unwrap();
    assert_eq!(refusal, Some(ErrorCode::InvalidConfiguration));
    assert!(t
        .problems
        .iter()
        .any(|p| p.reason == "PolicyNotFound" && p.object.name == "policy"));

    // The grant lets the route use the Service.
    view.reference_grants.push(Arc::new(ReferenceGrant::new(
        "data",
        "from-shop",
        json!({"from": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "namespace": "shop"}],
               "to": [{"group": "", "kind": "Service"}]}),
    )));
    let t = run(&view);
    let cross = status(&t, StatusKind::HttpRoute, "cross");
    assert_eq!(
        condition(&cross["parents"][0]["conditions"], "ResolvedRefs"),
        ("True", "ResolvedRefs")
    );
    let mixed = status(&t, StatusKind::HttpRoute, "mixed");
    assert_eq!(
        condition(&mixed["parents"][0]["conditions"], "Accepted"),
        ("True", "Accepted")
    );
    assert_eq!(
        condition(&mixed["parents"][0]["conditions"], "PartiallyInvalid"),
        ("True", "UnsupportedValue")
    );
    assert!(resolve(&t, "mixed.test", "/ok").is_some());
    assert_eq!(
        resolve(&t, "mixed.test", "/mirror"),
        None,
        "the unsupported rule is skipped"
    );
}

#[test]
fn a_route_that_cannot_be_read_is_reported_on_its_parents() {
    let mut view = cluster();
    view.http_routes = vec![route(
        "infra",
        "bad",
        json!({"parentRefs": [{"name": "web"}], "rules": "not a list"}),
    )];
    let t = run(&view);
    let bad = status(&t, StatusKind::HttpRoute, "bad");
    assert_eq!(
        condition(&bad["parents"][0]["conditions"], "Accepted"),
        ("False", "UnsupportedValue")
    );
    assert!(t.problems.iter().any(|p| p.reason == "InvalidHTTPRoute"));
}
