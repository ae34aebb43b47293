//! Kubernetes ingress-controller mode, against the real binary over loopback.
//!
//! No real cluster can run here: each test starts a fake Kubernetes API
//! server (`kubernetes/fake_api.rs`: list + watch with resourceVersions and
//! ADDED/MODIFIED/DELETED events, Ingress status and Event endpoints, objects
//! serialised from `k8s-openapi` types) and points the gateway at it with a
//! kubeconfig. Instances are loopback upstreams named by EndpointSlices.
//! keygate records Events through `events.k8s.io/v1` (kube's recorder); the
//! fake converts them to the core/v1 form as the real API server does, so
//! the assertions read `involvedObject`, `reason` and `type` as
//! `kubectl get events` shows them.

mod support;

#[path = "kubernetes/fake_api.rs"]
mod fake_api;

#[path = "kubernetes/cluster.rs"]
mod cluster;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cluster::{meta, slice, Cluster, NS};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule, IngressServiceBackend, IngressSpec,
    IngressTLS, ServiceBackendPort,
};
use k8s_openapi::ByteString;
use keygate::providers::kubernetes::KeygatePolicy;
use support::gateway::{one_route, Gateway};
use support::load_errors::check_config;
use support::net::free_addr;
use support::problem::assert_problem;
use support::tls::{https_get, self_signed_pem, tls_handshake, TLS_ANY};
use support::upstreams::Upstream;
use support::wait::{wait_for, RELOAD_DEADLINE, WAIT};

/// Ingress `name` of `class`: `host` → `service`:80 for every path.
fn ingress(name: &str, class: &str, host: &str, service: &str) -> Ingress {
    Ingress {
        metadata: meta(NS, name),
        spec: Some(IngressSpec {
            ingress_class_name: Some(class.into()),
            rules: Some(vec![IngressRule {
                host: Some(host.into()),
                http: Some(HTTPIngressRuleValue {
                    paths: vec![HTTPIngressPath {
                        path: Some("/".into()),
                        path_type: "Prefix".into(),
                        backend: IngressBackend {
                            service: Some(IngressServiceBackend {
                                name: service.into(),
                                port: Some(ServiceBackendPort {
                                    number: Some(80),
                                    name: None,
                                }),
                            }),
                            resource: None,
                        },
                    }],
                }),
            }]),
            ..IngressSpec::default()
        }),
        status: None,
    }
}

fn with_annotation(mut ingress: Ingress, key: &str, value: &str) -> Ingress {
    ingress
        .metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(key.into(), value.into());
    ingress
}

/// Which upstream answered `host` (its `x-upstream`), or the status when the
/// gateway answered itself.
async fn served_by(gw: &Gateway, host: &str) -> Result<String, u16> {
    let response = gw.get(host, "/").send().await.expect("request through the gateway");
    match response.headers().get("x-upstream") {
        Some(name) => Ok(name.to_str().unwrap().to_string()),
        None => Err(response.status().as_u16()),
    }
}

async fn wait_served_by(gw: &Gateway, host: &str, want: Result<&str, u16>, within: Duration) {
    let want = want.map(str::to_string);
    wait_for(format!("{host} served by {want:?}"), within, || async {
        served_by(gw, host).await == want
    })
    .await;
}

#[tokio::test]
async fn ingress_added_changed_and_deleted_moves_traffic_within_2s() {
    let cluster = Cluster::start().await;
    let (a, b) = (Upstream::inspector("a").await, Upstream::inspector("b").await);
    cluster.service("svc-a", &[&a]);
    cluster.service("svc-b", &[&b]);
    let gw = cluster.gateway().await;
    assert_eq!(served_by(&gw, "app.test").await, Err(404));

    cluster.api.apply(&ingress("app", "keygate", "app.test", "svc-a"));
    wait_served_by(&gw, "app.test", Ok("a"), RELOAD_DEADLINE).await;
    cluster.api.apply(&ingress("app", "keygate", "app.test", "svc-b"));
    wait_served_by(&gw, "app.test", Ok("b"), RELOAD_DEADLINE).await;
    cluster.api.delete::<Ingress>(NS, "app");
    wait_served_by(&gw, "app.test", Err(404), RELOAD_DEADLINE).await;
    let resp = gw.get("app.test", "/").send().await.unwrap();
    assert_problem(resp, 404, "err:frontline:routing:config_not_found", "Not Found").await;
}

#[tokio::test]
async fn served_ingresses_get_the_published_service_address() {
    let cluster = Cluster::start().await;
    let a = Upstream::inspector("a").await;
    cluster.service("svc-a", &[&a]);
    cluster.api.apply(&ingress("app", "keygate", "app.test", "svc-a"));
    cluster.api.apply(&ingress("theirs", "nginx", "other.test", "svc-a"));
    let _gw = cluster.gateway().await;
    let status = |name: &str| {
        cluster
            .api
            .get::<Ingress>(NS, name)
            .map(|i| i["status"]["loadBalancer"]["ingress"].clone())
    };
    wait_for("Ingress status updated", WAIT, || async {
        status("app") == Some(serde_json::json!([{"ip": "192.0.2.10"}]))
    })
    .await;
    assert!(
        status("theirs").unwrap().is_null(),
        "another class's status is left alone"
    );
}

#[tokio::test]
async fn a_not_ready_endpoint_stops_getting_traffic() {
    let cluster = Cluster::start().await;
    let (a, b) = (Upstream::inspector("a").await, Upstream::inspector("b").await);
    cluster.service("svc", &[&a, &b]);
    cluster.api.apply(&ingress("app", "keygate", "app.test", "svc"));
    let gw = cluster.gateway().await;
    wait_for("both endpoints get traffic", WAIT, || async {
        let _ = served_by(&gw, "app.test").await;
        a.hits() > 0 && b.hits() > 0
    })
    .await;

    cluster.api.apply(&slice("svc", 1, b.addr, Some(false)));
    let deadline = Instant::now() + RELOAD_DEADLINE;
    // Once the change is in, every request goes to a.
    let mut streak = 0;
    while streak < 20 {
        assert!(
            Instant::now() < deadline,
            "b still gets traffic {RELOAD_DEADLINE:?} after it became not ready"
        );
        streak = if served_by(&gw, "app.test").await == Ok("a".into()) {
            streak + 1
        } else {
            0
        };
    }
    let hits = b.hits();
    for _ in 0..20 {
        assert_eq!(served_by(&gw, "app.test").await, Ok("a".into()));
    }
    assert_eq!(b.hits(), hits);

    // No ready endpoint at all: 503 no_running_instances.
    cluster.api.apply(&slice("svc", 0, a.addr, Some(false)));
    wait_served_by(&gw, "app.test", Err(503), RELOAD_DEADLINE).await;
    let resp = gw.get("app.test", "/").send().await.unwrap();
    assert_problem(
        resp,
        503,
        "err:frontline:capacity:no_running_instances",
        "Service Unavailable",
    )
    .await;
}

#[tokio::test]
async fn a_tls_secret_is_served_by_sni() {
    let cluster = Cluster::start().await;
    let a = Upstream::inspector("a").await;
    cluster.service("svc", &[&a]);
    let (cert, key) = self_signed_pem(&["secure.test"]);
    cluster.api.apply(&Secret {
        metadata: meta(NS, "secure-tls"),
        type_: Some("kubernetes.io/tls".into()),
        data: Some(BTreeMap::from([
            ("tls.crt".to_string(), ByteString(cert.into_bytes())),
            ("tls.key".to_string(), ByteString(key.into_bytes())),
        ])),
        ..Secret::default()
    });
    let mut secure = ingress("secure", "keygate", "secure.test", "svc");
    if let Some(spec) = secure.spec.as_mut() {
        spec.tls = Some(vec![IngressTLS {
            hosts: Some(vec!["secure.test".into()]),
            secret_name: Some("secure-tls".into()),
        }]);
    }
    cluster.api.apply(&secure);
    let https = free_addr();
    let listen = format!(
        "listen:\n  http: \"@HTTP@\"\n  https: \"{https}\"\n  admin: \"@ADMIN@\"\ntls:\n  redirect_http: false\n"
    );
    let _gw = Gateway::start(&cluster.config(&listen)).await;

    wait_for("the Secret's certificate is served", WAIT, || async {
        tls_handshake(https, "secure.test", TLS_ANY, &[])
            .await
            .is_ok_and(|hs| hs.sans == ["secure.test"])
    })
    .await;
    let resp = https_get(https, "secure.test", "/").await.unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("x-upstream"), Some("a"));

    // Rotation: the Secret's data replaced by a new certificate (same
    // validity, as a renewal tool may issue) is served within seconds.
    let old_leaf = tls_handshake(https, "secure.test", TLS_ANY, &[]).await.unwrap().leaf;
    let (cert, key) = self_signed_pem(&["secure.test"]);
    cluster.api.apply(&Secret {
        metadata: meta(NS, "secure-tls"),
        type_: Some("kubernetes.io/tls".into()),
        data: Some(BTreeMap::from([
            ("tls.crt".to_string(), ByteString(cert.into_bytes())),
            ("tls.key".to_string(), ByteString(key.into_bytes())),
        ])),
        ..Secret::default()
    });
    wait_for(
        "the rotated certificate is served",
        std::time::Duration::from_secs(3),
        || async {
            tls_handshake(https, "secure.test", TLS_ANY, &[])
                .await
                .is_ok_and(|hs| hs.leaf != old_leaf)
        },
    )
    .await;
}

#[tokio::test]
async fn an_ingress_of_another_class_is_ignored() {
    let cluster = Cluster::start().await;
    let a = Upstream::inspector("a").await;
    cluster.service("svc", &[&a]);
    cluster.api.apply(&ingress("theirs", "nginx", "theirs.test", "svc"));
    cluster.api.apply(&ingress("mine", "keygate", "mine.test", "svc"));
    let gw = cluster.gateway().await;
    wait_served_by(&gw, "mine.test", Ok("a"), WAIT).await;
    assert_eq!(served_by(&gw, "theirs.test").await, Err(404));
    assert_eq!(a.hits(), 1, "nothing reached the instance for the other class");
}

#[tokio::test]
async fn a_bad_annotation_is_an_event_and_other_routes_keep_working() {
    let cluster = Cluster::start().await;
    let a = Upstream::inspector("a").await;
    cluster.service("svc", &[&a]);
    cluster.api.apply(&ingress("good", "keygate", "good.test", "svc"));
    cluster.api.apply(&with_annotation(
        ingress("bad", "keygate", "bad.test", "svc"),
        "keygate.dev/policies",
        "Not A Name!",
    ));
    let gw = cluster.gateway().await;
    wait_served_by(&gw, "good.test", Ok("a"), WAIT).await;
    let resp = gw.get("bad.test", "/").send().await.unwrap();
    assert_problem(
        resp,
        422,
        "err:frontline:config:invalid_configuration",
        "Unprocessable Entity",
    )
    .await;

    wait_for("an Event on the bad Ingress", WAIT, || async {
        cluster.api.events().iter().any(|e| {
            e["involvedObject"]["kind"] == "Ingress"
                && e["involvedObject"]["name"] == "bad"
                && e["reason"] == "InvalidAnnotation"
                && e["type"] == "Warning"
        })
    })
    .await;
    assert_eq!(
        cluster.api.events().len(),
        1,
        "reported once: {:?}",
        cluster.api.events()
    );
    assert_eq!(a.hits(), 1);
}

#[tokio::test]
async fn a_problem_that_comes_back_continues_its_event() {
    let cluster = Cluster::start().await;
    let a = Upstream::inspector("a").await;
    cluster.service("svc", &[&a]);
    let bad = with_annotation(
        ingress("app", "keygate", "app.test", "svc"),
        "keygate.dev/policies",
        "Not A Name!",
    );
    cluster.api.apply(&bad);
    let gw = cluster.gateway().await;
    let invalid = || {
        cluster
            .api
            .events()
            .into_iter()
            .filter(|e| e["reason"] == "InvalidAnnotation")
            .collect::<Vec<_>>()
    };
    wait_for("an InvalidAnnotation Event", WAIT, || async { invalid().len() == 1 }).await;

    cluster.api.apply(&ingress("app", "keygate", "app.test", "svc"));
    wait_served_by(&gw, "app.test", Ok("a"), RELOAD_DEADLINE).await;
    cluster.api.apply(&bad);
    wait_for("the Event's series continued", WAIT, || async {
        invalid().first().is_some_and(|e| e["series"]["count"] == 2)
    })
    .await;
    assert_eq!(invalid().len(), 1, "one Event, seen twice: {:?}", cluster.api.events());
}

#[tokio::test]
async fn an_ingress_naming_a_missing_policy_fails_closed_until_it_appears() {
    let cluster = Cluster::start().await;
    let a = Upstream::inspector("a").await;
    cluster.service("svc", &[&a]);
    cluster.api.apply(&with_annotation(
        ingress("app", "keygate", "app.test", "svc"),
        "keygate.dev/policies",
        "office",
    ));
    let gw = cluster.gateway().await;
    wait_served_by(&gw, "app.test", Err(422), WAIT).await;
    assert_eq!(a.hits(), 0, "never served without its policy");
    wait_for("a PolicyNotFound Event", WAIT, || async {
        cluster.api.events().iter().any(|e| e["reason"] == "PolicyNotFound")
    })
    .await;

    let policies = serde_json::json!({"policies": [
        {"id": "no-admin", "match": [{"path": {"prefix": "/admin"}}], "firewall": {"action": "deny"}}
    ]});
    cluster.api.apply(&KeygatePolicy::new(NS, "office", policies));
    wait_served_by(&gw, "app.test", Ok("a"), RELOAD_DEADLINE).await;
    let resp = gw.get("app.test", "/admin/x").send().await.unwrap();
    assert_problem(resp, 403, "err:frontline:client:firewall_denied", "Forbidden").await;
}

#[tokio::test]
async fn a_host_in_the_file_wins_over_an_ingress() {
    let cluster = Cluster::start().await;
    let a = Upstream::inspector("a").await;
    cluster.service("svc", &[&a]);
    cluster.api.apply(&ingress("clash", "keygate", "file.test", "svc"));
    cluster.api.apply(&ingress("other", "keygate", "k8s.test", "svc"));
    let gw = Gateway::start(&cluster.config(&one_route("file.test", "dep_file", &["builtin:echo"]))).await;
    wait_served_by(&gw, "k8s.test", Ok("a"), WAIT).await;
    let echo: serde_json::Value = gw.get("file.test", "/").send().await.unwrap().json().await.unwrap();
    assert_eq!(echo["headers"]["x-deployment-id"], "dep_file");
    // The conflict is logged once, not on every change.
    cluster.api.apply(&ingress("other", "keygate", "k8s2.test", "svc"));
    wait_served_by(&gw, "k8s2.test", Ok("a"), RELOAD_DEADLINE).await;
    assert_eq!(
        gw.stderr().matches("host claimed by two providers").count(),
        1,
        "{}",
        gw.logs()
    );
}

#[tokio::test]
async fn an_api_server_restart_reconnects_and_resyncs_without_404s() {
    let cluster = Cluster::start().await;
    let (a, b) = (Upstream::inspector("a").await, Upstream::inspector("b").await);
    cluster.service("svc-a", &[&a]);
    cluster.service("svc-b", &[&b]);
    cluster.api.apply(&ingress("app", "keygate", "app.test", "svc-a"));
    let gw = Arc::new(cluster.gateway().await);
    wait_served_by(&gw, "app.test", Ok("a"), WAIT).await;

    // Requests keep flowing the whole time; none may miss the route.
    let stop = Arc::new(AtomicBool::new(false));
    let poller = {
        let (gw, stop) = (gw.clone(), stop.clone());
        tokio::spawn(async move {
            let mut answers = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                answers.push(served_by(&gw, "app.test").await);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            answers
        })
    };
    cluster.api.stop();
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Changed while the gateway cannot see it: only a re-list finds out.
    cluster.api.apply(&ingress("app", "keygate", "app.test", "svc-b"));
    cluster.api.start_again().await;
    wait_served_by(&gw, "app.test", Ok("b"), Duration::from_secs(15)).await;
    stop.store(true, Ordering::Relaxed);
    let answers = poller.await.unwrap();
    assert!(answers.len() > 20, "the poller ran ({} requests)", answers.len());
    let failed: Vec<_> = answers.iter().filter(|a| a.is_err()).collect();
    assert!(
        failed.is_empty(),
        "requests failed during the API server restart: {failed:?}"
    );
    assert!(gw.stderr().contains("Kubernetes watch is back"), "{}", gw.logs());
}

/// The manifests parse as YAML, hold what an installation needs, and the
/// gateway config they ship passes `keygate check`. (scripts/test renders
/// every kustomization and validates it against the Kubernetes API.)
#[test]
fn manifests_are_complete() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes/base");
    let mut kinds = Vec::new();
    let mut config = None;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for value in serde_saphyr::from_multiple::<serde_json::Value>(&text).unwrap() {
            if let Some(kind) = value["kind"].as_str() {
                kinds.push(kind.to_string());
            }
            if let Some(text) = value["data"]["keygate.yaml"].as_str() {
                config = Some(text.to_string());
            }
        }
    }
    kinds.sort();
    let out = check_config(&config.expect("a ConfigMap with keygate.yaml"));
    assert!(out.success(), "{}", out.stderr);
    for want in [
        "ClusterRole",
        "ClusterRoleBinding",
        "ConfigMap",
        "CustomResourceDefinition",
        "Deployment",
        "IngressClass",
        "Namespace",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "Service",
        "ServiceAccount",
    ] {
        assert!(kinds.iter().any(|k| k == want), "{want} missing from {kinds:?}");
    }
}
