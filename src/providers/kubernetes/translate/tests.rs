use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, IngressClassSpec, IngressRule, IngressServiceBackend, IngressSpec,
    ServiceBackendPort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::*;
use crate::providers::kubernetes::fixtures::meta;

fn backend(service: &str, port: i32) -> IngressBackend {
    IngressBackend {
        service: Some(IngressServiceBackend {
            name: service.to_string(),
            port: Some(ServiceBackendPort {
                number: Some(port),
                name: None,
            }),
        }),
        resource: None,
    }
}

/// An Ingress of `class` with rules `(host, path, pathType, service)` (port 80).
fn ingress(name: &str, class: &str, rules: &[(&str, &str, &str, &str)]) -> Arc<Ingress> {
    let rules = rules
        .iter()
        .map(|(host, path, path_type, service)| IngressRule {
            host: (!host.is_empty()).then(|| host.to_string()),
            http: Some(HTTPIngressRuleValue {
                paths: vec![HTTPIngressPath {
                    path: Some(path.to_string()),
                    path_type: path_type.to_string(),
                    backend: backend(service, 80),
                }],
            }),
        })
        .collect();
    Arc::new(Ingress {
        metadata: meta("ns", name),
        spec: Some(IngressSpec {
            ingress_class_name: Some(class.to_string()),
            rules: Some(rules),
            ..IngressSpec::default()
        }),
        status: None,
    })
}

fn annotated(ingress: Arc<Ingress>, key: &str, value: &str) -> Arc<Ingress> {
    let mut ingress = (*ingress).clone();
    ingress
        .metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(key.into(), value.into());
    Arc::new(ingress)
}

fn service(name: &str) -> Arc<Service> {
    crate::providers::kubernetes::fixtures::service("ns", name)
}

fn slice(service: &str, endpoints: &[(&str, Option<bool>)]) -> Arc<EndpointSlice> {
    crate::providers::kubernetes::fixtures::slice("ns", service, endpoints)
}

fn policy(name: &str, spec: serde_json::Value) -> Arc<KeygatePolicy> {
    Arc::new(KeygatePolicy::new("ns", name, spec))
}

fn run(view: &View) -> Translation {
    let services = crate::runtime::Services::in_memory().unwrap();
    let keys = services.keys_without_statics();
    let context = Context {
        ingress_class: "keygate",
        gateway_controller: "keygate.dev/gateway-controller",
        publish_service: None,
        keys: &keys,
        base_dir: Path::new("."),
        services: &services,
    };
    translate(view, &context, &mut CertCache::new())
}

/// `(host, path) → (deployment id, instances, refusal)` of a translation.
fn resolve(t: &Translation, host: &str, path: &str) -> Option<(String, Vec<String>, Option<ErrorCode>)> {
    let merged = crate::runtime::merge(&[(crate::runtime::ProviderId::Kubernetes, &t.routing)]);
    let routed = merged
        .routes
        .resolve(host, &crate::routing::request_head("GET", path, &[]))?;
    let deployment = routed.target.deployment()?;
    let instances = deployment
        .instances
        .current()
        .iter()
        .map(|e| e.target.to_string())
        .collect();
    Some((deployment.id.to_string(), instances, routed.target.refusal))
}

fn reasons(t: &Translation) -> Vec<&'static str> {
    t.problems.iter().map(|p| p.reason).collect()
}

#[test]
fn rules_route_to_the_ready_endpoints_of_the_service() {
    let view = View {
        ingresses: vec![ingress("web", "keygate", &[("a.example.com", "/api", "Prefix", "api")])],
        services: vec![service("api")],
        slices: vec![slice(
            "api",
            &[("10.0.0.1", Some(true)), ("10.0.0.2", Some(false)), ("10.0.0.3", None)],
        )],
        ..View::default()
    };
    let t = run(&view);
    assert!(t.problems.is_empty(), "{:?}", t.problems);
    let (id, instances, refusal) = resolve(&t, "a.example.com", "/api/x").unwrap();
    assert_eq!(id, "ns/api:80");
    assert_eq!(instances, ["10.0.0.1:8080", "10.0.0.3:8080"]);
    assert_eq!(refusal, None);
    assert!(resolve(&t, "a.example.com", "/other").is_none());
    assert_eq!(t.served.len(), 1);
}

#[test]
fn other_classes_and_foreign_ingress_classes_are_not_served() {
    let mut view = View {
        ingresses: vec![
            ingress("mine", "keygate", &[("a.com", "/", "Prefix", "api")]),
            ingress("nginx", "nginx", &[("b.com", "/", "Prefix", "api")]),
        ],
        services: vec![service("api")],
        ..View::default()
    };
    let t = run(&view);
    assert!(resolve(&t, "a.com", "/").is_some());
    assert!(resolve(&t, "b.com", "/").is_none());

    view.classes = vec![Arc::new(IngressClass {
        metadata: meta("", "keygate"),
        spec: Some(IngressClassSpec {
            controller: Some("k8s.io/ingress-nginx".into()),
            parameters: None,
        }),
    })];
    let t = run(&view);
    assert!(t.routing.routes.is_empty());
    assert_eq!(reasons(&t), ["ForeignIngressClass"]);
}

#[test]
fn exact_paths_default_backends_and_missing_services() {
    let mut web = (*ingress(
        "web",
        "keygate",
        &[("a.com", "/exact", "Exact", "api"), ("", "/any", "Prefix", "gone")],
    ))
    .clone();
    if let Some(spec) = web.spec.as_mut() {
        spec.default_backend = Some(backend("api", 80));
    }
    let view = View {
        ingresses: vec![Arc::new(web)],
        services: vec![service("api")],
        slices: vec![slice("api", &[("10.0.0.1", Some(true))])],
        ..View::default()
    };
    let t = run(&view);
    assert_eq!(resolve(&t, "a.com", "/exact").unwrap().0, "ns/api:80");
    assert_eq!(
        resolve(&t, "a.com", "/exact/below").unwrap().0,
        "ns/api:80",
        "the default backend serves / of a.com"
    );
    assert_eq!(
        resolve(&t, "elsewhere.com", "/x").unwrap().0,
        "ns/api:80",
        "and every other host"
    );
    let (id, instances, refusal) = resolve(&t, "elsewhere.com", "/any/1").unwrap();
    assert_eq!(
        (id.as_str(), instances.len(), refusal),
        ("ns/gone:80", 0, Some(ErrorCode::DeploymentNotFound))
    );
    assert_eq!(reasons(&t), ["ServiceNotFound"]);
}

#[test]
fn policies_are_attached_or_fail_closed() {
    let rule = [("a.com", "/", "Prefix", "api")];
    let deny_all = serde_json::json!({"policies": [{"id": "deny", "firewall": {"action": "deny"}}]});
    let view = View {
        ingresses: vec![
            annotated(ingress("ok", "keygate", &rule), POLICY_ANNOTATION, "deny-all"),
            annotated(
                ingress("missing", "keygate", &[("b.com", "/", "Prefix", "api")]),
                POLICY_ANNOTATION,
                "nope",
            ),
            annotated(
                ingress("bad", "keygate", &[("c.com", "/", "Prefix", "api")]),
                POLICY_ANNOTATION,
                "Not A Name!",
            ),
            annotated(
                ingress("invalid", "keygate", &[("d.com", "/", "Prefix", "api")]),
                POLICY_ANNOTATION,
                "broken",
            ),
            ingress("plain", "keygate", &[("e.com", "/", "Prefix", "api")]),
        ],
        services: vec![service("api")],
        policies: vec![
            policy("deny-all", deny_all),
            policy(
                "broken",
                serde_json::json!({"policies": [{"id": "x", "ip": {"allow": ["not-a-cidr"]}}]}),
            ),
        ],
        ..View::default()
    };
    let t = run(&view);
    let target = |host: &str| {
        let merged = crate::runtime::merge(&[(crate::runtime::ProviderId::Kubernetes, &t.routing)]);
        let routed = merged
            .routes
            .resolve(host, &crate::routing::request_head("GET", "/", &[]))
            .map(|r| (r.target.refusal, r.target.deployment().unwrap().policies.is_empty()));
        routed.unwrap()
    };
    assert_eq!(target("a.com"), (None, false), "the policy chain is attached");
    assert_eq!(target("b.com"), (Some(ErrorCode::InvalidConfiguration), true));
    assert_eq!(target("c.com"), (Some(ErrorCode::InvalidConfiguration), true));
    assert_eq!(target("d.com"), (Some(ErrorCode::InvalidConfiguration), true));
    assert_eq!(
        target("e.com"),
        (None, true),
        "the same service without a policy is another deployment"
    );
    let mut found = reasons(&t);
    found.sort_unstable();
    assert_eq!(found, ["InvalidAnnotation", "InvalidPolicy", "PolicyNotFound"]);
    let invalid = t.problems.iter().find(|p| p.reason == "InvalidPolicy").unwrap();
    assert!(
        invalid.message.contains("spec.policies[0].ip.allow[0]"),
        "{}",
        invalid.message
    );
}

#[test]
fn the_oldest_ingress_keeps_a_contested_path_and_bad_rules_skip_alone() {
    let at = |secs: i64| Some(Time(Timestamp::from_second(secs).unwrap()));
    let mut old = (*ingress("old", "keygate", &[("a.com", "/", "Prefix", "api")])).clone();
    old.metadata.creation_timestamp = at(1_000);
    let mut new = (*ingress(
        "new",
        "keygate",
        &[("a.com", "/", "Prefix", "other"), ("bad host!", "/", "Prefix", "api")],
    ))
    .clone();
    new.metadata.creation_timestamp = at(2_000);
    let view = View {
        ingresses: vec![Arc::new(new), Arc::new(old)],
        services: vec![service("api"), service("other")],
        ..View::default()
    };
    let t = run(&view);
    assert_eq!(resolve(&t, "a.com", "/").unwrap().0, "ns/api:80");
    let mut found = reasons(&t);
    found.sort_unstable();
    assert_eq!(found, ["InvalidHost", "RouteConflict"]);
    assert!(t.problems.iter().all(|p| p.object.name == "new"));
}

#[test]
fn object_names() {
    assert!(is_object_name("deny-all.v2"));
    for bad in ["", "Upper", "-lead", "trail-", "a b", "a_b"] {
        assert!(!is_object_name(bad), "{bad}");
    }
}

#[test]
fn the_strip_prefix_annotation_applies_to_prefix_paths_only() {
    let view = View {
        ingresses: vec![annotated(
            ingress(
                "web",
                "keygate",
                &[("a.com", "/api", "Prefix", "api"), ("b.com", "/exact", "Exact", "api")],
            ),
            STRIP_PREFIX_ANNOTATION,
            "true",
        )],
        services: vec![service("api")],
        ..View::default()
    };
    let t = run(&view);
    let strip: Vec<bool> = t.routing.routes.iter().map(|r| r.strip_prefix).collect();
    assert_eq!(strip, [true, false]);
}
