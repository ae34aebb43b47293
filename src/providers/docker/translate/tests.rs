use std::collections::BTreeMap;
use std::net::IpAddr;

use time::OffsetDateTime;

use super::*;
use crate::config::policy::PolicySetsSpec;
use crate::providers::docker::container::{Health, RunState};
use crate::upstream::Protocol;

/// A running container created at `created` (seconds), on network `bridge`
/// at `ip`, exposing `ports`, labelled `labels`.
fn container(name: &str, created: i64, ip: &str, ports: &[u16], labels: &[(&str, &str)]) -> Container {
    Container {
        id: format!("{name}-id"),
        name: name.to_string(),
        image: "shop/api:1".to_string(),
        created: OffsetDateTime::from_unix_timestamp(created).ok(),
        labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        state: RunState::Running,
        health: None,
        networks: vec![("bridge".to_string(), ip.parse::<IpAddr>().ok())],
        exposed_tcp_ports: ports.to_vec(),
    }
}

fn policy_sets() -> PolicySets {
    let services = crate::runtime::Services::in_memory().unwrap();
    let spec: PolicySetsSpec =
        serde_saphyr::from_str("no-admin: [{id: deny, match: [{path: {prefix: /admin}}], firewall: {action: deny}}]")
            .unwrap();
    PolicySets::compile(&spec, &services.policy_resources(&services.keys_without_statics())).unwrap()
}

struct Run {
    out: Translation,
}

impl Run {
    fn new(containers: &[Container]) -> Run {
        Run::with(containers, false, None)
    }

    fn with(containers: &[Container], exposed_by_default: bool, network: Option<&str>) -> Run {
        let sets = policy_sets();
        let endpoints = Endpoints::default();
        let context = Context {
            exposed_by_default,
            network,
            policy_sets: &sets,
            file_deployments: HashSet::from(["dep_file"]),
            endpoints: &endpoints,
        };
        Run {
            out: translate(containers, &context),
        }
    }

    /// Deployment id → its instances.
    fn deployments(&self) -> BTreeMap<String, Vec<String>> {
        self.out
            .routing
            .deployments
            .iter()
            .map(|d| {
                (
                    d.id.to_string(),
                    d.instances.current().iter().map(|e| e.target.to_string()).collect(),
                )
            })
            .collect()
    }

    fn deployment(&self, id: &str) -> &Deployment {
        self.out.routing.deployments.iter().find(|d| &*d.id == id).unwrap()
    }

    /// `host path → deployment` of every route (`!` marks a refusal, `-` a strip).
    fn routes(&self) -> Vec<String> {
        self.out
            .routing
            .routes
            .iter()
            .map(|r| {
                let PathMatch::Prefix(prefix) = &r.path else {
                    unreachable!("docker routes are prefixes")
                };
                let refused = if r.target.refusal.is_some() { "!" } else { "" };
                let strip = if r.strip_prefix { "-" } else { "" };
                format!(
                    "{} {}{strip} → {refused}{}",
                    r.target.host_label,
                    prefix.as_str(),
                    r.target.deployment().unwrap().id
                )
            })
            .collect()
    }

    fn problems(&self) -> Vec<String> {
        self.out.problems.iter().map(ToString::to_string).collect()
    }
}

const ON: (&str, &str) = ("keygate.enable", "true");

#[test]
fn labelled_containers_become_deployments_and_routes() {
    let web = container(
        "web",
        1,
        "172.18.0.2",
        &[8080],
        &[ON, ("keygate.host", "shop.test, *.preview.test")],
    );
    let api = container(
        "api",
        2,
        "172.18.0.3",
        &[3000],
        &[
            ON,
            ("keygate.host", "shop.test"),
            ("keygate.path_prefix", "/api"),
            ("keygate.strip_prefix", "true"),
        ],
    );
    let run = Run::new(&[api, web]);
    assert_eq!(
        run.routes(),
        [
            "shop.test / → docker/web",
            "*.preview.test / → docker/web",
            "shop.test /api- → docker/api"
        ]
    );
    assert_eq!(
        run.deployments(),
        BTreeMap::from([
            ("docker/web".to_string(), vec!["172.18.0.2:8080".to_string()]),
            ("docker/api".to_string(), vec!["172.18.0.3:3000".to_string()]),
        ])
    );
    assert!(run.problems().is_empty(), "{:?}", run.problems());
}

#[test]
fn without_enable_only_exposed_by_default_serves() {
    let plain = container("plain", 1, "172.18.0.2", &[80], &[("keygate.host", "plain.test")]);
    let off = container(
        "off",
        1,
        "172.18.0.3",
        &[80],
        &[("keygate.enable", "false"), ("keygate.host", "off.test")],
    );
    let portless = container("worker", 1, "172.18.0.4", &[], &[]);
    assert!(Run::new(&[plain.clone(), off.clone(), portless.clone()])
        .routes()
        .is_empty());
    let run = Run::with(&[plain, off, portless], true, None);
    assert_eq!(run.routes(), ["plain.test / → docker/plain"]);
    assert!(
        run.problems().is_empty(),
        "a container without ports is not a service: {:?}",
        run.problems()
    );
}

#[test]
fn the_port_is_the_label_or_the_only_exposed_one() {
    let labelled = container(
        "a",
        1,
        "10.0.0.1",
        &[80, 443],
        &[ON, ("keygate.host", "a.test"), ("keygate.port", "8443")],
    );
    let several = container("b", 1, "10.0.0.2", &[80, 443], &[ON, ("keygate.host", "b.test")]);
    let none = container("c", 1, "10.0.0.3", &[], &[ON, ("keygate.host", "c.test")]);
    let run = Run::new(&[labelled, several, none]);
    assert_eq!(run.deployments()["docker/a"], ["10.0.0.1:8443"]);
    assert_eq!(run.routes(), ["a.test / → docker/a"]);
    assert_eq!(
        run.problems(),
        [
            "container b: exposes ports 80, 443; set keygate.port to the one to dial",
            "container c: exposes no TCP port; set keygate.port to the port to dial",
        ]
    );
}

#[test]
fn the_address_is_on_the_chosen_network() {
    let mut multi = container("m", 1, "", &[80], &[ON, ("keygate.host", "m.test")]);
    multi.networks = vec![
        ("a-host".into(), None),
        ("backend".into(), Some("10.1.0.5".parse().unwrap())),
        ("web".into(), Some("10.2.0.5".parse().unwrap())),
    ];
    assert_eq!(
        Run::new(&[multi.clone()]).deployments()["docker/m"],
        ["10.1.0.5:80"],
        "the first with an address"
    );
    assert_eq!(
        Run::with(&[multi.clone()], false, Some("web")).deployments()["docker/m"],
        ["10.2.0.5:80"]
    );
    let run = Run::with(&[multi.clone()], false, Some("other"));
    assert!(run.deployments().is_empty());
    assert_eq!(
        run.problems(),
        ["container m: is not on network other (providers.docker.network)"]
    );
    assert_eq!(
        Run::with(&[multi], false, Some("a-host")).problems(),
        ["container m: has no address on network a-host"]
    );
}

#[test]
fn compose_services_and_labels_group_instances() {
    let compose = |name: &str, created, ip: &str, health| {
        let mut c = container(
            name,
            created,
            ip,
            &[8080],
            &[
                ON,
                ("keygate.host", "api.test"),
                ("com.docker.compose.project", "shop"),
                ("com.docker.compose.service", "api"),
            ],
        );
        c.health = health;
        c
    };
    let one = compose("shop-api-1", 1, "10.0.0.1", Some(Health::Healthy));
    let two = compose("shop-api-2", 2, "10.0.0.2", None);
    let starting = compose("shop-api-3", 3, "10.0.0.3", Some(Health::Starting));
    let unhealthy = compose("shop-api-4", 4, "10.0.0.4", Some(Health::Unhealthy));
    let mut paused = compose("shop-api-5", 5, "10.0.0.5", None);
    paused.state = RunState::Paused;
    let labelled = container(
        "legacy",
        6,
        "10.0.0.6",
        &[8080],
        &[ON, ("keygate.deployment", "docker/shop/api")],
    );
    let run = Run::new(&[paused, unhealthy, starting, two, one, labelled]);
    assert_eq!(
        run.deployments(),
        BTreeMap::from([(
            "docker/shop/api".to_string(),
            vec!["10.0.0.1:8080".into(), "10.0.0.2:8080".into(), "10.0.0.6:8080".into()]
        )])
    );
    assert_eq!(run.routes(), ["api.test / → docker/shop/api"]);
    assert_eq!(
        run.problems(),
        ["container legacy: its keygate labels differ from those of shop-api-1, the oldest container of deployment docker/shop/api: \
          it serves as an instance, its own routing labels are ignored"]
    );
}

#[test]
fn protocol_and_health_check_apply_to_the_deployment() {
    let c = container(
        "grpc",
        1,
        "10.0.0.1",
        &[50051],
        &[
            ON,
            ("keygate.host", "grpc.test"),
            ("keygate.protocol", "h2c"),
            ("keygate.health.path", "/ready"),
            ("keygate.health.interval", "2s"),
        ],
    );
    let run = Run::new(&[c]);
    let deployment = run.deployment("docker/grpc");
    assert_eq!(deployment.protocol, Protocol::H2c);
    let check = deployment.health_check.as_ref().unwrap();
    assert_eq!(
        (check.path.as_str(), check.interval.as_secs(), check.protocol),
        ("/ready", 2, Protocol::H2c)
    );
}

#[test]
fn a_policy_set_is_attached_and_an_unknown_one_fails_closed() {
    let known = container(
        "known",
        1,
        "10.0.0.1",
        &[80],
        &[ON, ("keygate.host", "known.test"), ("keygate.policies", "no-admin")],
    );
    let unknown = container(
        "unknown",
        2,
        "10.0.0.2",
        &[80],
        &[ON, ("keygate.host", "unknown.test"), ("keygate.policies", "nope")],
    );
    let run = Run::new(&[known, unknown]);
    assert_eq!(
        run.routes(),
        ["known.test / → docker/known", "unknown.test / → !docker/unknown"]
    );
    assert!(!run.deployment("docker/known").policies.is_empty());
    assert_eq!(
        run.out.routing.routes[1].target.refusal,
        Some(ErrorCode::InvalidConfiguration),
        "the hosts answer 422, never unprotected"
    );
    assert_eq!(
        run.problems(),
        ["container unknown: keygate.policies: no policy set \"nope\" in policy_sets; deployment docker/unknown answers 422 until there is one"]
    );
}

#[test]
fn bad_labels_keep_only_that_container_out() {
    let good = container("good", 1, "10.0.0.1", &[80], &[ON, ("keygate.host", "good.test")]);
    let bad_host = container("bad-host", 1, "10.0.0.2", &[80], &[ON, ("keygate.host", "a.*.test")]);
    let bad_enable = container("bad-enable", 1, "10.0.0.3", &[80], &[("keygate.enable", "yes")]);
    let file_id = container("clash", 1, "10.0.0.4", &[80], &[ON, ("keygate.deployment", "dep_file")]);
    let hostless = container("hostless", 1, "10.0.0.5", &[80], &[ON]);
    let run = Run::new(&[good, bad_host, bad_enable, file_id, hostless]);
    assert_eq!(run.routes(), ["good.test / → docker/good"]);
    assert_eq!(
        run.deployments().keys().collect::<Vec<_>>(),
        ["docker/good", "docker/hostless"]
    );
    let problems = run.problems();
    assert_eq!(problems.len(), 4, "{problems:?}");
    assert!(
        problems[0].starts_with("container bad-enable: label keygate.enable: \"yes\" is not true or false"),
        "{problems:?}"
    );
    assert!(
        problems[1].starts_with("container bad-host: label keygate.host: invalid host"),
        "{problems:?}"
    );
    assert_eq!(
        problems[2],
        "container clash: keygate.deployment: \"dep_file\" is a deployment of the configuration file"
    );
    assert_eq!(
        problems[3],
        "container hostless: has no keygate.host label: deployment docker/hostless is not routed"
    );
}

#[test]
fn the_oldest_deployment_keeps_a_host_two_claim() {
    let old = container("old", 1, "10.0.0.1", &[80], &[ON, ("keygate.host", "x.test")]);
    let new = container("new", 2, "10.0.0.2", &[80], &[ON, ("keygate.host", "x.test,y.test")]);
    let run = Run::new(&[new, old]);
    assert_eq!(run.routes(), ["x.test / → docker/old", "y.test / → docker/new"]);
    assert_eq!(
        run.problems(),
        ["container new: x.test / is already routed to deployment docker/old; not routed to docker/new"]
    );
}
