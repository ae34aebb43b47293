//! `keygate config schema | crd | print`: the committed JSON Schema and CRD
//! are what the binary generates, every example configuration in the
//! repository passes the schema, the CRD's schema refuses malformed
//! policies, and `config print` fills in defaults without showing secrets.

mod support;

use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use support::gateway::run_keygate;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// `keygate ARGS` in `cwd`: its stdout, after asserting it succeeded.
fn keygate(args: &[&str], cwd: &Path, env: &[(&str, &str)]) -> String {
    let out = run_keygate(args, cwd, env, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "keygate {args:?}: {stderr}");
    String::from_utf8(out.stdout).unwrap()
}

fn yaml(text: &str) -> Value {
    serde_saphyr::from_str(text).unwrap()
}

fn committed_schema() -> Value {
    serde_json::from_str(&std::fs::read_to_string(repo("docs/config.schema.json")).unwrap()).unwrap()
}

/// The schema's complaints about `instance` (empty: valid).
fn errors(schema: &Value, instance: &Value) -> Vec<String> {
    let validator = jsonschema::validator_for(schema).unwrap();
    validator
        .iter_errors(instance)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

#[test]
fn committed_schema_is_the_generated_one() {
    let generated = keygate(&["config", "schema"], &repo(""), &[]);
    let committed = std::fs::read_to_string(repo("docs/config.schema.json")).unwrap();
    assert!(
        generated == committed,
        "docs/config.schema.json is stale: run `cargo run -- config schema > docs/config.schema.json`"
    );
    let schema: Value = serde_json::from_str(&generated).unwrap();
    assert_eq!(schema["$schema"], "https://json-schema.org/draft/2020-12/schema");
    assert_eq!(
        schema["additionalProperties"], false,
        "unknown top-level fields are errors"
    );
    assert!(
        schema["$defs"]["PolicySpec"]["oneOf"].is_array(),
        "a policy has exactly one action"
    );
    let timeout = &schema["$defs"]["LimitsSpec"]["properties"]["request_timeout"];
    assert_eq!(timeout["default"], "15m");
    assert!(timeout["description"].as_str().is_some_and(|d| !d.is_empty()));
}

/// Every configuration file in the repository, with where it is from: the
/// config directory, the examples, the systemd host's, the Kubernetes
/// ConfigMaps (base and overlays) and the complete file in docs/config.md.
fn example_configs() -> Vec<(String, String)> {
    let mut configs = Vec::new();
    for file in [
        "config/keygate.yaml",
        "config/docker.yaml",
        "examples/keygate.docker.yaml",
        "deploy/systemd/keygate.yaml",
    ] {
        configs.push((file.to_string(), std::fs::read_to_string(repo(file)).unwrap()));
    }
    let mut manifests = Vec::new();
    let mut dirs = vec![repo("deploy/kubernetes")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml") {
                manifests.push(path);
            }
        }
    }
    for path in manifests {
        let text = std::fs::read_to_string(&path).unwrap();
        for doc in serde_saphyr::from_multiple::<Value>(&text).unwrap() {
            if let Some(config) = doc["data"]["keygate.yaml"].as_str() {
                configs.push((path.display().to_string(), config.to_string()));
            }
        }
    }
    let docs = std::fs::read_to_string(repo("docs/config.md")).unwrap();
    let complete = docs.split("## A complete file").nth(1).unwrap();
    let block = complete.split("```yaml\n").nth(1).unwrap().split("```").next().unwrap();
    configs.push(("docs/config.md (A complete file)".to_string(), block.to_string()));
    configs
}

#[test]
fn every_example_config_passes_the_schema_and_check() {
    let schema = committed_schema();
    let configs = example_configs();
    assert!(
        configs.len() >= 7,
        "{:?}",
        configs.iter().map(|c| &c.0).collect::<Vec<_>>()
    );
    let dir = tempfile::tempdir().unwrap();
    for (origin, text) in configs {
        let problems = errors(&schema, &yaml(&text));
        assert!(
            problems.is_empty(),
            "{origin} does not pass docs/config.schema.json: {problems:#?}"
        );
        let file = dir.path().join("example.yaml");
        std::fs::write(&file, &text).unwrap();
        let env = [
            ("KEYGATE_ROOT_KEY", "root"),
            ("KEYGATE_REDIS_URL", "redis://127.0.0.1:1"),
            ("KEYGATE_DATABASE_URL", "postgres://keygate@127.0.0.1:1/keygate"),
        ];
        keygate(&["check", "--config", "example.yaml"], dir.path(), &env);
    }
}

#[test]
fn the_schema_refuses_what_keygate_refuses() {
    let schema = committed_schema();
    for bad in [
        "listen:\n  htps: x\n",
        "limits:\n  request_timeout: soon\n",
        "limits:\n  max_request_body: 10 parsecs\n",
        "deployments:\n  - id: a\n    instances: [\"nope\"]\n",
        "deployments:\n  - id: a\n    upstream:\n      selection: fastest\n",
        "routes:\n  - host: a.test\n",
        "routes:\n  - host: a.test\n    filters: [{request_headers: {set: {X-A: b}}}]\n",
        "deployments:\n  - id: a\nroutes:\n  - {host: a.test, deployment: a, backends: [{deployment: a}]}\n",
        "deployments:\n  - id: a\nroutes:\n  - {host: a.test, deployment: a, path_prefix: /a, path: {exact: /a}}\n",
        "deployments:\n  - id: a\nroutes:\n  - {host: a.test, deployment: a, filters: [{redirect: {status: 200}, rewrite: {}}]}\n",
        "deployments:\n  - id: a\n    policies:\n      - id: p\n        firewall: {action: deny}\n        ip: {}\n",
        "keyspaces:\n  - id: ks\n    keys:\n      - {id: k}\n",
    ] {
        assert!(!errors(&schema, &yaml(bad)).is_empty(), "the schema accepts:\n{bad}");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("bad.yaml"), bad).unwrap();
        let out = run_keygate(&["check", "--config", "bad.yaml"], dir.path(), &[], &[]);
        assert!(!out.status.success(), "keygate check accepts:\n{bad}");
    }
}

fn committed_crd() -> Value {
    yaml(&std::fs::read_to_string(repo("deploy/kubernetes/base/crd.yaml")).unwrap())
}

#[test]
fn committed_crd_is_the_generated_one() {
    let generated = keygate(&["config", "crd"], &repo(""), &[]);
    let committed = std::fs::read_to_string(repo("deploy/kubernetes/base/crd.yaml")).unwrap();
    assert!(
        generated == committed,
        "deploy/kubernetes/base/crd.yaml is stale: run `cargo run -- config crd > deploy/kubernetes/base/crd.yaml`"
    );
    assert!(!committed.contains("x-kubernetes-preserve-unknown-fields"));
}

#[test]
fn the_crd_refuses_a_malformed_policy() {
    let crd = committed_crd();
    let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    let object = |policies: Value| {
        json!({
            "apiVersion": "keygate.dev/v1alpha1",
            "kind": "KeygatePolicy",
            "metadata": {"name": "office", "namespace": "shop"},
            "spec": {"policies": policies},
        })
    };
    let good = object(json!([
        {"id": "office_only", "match": [{"path": {"prefix": "/admin"}}], "ip": {"allow": ["10.0.0.0/8"]}},
        {"id": "auth", "keyauth": {"keyspaces": ["ks_main"], "locations": [{"header": {"name": "X-API-Key"}}]}},
        {"id": "per_key", "ratelimit": {"limit": 100, "window": "1m", "identifiers": [{"authenticated_subject": {}}]}},
        {"id": "audit", "logging": {"bodies": true, "max_body_bytes": "64KiB"}},
        {"id": "audit_bytes", "logging": {"max_body_bytes": 4096}},
        {"id": "no_scanners", "match": [{"header": {"name": "User-Agent", "value": {"regex": "sqlmap"}}}],
         "firewall": {"action": "deny"}},
    ]));
    assert_eq!(errors(schema, &good), Vec::<String>::new());
    for (why, policies) in [
        ("no id", json!([{"firewall": {"action": "deny"}}])),
        ("no action", json!([{"id": "a"}])),
        (
            "two actions",
            json!([{"id": "a", "firewall": {"action": "deny"}, "ip": {"allow": []}}]),
        ),
        (
            "an unknown firewall action",
            json!([{"id": "a", "firewall": {"action": "allow"}}]),
        ),
        (
            "a limit that is not a number",
            json!([{"id": "a", "ratelimit": {"limit": "lots", "window": "1m"}}]),
        ),
        (
            "a window that is not a duration",
            json!([{"id": "a", "ratelimit": {"limit": 1, "window": "soon"}}]),
        ),
        (
            "a match with two keys",
            json!([{"id": "a", "match": [{"path": {"prefix": "/"}, "method": ["GET"]}], "firewall": {"action": "deny"}}]),
        ),
        (
            "a value test with two kinds",
            json!([{"id": "a", "match": [{"path": {"prefix": "/", "exact": "/"}}], "firewall": {"action": "deny"}}]),
        ),
        (
            "a size that is not a size",
            json!([{"id": "a", "logging": {"max_body_bytes": "lots"}}]),
        ),
        ("policies that are not a list", json!({"id": "a"})),
    ] {
        assert!(!errors(schema, &object(policies)).is_empty(), "the CRD accepts {why}");
    }
    assert!(
        !errors(
            schema,
            &json!({"apiVersion": "keygate.dev/v1alpha1", "kind": "KeygatePolicy"})
        )
        .is_empty(),
        "no spec"
    );
}

#[test]
fn config_print_fills_in_defaults_and_masks_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let config = r#"admin:
  root_keys: ["root-secret-1"]
state:
  redis: "redis://:redis-secret-2@127.0.0.1:6379"
keyspaces:
  - id: ks
    keys:
      - {id: k1, key: key-secret-3}
deployments:
  - id: a
    instances: ["builtin:echo"]
    policies:
      - id: rl
        ratelimit: {limit: 3, window: 1m}
routes:
  - {host: a.test, deployment: a}
"#;
    std::fs::write(dir.path().join("keygate.yaml"), config).unwrap();
    let printed = keygate(&["config", "print", "--config", "keygate.yaml"], dir.path(), &[]);
    for secret in ["root-secret-1", "redis-secret-2", "key-secret-3"] {
        assert!(!printed.contains(secret), "{secret} printed:\n{printed}");
    }
    let value = yaml(&printed);
    assert_eq!(value["listen"]["admin"], "127.0.0.1:9901");
    assert_eq!(value["limits"]["request_timeout"], "15m");
    assert_eq!(value["limits"]["max_request_body"], "10MiB");
    assert_eq!(value["state"]["sync_interval"], "50ms");
    assert_eq!(value["state"]["redis"], "redis://:********@127.0.0.1:6379");
    assert_eq!(value["tls"]["min_version"], "1.2");
    assert_eq!(value["routes"][0]["path_prefix"], "/");
    assert_eq!(value["deployments"][0]["upstream"]["selection"], "p2c");
    assert_eq!(value["deployments"][0]["policies"][0]["enabled"], true);

    let json_text = keygate(
        &["config", "print", "--config", "keygate.yaml", "--format", "json"],
        dir.path(),
        &[],
    );
    let json: Value = serde_json::from_str(&json_text).unwrap();
    assert_eq!(json, value, "YAML and JSON print the same configuration");
    assert_eq!(errors(&committed_schema(), &json), Vec::<String>::new());

    // What is printed is itself a configuration keygate accepts.
    std::fs::write(dir.path().join("printed.yaml"), &printed).unwrap();
    keygate(&["check", "--config", "printed.yaml"], dir.path(), &[]);
}
