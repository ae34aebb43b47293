//! The gateway under test: the real `keygate` binary as a subprocess.
//! [`Launch`]/[`Gateway`] write the config into a temp dir, pick loopback
//! ports, wait for `/readyz`, kill on drop and print the process's logs when
//! a test panics; [`run_keygate`] runs one-shot commands such as `check`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

use super::net::{client, free_addr, free_port, loopback};
use super::wait::WAIT;

/// How long the gateway gets to become ready.
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);

pub fn keygate_bin() -> &'static str {
    env!("CARGO_BIN_EXE_keygate")
}

/// How to launch the gateway.
pub struct Launch {
    template: String,
    env: Vec<(String, String)>,
    /// `true`: `keygate --config F` (default subcommand) instead of `keygate run --config F`.
    no_subcommand: bool,
    /// The plain-HTTP port (`@HTTP@`), when something must know it before
    /// the gateway starts (Pebble's HTTP-01 port); picked freely otherwise.
    http_port: Option<u16>,
}

impl Launch {
    pub fn new(template: impl Into<String>) -> Self {
        Launch {
            template: template.into(),
            env: Vec::new(),
            no_subcommand: false,
            http_port: None,
        }
    }
    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.to_string(), v.to_string()));
        self
    }
    pub fn no_subcommand(mut self) -> Self {
        self.no_subcommand = true;
        self
    }
    pub fn http_port(mut self, port: u16) -> Self {
        self.http_port = Some(port);
        self
    }
    pub async fn start(self) -> Gateway {
        Gateway::launch(self).await
    }
}

/// A running keygate. Killed (SIGKILL) on drop; its stderr/stdout are printed
/// when the test is panicking.
pub struct Gateway {
    pub dir: TempDir,
    pub config_path: PathBuf,
    pub http: SocketAddr,
    pub admin: SocketAddr,
    child: Option<Child>,
    stderr_path: PathBuf,
    stdout_path: PathBuf,
    env: Vec<(String, String)>,
    client: reqwest::Client,
}

impl Gateway {
    /// Writes `template` as the config (see [`Gateway::render`]), starts
    /// `keygate run --config F` and waits for `/readyz`.
    pub async fn start(template: &str) -> Gateway {
        Launch::new(template).start().await
    }

    async fn launch(launch: Launch) -> Gateway {
        // A picked port can be taken by someone else before the gateway binds
        // it; retry a couple of times with new ports in that case only.
        let mut attempt = 0;
        loop {
            attempt += 1;
            let dir = tempfile::Builder::new().prefix("keygate-test").tempdir().unwrap();
            let http_port = launch.http_port.unwrap_or_else(free_port);
            let http = loopback(http_port);
            let mut admin = free_addr();
            while admin == http {
                admin = free_addr();
            }
            let config_path = dir.path().join("keygate.yaml");
            let stderr_path = dir.path().join("keygate.stderr");
            let stdout_path = dir.path().join("keygate.stdout");
            let mut gw = Gateway {
                dir,
                config_path,
                http,
                admin,
                child: None,
                stderr_path,
                stdout_path,
                env: launch.env.clone(),
                client: client(),
            };
            std::fs::write(&gw.config_path, gw.render(&launch.template)).unwrap();
            let mut cmd = Command::new(keygate_bin());
            if !launch.no_subcommand {
                cmd.arg("run");
            }
            cmd.arg("--config").arg(&gw.config_path);
            gw.spawn(cmd);
            match gw.wait_ready().await {
                Ok(()) => return gw,
                Err(stderr) if attempt < 3 && stderr.to_lowercase().contains("in use") => {
                    continue;
                }
                Err(stderr) => panic!(
                    "keygate did not become ready (config {}):\n--- config ---\n{}\n--- stderr ---\n{}",
                    gw.config_path.display(),
                    std::fs::read_to_string(&gw.config_path).unwrap_or_default(),
                    stderr
                ),
            }
        }
    }

    fn spawn(&mut self, mut cmd: Command) {
        cmd.current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&self.stdout_path).unwrap())
            .stderr(std::fs::File::create(&self.stderr_path).unwrap());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        self.child = Some(cmd.spawn().expect("spawn keygate"));
    }

    /// Ok when `/readyz` answers 200; Err(stderr) if the process exited or
    /// the deadline passed.
    async fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let url = self.admin_url("/readyz");
        let probe = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_millis(500))
            .build()
            .unwrap();
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                return Err(format!("keygate exited early with {status}\n{}", self.logs()));
            }
            if let Ok(r) = probe.get(&url).send().await {
                // Ready only if the answer came from a gateway that is still ours to run:
                // one that failed to bind has exited, and someone else answered.
                if r.status() == 200 && self.child.as_mut().unwrap().try_wait().unwrap().is_none() {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                return Err(format!("/readyz not 200 within {READY_TIMEOUT:?}\n{}", self.logs()));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Substitutes `@HTTP@`, `@HTTP_PORT@` and `@ADMIN@`, and, when the template has no
    /// top-level `listen:` block, prepends one with both addresses.
    pub fn render(&self, template: &str) -> String {
        let body = template
            .replace("@HTTP@", &self.http.to_string())
            .replace("@HTTP_PORT@", &self.http.port().to_string())
            .replace("@ADMIN@", &self.admin.to_string());
        if body.lines().any(|l| l.starts_with("listen:")) {
            body
        } else {
            format!(
                "listen:\n  http: \"{}\"\n  admin: \"{}\"\n{}",
                self.http, self.admin, body
            )
        }
    }

    /// Saves a new config the way careful editors do: write a sibling file,
    /// then rename it over the config (atomic; the watcher never sees half a file).
    pub fn write_config(&self, template: &str) {
        let tmp = self.dir.path().join(".keygate.yaml.tmp");
        std::fs::write(&tmp, self.render(template)).unwrap();
        std::fs::rename(&tmp, &self.config_path).unwrap();
    }

    /// Saves a new config by truncating and rewriting the file in place.
    pub fn write_config_in_place(&self, template: &str) {
        std::fs::write(&self.config_path, self.render(template)).unwrap();
    }

    pub fn http_url(&self, path: &str) -> String {
        format!("http://{}{}", self.http, path)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.admin, path)
    }

    /// A request to the proxy listener with the given Host header.
    pub fn request(&self, method: reqwest::Method, host: &str, path: &str) -> reqwest::RequestBuilder {
        self.client.request(method, self.http_url(path)).header("host", host)
    }

    pub fn get(&self, host: &str, path: &str) -> reqwest::RequestBuilder {
        self.request(reqwest::Method::GET, host, path)
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("gateway running").id()
    }

    /// Sends a signal by name (`TERM`, `HUP`, ...) to the gateway process.
    pub fn signal(&self, sig: &str) {
        let st = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(st.success(), "kill -{sig} failed");
    }

    /// Waits (bounded) for the process to exit and returns its status.
    pub async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let child = self.child.as_mut().expect("gateway running");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                return st;
            }
            if Instant::now() >= deadline {
                panic!("keygate did not exit within {timeout:?}\n{}", self.logs());
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub fn try_exit_status(&mut self) -> Option<ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().unwrap())
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    pub fn logs(&self) -> String {
        let tail = |s: String| {
            let lines: Vec<&str> = s.lines().collect();
            lines[lines.len().saturating_sub(80)..].join("\n")
        };
        format!(
            "--- keygate stderr (tail) ---\n{}\n--- keygate stdout (tail) ---\n{}",
            tail(self.stderr()),
            tail(std::fs::read_to_string(&self.stdout_path).unwrap_or_default())
        )
    }

    /// SIGKILLs the gateway (no shutdown path runs) and waits until it is gone.
    pub async fn kill9(&mut self) {
        self.signal("KILL");
        self.wait_exit(WAIT).await;
    }

    /// Starts the gateway again with the same config, directory (state) and
    /// ports, and waits for `/readyz`.
    pub async fn restart(&mut self) {
        // A still-running gateway would answer /readyz for the new one, which cannot bind.
        if let Some(child) = self.child.as_mut() {
            assert!(
                child.try_wait().unwrap().is_some(),
                "restart() while the gateway still runs: stop it first (kill9, or signal and wait_exit)"
            );
        }
        let mut cmd = Command::new(keygate_bin());
        cmd.arg("run").arg("--config").arg(&self.config_path);
        self.spawn(cmd);
        if let Err(logs) = self.wait_ready().await {
            panic!("keygate did not become ready after a restart:\n{logs}");
        }
    }

    /// `POST`s JSON to the admin API, with `Authorization: Bearer <root_key>`
    /// when given; returns the status and the JSON answer.
    pub async fn admin_post(&self, path: &str, root_key: Option<&str>, body: &Value) -> (u16, Value) {
        let mut request = self.client.post(self.admin_url(path)).json(body);
        if let Some(key) = root_key {
            request = request.bearer_auth(key);
        }
        let response = request.send().await.unwrap_or_else(|e| panic!("POST {path}: {e}"));
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("POST {path}: not JSON ({e}): {text}"));
        (status, value)
    }

    /// Runs another `keygate` command (e.g. `reload`) with this gateway's env
    /// plus `extra_env`, off the async runtime.
    pub async fn cli(&self, args: &[&str], extra_env: &[(&str, &str)]) -> std::process::Output {
        let mut cmd = tokio::process::Command::new(keygate_bin());
        cmd.args(args).current_dir(self.dir.path()).stdin(Stdio::null());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        tokio::time::timeout(Duration::from_secs(20), cmd.output())
            .await
            .expect("keygate CLI did not finish within 20s")
            .expect("run keygate CLI")
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
    }
}

/// Runs `keygate ARGS` to completion (for `check`), bounded.
pub fn run_keygate(args: &[&str], cwd: &Path, env: &[(&str, &str)], env_remove: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(keygate_bin());
    cmd.args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    for k in env_remove {
        cmd.env_remove(k);
    }
    let mut child = cmd.spawn().expect("spawn keygate");
    // Drain both pipes while waiting: output beyond the pipe buffer would
    // otherwise block the child forever.
    let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut out = Vec::new();
            if let Some(mut pipe) = pipe {
                std::io::Read::read_to_end(&mut pipe, &mut out).unwrap();
            }
            out
        })
    };
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return std::process::Output {
                status,
                stdout: stdout.join().unwrap(),
                stderr: stderr.join().unwrap(),
            };
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("keygate {args:?} did not finish within 20s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A single-deployment config: `host` → `dep` with `instances`.
pub fn one_route(host: &str, dep: &str, instances: &[&str]) -> String {
    let list = instances
        .iter()
        .map(|i| format!("\"{i}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "deployments:\n  - id: {dep}\n    instances: [{list}]\nroutes:\n  - host: \"{host}\"\n    deployment: {dep}\n"
    )
}
