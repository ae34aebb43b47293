//! Unkey's official SDKs, unchanged, against the real gateway: `@unkey/api`
//! and `@unkey/ratelimit` (Node) and `unkey.py` (Python), pointed at the
//! admin listener. Each SDK's driver script in `tests/clients/` calls every
//! method of its apis, keys, identities, permissions, ratelimit, deployments
//! and internal groups (and projects' create, get and list),
//! asserts the answers and the typed error classes (400, 401, 403, 404,
//! 409, 412), and fails when a method fails or was never called.
//!
//! `scripts/test` installs the SDKs (`tests/clients/node_modules`,
//! `tests/clients/.venv`). A test is skipped, saying so, only when `node` or
//! `python3` is not installed at all; SDKs that are not installed fail it.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use support::gateway::Gateway;
use support::upstreams::Upstream;

const ROOT: &str = "root_sdk_test";
/// A config keyspace (read-only through the API: 412) with one key (an API key, not a root key: 403).
const CONFIG: &str = r#"admin:
  root_keys: ["root_sdk_test"]
keyspaces:
  - id: ks_config
    keys:
      - {id: key_config, key: sk_config_user}
deployments:
  - id: dep
    instances: ["builtin:echo"]
routes:
  - host: app.test
    deployment: dep
platform:
  base_domain: kg.test
projects:
  - id: proj_sdk
    slug: sdk
    environments: {production: {}, preview: {}}
"#;
/// A driver gets this long (it makes a few hundred calls).
const DRIVER_TIMEOUT: Duration = Duration::from_secs(180);

fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients")
}

/// `name` on the PATH, if installed.
fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// Runs a driver against a fresh gateway; panics with its report and
/// output unless every method worked.
async fn drive(program: &Path, script: &str) {
    let gw = Gateway::start(CONFIG).await;
    // The instance the drivers' deployments get.
    let instance = Upstream::counting("sdk-instance").await;
    let run = tokio::process::Command::new(program)
        .arg(script)
        .current_dir(clients_dir())
        .env("KEYGATE_ADMIN_URL", format!("http://{}", gw.admin))
        .env("KEYGATE_ROOT_KEY", ROOT)
        .env("KEYGATE_CONFIG_API", "ks_config")
        .env("KEYGATE_API_KEY", "sk_config_user")
        .env("KEYGATE_PROJECT", "proj_sdk")
        .env("KEYGATE_INSTANCE", instance.addr_str())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(DRIVER_TIMEOUT, run)
        .await
        .unwrap_or_else(|_| panic!("{script} did not finish within {DRIVER_TIMEOUT:?}"))
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let report: Option<Value> = stdout.lines().rev().find_map(|line| serde_json::from_str(line).ok());
    if let Some(report) = &report {
        eprintln!(
            "{script}: {} — {} of {} methods work",
            report["sdk"], report["working"], report["total"]
        );
    }
    let failures: Vec<String> = report
        .iter()
        .flat_map(|r| r["methods"].as_object().into_iter().flatten())
        .filter(|(_, outcome)| *outcome != "ok")
        .map(|(method, outcome)| format!("  {method}: {}", outcome.as_str().unwrap_or_default()))
        .collect();
    assert!(
        output.status.success(),
        "{script} failed ({}):\n{}\nmissing: {}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        output.status,
        failures.join("\n"),
        report.as_ref().map_or_else(String::new, |r| r["missing"].to_string()),
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unkey_typescript_sdks_work_unchanged() {
    let Some(node) = on_path("node") else {
        eprintln!("SKIPPED: `node` is not installed, so @unkey/api and @unkey/ratelimit were not tried");
        return;
    };
    let installed = clients_dir().join("node_modules/@unkey/api/package.json");
    assert!(
        installed.is_file(),
        "@unkey/api is not installed in tests/clients: run scripts/test (it runs npm in tests/clients)"
    );
    drive(&node, "node-sdk.mjs").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unkey_python_sdk_works_unchanged() {
    if on_path("python3").is_none() {
        eprintln!("SKIPPED: `python3` is not installed, so unkey.py was not tried");
        return;
    }
    let python = clients_dir().join(".venv/bin/python");
    assert!(
        python.is_file(),
        "unkey.py is not installed in tests/clients/.venv: run scripts/test (it creates the venv and runs pip)"
    );
    drive(&python, "python_sdk.py").await;
}
