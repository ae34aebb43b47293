//! Route lookup and table build cost: a request resolves its route once, and
//! a reload compiles the whole table, so both must stay cheap at 100k routes.

use std::time::Duration;

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use keygate::config::Config;
use keygate::routing::{request_head, HostPattern, PathPrefix, RouteTable};
use keygate::runtime::{Services, Snapshot};

fn build(hosts: usize) -> RouteTable<usize> {
    let mut table = RouteTable::default();
    for i in 0..hosts {
        let host = HostPattern::parse(&format!("h{i}.example.com")).expect("valid host");
        table.insert(host, PathPrefix::root(), false, i);
        let api = PathPrefix::parse("/api").expect("valid prefix");
        table.insert(
            HostPattern::parse(&format!("h{i}.example.com")).expect("valid host"),
            api,
            true,
            i,
        );
    }
    table.insert(
        HostPattern::parse("*.preview.example.com").expect("valid host"),
        PathPrefix::root(),
        false,
        0,
    );
    table
}

fn resolve(c: &mut Criterion) {
    let table = build(50_000);
    let mut group = c.benchmark_group("resolve");
    let head = |target: &str| request_head("GET", target, &[("user-agent", "bench"), ("accept", "*/*")]);
    let (users, api, root) = (head("/users/1"), head("/api/v1/users"), head("/"));
    group.bench_function("exact host, root", |b| {
        b.iter(|| table.resolve(black_box("h4242.example.com"), black_box(&users)))
    });
    group.bench_function("exact host with port and case, prefix", |b| {
        b.iter(|| table.resolve(black_box("H4242.Example.com:8443"), black_box(&api)))
    });
    group.bench_function("wildcard host", |b| {
        b.iter(|| table.resolve(black_box("pr-17.preview.example.com"), black_box(&root)))
    });
    group.bench_function("unknown host", |b| {
        b.iter(|| table.resolve(black_box("nope.example.org"), black_box(&root)))
    });
    group.finish();
}

/// One host with 10 rules as an operator writes them: exact paths,
/// prefixes, a regex, and header/query/method matches on the same prefix
/// (the request falls through the conditional ones to the plain one).
fn resolve_rules(c: &mut Criterion) {
    let text = r#"
deployments:
  - { id: v1, instances: ["127.0.0.1:3001"] }
  - { id: v2, instances: ["127.0.0.1:3002"] }
routes:
  - { host: api.example.com, path: { exact: /health }, deployment: v1 }
  - { host: api.example.com, path: { exact: /ready }, deployment: v1 }
  - { host: api.example.com, path_prefix: /v1, deployment: v1 }
  - { host: api.example.com, path_prefix: /v1, deployment: v2, match: [{ header: { name: X-Canary, value: { exact: "1" } } }] }
  - { host: api.example.com, path_prefix: /v1, deployment: v2, match: [{ query: { name: beta, present: true } }] }
  - { host: api.example.com, path_prefix: /v1, deployment: v2, match: [{ method: [POST] }] }
  - { host: api.example.com, path_prefix: /v2, backends: [{ deployment: v1, weight: 90 }, { deployment: v2, weight: 10 }] }
  - { host: api.example.com, path_prefix: /admin, deployment: v1, match: [{ header: { name: X-Admin, present: true } }] }
  - { host: api.example.com, path: { regex: "^/files/[a-z]+$" }, deployment: v2 }
  - { host: api.example.com, deployment: v1 }
"#;
    let config = Config::parse(text, std::path::Path::new("bench.yaml")).expect("valid config");
    let services = Services::in_memory().expect("in-memory services");
    let snapshot = Snapshot::compile(&config, &services).expect("compiles");
    let mut group = c.benchmark_group("resolve, one host with 10 rules");
    let cases = [
        ("exact path", request_head("GET", "/health", &[])),
        (
            "prefix after 3 conditional rules",
            request_head("GET", "/v1/users/1?page=2", &[("accept", "*/*")]),
        ),
        ("header match", request_head("GET", "/v1/users/1", &[("x-canary", "1")])),
        ("regex", request_head("GET", "/files/report", &[])),
    ];
    for (name, head) in &cases {
        group.bench_function(*name, |b| {
            b.iter(|| snapshot.routes.resolve(black_box("api.example.com"), black_box(head)))
        });
    }
    group.finish();
}

/// A config file with `routes` routes over 100 deployments.
fn config_text(routes: usize) -> String {
    let mut text = String::from("deployments:\n");
    for d in 0..100 {
        text.push_str(&format!(
            "  - id: dep_{d}\n    instances: [\"127.0.0.1:{}\"]\n",
            3000 + d
        ));
    }
    text.push_str("routes:\n");
    for r in 0..routes {
        text.push_str(&format!(
            "  - host: h{r}.example.com\n    deployment: dep_{}\n",
            r % 100
        ));
    }
    text
}

fn compile(c: &mut Criterion) {
    let mut group = c.benchmark_group("compile");
    group.sample_size(10).measurement_time(Duration::from_secs(20));
    group.bench_function("route table, 100k routes", |b| b.iter(|| build(black_box(50_000))));
    let text = config_text(100_000);
    let path = std::path::Path::new("bench.yaml");
    let services = Services::in_memory().expect("in-memory services");
    group.bench_function("config file parse + validate + compile, 100k routes", |b| {
        b.iter(|| {
            let config = Config::parse(black_box(&text), path).expect("valid config");
            Snapshot::compile(&config, &services).expect("compiles")
        })
    });
    group.finish();
}

criterion_group!(benches, resolve, resolve_rules, compile);
criterion_main!(benches);
