//! Abuse and bad input against the running gateway: slow clients
//! (slowloris, slow bodies, idle keep-alive), connection and descriptor
//! floods, spoofing header spellings, credentials in logs, permission
//! queries nested past their bound (via `check` and via reload), and an
//! instance outage under load. After each, the process is alive and serving.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::gateway::{one_route, run_keygate, Gateway};
use support::raw_http::raw_request;
use support::upstreams::Upstream;
use support::wait::{poll_until, wait_for, WAIT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const HOST: &str = "hard.test";

async fn serving(gw: &Gateway) {
    let ok = raw_request(
        gw.http,
        format!("GET /alive HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await;
    assert_eq!(ok.status, 200, "{ok:?}");
}

/// How long until the gateway closes `stream` (reads until EOF or reset), at most `limit`.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    let read_to_close = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(limit, read_to_close)
        .await
        .ok()
        .map(|()| started.elapsed())
}

#[tokio::test(flavor = "multi_thread")]
async fn slowloris_and_idle_connections_are_closed_in_time() {
    let up = Upstream::inspector("up").await;
    let gw = Gateway::start(&format!(
        "limits:\n  read_header_timeout: 1s\n  idle_timeout: 2s\n{}",
        one_route(HOST, "dep", &[&up.addr_str()])
    ))
    .await;
    // Mid-header, then silence.
    let mut slow = TcpStream::connect(gw.http).await.unwrap();
    slow.write_all(format!("GET / HTTP/1.1\r\nHost: {HOST}\r\nX-Slow: ").as_bytes())
        .await
        .unwrap();
    let closed = closed_within(&mut slow, Duration::from_secs(4)).await;
    assert!(
        closed.is_some_and(|t| t < Duration::from_millis(2500)),
        "mid-header: {closed:?}"
    );
    // A byte at a time, each within any per-read timeout: the head deadline still applies.
    let mut dribble = TcpStream::connect(gw.http).await.unwrap();
    let started = Instant::now();
    let mut dropped = false;
    for byte in
        b"GET / HTTP/1.1\r\nHost: hard.test\r\nX-Dribble: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
    {
        if dribble.write_all(&[*byte]).await.is_err() {
            dropped = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        if started.elapsed() > Duration::from_secs(4) {
            break;
        }
    }
    let closed = dropped || closed_within(&mut dribble, Duration::from_millis(500)).await.is_some();
    assert!(
        closed && started.elapsed() < Duration::from_secs(3),
        "dribbled head kept open for {:?}",
        started.elapsed()
    );
    // A new connection that sends nothing.
    let mut silent = TcpStream::connect(gw.http).await.unwrap();
    let closed = closed_within(&mut silent, Duration::from_secs(4)).await;
    assert!(
        closed.is_some_and(|t| t < Duration::from_millis(2500)),
        "silent: {closed:?}"
    );
    // Idle between requests: idle_timeout.
    let mut idle = TcpStream::connect(gw.http).await.unwrap();
    idle.write_all(format!("GET / HTTP/1.1\r\nHost: {HOST}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let closed = closed_within(&mut idle, Duration::from_secs(5)).await;
    assert!(
        closed.is_some_and(|t| t > Duration::from_millis(1500)),
        "idle: {closed:?}"
    );
    serving(&gw).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_body_gets_408_or_a_close() {
    let up = Upstream::inspector("up").await;
    let gw = Gateway::start(&format!(
        "limits:\n  read_body_timeout: 1s\n{}",
        one_route(HOST, "dep", &[&up.addr_str()])
    ))
    .await;
    for framing in [
        "Content-Length: 100\r\n\r\nab",
        "Transfer-Encoding: chunked\r\n\r\n64\r\nab",
    ] {
        let mut slow = TcpStream::connect(gw.http).await.unwrap();
        slow.write_all(format!("POST / HTTP/1.1\r\nHost: {HOST}\r\n{framing}").as_bytes())
            .await
            .unwrap();
        let mut answer = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(4), slow.read_to_end(&mut answer)).await;
        assert!(read.is_ok(), "{framing:?}: still open after 4 s");
        let text = String::from_utf8_lossy(&answer);
        assert!(
            answer.is_empty() || text.starts_with("HTTP/1.1 408"),
            "{framing:?}: {text}"
        );
    }
    serving(&gw).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn underscore_headers_are_dropped_unless_allowed() {
    let up = Upstream::inspector("up").await;
    let gw = Gateway::start(&one_route(HOST, "dep", &[&up.addr_str()])).await;
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {HOST}\r\nX_Unkey_Principal: {{\"spoofed\":true}}\r\nX_Deployment_Id: evil\r\nX_Forwarded_For: 6.6.6.6\r\nX-Normal: kept\r\nConnection: close\r\n\r\n"
    );
    assert_eq!(raw_request(gw.http, request.as_bytes()).await.status, 200);
    let seen = up.last_seen();
    assert!(
        seen.headers.iter().all(|(name, _)| !name.contains('_')),
        "{:?}",
        seen.headers
    );
    assert_eq!(seen.one("x-normal"), Some("kept"));

    gw.write_config(&format!(
        "limits:\n  allow_underscores_in_headers: true\n{}",
        one_route(HOST, "dep", &[&up.addr_str()])
    ));
    wait_for("underscores allowed after reload", WAIT, || async {
        raw_request(
            gw.http,
            format!("GET / HTTP/1.1\r\nHost: {HOST}\r\nX_Custom: 1\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await;
        up.last_seen().one("x_custom") == Some("1")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn nominating_a_gateway_header_in_connection_is_not_a_5xx() {
    let up = Upstream::inspector("up").await;
    let gw = Gateway::start(&one_route(HOST, "dep", &[&up.addr_str()])).await;
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {HOST}\r\nConnection: keep-alive, X-Forwarded-For\r\nX-Forwarded-For: 9.9.9.9\r\n\r\n"
    );
    let mut conn = support::raw_http::RawConn::connect(gw.http).await;
    let response = conn.roundtrip(request.as_bytes()).await.unwrap();
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(up.last_seen().one("x-forwarded-for"), Some("127.0.0.1"));
    // A malformed nomination is the client's error: 400, never 502.
    let bad = raw_request(
        gw.http,
        format!("GET / HTTP/1.1\r\nHost: {HOST}\r\nConnection: \":authority\", close\r\n\r\n").as_bytes(),
    )
    .await;
    assert_eq!(bad.status, 400, "{bad:?}");
    serving(&gw).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn request_logs_and_process_logs_never_hold_a_credential() {
    let up = Upstream::inspector("up").await;
    let gw = Gateway::start(&format!(
        r#"request_log: {{sink: requests.log}}
keyspaces:
  - id: ks
    name: main
    keys: [{{id: key_1, key: sk_valid_key}}]
deployments:
  - id: dep
    instances: ["{}"]
    policies:
      - id: audit
        logging: {{}}
      - id: auth
        keyauth:
          keyspaces: [ks]
          locations: [{{header: {{name: X-API-Key}}}}, {{query: {{name: api_key}}}}, {{bearer: {{}}}}]
  - id: dep_down
    instances: ["{}"]
    policies:
      - id: auth
        keyauth:
          keyspaces: [ks]
          locations: [{{query: {{name: api_key}}}}]
routes:
  - host: "{HOST}"
    deployment: dep
  - host: down.test
    deployment: dep_down
"#,
        up.addr_str(),
        support::net::closed_addr()
    ))
    .await;
    let send = |path: &str, headers: &[(&str, &str)]| {
        let mut request = gw.get(HOST, path);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send()
    };
    assert_eq!(
        send("/a", &[("x-api-key", "sk_valid_key"), ("cookie", "session=c00kie")])
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        send(
            "/b?page=2&api_key=sk_valid_key",
            &[("proxy-authorization", "Basic cHJveHk=")]
        )
        .await
        .unwrap()
        .status(),
        200
    );
    assert_eq!(
        send("/c", &[("authorization", "Bearer sk_valid_key")])
            .await
            .unwrap()
            .status(),
        200
    );
    let log = gw.dir.path().join("requests.log");
    let records: Vec<Value> = poll_until("3 request-log records", WAIT, || async {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let records: Vec<Value> = text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
        (records.len() >= 3).then_some(records)
    })
    .await;
    let all = serde_json::to_string(&records).unwrap();
    for secret in ["sk_valid_key", "c00kie", "cHJveHk="] {
        assert!(!all.contains(secret), "{secret} in the request log: {all}");
    }
    // Records are written as requests finish, not necessarily in the order they were sent.
    let of = |path: &str| records.iter().find(|r| r["path"] == path).cloned().unwrap_or_default();
    assert_eq!(of("/a")["request_headers"]["x-api-key"], "[REDACTED]");
    assert_eq!(of("/a")["request_headers"]["cookie"], "[REDACTED]");
    assert_eq!(of("/b")["query"], "page=2&api_key=[REDACTED]");
    assert_eq!(of("/b")["request_headers"]["proxy-authorization"], "[REDACTED]");

    // A proxy failure is logged with its request target, never the key.
    let failed = gw
        .get("down.test", "/x?api_key=sk_valid_key&token=t0ken")
        .send()
        .await
        .unwrap();
    assert_eq!(failed.status(), 503);
    wait_for("the proxy failure is logged", WAIT, || async {
        gw.logs().contains("/x?")
    })
    .await;
    let logs = gw.logs();
    assert!(
        !logs.contains("sk_valid_key") && !logs.contains("t0ken"),
        "credential in the process log:\n{logs}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn permission_queries_nested_past_the_bound_are_config_errors() {
    let up = Upstream::inspector("up").await;
    let config = |depth: usize| {
        let query = format!("{}a{}", "(".repeat(depth), ")".repeat(depth));
        format!(
            "keyspaces:\n  - id: ks\n    name: main\ndeployments:\n  - id: dep\n    instances: [\"{}\"]\n    policies:\n      - id: auth\n        keyauth: {{keyspaces: [ks], permission_query: \"{query}\"}}\nroutes:\n  - host: \"{HOST}\"\n    deployment: dep\n",
            up.addr_str()
        )
    };
    let dir = tempfile::tempdir().unwrap();
    for depth in [320, 5_000, 100_000] {
        let path = dir.path().join(format!("deep{depth}.yaml"));
        std::fs::write(&path, config(depth)).unwrap();
        let out = run_keygate(&["check", "--config", path.to_str().unwrap()], dir.path(), &[], &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "depth {depth}: {stderr}");
        assert!(stderr.contains("nested deeper than 32"), "depth {depth}: {stderr}");
    }
    // Over a running gateway: the reload is refused, the process keeps serving.
    let mut gw = Gateway::start(&one_route(HOST, "dep", &[&up.addr_str()])).await;
    gw.write_config(&config(5_000));
    wait_for("the reload error is logged", WAIT, || async {
        gw.logs().contains("nested deeper than 32")
    })
    .await;
    assert!(gw.try_exit_status().is_none(), "the gateway died");
    serving(&gw).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_beyond_max_connections_are_closed_and_serving_resumes() {
    let up = Upstream::inspector("up").await;
    let gw = Gateway::start(&format!(
        "limits:\n  max_connections: 8\n{}",
        one_route(HOST, "dep", &[&up.addr_str()])
    ))
    .await;
    let mut held = Vec::new();
    for _ in 0..8 {
        let mut s = TcpStream::connect(gw.http).await.unwrap();
        s.write_all(format!("GET / HTTP/1.1\r\nHost: {HOST}\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut buf = [0u8; 512];
        assert!(s.read(&mut buf).await.unwrap() > 0);
        held.push(s);
    }
    let mut extra = TcpStream::connect(gw.http).await.unwrap();
    assert!(
        closed_within(&mut extra, Duration::from_secs(2)).await.is_some(),
        "the 9th connection was kept"
    );
    drop(held);
    wait_for("serving again once connections closed", WAIT, || async {
        let mut s = TcpStream::connect(gw.http).await.unwrap();
        s.write_all(format!("GET / HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n").as_bytes())
            .await
            .is_ok()
            && {
                let mut answer = Vec::new();
                let _ = tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut answer)).await;
                answer.starts_with(b"HTTP/1.1 200")
            }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn descriptor_exhaustion_backs_off_and_recovers() {
    let up = Upstream::inspector("up").await;
    let gw = Gateway::start(&one_route(HOST, "dep", &[&up.addr_str()])).await;
    serving(&gw).await;
    // Leave the gateway few descriptors, then open more connections than it has.
    let limited = std::process::Command::new("prlimit")
        .args(["--pid", &gw.pid().to_string(), "--nofile=256:256"])
        .status()
        .expect("prlimit");
    assert!(limited.success());
    let mut flood = Vec::new();
    for _ in 0..400 {
        if let Ok(Ok(s)) = tokio::time::timeout(Duration::from_millis(200), TcpStream::connect(gw.http)).await {
            flood.push(s);
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop(flood);
    wait_for("serving again once descriptors are free", Duration::from_secs(15), || async {
        let request = format!("GET / HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n");
        let attempt = async {
            let mut s = TcpStream::connect(gw.http).await.ok()?;
            s.write_all(request.as_bytes()).await.ok()?;
            let mut answer = Vec::new();
            s.read_to_end(&mut answer).await.ok()?;
            Some(answer)
        };
        matches!(tokio::time::timeout(Duration::from_secs(2), attempt).await, Ok(Some(a)) if a.starts_with(b"HTTP/1.1 200"))
    })
    .await;
    serving(&gw).await;
}

/// An HTTP/1.1 instance on a fixed address that can be stopped and started again.
struct Restartable {
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Restartable {
    async fn start(addr: SocketAddr) -> Self {
        // The port was just released by the previous incarnation: retry for a bounded time.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let listener = loop {
            match tokio::net::TcpListener::bind(addr).await {
                Ok(listener) => break listener,
                Err(e) if std::time::Instant::now() > deadline => panic!("cannot bind {addr} again: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        let task = tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let mut pending = Vec::new();
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 {
                            return;
                        }
                        pending.extend_from_slice(&buf[..n]);
                        while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                            pending.drain(..end + 4);
                            if s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                                .await
                                .is_err()
                            {
                                return;
                            }
                        }
                    }
                });
            }
        });
        Restartable { task: Some(task) }
    }

    fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_instance_back_from_an_outage_under_load_is_readmitted_within_the_base_ejection() {
    let addr = support::net::free_addr();
    let mut instance = Restartable::start(addr).await;
    let gw = Gateway::start(&format!(
        "deployments:\n  - id: dep\n    instances: [\"{addr}\"]\n    upstream: {{passive: {{failures: 3, ejection: 4s}}}}\nroutes:\n  - host: \"{HOST}\"\n    deployment: dep\n"
    ))
    .await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for _ in 0..20 {
        let (client, url, stop) = (gw.client().clone(), gw.http_url("/load"), stop.clone());
        load.push(tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = client.get(&url).header("host", HOST).send().await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    instance.stop();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let _instance = Restartable::start(addr).await;
    let back = Instant::now();
    wait_for("the instance serves again", Duration::from_secs(8), || async {
        gw.get(HOST, "/probe").send().await.is_ok_and(|r| r.status() == 200)
    })
    .await;
    let recovered = back.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for task in load {
        let _ = task.await;
    }
    assert!(
        recovered <= Duration::from_secs(4),
        "re-admitted {recovered:?} after it came back (base ejection 4 s)"
    );
}
