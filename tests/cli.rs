//! The client commands (`routes`, `reload`, `certs list`, `health`, `keys`)
//! against real gateways over real sockets: how they find the gateway and
//! the root key (flags, environment, the local root key file), how they say
//! that no gateway answered or that it refused the key, and that `keys`
//! goes through a running gateway so its credit bookkeeping cannot
//! overwrite a change.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use support::gateway::{keygate_bin, Gateway, Launch};
use support::net::closed_addr;
use support::upstreams::serve_loopback;
use support::wait::WAIT;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ROOT: &str = "cli_test_root_key";

/// `app.test` → the built-in echo instance.
const ECHO: &str = "deployments:\n  - id: dep_echo\n    instances: [\"builtin:echo\"]\nroutes:\n  - host: app.test\n    deployment: dep_echo\n";

/// A keyspace and `paid.test` → echo behind `keyauth` (1 credit a request).
const PAID: &str = "keyspaces:\n  - id: ks_main\ndeployments:\n  - id: dep_paid\n    instances: [\"builtin:echo\"]\n    policies:\n      - id: auth\n        keyauth: {keyspaces: [ks_main]}\nroutes:\n  - host: paid.test\n    deployment: dep_paid\n";

fn with_root_key(body: &str) -> String {
    format!("admin:\n  root_keys: [\"{ROOT}\"]\n{body}")
}

/// What a finished command printed.
struct Ran {
    success: bool,
    stdout: String,
    stderr: String,
}

/// Runs `keygate ARGS` in `cwd` the way an operator would: the root key and
/// config come from `env` only, never from the test's own environment.
async fn keygate(cwd: &Path, args: &[impl AsRef<std::ffi::OsStr>], env: &[(&str, &str)]) -> Ran {
    let mut cmd = tokio::process::Command::new(keygate_bin());
    cmd.args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .env_remove("KEYGATE_ROOT_KEY")
        .env_remove("KEYGATE_CONFIG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = tokio::time::timeout(Duration::from_secs(20), cmd.output())
        .await
        .expect("keygate finished within 20s")
        .expect("run keygate");
    Ran {
        success: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn admin_url(gw: &Gateway) -> String {
    format!("http://{}", gw.admin)
}

fn root_key_file(gw: &Gateway) -> PathBuf {
    gw.dir.path().join("state/admin/root_key")
}

fn refusal(url: &str, key: &str, status: &str) -> String {
    format!("the gateway at {url} refused the root key ({key}; {status}): pass --root-key or set KEYGATE_ROOT_KEY")
}

/// `GET /v1/routes` with `Authorization: Bearer key`: the status.
async fn routes_status(gw: &Gateway, key: &str) -> u16 {
    let response = gw
        .client()
        .get(gw.admin_url("/v1/routes"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    response.status().as_u16()
}

#[tokio::test(flavor = "multi_thread")]
async fn client_commands_take_the_gateway_and_root_key_from_flags_or_the_environment() {
    let gw = Gateway::start(&with_root_key(ECHO)).await;
    // Nowhere near a config file: only flags and the environment can help.
    let elsewhere = tempfile::tempdir().unwrap();
    let cwd = elsewhere.path();
    let url = admin_url(&gw);
    let by_flag: [&str; 4] = ["--admin", &url, "--root-key", ROOT];
    let by_env: [&str; 2] = ["--admin", &url];
    for (flags, env) in [
        (&by_flag[..], &[][..]),
        (&by_env[..], &[("KEYGATE_ROOT_KEY", ROOT)][..]),
    ] {
        let with = |command: &[&'static str]| [command, flags].concat();
        let routes = keygate(cwd, &with(&["routes"]), env).await;
        assert!(routes.success, "{}", routes.stderr);
        assert!(
            routes.stdout.starts_with("HOST")
                && routes.stdout.contains("app.test")
                && routes.stdout.contains("builtin:echo (up)"),
            "{}",
            routes.stdout
        );
        let reload = keygate(cwd, &with(&["reload"]), env).await;
        assert!(reload.success, "{}", reload.stderr);
        assert_eq!(reload.stdout, format!("reloaded the gateway at {url}\n"));
        let certs = keygate(cwd, &with(&["certs", "list"]), env).await;
        assert!(
            certs.success && certs.stdout.starts_with("HOST  SOURCE"),
            "{}{}",
            certs.stdout,
            certs.stderr
        );
    }
    let health = keygate(cwd, &["health", "--admin", &url], &[]).await;
    assert!(health.success);
    assert_eq!(health.stdout, "ready\n");

    // A wrong key is refused, said as such, with exit 1 and no table.
    for command in [&["routes"][..], &["reload"], &["certs", "list"]] {
        let ran = keygate(cwd, &[command, &["--admin", &url, "--root-key", "wrong"]].concat(), &[]).await;
        assert!(!ran.success && ran.stdout.is_empty(), "{command:?}: {}", ran.stdout);
        let expected = refusal(
            &url,
            "the key from --root-key",
            "401 err:unkey:authentication:key_not_found",
        );
        assert_eq!(ran.stderr, format!("keygate: {expected}\n"), "{command:?}");
    }
    let ran = keygate(cwd, &["reload", "--admin", &url], &[("KEYGATE_ROOT_KEY", "wrong")]).await;
    assert!(
        ran.stderr.contains(&refusal(
            &url,
            "the key from KEYGATE_ROOT_KEY",
            "401 err:unkey:authentication:key_not_found"
        )),
        "{}",
        ran.stderr
    );
    let ran = keygate(cwd, &["routes", "--admin", &url], &[]).await;
    assert!(!ran.success);
    assert!(
        ran.stderr.contains(&refusal(
            &url,
            "no root key was sent",
            "401 err:unkey:authentication:missing"
        )),
        "{}",
        ran.stderr
    );

    // With admin.root_keys set, the gateway keeps no local root key.
    assert!(!root_key_file(&gw).exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn without_root_keys_the_gateway_keeps_a_local_root_key_that_clients_use() {
    let mut gw = Gateway::start(ECHO).await;
    let file = root_key_file(&gw);
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&file), 0o600);
    assert_eq!(mode(file.parent().unwrap()), 0o700);
    let key = std::fs::read_to_string(&file).unwrap().trim().to_string();
    assert!(key.starts_with("kg_root_") && key.len() >= 36, "{key}");
    assert_eq!(
        gw.stderr().matches(&*file.display().to_string()).count(),
        1,
        "logged once where it is:\n{}",
        gw.stderr()
    );

    // The admin API accepts it, and only it.
    assert_eq!(routes_status(&gw, &key).await, 200);
    assert_eq!(routes_status(&gw, "kg_root_not_this_one").await, 401);

    // Client commands with the same --config read it.
    let config = gw.config_path.to_str().unwrap().to_string();
    let routes = keygate(gw.dir.path(), &["routes", "--config", &config], &[]).await;
    assert!(
        routes.success && routes.stdout.starts_with("HOST") && routes.stdout.contains("app.test"),
        "{}{}",
        routes.stdout,
        routes.stderr
    );
    let reload = keygate(gw.dir.path(), &["reload", "--config", &config, "--verbose"], &[]).await;
    assert!(reload.success, "{}", reload.stderr);
    assert!(
        reload
            .stderr
            .contains(&format!("root key: the local root key in {}", file.display())),
        "{}",
        reload.stderr
    );
    assert_eq!(
        gw.stderr().matches(&*file.display().to_string()).count(),
        1,
        "a reload keeps the key without a word"
    );
    assert_eq!(routes_status(&gw, &key).await, 200, "a reload keeps the key");

    // The same key after a restart.
    gw.signal("TERM");
    gw.wait_exit(WAIT).await;
    gw.restart().await;
    assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), key);
    assert_eq!(routes_status(&gw, &key).await, 200);
    let health = keygate(gw.dir.path(), &["health", "--config", &config], &[]).await;
    assert_eq!((health.success, health.stdout.as_str()), (true, "ready\n"));

    // `keygate check` never creates one.
    let fresh = tempfile::tempdir().unwrap();
    let copy = fresh.path().join("keygate.yaml");
    std::fs::copy(&gw.config_path, &copy).unwrap();
    let check = keygate(fresh.path(), &["check", "--config", copy.to_str().unwrap()], &[]).await;
    assert!(check.success, "{}", check.stderr);
    assert!(!fresh.path().join("state").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_gateway_routes_shows_the_file_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let admin = closed_addr();
    let config = dir.path().join("keygate.yaml");
    std::fs::write(
        &config,
        format!("listen:\n  http: \"{}\"\n  admin: \"{admin}\"\n{ECHO}", closed_addr()),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let url = format!("http://{admin}");

    let routes = keygate(dir.path(), &["routes", "--config", config], &[]).await;
    assert!(routes.success, "{}", routes.stderr);
    let first = routes.stdout.lines().next().unwrap_or_default();
    assert_eq!(
        first,
        format!("(no gateway answered at {url}; showing the routes of {config})")
    );
    assert!(
        routes.stdout.contains("app.test") && routes.stdout.contains("dep_echo"),
        "{}",
        routes.stdout
    );

    let health = keygate(dir.path(), &["health", "--config", config], &[]).await;
    assert!(!health.success);
    assert!(
        health.stderr.starts_with(&format!("no gateway answered at {url}: ")),
        "{}",
        health.stderr
    );
    assert_eq!(health.stderr.lines().count(), 1, "{}", health.stderr);
    for command in [&["reload"][..], &["certs", "list"]] {
        let ran = keygate(dir.path(), &[command, &["--config", config]].concat(), &[]).await;
        assert!(
            !ran.success
                && ran
                    .stderr
                    .starts_with(&format!("keygate: no gateway answered at {url}: ")),
            "{command:?}: {}",
            ran.stderr
        );
    }
    // Showing the file's routes creates no state.
    assert!(!dir.path().join("state").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn health_fails_while_the_gateway_is_not_ready() {
    // An admin listener that is up but not ready (as during start-up).
    let (addr, _server) = serve_loopback(|mut stream| async move {
        let mut request = Vec::new();
        let mut buf = [0u8; 1024];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => request.extend_from_slice(&buf[..n]),
            }
        }
        let body = "not ready: listeners or routing providers are starting\n";
        let response = format!(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = stream.write_all(response.as_bytes()).await;
    })
    .await;
    let cwd = tempfile::tempdir().unwrap();
    let health = keygate(cwd.path(), &["health", "--admin", &format!("http://{addr}")], &[]).await;
    assert!(!health.success);
    assert_eq!(
        health.stderr,
        "not ready: listeners or routing providers are starting\n"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_config_needing_the_servers_environment_still_works_with_an_explicit_admin() {
    let template = format!("admin:\n  root_keys: [\"${{CLI_TEST_SERVER_SECRET}}\"]\n{ECHO}");
    let gw = Launch::new(template).env("CLI_TEST_SERVER_SECRET", ROOT).start().await;
    let config = gw.config_path.to_str().unwrap().to_string();
    let url = admin_url(&gw);
    // The client runs without CLI_TEST_SERVER_SECRET.
    let routes = keygate(
        gw.dir.path(),
        &["routes", "--config", &config, "--admin", &url, "--root-key", ROOT],
        &[],
    )
    .await;
    assert!(
        routes.success && routes.stdout.contains("app.test"),
        "{}{}",
        routes.stdout,
        routes.stderr
    );
    let reload = keygate(
        gw.dir.path(),
        &["reload", "--config", &config, "--admin", &url],
        &[("KEYGATE_ROOT_KEY", ROOT)],
    )
    .await;
    assert!(reload.success, "{}", reload.stderr);
    let health = keygate(gw.dir.path(), &["health", "--config", &config, "--admin", &url], &[]).await;
    assert!(health.success, "{}", health.stderr);
    // Without --admin the file is needed for the address, and says what is missing.
    let routes = keygate(gw.dir.path(), &["routes", "--config", &config, "--root-key", ROOT], &[]).await;
    assert!(!routes.success);
    assert!(
        routes.stderr.contains("CLI_TEST_SERVER_SECRET") && routes.stderr.contains("--admin"),
        "{}",
        routes.stderr
    );
}

/// The balance a request through `paid.test` saw after spending its credit.
async fn spend(gw: &Gateway, key: &str) -> i64 {
    let response = gw.get("paid.test", "/").bearer_auth(key).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let echoed: Value = response.json().await.unwrap();
    let principal: Value = serde_json::from_str(echoed["headers"]["x-unkey-principal"].as_str().unwrap()).unwrap();
    principal["source"]["key"]["credits"].as_i64().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_commands_go_through_a_running_gateway_so_its_credit_flush_cannot_overwrite_them() {
    let mut gw = Gateway::start(PAID).await;
    let config = gw.config_path.to_str().unwrap().to_string();
    let keys = |args: &[&str]| -> Vec<String> {
        ["keys", "--config", &config]
            .iter()
            .chain(args)
            .map(|a| a.to_string())
            .collect()
    };
    let created = keygate(
        gw.dir.path(),
        &keys(&["create", "--api", "ks_main", "--credits", "10", "--json"]),
        &[],
    )
    .await;
    assert!(created.success, "{}", created.stderr);
    let created: Value = serde_json::from_str(&created.stdout).unwrap();
    let (id, key) = (
        created["data"]["keyId"].as_str().unwrap(),
        created["data"]["key"].as_str().unwrap(),
    );
    for left in [9, 8, 7] {
        assert_eq!(spend(&gw, key).await, left);
    }

    let update = keygate(
        gw.dir.path(),
        &keys(&["update", id, "--credits", "100", "--verbose"]),
        &[],
    )
    .await;
    assert!(update.success, "{}", update.stderr);
    assert_eq!(update.stdout, "ok\n", "the path taken is not part of the output");
    assert!(
        update.stderr.contains("keys.updateKey through the gateway's admin API"),
        "{}",
        update.stderr
    );
    assert_eq!(spend(&gw, key).await, 99);
    assert_eq!(spend(&gw, key).await, 98);

    // Past the gateway's credit write-back (every second); then only the store remains.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    gw.kill9().await;
    gw.restart().await;
    let got = keygate(gw.dir.path(), &keys(&["get", id, "--json"]), &[]).await;
    assert!(got.success, "{}", got.stderr);
    let got: Value = serde_json::from_str(&got.stdout).unwrap();
    assert_eq!(
        got["data"]["credits"]["remaining"], 98,
        "100 set through the gateway, minus 2 spent after"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_commands_use_the_embedded_store_when_no_gateway_answers() {
    let mut gw = Gateway::start(PAID).await;
    gw.signal("TERM");
    gw.wait_exit(WAIT).await;
    let config = gw.config_path.to_str().unwrap().to_string();
    let created = keygate(
        gw.dir.path(),
        &[
            "keys",
            "--config",
            &config,
            "create",
            "--api",
            "ks_main",
            "--credits",
            "5",
            "--json",
            "-v",
        ],
        &[],
    )
    .await;
    assert!(created.success, "{}", created.stderr);
    assert!(
        created.stderr.contains("keys.createKey runs on the embedded store"),
        "{}",
        created.stderr
    );
    let created: Value = serde_json::from_str(&created.stdout).unwrap();
    gw.restart().await;
    assert_eq!(spend(&gw, created["data"]["key"].as_str().unwrap()).await, 4);
}
