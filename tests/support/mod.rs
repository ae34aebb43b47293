//! Shared helpers for keygate's integration tests.
//!
//! Tests drive the real `keygate` binary as a subprocess and talk to it only
//! over loopback. This module owns everything that more than one test file
//! needs: port picking, the gateway launcher (config in a temp dir, readiness,
//! kill on drop, stderr kept for diagnostics), bounded polling, a Prometheus
//! scraper, a raw HTTP/1.1 client for byte-exact requests, and the upstream
//! servers the gateway forwards to (hyper 1 and tokio-tungstenite).
//!
//! Every wait here is bounded; nothing synchronises on a bare sleep.
#![allow(dead_code)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt::Display;
use std::future::Future;
use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type Body = BoxBody<Bytes, BoxError>;

/// How long the gateway gets to become ready.
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// SPEC §9.35: a saved config file is in effect within 2 s. Polls allow a
/// little slack on top for the poll interval itself.
pub const RELOAD_DEADLINE: Duration = Duration::from_millis(2_500);
/// Generic bound for "eventually" conditions.
pub const WAIT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------
// Ports and polling
// ---------------------------------------------------------------------------

/// A loopback port that was free a moment ago (bound to :0, then released).
pub fn free_port() -> u16 {
    StdTcpListener::bind("127.0.0.1:0")
        .expect("bind 127.0.0.1:0")
        .local_addr()
        .unwrap()
        .port()
}

/// "127.0.0.1:PORT" for a port nobody listens on (connections are refused).
pub fn closed_addr() -> String {
    format!("127.0.0.1:{}", free_port())
}

/// Polls `f` every 25 ms until it yields `Some`, at most `timeout`; panics
/// naming `what` otherwise.
pub async fn poll_until<T, F, Fut>(what: impl Display, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Polls `f` every 25 ms until it is true, at most `timeout`.
pub async fn wait_for<F, Fut>(what: impl Display, timeout: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    poll_until(what, timeout, || {
        let fut = f();
        async move { fut.await.then_some(()) }
    })
    .await
}

/// A reqwest client that never uses a proxy and never waits forever.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .connect_timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

/// Deterministic, non-repeating-looking bytes for body integrity checks.
pub fn pattern(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x9E37_79B9;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

// ---------------------------------------------------------------------------
// The gateway subprocess
// ---------------------------------------------------------------------------

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
            let dir = tempfile::Builder::new()
                .prefix("keygate-test")
                .tempdir()
                .unwrap();
            let http_port = launch.http_port.unwrap_or_else(free_port);
            let http: SocketAddr = format!("127.0.0.1:{http_port}").parse().unwrap();
            let mut admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
            while admin == http {
                admin = format!("127.0.0.1:{}", free_port()).parse().unwrap();
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
                return Err(format!(
                    "keygate exited early with {status}\n{}",
                    self.logs()
                ));
            }
            if let Ok(r) = probe.get(&url).send().await {
                if r.status() == 200 {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "/readyz not 200 within {READY_TIMEOUT:?}\n{}",
                    self.logs()
                ));
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
    pub fn request(
        &self,
        method: reqwest::Method,
        host: &str,
        path: &str,
    ) -> reqwest::RequestBuilder {
        self.client
            .request(method, self.http_url(path))
            .header("host", host)
    }

    pub fn get(&self, host: &str, path: &str) -> reqwest::RequestBuilder {
        self.request(reqwest::Method::GET, host, path)
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    pub async fn metrics_text(&self) -> String {
        let r = self
            .client
            .get(self.admin_url("/metrics"))
            .send()
            .await
            .expect("GET /metrics");
        assert_eq!(r.status(), 200, "GET /metrics status");
        r.text().await.unwrap()
    }

    /// Sum of every series matching `query` (`name` or `name{label="v",...}`,
    /// labels as a subset), `None` when no series matches.
    pub async fn metric_opt(&self, query: &str) -> Option<f64> {
        metric_in(&self.metrics_text().await, query)
    }

    /// Like [`Gateway::metric_opt`], with an absent series read as 0.
    pub async fn metric(&self, query: &str) -> f64 {
        self.metric_opt(query).await.unwrap_or(0.0)
    }

    /// Waits (bounded) until `query` reads exactly `want`. Counters are
    /// updated when a request is logged, which may be just after the client
    /// has its response, so assertions on them poll.
    pub async fn wait_metric(&self, query: &str, want: f64) {
        let deadline = Instant::now() + WAIT;
        loop {
            let text = self.metrics_text().await;
            let got = metric_in(&text, query);
            if got == Some(want) {
                return;
            }
            if Instant::now() >= deadline {
                panic!("metric {query} is {got:?}, want {want} (waited {WAIT:?})\n{text}");
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Waits (bounded) until `query` reads at least `min`; returns the value.
    pub async fn wait_metric_at_least(&self, query: &str, min: f64) -> f64 {
        let deadline = Instant::now() + WAIT;
        loop {
            let text = self.metrics_text().await;
            let got = metric_in(&text, query).unwrap_or(0.0);
            if got >= min {
                return got;
            }
            if Instant::now() >= deadline {
                panic!("metric {query} is {got}, want >= {min} (waited {WAIT:?})\n{text}");
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
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
        cmd.args(args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null());
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
pub fn run_keygate(
    args: &[&str],
    cwd: &Path,
    env: &[(&str, &str)],
    env_remove: &[&str],
) -> std::process::Output {
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
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("keygate {args:?} did not finish within 20s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// True when `text` names line N, as "line N" or compiler-style "file:N:"
/// (and not a longer number such as N0).
pub fn names_line(text: &str, n: usize) -> bool {
    let lower = text.to_lowercase();
    let word = format!("line {n}");
    let by_word = lower
        .match_indices(&word)
        .any(|(i, _)| !lower[i + word.len()..].starts_with(|c: char| c.is_ascii_digit()));
    by_word || lower.contains(&format!(":{n}:"))
}

/// True when `text` names some line of a file (see [`names_line`]).
pub fn names_some_line(text: &str) -> bool {
    (1..1000).any(|n| names_line(text, n))
}

// ---------------------------------------------------------------------------
// Prometheus text scraping
// ---------------------------------------------------------------------------

/// One sample line: name, labels, value.
pub type Sample = (String, Vec<(String, String)>, f64);

pub fn parse_metrics(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(s) = parse_series(line, true) {
            out.push(s);
        }
    }
    out
}

/// Parses `name{a="b"} value` (or without labels / value).
fn parse_series(s: &str, with_value: bool) -> Option<Sample> {
    let name_end = s
        .find(|c: char| c == '{' || c.is_whitespace())
        .unwrap_or(s.len());
    let name = s[..name_end].to_string();
    let mut rest = &s[name_end..];
    let mut labels = Vec::new();
    if rest.starts_with('{') {
        let chars: Vec<char> = rest.chars().collect();
        let mut i = 1;
        loop {
            while i < chars.len() && (chars[i] == ',' || chars[i].is_whitespace()) {
                i += 1;
            }
            if i >= chars.len() {
                return None;
            }
            if chars[i] == '}' {
                i += 1;
                break;
            }
            let k_start = i;
            while i < chars.len() && chars[i] != '=' {
                i += 1;
            }
            let key: String = chars[k_start..i]
                .iter()
                .collect::<String>()
                .trim()
                .to_string();
            i += 1; // '='
            if chars.get(i) != Some(&'"') {
                return None;
            }
            i += 1;
            let mut val = String::new();
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' && i + 1 < chars.len() {
                    i += 1;
                    val.push(match chars[i] {
                        'n' => '\n',
                        c => c,
                    });
                } else {
                    val.push(chars[i]);
                }
                i += 1;
            }
            i += 1; // closing quote
            labels.push((key, val));
        }
        let consumed: usize = chars[..i].iter().map(|c| c.len_utf8()).sum();
        rest = &rest[consumed..];
    }
    let value = if with_value {
        let v = rest.split_whitespace().next()?;
        match v {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            _ => v.parse().ok()?,
        }
    } else {
        0.0
    };
    Some((name, labels, value))
}

/// Sum of the samples in `text` matching `query` (labels are a subset match).
pub fn metric_in(text: &str, query: &str) -> Option<f64> {
    let (qname, qlabels, _) = parse_series(query.trim(), false).expect("bad metric query");
    let mut found = None;
    for (name, labels, v) in parse_metrics(text) {
        if name != qname {
            continue;
        }
        if qlabels
            .iter()
            .all(|(k, qv)| labels.iter().any(|(lk, lv)| lk == k && lv == qv))
        {
            *found.get_or_insert(0.0) += v;
        }
    }
    found
}

// ---------------------------------------------------------------------------
// Raw HTTP/1.1 client: exact bytes on the wire (header case, duplicates,
// request targets that URL libraries would normalise)
// ---------------------------------------------------------------------------

#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// Sends `request` verbatim to `addr` (it should carry `Connection: close`),
/// reads the response to EOF (bounded) and parses it.
pub async fn raw_request(addr: SocketAddr, request: &[u8]) -> RawResponse {
    let fut = async {
        let mut s = TcpStream::connect(addr).await.expect("connect gateway");
        s.write_all(request).await.unwrap();
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.unwrap();
        buf
    };
    let buf = tokio::time::timeout(Duration::from_secs(15), fut)
        .await
        .expect("raw request timed out");
    parse_raw_response(&buf)
}

/// A kept-alive raw HTTP/1.1 connection: several requests, one at a time.
pub struct RawConn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl RawConn {
    pub async fn connect(addr: SocketAddr) -> RawConn {
        RawConn {
            stream: TcpStream::connect(addr).await.expect("connect gateway"),
            buf: Vec::new(),
        }
    }

    /// Sends `request` verbatim and reads one response (bounded, 15 s).
    /// `Err` when the peer closed or reset the connection before a full response.
    pub async fn roundtrip(&mut self, request: &[u8]) -> Result<RawResponse, String> {
        self.stream
            .write_all(request)
            .await
            .map_err(|e| format!("write: {e}"))?;
        tokio::time::timeout(Duration::from_secs(15), self.read_response())
            .await
            .map_err(|_| "no response within 15s".to_string())?
    }

    async fn fill(&mut self) -> Result<(), String> {
        let mut chunk = [0u8; 16384];
        match self.stream.read(&mut chunk).await {
            Ok(0) => Err(format!(
                "connection closed by peer ({} bytes pending)",
                self.buf.len()
            )),
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(())
            }
            Err(e) => Err(format!("read: {e}")),
        }
    }

    async fn read_response(&mut self) -> Result<RawResponse, String> {
        let head_end = loop {
            if let Some(p) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
            self.fill().await?;
        };
        let head = parse_raw_response(&self.buf[..head_end]);
        let chunked = head
            .header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        let end = if chunked {
            loop {
                if let Some(p) = self.buf[head_end..]
                    .windows(5)
                    .position(|w| w == b"0\r\n\r\n")
                {
                    break head_end + p + 5;
                }
                self.fill().await?;
            }
        } else {
            let n: usize = head
                .header("content-length")
                .map(|v| v.parse().unwrap())
                .unwrap_or(0);
            while self.buf.len() < head_end + n {
                self.fill().await?;
            }
            head_end + n
        };
        let resp = parse_raw_response(&self.buf[..end]);
        self.buf.drain(..end);
        Ok(resp)
    }
}

fn parse_raw_response(buf: &[u8]) -> RawResponse {
    let head_end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head in {:?}", String::from_utf8_lossy(buf)));
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .expect("status code")
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let rest = &buf[head_end + 4..];
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.to_ascii_lowercase().contains("chunked")
    });
    let body = if chunked {
        let mut out = Vec::new();
        let mut i = 0;
        while let Some(le) = rest[i..].windows(2).position(|w| w == b"\r\n") {
            let size_str = String::from_utf8_lossy(&rest[i..i + le]).to_string();
            let size =
                usize::from_str_radix(size_str.split(';').next().unwrap().trim(), 16).unwrap_or(0);
            i += le + 2;
            if size == 0 || i + size > rest.len() {
                break;
            }
            out.extend_from_slice(&rest[i..i + size]);
            i += size + 2;
        }
        out
    } else if let Some(cl) = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
    {
        let n: usize = cl.1.parse().unwrap();
        rest[..n.min(rest.len())].to_vec()
    } else {
        rest.to_vec()
    };
    RawResponse {
        status,
        headers,
        body,
    }
}

// ---------------------------------------------------------------------------
// HTTP upstreams (hyper 1)
// ---------------------------------------------------------------------------

/// What an upstream received (header names lowercased by hyper; order and
/// repeated headers kept).
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub uri: String,
    pub headers: Vec<(String, String)>,
}

impl Seen {
    /// Every value of header `name`.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
    /// The single value of header `name`; panics when it is repeated.
    pub fn one(&self, name: &str) -> Option<&str> {
        let all = self.all(name);
        assert!(
            all.len() <= 1,
            "header {name} arrived {} times: {all:?}",
            all.len()
        );
        all.first().copied()
    }
}

#[derive(Clone)]
enum Kind {
    /// Answers JSON describing the request; with `x-echo-body: 1` it streams
    /// the request body back instead.
    Inspector,
    /// Waits this long, then answers like the inspector.
    Slow(Duration),
    /// Requests whose path starts with `/slow` wait until `release()`;
    /// everything answers like the inspector.
    Held,
    /// Plain `200 ok`.
    Counting,
    /// Answers `pattern(n)` streamed in 64 KiB chunks.
    Large(usize),
}

struct UpState {
    name: String,
    kind: Kind,
    hits: AtomicUsize,
    completed: AtomicUsize,
    /// TCP connections accepted (a request that never reaches the instance opens none).
    connections: AtomicUsize,
    seen: Mutex<Vec<Seen>>,
    release: tokio::sync::watch::Sender<bool>,
}

/// An HTTP/1.1 server on 127.0.0.1 that the gateway forwards to. Stops on drop.
pub struct Upstream {
    pub addr: SocketAddr,
    state: Arc<UpState>,
    task: JoinHandle<()>,
}

impl Upstream {
    pub async fn inspector(name: &str) -> Upstream {
        Self::serve(name, Kind::Inspector).await
    }
    pub async fn slow(name: &str, delay: Duration) -> Upstream {
        Self::serve(name, Kind::Slow(delay)).await
    }
    /// Holds requests for `/slow...` until [`Upstream::release`] is called;
    /// other paths answer at once (so a test can poll the same instance).
    pub async fn held(name: &str) -> Upstream {
        Self::serve(name, Kind::Held).await
    }
    pub async fn counting(name: &str) -> Upstream {
        Self::serve(name, Kind::Counting).await
    }
    pub async fn large_body(name: &str, size: usize) -> Upstream {
        Self::serve(name, Kind::Large(size)).await
    }

    async fn serve(name: &str, kind: Kind) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (release, _) = tokio::sync::watch::channel(false);
        let state = Arc::new(UpState {
            name: name.to_string(),
            kind,
            hits: AtomicUsize::new(0),
            completed: AtomicUsize::new(0),
            connections: AtomicUsize::new(0),
            seen: Mutex::new(Vec::new()),
            release,
        });
        let st = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                st.connections.fetch_add(1, Ordering::SeqCst);
                let st = st.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| handle(st.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .with_upgrades()
                        .await;
                });
            }
        });
        Upstream { addr, state, task }
    }

    /// "127.0.0.1:PORT", for an `instances:` list.
    pub fn addr_str(&self) -> String {
        self.addr.to_string()
    }
    pub fn name(&self) -> &str {
        &self.state.name
    }
    /// Requests that reached the handler (counted on arrival).
    pub fn hits(&self) -> usize {
        self.state.hits.load(Ordering::SeqCst)
    }
    /// TCP connections the upstream accepted.
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }
    /// Requests whose response head was produced.
    pub fn completed(&self) -> usize {
        self.state.completed.load(Ordering::SeqCst)
    }
    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }
    pub fn last_seen(&self) -> Seen {
        self.seen()
            .last()
            .cloned()
            .unwrap_or_else(|| panic!("upstream {} saw no request", self.state.name))
    }
    /// Lets held requests (and future ones) through.
    pub fn release(&self) {
        self.state.release.send_replace(true);
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
        self.release();
    }
}

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into())
        .map_err(|e: Infallible| -> BoxError { match e {} })
        .boxed()
}

fn describe(st: &UpState, seen: &Seen) -> Value {
    json!({
        "name": st.name,
        "method": seen.method,
        "uri": seen.uri,
        "headers": seen.headers.iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>(),
    })
}

async fn handle(st: Arc<UpState>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let seen = Seen {
        method: req.method().to_string(),
        uri: req.uri().to_string(),
        headers: req
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).to_string(),
                )
            })
            .collect(),
    };
    st.seen.lock().unwrap().push(seen.clone());
    st.hits.fetch_add(1, Ordering::SeqCst);

    let mut builder = Response::builder().header("x-upstream", st.name.as_str());
    let resp = match st.kind.clone() {
        Kind::Counting => {
            let _ = req.into_body().collect().await;
            builder
                .header("content-type", "text/plain")
                .body(full("ok"))
                .unwrap()
        }
        Kind::Large(n) => {
            let _ = req.into_body().collect().await;
            let data = Bytes::from(pattern(n));
            let chunks: Vec<Result<Frame<Bytes>, BoxError>> = (0..n)
                .step_by(64 * 1024)
                .map(|i| Ok(Frame::data(data.slice(i..(i + 64 * 1024).min(n)))))
                .collect();
            builder = builder.header("content-type", "application/octet-stream");
            builder
                .body(BodyExt::boxed(StreamBody::new(futures_util::stream::iter(
                    chunks,
                ))))
                .unwrap()
        }
        kind => {
            match kind {
                Kind::Slow(d) => tokio::time::sleep(d).await,
                Kind::Held if req.uri().path().starts_with("/slow") => {
                    let mut rx = st.release.subscribe();
                    let _ = rx.wait_for(|r| *r).await;
                }
                _ => {}
            }
            let echo = req.headers().get("x-echo-body").is_some();
            if echo {
                builder = builder.header("content-type", "application/octet-stream");
                if let Some(cl) = req.headers().get("content-length") {
                    builder = builder.header("content-length", cl.clone());
                }
                let body = req
                    .into_body()
                    .map_err(|e| -> BoxError { Box::new(e) })
                    .boxed();
                builder.body(body).unwrap()
            } else {
                let _ = req.into_body().collect().await;
                builder
                    .header("content-type", "application/json")
                    .body(full(describe(&st, &seen).to_string()))
                    .unwrap()
            }
        }
    };
    st.completed.fetch_add(1, Ordering::SeqCst);
    Ok(resp)
}

/// An HTTP/1.1 server of documents (JWKS, OIDC discovery, OpenAPI specs):
/// `set(path, content_type, body)` publishes or replaces one, other paths
/// answer 404; `hits(path)` counts requests per path. Stops on drop.
pub struct DocServer {
    pub addr: SocketAddr,
    docs: Arc<Mutex<HashMap<String, (String, Bytes)>>>,
    hits: Arc<Mutex<HashMap<String, usize>>>,
    task: JoinHandle<()>,
}

impl DocServer {
    pub async fn start() -> DocServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let docs: Arc<Mutex<HashMap<String, (String, Bytes)>>> = Arc::default();
        let hits: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let (d, h) = (docs.clone(), hits.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let (d, h) = (d.clone(), h.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let path = req.uri().path().to_string();
                        *h.lock().unwrap().entry(path.clone()).or_default() += 1;
                        let doc = d.lock().unwrap().get(&path).cloned();
                        async move {
                            let resp = match doc {
                                Some((ct, body)) => Response::builder().header("content-type", ct).body(full(body)),
                                None => Response::builder().status(404).body(full("not found")),
                            };
                            Ok::<_, Infallible>(resp.unwrap())
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        DocServer { addr, docs, hits, task }
    }

    /// `http://127.0.0.1:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn set(&self, path: &str, content_type: &str, body: impl Into<Bytes>) {
        self.docs
            .lock()
            .unwrap()
            .insert(path.to_string(), (content_type.to_string(), body.into()));
    }

    pub fn hits(&self, path: &str) -> usize {
        self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
    }
}

impl Drop for DocServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A TCP server that reads a request head and closes the connection without
/// answering (a "connection reset / invalid response" instance).
pub struct DroppingUpstream {
    pub addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl DroppingUpstream {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let h = hits.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    continue;
                };
                let h = h.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    h.fetch_add(1, Ordering::SeqCst);
                    drop(s);
                });
            }
        });
        DroppingUpstream { addr, hits, task }
    }
    pub fn addr_str(&self) -> String {
        self.addr.to_string()
    }
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for DroppingUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ---------------------------------------------------------------------------
// WebSocket upstream (tokio-tungstenite)
// ---------------------------------------------------------------------------

/// Echoes text and binary frames. The text message `__name__` is answered
/// with the server's name instead, so a test can tell which instance a
/// socket is tunnelled to.
pub struct WsUpstream {
    pub addr: SocketAddr,
    name: String,
    accepted: Arc<AtomicUsize>,
    handshakes: Arc<Mutex<Vec<HashMap<String, String>>>>,
    task: JoinHandle<()>,
}

impl WsUpstream {
    pub async fn start(name: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let handshakes = Arc::new(Mutex::new(Vec::new()));
        let (acc, hs, nm) = (accepted.clone(), handshakes.clone(), name.to_string());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (acc, hs, nm) = (acc.clone(), hs.clone(), nm.clone());
                tokio::spawn(async move {
                    let hs2 = hs.clone();
                    #[allow(clippy::result_large_err)] // the callback's signature is tungstenite's
                    let cb = move |req: &tokio_tungstenite::tungstenite::handshake::server::Request,
                                   resp: tokio_tungstenite::tungstenite::handshake::server::Response| {
                        let h = req
                            .headers()
                            .iter()
                            .map(|(k, v)| (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).to_string()))
                            .collect();
                        hs2.lock().unwrap().push(h);
                        Ok(resp)
                    };
                    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, cb).await else {
                        return;
                    };
                    acc.fetch_add(1, Ordering::SeqCst);
                    while let Some(Ok(msg)) = ws.next().await {
                        let reply = match msg {
                            Message::Text(t) if t == "__name__" => Message::Text(nm.clone()),
                            Message::Text(t) => Message::Text(t),
                            Message::Binary(b) => Message::Binary(b),
                            Message::Close(_) => break,
                            _ => continue,
                        };
                        if ws.send(reply).await.is_err() {
                            return;
                        }
                    }
                    let _ = ws.close(None).await;
                });
            }
        });
        WsUpstream {
            addr,
            name: name.to_string(),
            accepted,
            handshakes,
            task,
        }
    }
    pub fn addr_str(&self) -> String {
        self.addr.to_string()
    }
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Completed WebSocket handshakes.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
    /// Headers of the most recent handshake request (names lowercased).
    pub fn last_handshake(&self) -> HashMap<String, String> {
        self.handshakes
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("no websocket handshake seen")
    }
}

impl Drop for WsUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub type Ws = tokio_tungstenite::WebSocketStream<TcpStream>;

/// Opens a WebSocket through the gateway at `addr` with `Host: host`.
pub async fn ws_connect(
    addr: SocketAddr,
    host: &str,
    path: &str,
) -> Result<
    (
        Ws,
        tokio_tungstenite::tungstenite::handshake::client::Response,
    ),
    tokio_tungstenite::tungstenite::Error,
> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = format!("ws://{addr}{path}").into_client_request()?;
    req.headers_mut().insert("host", host.parse().unwrap());
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    tokio_tungstenite::client_async(req, stream).await
}

/// Sends `msg` and returns the next data frame (bounded).
pub async fn ws_roundtrip(ws: &mut Ws, msg: Message) -> Result<Message, String> {
    ws.send(msg).await.map_err(|e| format!("send: {e}"))?;
    loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
            Err(_) => return Err("no reply within 5s".into()),
            Ok(None) => return Err("connection closed".into()),
            Ok(Some(Err(e))) => return Err(format!("recv: {e}")),
            Ok(Some(Ok(m @ (Message::Text(_) | Message::Binary(_))))) => return Ok(m),
            Ok(Some(Ok(Message::Close(c)))) => return Err(format!("closed by peer: {c:?}")),
            Ok(Some(Ok(_))) => continue,
        }
    }
}

// ---------------------------------------------------------------------------
// SPEC §5 error checks shared by several files
// ---------------------------------------------------------------------------

pub const DOCS_BASE: &str = "https://unkey.com/docs/errors/frontline";

/// Asserts a gateway-made problem+json error with `code`, `status` and
/// `title` (SPEC §5, §9.11); returns the parsed body.
pub async fn assert_problem(
    resp: reqwest::Response,
    status: u16,
    code: &str,
    title: &str,
) -> Value {
    let got_status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    assert_eq!(got_status, status, "status; body: {text}");
    let ct = headers
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    assert!(
        ct.starts_with("application/problem+json"),
        "content-type {ct:?}; body: {text}"
    );
    assert_eq!(
        headers
            .get("x-unkey-error-source")
            .map(|v| v.to_str().unwrap()),
        Some("gateway"),
        "X-Unkey-Error-Source"
    );
    let rid = headers
        .get("x-request-id")
        .map(|v| v.to_str().unwrap().to_string())
        .expect("X-Request-Id header");
    assert!(
        rid.starts_with("req_") && rid.len() > 4,
        "X-Request-Id {rid:?}"
    );
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    assert_eq!(
        v["meta"]["requestId"],
        json!(rid),
        "meta.requestId equals X-Request-Id: {v}"
    );
    assert_eq!(v["error"]["code"], json!(code), "{v}");
    assert_eq!(v["error"]["status"], json!(status), "{v}");
    assert_eq!(v["error"]["title"], json!(title), "{v}");
    let (category, name) = {
        let mut parts = code.rsplitn(3, ':');
        let name = parts.next().unwrap();
        let category = parts.next().unwrap();
        (category, name)
    };
    assert_eq!(
        v["error"]["type"],
        json!(format!("{DOCS_BASE}/{category}/{name}")),
        "{v}"
    );
    assert!(
        v["error"]["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "detail is a non-empty string: {v}"
    );
    v
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

// ---------------------------------------------------------------------------
// TLS client: handshakes with a chosen SNI, protocol versions and ALPN. The
// server's certificate is taken as presented (signatures still checked) and
// returned for inspection: tests assert on its names and issuer.
// ---------------------------------------------------------------------------

/// TLS 1.2 and 1.3, what a current client offers.
pub const TLS_ANY: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13, &rustls::version::TLS12];
pub const TLS12_ONLY: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS12];

/// A completed handshake with what it negotiated.
pub struct Handshake {
    pub version: Option<rustls::ProtocolVersion>,
    pub alpn: Option<Vec<u8>>,
    /// The leaf certificate (DER) and what it says.
    pub leaf: Vec<u8>,
    pub sans: Vec<String>,
    pub issuer: String,
    pub stream: tokio_rustls::client::TlsStream<TcpStream>,
}

/// Accepts any server certificate; handshake signatures are still verified.
#[derive(Debug)]
struct AcceptAnyCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Connects to `addr` and handshakes with `sni`, offering `versions` and
/// `alpn` (bounded, 10 s). `Err` carries the TLS or I/O failure.
pub async fn tls_handshake(
    addr: SocketAddr,
    sni: &str,
    versions: &[&'static rustls::SupportedProtocolVersion],
    alpn: &[&[u8]],
) -> Result<Handshake, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider)))
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = rustls::pki_types::ServerName::try_from(sni.to_string()).map_err(|e| e.to_string())?;
    let connect = async {
        let tcp = TcpStream::connect(addr).await.map_err(|e| format!("connect: {e}"))?;
        connector.connect(name, tcp).await.map_err(|e| format!("handshake: {e}"))
    };
    let stream = tokio::time::timeout(Duration::from_secs(10), connect)
        .await
        .map_err(|_| "handshake timed out".to_string())??;
    let (_, session) = stream.get_ref();
    let leaf = session
        .peer_certificates()
        .and_then(|certs| certs.first())
        .ok_or("no server certificate")?
        .to_vec();
    let (sans, issuer) = cert_names(&leaf);
    Ok(Handshake {
        version: session.protocol_version(),
        alpn: session.alpn_protocol().map(<[u8]>::to_vec),
        leaf,
        sans,
        issuer,
        stream,
    })
}

/// The SAN DNS names and the issuer of a DER certificate.
pub fn cert_names(der: &[u8]) -> (Vec<String>, String) {
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
    let (_, cert) = X509Certificate::from_der(der).expect("parse the server certificate");
    let sans = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::DNSName(name) => Some(name.to_string()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    (sans, cert.issuer().to_string())
}

/// `GET path` over HTTP/1.1 on TLS with `sni` as SNI and Host; reads to the
/// end (bounded, 15 s).
pub async fn https_get(addr: SocketAddr, sni: &str, path: &str) -> Result<RawResponse, String> {
    let mut handshake = tls_handshake(addr, sni, TLS_ANY, &[b"http/1.1"]).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {sni}\r\nConnection: close\r\n\r\n");
    let exchange = async {
        handshake.stream.write_all(request.as_bytes()).await.map_err(|e| format!("write: {e}"))?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 16384];
        loop {
            match handshake.stream.read(&mut chunk).await {
                Ok(0) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                // Peers may close without close_notify once the response is complete.
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !buf.is_empty() => break,
                Err(e) => return Err(format!("read: {e}")),
            }
        }
        Ok(buf)
    };
    let buf = tokio::time::timeout(Duration::from_secs(15), exchange)
        .await
        .map_err(|_| "no response within 15s".to_string())??;
    Ok(parse_raw_response(&buf))
}

/// `GET https://authority/path` as HTTP/2 on a handshake that negotiated h2;
/// returns the status and body (bounded, 15 s).
pub async fn h2_get(handshake: Handshake, authority: &str, path: &str) -> (u16, Vec<u8>) {
    let exchange = async {
        let io = TokioIo::new(handshake.stream);
        let (mut sender, conn) = hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
            .await
            .expect("h2 handshake");
        tokio::spawn(conn);
        let request = Request::get(format!("https://{authority}{path}"))
            .body(http_body_util::Empty::<Bytes>::new())
            .unwrap();
        let response = sender.send_request(request).await.expect("h2 request");
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.expect("h2 body").to_bytes().to_vec();
        (status, body)
    };
    tokio::time::timeout(Duration::from_secs(15), exchange)
        .await
        .expect("h2 exchange timed out")
}

/// A self-signed certificate for `sans` and its key, PEM.
pub fn self_signed_pem(sans: &[&str]) -> (String, String) {
    let generated = rcgen::generate_simple_self_signed(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .expect("generate a certificate");
    (generated.cert.pem(), generated.key_pair.serialize_pem())
}

/// Writes `<name>.crt` and `<name>.key` into `dir` (key first, then the
/// certificate, as an operator copying a pair would).
pub fn write_cert_pair(dir: &Path, name: &str, cert_pem: &str, key_pem: &str) {
    std::fs::write(dir.join(format!("{name}.key")), key_pem).unwrap();
    std::fs::write(dir.join(format!("{name}.crt")), cert_pem).unwrap();
}

// ---------------------------------------------------------------------------
// Pebble, Let's Encrypt's test CA, on loopback. HTTP-01 validation is real:
// pebble-challtestsrv answers every DNS name with 127.0.0.1 and Pebble
// fetches the challenge from `http_port` (the gateway's plain listener).
// Debian's Pebble ships no certificate for its own HTTPS endpoint, so one is
// generated here; tests trust it with `tls.acme.ca_roots`.
// ---------------------------------------------------------------------------

pub struct Pebble {
    /// The ACME directory URL.
    pub directory: String,
    /// The root that signs Pebble's HTTPS endpoint (for `ca_roots`).
    pub root_pem: PathBuf,
    dir: TempDir,
    pebble: Option<Child>,
    dns: Option<Child>,
}

impl Pebble {
    /// Starts challtestsrv and Pebble; returns once both accept connections.
    pub async fn start(http_port: u16) -> Pebble {
        Self::start_with_validity(http_port, None).await
    }

    /// Like [`Pebble::start`], issuing certificates valid for `validity`
    /// (Pebble's default is five years).
    pub async fn start_with_validity(http_port: u16, validity: Option<Duration>) -> Pebble {
        let dir = tempfile::Builder::new().prefix("keygate-pebble").tempdir().unwrap();
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "keygate test Pebble endpoint CA");
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf_params = rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        let leaf_cert = leaf_params.signed_by(&leaf_key, &ca_cert, &ca_key).unwrap();
        let root_pem = dir.path().join("root.pem");
        std::fs::write(&root_pem, ca_cert.pem()).unwrap();
        std::fs::write(dir.path().join("endpoint.pem"), leaf_cert.pem()).unwrap();
        std::fs::write(dir.path().join("endpoint.key"), leaf_key.serialize_pem()).unwrap();

        let acme_port = free_port();
        let management_port = free_port();
        let dns_port = free_port();
        let dns_management_port = free_port();
        let mut config = json!({"pebble": {
            "listenAddress": format!("127.0.0.1:{acme_port}"),
            "managementListenAddress": format!("127.0.0.1:{management_port}"),
            "certificate": dir.path().join("endpoint.pem"),
            "privateKey": dir.path().join("endpoint.key"),
            "httpPort": http_port,
            "tlsPort": free_port(),
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
        }});
        if let Some(validity) = validity {
            config["pebble"]["certificateValidityPeriod"] = json!(validity.as_secs());
        }
        std::fs::write(dir.path().join("pebble.json"), config.to_string()).unwrap();

        let log = |name: &str| std::fs::File::create(dir.path().join(name)).unwrap();
        let dns = Command::new("pebble-challtestsrv")
            .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
            .args(["-dns01", &format!("127.0.0.1:{dns_port}")])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .args(["-management", &format!("127.0.0.1:{dns_management_port}")])
            .stdin(Stdio::null())
            .stdout(log("challtestsrv.log"))
            .stderr(Stdio::null())
            .spawn()
            .expect("start pebble-challtestsrv (apt-get install pebble)");
        let pebble = Command::new("pebble")
            .arg("-config")
            .arg(dir.path().join("pebble.json"))
            .args(["-dnsserver", &format!("127.0.0.1:{dns_port}")])
            // No random validation delays; no rejected nonces (keeps order counts exact).
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .stdin(Stdio::null())
            .stdout(log("pebble.log"))
            .stderr(Stdio::null())
            .spawn()
            .expect("start pebble (apt-get install pebble)");
        let pebble = Pebble {
            directory: format!("https://127.0.0.1:{acme_port}/dir"),
            root_pem,
            dir,
            pebble: Some(pebble),
            dns: Some(dns),
        };
        for port in [acme_port, dns_management_port] {
            let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
            wait_for(format!("Pebble listening on {addr}\n{}", pebble.logs()), WAIT, || async move {
                TcpStream::connect(addr).await.is_ok()
            })
            .await;
        }
        pebble
    }

    /// Stops Pebble and its DNS server (the CA becomes unreachable).
    pub fn stop(&mut self) {
        for child in [self.pebble.take(), self.dns.take()].into_iter().flatten() {
            let mut child = child;
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Certificates Pebble has issued so far.
    pub fn issued(&self) -> usize {
        self.logs().matches("Issued certificate serial").count()
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pebble.log")).unwrap_or_default()
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            let logs = self.logs();
            let lines: Vec<&str> = logs.lines().collect();
            eprintln!("--- pebble log (tail) ---\n{}", lines[lines.len().saturating_sub(60)..].join("\n"));
        }
    }
}

// ---------------------------------------------------------------------------
// Redis on loopback (`state.redis`): a throwaway redis-server without
// persistence, killed on drop.
// ---------------------------------------------------------------------------

pub struct Redis {
    pub port: u16,
    child: Child,
}

impl Redis {
    /// Starts redis-server on a free loopback port; returns once it accepts connections.
    pub async fn start() -> Redis {
        let port = free_port();
        let child = Self::spawn(port);
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        wait_for(format!("redis-server on {addr}"), WAIT, || async move {
            TcpStream::connect(addr).await.is_ok()
        })
        .await;
        Redis { port, child }
    }

    /// redis-server on `port`, without persistence.
    fn spawn(port: u16) -> Child {
        Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server (apt-get install redis-server)")
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// SIGKILLs redis-server (an outage: no shutdown, nothing persisted) and
    /// waits until it is gone and its port refuses connections.
    pub async fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let addr: SocketAddr = format!("127.0.0.1:{}", self.port).parse().unwrap();
        wait_for(format!("redis-server on {addr} gone"), WAIT, || async move {
            TcpStream::connect(addr).await.is_err()
        })
        .await;
    }

    /// Starts a new, empty redis-server on the same port (after [`Redis::stop`]);
    /// returns once it accepts connections.
    pub async fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let port = self.port;
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        // The port may linger briefly after the kill; retry the spawn until it binds.
        let deadline = Instant::now() + WAIT;
        loop {
            self.child = Self::spawn(port);
            let up = poll_until(format!("redis-server restarted on {addr}"), WAIT, || {
                let exited = self.child.try_wait().ok().flatten().is_some();
                async move {
                    if exited {
                        return Some(false);
                    }
                    TcpStream::connect(addr).await.is_ok().then_some(true)
                }
            })
            .await;
            if up {
                return;
            }
            if Instant::now() >= deadline {
                panic!("redis-server could not be restarted on {addr}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
