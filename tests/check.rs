//! `keygate check --config F`: exit 0 for a valid
//! file, exit 1 with the field path and line on stderr for invalid ones.

mod support;

use support::gateway::run_keygate;
use support::load_errors::{assert_load_error, check_config_in, names_line, Checked};

/// A valid config. Line numbers matter to the tests below.
const VALID: &str = r#"listen:
  http: "127.0.0.1:18080"
  admin: "127.0.0.1:19901"
limits:
  request_timeout: 30s
deployments:
  - id: dep_a
    instances: ["127.0.0.1:3000", "builtin:echo"]
  - id: dep_b
    instances: ["127.0.0.1:3001"]
routes:
  - host: a.test
    deployment: dep_a
  - host: b.test
    path_prefix: /v1
    deployment: dep_b
"#;

/// Replaces 1-based line `n` of VALID.
fn with_line(n: usize, new: &str) -> String {
    let mut lines: Vec<String> = VALID.lines().map(str::to_string).collect();
    lines[n - 1] = new.to_string();
    lines.join("\n") + "\n"
}

/// Inserts `new` after 1-based line `n` of `base`.
fn insert_after(base: &str, n: usize, new: &str) -> String {
    let mut lines: Vec<String> = base.lines().map(str::to_string).collect();
    lines.insert(n, new.to_string());
    lines.join("\n") + "\n"
}

fn check(yaml: &str, env: &[(&str, &str)]) -> Checked {
    let dir = tempfile::tempdir().unwrap();
    check_config_in(dir.path(), yaml, env, &["KEYGATE_TEST_UNSET_VAR_Q7"])
}

/// Asserts exit 1 and that stderr names every `needle` and one of `lines`.
fn assert_invalid(what: &str, yaml: &str, needles: &[&str], lines: &[usize]) {
    assert_load_error(what, &check(yaml, &[]), needles, lines);
}

#[test]
fn valid_file_exits_zero() {
    let c = check(VALID, &[]);
    assert_eq!(c.code, Some(0), "stderr: {}", c.stderr);
}

#[test]
fn env_var_substitution_with_the_variable_set_is_valid() {
    let yaml = with_line(12, "  - host: \"${KEYGATE_TEST_HOST_Q7}\"");
    let c = check(&yaml, &[("KEYGATE_TEST_HOST_Q7", "a.test")]);
    assert_eq!(c.code, Some(0), "stderr: {}", c.stderr);
}

#[test]
fn env_var_value_with_yaml_syntax_stays_one_value() {
    let yaml = insert_after(VALID, 5, "admin:\n  root_keys: [\"${KEYGATE_TEST_KEY_Q7}\"]");
    let c = check(&yaml, &[("KEYGATE_TEST_KEY_Q7", "a\"b', c: {d} # e\n- f")]);
    assert_eq!(c.code, Some(0), "stderr: {}", c.stderr);
}

#[test]
fn unknown_field() {
    let yaml = insert_after(VALID, 10, "    bogus_field: 1");
    assert_invalid("unknown field", &yaml, &["bogus_field", "deployments[1]"], &[11]);
}

#[test]
fn unknown_top_level_field() {
    let yaml = insert_after(VALID, 5, "listn:");
    assert_invalid("unknown top-level field", &yaml, &["listn"], &[6]);
}

#[test]
fn bad_duration() {
    let yaml = with_line(5, "  request_timeout: 10 parsecs");
    assert_invalid("bad duration", &yaml, &["limits.request_timeout"], &[5]);
}

#[test]
fn route_to_unknown_deployment() {
    let yaml = with_line(16, "    deployment: dep_missing");
    assert_invalid("unknown deployment", &yaml, &["dep_missing", "routes[1]"], &[14, 16]);
}

#[test]
fn duplicate_deployment_ids() {
    let yaml = with_line(9, "  - id: dep_a").replace("    deployment: dep_b", "    deployment: dep_a");
    assert_invalid("duplicate deployment id", &yaml, &["dep_a", "deployments[1]"], &[9]);
}

#[test]
fn duplicate_host_and_path() {
    let yaml = format!("{VALID}  - host: b.test\n    path_prefix: /v1\n    deployment: dep_a\n");
    let c = check(&yaml, &[]);
    assert_eq!(c.code, Some(1), "duplicate host+path: stderr: {}", c.stderr);
    assert!(c.stderr.contains("b.test"), "names the host:\n{}", c.stderr);
    let names_second = c.stderr.contains("routes[2]") && names_line(&c.stderr, 17);
    let names_first = c.stderr.contains("routes[1]") && names_line(&c.stderr, 14);
    assert!(
        names_second || names_first,
        "names the route's path and line:\n{}",
        c.stderr
    );
}

#[test]
fn unset_env_var() {
    let yaml = with_line(12, "  - host: \"${KEYGATE_TEST_UNSET_VAR_Q7}\"");
    assert_invalid("unset ${VAR}", &yaml, &["KEYGATE_TEST_UNSET_VAR_Q7"], &[12]);
}

#[test]
fn bad_instance_address() {
    let yaml = with_line(8, "    instances: [\"127.0.0.1:3000\", \"not an address\"]");
    assert_invalid("bad instance address", &yaml, &["deployments[0].instances"], &[8]);
}

#[test]
fn yaml_syntax_error() {
    let yaml = with_line(13, "    deployment: [dep_a");
    assert_invalid("YAML syntax error", &yaml, &[], &[13, 14, 15, 16, 17]);
    let yaml = with_line(13, "\tdeployment: dep_a");
    assert_invalid("tab indentation", &yaml, &[], &[12, 13]);
}

#[test]
fn missing_file_exits_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.yaml");
    let out = run_keygate(&["check", "--config", path.to_str().unwrap()], dir.path(), &[], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("absent.yaml"));
}
