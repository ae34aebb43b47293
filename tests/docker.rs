//! The Docker provider (`providers.docker`): labelled containers become
//! deployments and routes, live from the engine's event stream, against the
//! real binary over loopback.
//!
//! No Docker engine runs here: each test starts a fake one on a unix socket
//! (`docker/fake_engine.rs`: `/_ping`, `/version`, `/containers/json` with
//! filters, `/containers/{id}/json`, streaming `/events` with filters and
//! `since`, versioned and unversioned paths) whose JSON uses the field names
//! and shapes of the Docker Engine API reference, and drives it like the
//! docker CLI would. A container's "IP" is 127.0.0.1 and its exposed port is
//! a real upstream's, so what the gateway serves is what a user would see.

mod support;

#[path = "docker/fake_engine.rs"]
mod fake_engine;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use fake_engine::{FakeEngine, Spec};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use support::gateway::{one_route, Gateway};
use support::problem::assert_problem;
use support::upstreams::{serve_loopback, DocServer, Upstream};
use support::wait::{wait_for, RELOAD_DEADLINE, WAIT};
use tokio::task::JoinHandle;

/// Stop, die, pause and unhealthy take an instance out within 1 s of the event.
const EVENT_DEADLINE: Duration = Duration::from_secs(1);
const ROOT: &str = "kg_root_docker_tests";

/// The gateway config: `extra` (file routes, policy sets, …) and the Docker
/// provider on `engine` with `settings` (indented provider fields).
fn config(engine: &FakeEngine, extra: &str, settings: &str) -> String {
    format!(
        "admin:\n  root_keys: [\"{ROOT}\"]\n{extra}providers:\n  docker:\n    endpoint: \"{}\"\n{settings}",
        engine.endpoint()
    )
}

async fn gateway(engine: &FakeEngine) -> Gateway {
    Gateway::start(&config(engine, "", "")).await
}

/// A container serving `upstream` on `host`, with `keygate.enable=true`.
fn web(name: &str, upstream: &Upstream, host: &str) -> Spec {
    Spec::new(name, "127.0.0.1")
        .expose(upstream.addr.port())
        .label("keygate.enable", "true")
        .label("keygate.host", host)
}

/// Which upstream answered `host` + `path` (its `x-upstream`), or the
/// status when the gateway answered itself.
async fn served_by_at(gw: &Gateway, host: &str, path: &str) -> Result<String, u16> {
    let response = gw.get(host, path).send().await.expect("request through the gateway");
    match response.headers().get("x-upstream") {
        Some(name) => Ok(name.to_str().unwrap().to_string()),
        None => Err(response.status().as_u16()),
    }
}

async fn served_by(gw: &Gateway, host: &str) -> Result<String, u16> {
    served_by_at(gw, host, "/").await
}

async fn wait_served_by(gw: &Gateway, host: &str, want: Result<&str, u16>, within: Duration) {
    let want = want.map(str::to_string);
    wait_for(format!("{host} served by {want:?}"), within, || async {
        served_by(gw, host).await == want
    })
    .await;
}

/// `GET /v1/routes` from the admin API.
async fn routes_table(gw: &Gateway) -> Value {
    let response = gw
        .client()
        .get(gw.admin_url("/v1/routes"))
        .bearer_auth(ROOT)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json::<Value>().await.unwrap()["data"].clone()
}

/// The instance addresses of deployment `id`, as the admin API lists them, sorted.
async fn instances_of(gw: &Gateway, id: &str) -> Option<Vec<String>> {
    let table = routes_table(gw).await;
    let deployment = table["deployments"].as_array()?.iter().find(|d| d["id"] == id)?.clone();
    let mut addresses: Vec<String> = deployment["instances"]
        .as_array()?
        .iter()
        .map(|i| i["address"].as_str().unwrap_or("").to_string())
        .collect();
    addresses.sort();
    Some(addresses)
}

/// The addresses of `upstreams`, sorted (as [`instances_of`] lists them).
fn addresses(upstreams: &[&Upstream]) -> Vec<String> {
    let mut addresses: Vec<String> = upstreams.iter().map(|u| u.addr.to_string()).collect();
    addresses.sort();
    addresses
}

/// An h2c (HTTP/2 without TLS) server answering with the HTTP version it saw.
async fn h2c_upstream() -> (SocketAddr, JoinHandle<()>) {
    serve_loopback(|stream| async move {
        let service = hyper::service::service_fn(|request: Request<Incoming>| async move {
            let seen = format!("{:?}", request.version());
            Ok::<_, Infallible>(
                Response::builder()
                    .header("x-upstream", "h2c")
                    .body(Full::new(Bytes::from(seen)))
                    .unwrap(),
            )
        });
        let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .serve_connection(TokioIo::new(stream), service)
            .await;
    })
    .await
}

#[tokio::test]
async fn a_container_is_served_while_it_runs_and_leaves_within_a_second_of_its_event() {
    let engine = FakeEngine::start().await;
    let a = Upstream::inspector("a").await;
    let id = engine.run(web("web", &a, "web.test"));
    let gw = gateway(&engine).await;
    // Ready means listed: the container is served from the first request.
    assert_eq!(served_by(&gw, "web.test").await, Ok("a".into()));
    let seen = a.last_seen();
    assert_eq!(
        seen.one("x-deployment-id"),
        Some("docker/web"),
        "default deployment id: docker/<container name>"
    );

    engine.stop(id.as_str());
    wait_served_by(&gw, "web.test", Err(404), EVENT_DEADLINE).await;
    let response = gw.get("web.test", "/").send().await.unwrap();
    assert_problem(response, 404, "err:frontline:routing:config_not_found", "Not Found").await;

    engine.start_container(&id);
    wait_served_by(&gw, "web.test", Ok("a"), EVENT_DEADLINE).await;
    engine.crash(&id);
    wait_served_by(&gw, "web.test", Err(404), EVENT_DEADLINE).await;
    engine.start_container(&id);
    wait_served_by(&gw, "web.test", Ok("a"), EVENT_DEADLINE).await;
    engine.remove(&id);
    wait_served_by(&gw, "web.test", Err(404), EVENT_DEADLINE).await;

    // Started after the gateway: served from its start event.
    let b = Upstream::inspector("b").await;
    engine.run(web("late", &b, "late.test"));
    wait_served_by(&gw, "late.test", Ok("b"), EVENT_DEADLINE).await;
}

#[tokio::test]
async fn every_label_shapes_what_is_served() {
    let engine = FakeEngine::start().await;
    let (site, named) = (Upstream::inspector("site").await, Upstream::inspector("named").await);
    // Hosts (exact and wildcard), a stripped path prefix, and the port
    // chosen by label among several exposed ones.
    engine.run(
        Spec::new("site", "127.0.0.1")
            .expose(1)
            .expose(site.addr.port())
            .label("keygate.enable", "true")
            .label("keygate.host", "site.test, *.preview.test")
            .label("keygate.path_prefix", "/api")
            .label("keygate.strip_prefix", "true")
            .label("keygate.port", &site.addr.port().to_string()),
    );
    // Several exposed ports and no keygate.port: skipped, with a log line.
    engine.run(
        Spec::new("ambiguous", "127.0.0.1")
            .expose(1)
            .expose(site.addr.port())
            .label("keygate.enable", "true")
            .label("keygate.host", "ambiguous.test"),
    );
    engine.run(web("named", &named, "named.test").label("keygate.deployment", "shop-api"));
    let (h2c, _h2c_task) = h2c_upstream().await;
    engine.run(
        Spec::new("grpc", "127.0.0.1")
            .expose(h2c.port())
            .label("keygate.enable", "true")
            .label("keygate.host", "grpc.test")
            .label("keygate.protocol", "h2c"),
    );
    // Not enabled: never served (exposed_by_default is off).
    engine.run(
        Spec::new("plain", "127.0.0.1")
            .expose(site.addr.port())
            .label("keygate.host", "plain.test"),
    );
    let gw = gateway(&engine).await;

    assert_eq!(
        served_by_at(&gw, "site.test", "/api/orders?x=1").await,
        Ok("site".into())
    );
    assert_eq!(site.last_seen().uri, "/orders?x=1", "keygate.strip_prefix removes /api");
    assert_eq!(served_by_at(&gw, "pr-7.preview.test", "/api").await, Ok("site".into()));
    assert_eq!(site.last_seen().uri, "/");
    assert_eq!(
        served_by_at(&gw, "site.test", "/other").await,
        Err(404),
        "only /api is routed"
    );
    assert_eq!(
        served_by_at(&gw, "a.b.preview.test", "/api").await,
        Err(404),
        "*. matches one label"
    );

    assert_eq!(served_by(&gw, "ambiguous.test").await, Err(404));
    assert!(
        gw.stderr().contains("container ambiguous: exposes ports 1, "),
        "{}",
        gw.logs()
    );

    assert_eq!(served_by(&gw, "named.test").await, Ok("named".into()));
    assert_eq!(named.last_seen().one("x-deployment-id"), Some("shop-api"));

    let response = gw.get("grpc.test", "/").send().await.unwrap();
    assert_eq!(
        response.headers().get("x-upstream").map(|v| v.to_str().unwrap()),
        Some("h2c")
    );
    assert_eq!(
        response.text().await.unwrap(),
        "HTTP/2.0",
        "keygate.protocol=h2c speaks HTTP/2 to the container"
    );

    assert_eq!(served_by(&gw, "plain.test").await, Err(404));
}

#[tokio::test]
async fn scaling_a_compose_service_adds_and_removes_instances() {
    let engine = FakeEngine::start().await;
    let (a, b, c) = (
        Upstream::inspector("a").await,
        Upstream::inspector("b").await,
        Upstream::inspector("c").await,
    );
    let replica = |number: u32, upstream: &Upstream| {
        web(&format!("shop-api-{number}"), upstream, "api.test").compose("shop", "api", number)
    };
    let first = engine.run(replica(1, &a));
    engine.run(replica(2, &b));
    let gw = gateway(&engine).await;
    assert_eq!(instances_of(&gw, "docker/shop/api").await, Some(addresses(&[&a, &b])));
    wait_for("both replicas get traffic", WAIT, || async {
        let _ = served_by(&gw, "api.test").await;
        a.hits() > 0 && b.hits() > 0
    })
    .await;

    // `docker compose up --scale api=3`
    engine.run(replica(3, &c));
    wait_for("the third replica is an instance", EVENT_DEADLINE, || async {
        instances_of(&gw, "docker/shop/api").await == Some(addresses(&[&a, &b, &c]))
    })
    .await;
    wait_for("the third replica gets traffic", WAIT, || async {
        let _ = served_by(&gw, "api.test").await;
        c.hits() > 0
    })
    .await;

    engine.stop(&first);
    wait_for("the stopped replica is no instance", EVENT_DEADLINE, || async {
        instances_of(&gw, "docker/shop/api").await == Some(addresses(&[&b, &c]))
    })
    .await;
    let hits = a.hits();
    for _ in 0..20 {
        assert!(served_by(&gw, "api.test").await.is_ok_and(|name| name != "a"));
    }
    assert_eq!(a.hits(), hits, "a stopped replica gets no traffic");
}

#[tokio::test]
async fn docker_health_states_decide_which_containers_take_traffic() {
    let engine = FakeEngine::start().await;
    let a = Upstream::inspector("a").await;
    let id = engine.run(web("checked", &a, "checked.test").healthcheck());
    let gw = gateway(&engine).await;
    // `starting` is not ready: the route is there, no instance is.
    assert_eq!(served_by(&gw, "checked.test").await, Err(503));
    let response = gw.get("checked.test", "/").send().await.unwrap();
    assert_problem(
        response,
        503,
        "err:frontline:capacity:no_running_instances",
        "Service Unavailable",
    )
    .await;
    assert_eq!(a.hits(), 0);

    engine.set_health(&id, "healthy");
    wait_served_by(&gw, "checked.test", Ok("a"), EVENT_DEADLINE).await;
    engine.set_health(&id, "unhealthy");
    wait_served_by(&gw, "checked.test", Err(503), EVENT_DEADLINE).await;
    engine.set_health(&id, "healthy");
    wait_served_by(&gw, "checked.test", Ok("a"), EVENT_DEADLINE).await;
    engine.pause(&id);
    wait_served_by(&gw, "checked.test", Err(503), EVENT_DEADLINE).await;
    engine.unpause(&id);
    wait_served_by(&gw, "checked.test", Ok("a"), EVENT_DEADLINE).await;
}

#[tokio::test]
async fn health_check_labels_probe_the_instances() {
    let engine = FakeEngine::start().await;
    let docs = DocServer::start().await;
    docs.set("/", "text/plain", "hello");
    engine.run(
        Spec::new("probed", "127.0.0.1")
            .expose(docs.addr.port())
            .label("keygate.enable", "true")
            .label("keygate.host", "probed.test")
            .label("keygate.health.path", "/healthz")
            .label("keygate.health.interval", "100ms"),
    );
    let gw = gateway(&engine).await;
    // /healthz answers 404: three failed probes take the only instance out.
    wait_for("the failing probes take the instance out", WAIT, || async {
        gw.get("probed.test", "/").send().await.unwrap().status() == 503
    })
    .await;
    assert!(docs.hits("/healthz") >= 3);
    docs.set("/healthz", "text/plain", "ok");
    wait_for("one passing probe puts it back", WAIT, || async {
        gw.get("probed.test", "/").send().await.unwrap().status() == 200
    })
    .await;
    assert_eq!(
        gw.get("probed.test", "/").send().await.unwrap().text().await.unwrap(),
        "hello"
    );
}

const OFFICE: &str = "policy_sets:\n  office:\n    - id: no-admin\n      match: [{path: {prefix: /admin}}]\n      firewall: {action: deny}\n";

#[tokio::test]
async fn policy_sets_guard_containers_and_an_unknown_set_fails_closed() {
    let engine = FakeEngine::start().await;
    let (a, b) = (Upstream::inspector("a").await, Upstream::inspector("b").await);
    engine.run(web("guarded", &a, "guarded.test").label("keygate.policies", "office"));
    engine.run(web("typo", &b, "typo.test").label("keygate.policies", "ofice"));
    let gw = Gateway::start(&config(&engine, OFFICE, "")).await;

    assert_eq!(served_by(&gw, "guarded.test").await, Ok("a".into()));
    let response = gw.get("guarded.test", "/admin/users").send().await.unwrap();
    assert_problem(response, 403, "err:frontline:client:firewall_denied", "Forbidden").await;

    let response = gw.get("typo.test", "/").send().await.unwrap();
    assert_problem(
        response,
        422,
        "err:frontline:config:invalid_configuration",
        "Unprocessable Entity",
    )
    .await;
    assert_eq!(b.hits(), 0, "never served without its policies");
    assert!(
        gw.stderr().contains("no policy set \"ofice\" in policy_sets"),
        "{}",
        gw.logs()
    );

    // The set appears in the file: served with it, without a restart.
    let both = format!("{OFFICE}  ofice:\n    - id: no-admin\n      match: [{{path: {{prefix: /admin}}}}]\n      firewall: {{action: deny}}\n");
    gw.write_config(&config(&engine, &both, ""));
    wait_served_by(&gw, "typo.test", Ok("b"), RELOAD_DEADLINE).await;
    let response = gw.get("typo.test", "/admin").send().await.unwrap();
    assert_problem(response, 403, "err:frontline:client:firewall_denied", "Forbidden").await;
}

#[tokio::test]
async fn the_docker_api_going_away_keeps_serving_and_resyncs_when_it_is_back() {
    let engine = FakeEngine::start().await;
    let (a, b, c) = (
        Upstream::inspector("a").await,
        Upstream::inspector("b").await,
        Upstream::inspector("c").await,
    );
    engine.run(web("steady", &a, "steady.test"));
    let leaving = engine.run(web("leaving", &b, "leaving.test"));
    let gw = Arc::new(gateway(&engine).await);
    assert_eq!(served_by(&gw, "leaving.test").await, Ok("b".into()));

    // Requests keep flowing the whole time; none may miss the unchanged container.
    let stop = Arc::new(AtomicBool::new(false));
    let poller = {
        let (gw, stop) = (gw.clone(), stop.clone());
        tokio::spawn(async move {
            let mut answers = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                answers.push(served_by(&gw, "steady.test").await);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            answers
        })
    };
    engine.stop_api();
    wait_for("the gateway notices the engine is gone", WAIT, || async {
        gw.stderr()
            .contains("Docker API unreachable, serving the containers known")
    })
    .await;
    assert_eq!(
        served_by(&gw, "leaving.test").await,
        Ok("b".into()),
        "the last known set keeps serving"
    );
    // Changed while the gateway cannot see it: only a new list finds out.
    engine.stop_silently(&leaving);
    engine.run(web("arriving", &c, "arriving.test"));
    let down = Instant::now();
    while down.elapsed() < Duration::from_millis(300) {
        assert_eq!(served_by(&gw, "steady.test").await, Ok("a".into()));
    }
    engine.start_again();
    wait_served_by(&gw, "arriving.test", Ok("c"), WAIT).await;
    assert_eq!(served_by(&gw, "leaving.test").await, Err(404));
    stop.store(true, Ordering::Relaxed);
    let answers = poller.await.unwrap();
    assert!(answers.len() > 20, "the poller ran ({} requests)", answers.len());
    let failed: Vec<_> = answers.iter().filter(|answer| answer.as_deref() != Ok("a")).collect();
    assert!(
        failed.is_empty(),
        "requests failed while the engine was away: {failed:?}"
    );
    assert!(gw.stderr().contains("Docker API is back"), "{}", gw.logs());

    // And it follows events again.
    engine.remove(&engine.run(web("after", &b, "after.test")));
    engine.run(web("after2", &b, "after2.test"));
    wait_served_by(&gw, "after2.test", Ok("b"), EVENT_DEADLINE).await;
    assert_eq!(served_by(&gw, "after.test").await, Err(404));
}

#[tokio::test]
async fn the_file_wins_a_host_and_keygate_routes_names_each_routes_provider() {
    let engine = FakeEngine::start().await;
    let a = Upstream::inspector("a").await;
    engine.run(web("clash", &a, "file.test,docker.test"));
    let gw = Gateway::start(&config(
        &engine,
        &one_route("file.test", "dep_file", &["builtin:echo"]),
        "",
    ))
    .await;
    assert_eq!(served_by(&gw, "docker.test").await, Ok("a".into()));
    let echo: Value = gw.get("file.test", "/").send().await.unwrap().json().await.unwrap();
    assert_eq!(echo["headers"]["x-deployment-id"], "dep_file");

    let table = routes_table(&gw).await;
    let provider = |host: &str| {
        table["routes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["host"] == host)
            .map(|r| r["provider"].clone())
    };
    assert_eq!(provider("file.test"), Some("file".into()));
    assert_eq!(provider("docker.test"), Some("docker".into()));

    let admin = format!("http://{}", gw.admin);
    let out = gw.cli(&["routes", "--admin", &admin, "--root-key", ROOT], &[]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let header = stdout.lines().next().unwrap_or("");
    assert!(header.starts_with("HOST") && header.contains("PROVIDER"), "{stdout}");
    let row = |host: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(host))
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
    };
    assert_eq!(
        row("docker.test"),
        Some(vec!["docker.test", "/", "docker/clash", "docker"]),
        "{stdout}"
    );
    assert_eq!(
        row("file.test"),
        Some(vec!["file.test", "/", "dep_file", "file"]),
        "{stdout}"
    );

    // The conflict is logged once, not on every change.
    let b = Upstream::inspector("b").await;
    engine.run(web("other", &b, "other.test"));
    wait_served_by(&gw, "other.test", Ok("b"), EVENT_DEADLINE).await;
    assert_eq!(
        gw.stderr().matches("host claimed by two providers").count(),
        1,
        "{}",
        gw.logs()
    );
}

#[tokio::test]
async fn exposed_by_default_serves_unlabelled_containers_on_the_chosen_network() {
    let engine = FakeEngine::start().await;
    let (a, b) = (Upstream::inspector("a").await, Upstream::inspector("b").await);
    // Two networks: the first by name has an address nothing listens on.
    engine.run(
        Spec::new("auto", "")
            .networks(&[("backend", "127.0.0.9"), ("web", "127.0.0.1")])
            .expose(a.addr.port())
            .label("keygate.host", "auto.test"),
    );
    engine.run(web("opted-out", &b, "optout.test").label("keygate.enable", "false"));
    // No exposed port: not a web service, skipped without a word.
    engine.run(Spec::new("worker", "127.0.0.1").label("keygate.host", "worker.test"));
    let gw = Gateway::start(&config(&engine, "", "    exposed_by_default: true\n    network: web\n")).await;
    assert_eq!(served_by(&gw, "auto.test").await, Ok("a".into()));
    assert_eq!(instances_of(&gw, "docker/auto").await, Some(vec![a.addr.to_string()]));
    assert_eq!(served_by(&gw, "optout.test").await, Err(404));
    assert_eq!(served_by(&gw, "worker.test").await, Err(404));
    assert!(!gw.stderr().contains("container worker"), "{}", gw.logs());

    let requests = engine.requests();
    let listed = requests.iter().find(|r| r.contains("/containers/json")).unwrap();
    assert!(!listed.contains("keygate.enable"), "{listed}");
}

#[tokio::test]
async fn the_engine_is_asked_in_the_agreed_api_version_for_enabled_containers_only() {
    let engine = FakeEngine::start().await;
    let a = Upstream::inspector("a").await;
    engine.run(web("web", &a, "web.test"));
    let gw = gateway(&engine).await;
    assert_eq!(served_by(&gw, "web.test").await, Ok("a".into()));
    let requests = engine.requests();
    // The version is agreed on the unversioned `/version` (the engine speaks
    // 1.47, older than the client's newest), then named in every path.
    assert_eq!(requests[0], "GET /version", "{requests:#?}");
    assert!(
        requests[1..].iter().all(|r| r.starts_with("GET /v1.47/")),
        "{requests:#?}"
    );
    let listed = requests.iter().find(|r| r.contains("/containers/json")).unwrap();
    assert!(
        listed.contains("keygate.enable%3Dtrue"),
        "only enabled containers are listed: {listed}"
    );
    assert!(
        requests
            .iter()
            .any(|r| r.starts_with("GET /v1.47/containers/") && r.ends_with("/json")),
        "{requests:#?}"
    );
    let events = requests.iter().find(|r| r.contains("/events")).unwrap();
    assert!(
        events.contains("since=") && events.contains("health_status") && events.contains("keygate.enable%3Dtrue"),
        "{events}"
    );
}

/// The example's compose file and gateway config go together: the config
/// passes `keygate check`, and every `keygate.policies` label in the compose
/// file names one of its policy sets.
#[test]
fn the_compose_example_is_consistent() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let config_path = dir.join("keygate.docker.yaml");
    let out = support::gateway::run_keygate(&["check", "--config", config_path.to_str().unwrap()], &dir, &[], &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let config: serde_json::Value = serde_saphyr::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
    let compose: serde_json::Value =
        serde_saphyr::from_str(&std::fs::read_to_string(dir.join("docker-compose.yml")).unwrap()).unwrap();
    let services = compose["services"].as_object().expect("services");
    assert!(services.contains_key("keygate"));
    let mut policies = Vec::new();
    for service in services.values() {
        for label in service["labels"].as_array().into_iter().flatten() {
            if let Some(name) = label.as_str().and_then(|l| l.strip_prefix("keygate.policies=")) {
                policies.push(name.to_string());
            }
        }
    }
    assert!(!policies.is_empty(), "the example shows a policy set");
    for name in policies {
        assert!(
            config["policy_sets"][name.as_str()].is_array(),
            "policy set {name} is not in the example config"
        );
    }
}
