//! Instances: active health checks take a
//! failing instance out and put it back, checkers follow reloads, passive
//! ejection on live connect failures, power-of-two-choices steers around a
//! slow instance, `dns:` instances, and h2c upstreams with gRPC-style
//! trailers end to end (client → TLS h2 → gateway → h2c → instance).

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::gateway::Gateway;
use support::net::{closed_addr, free_port};
use support::problem::assert_problem;
use support::upstreams::{serve_loopback, Upstream};
use support::wait::{poll_until, wait_for, RELOAD_DEADLINE, WAIT};

/// An instance whose health endpoint can be switched off, and that counts
/// health probes and proxied requests separately.
struct Switchable {
    addr: SocketAddr,
    healthy: Arc<AtomicBool>,
    probes: Arc<AtomicUsize>,
    served: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Switchable {
    async fn start() -> Self {
        let (healthy, probes, served) = (
            Arc::new(AtomicBool::new(true)),
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicUsize::new(0)),
        );
        let (h, p, s) = (healthy.clone(), probes.clone(), served.clone());
        let (addr, task) = serve_loopback(move |stream| {
            let (h, p, s) = (h.clone(), p.clone(), s.clone());
            async move {
                let svc = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                    let (h, p, s) = (h.clone(), p.clone(), s.clone());
                    async move {
                        let status = if req.uri().path() == "/healthz" {
                            p.fetch_add(1, Ordering::SeqCst);
                            if h.load(Ordering::SeqCst) {
                                200
                            } else {
                                503
                            }
                        } else {
                            s.fetch_add(1, Ordering::SeqCst);
                            200
                        };
                        let mut resp = hyper::Response::new(Full::new(Bytes::from_static(b"ok")));
                        *resp.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                        Ok::<_, std::convert::Infallible>(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            }
        })
        .await;
        Self {
            addr,
            healthy,
            probes,
            served,
            task,
        }
    }
    fn set_healthy(&self, healthy: bool) {
        self.healthy.store(healthy, Ordering::SeqCst);
    }
    fn probes(&self) -> usize {
        self.probes.load(Ordering::SeqCst)
    }
    fn served(&self) -> usize {
        self.served.load(Ordering::SeqCst)
    }
}

impl Drop for Switchable {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn checked(instances: &[SocketAddr], extra: &str) -> String {
    let list = instances
        .iter()
        .map(|a| format!("\"{a}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "deployments:\n  - id: app\n    instances: [{list}]\n    upstream:\n      health_check: {{path: /healthz, interval: 100ms, timeout: 500ms, failure_threshold: 2}}\n{extra}routes:\n  - host: app.test\n    deployment: app\n"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn failing_instance_is_taken_out_and_put_back() {
    let (a, b) = (Switchable::start().await, Switchable::start().await);
    let gw = Gateway::start(&checked(&[a.addr, b.addr], "")).await;
    wait_for("both healthy", WAIT, || async {
        gw.metric(r#"keygate_instances_healthy{deployment="app"}"#).await == 2.0
    })
    .await;

    b.set_healthy(false);
    // interval × threshold = 200 ms; poll until the gateway agrees.
    wait_for("b taken out", WAIT, || async {
        gw.metric(r#"keygate_instances_healthy{deployment="app"}"#).await == 1.0
    })
    .await;
    let served_before = b.served();
    for _ in 0..40 {
        let resp = gw.get("app.test", "/").send().await.unwrap();
        assert_eq!(resp.status(), 200, "no client sees an error once the instance is out");
    }
    assert_eq!(b.served(), served_before, "an unhealthy instance gets no traffic");

    b.set_healthy(true);
    wait_for("b back", WAIT, || async {
        gw.metric(r#"keygate_instances_healthy{deployment="app"}"#).await == 2.0
    })
    .await;
    poll_until("b receives traffic again", WAIT, || async {
        gw.get("app.test", "/").send().await.unwrap();
        (b.served() > served_before).then_some(())
    })
    .await;

    a.set_healthy(false);
    b.set_healthy(false);
    wait_for("none healthy", WAIT, || async {
        gw.metric(r#"keygate_instances_healthy{deployment="app"}"#).await == 0.0
    })
    .await;
    assert_problem(
        gw.get("app.test", "/").send().await.unwrap(),
        503,
        "err:frontline:capacity:no_running_instances",
        "Service Unavailable",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn reload_stops_checkers_of_removed_instances() {
    let (a, b) = (Switchable::start().await, Switchable::start().await);
    let gw = Gateway::start(&checked(&[a.addr, b.addr], "")).await;
    wait_for("b is probed", WAIT, || async { b.probes() >= 2 }).await;

    gw.write_config(&checked(&[a.addr], ""));
    wait_for("reload applied", RELOAD_DEADLINE, || async {
        gw.metric("keygate_config_reloads_total").await >= 1.0
    })
    .await;
    // Let an in-flight probe land, then b must see no more, while a still does.
    let a_before = a.probes();
    wait_for("a probed after the reload", WAIT, || async {
        a.probes() >= a_before + 3
    })
    .await;
    let b_after = b.probes();
    let a_mark = a.probes();
    wait_for("a probed again", WAIT, || async { a.probes() >= a_mark + 3 }).await;
    assert_eq!(b.probes(), b_after, "the removed instance's checker stopped");

    // The same instance re-added gets exactly one checker (probes at 1× the rate).
    gw.write_config(&checked(&[a.addr, b.addr], ""));
    wait_for("b probed again", WAIT, || async { b.probes() > b_after }).await;
    let (a0, b0) = (a.probes(), b.probes());
    wait_for("ten more probes of a", WAIT, || async { a.probes() >= a0 + 10 }).await;
    let (da, db) = ((a.probes() - a0) as i64, (b.probes() - b0) as i64);
    assert!((da - db).abs() <= 3, "one checker per instance: a +{da}, b +{db}");
}

#[tokio::test(flavor = "multi_thread")]
async fn repeated_connect_failures_eject_an_instance_without_active_checks() {
    let up = Upstream::counting("up").await;
    let dead = closed_addr();
    let yaml = format!(
        "deployments:\n  - id: app\n    instances: [\"{dead}\", \"{}\"]\n    upstream:\n      selection: random\n      passive: {{failures: 2, ejection: 1m}}\nroutes:\n  - host: app.test\n    deployment: app\n",
        up.addr_str()
    );
    let gw = Gateway::start(&yaml).await;
    for _ in 0..30 {
        assert_eq!(gw.get("app.test", "/").send().await.unwrap().status(), 200);
    }
    let failures = gw.metric("keygate_upstream_connect_failures_total").await;
    assert!(
        failures <= 2.0,
        "after 2 connect failures the dead instance is ejected, saw {failures}"
    );
    wait_for("the gauge counts the ejected instance out", WAIT, || async {
        gw.metric(r#"keygate_instances_healthy{deployment="app"}"#).await == 1.0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn power_of_two_choices_sends_less_to_a_slow_instance() {
    let slow = Upstream::slow("slow", Duration::from_millis(300)).await;
    let fast = Upstream::counting("fast").await;
    let run = |selection: &'static str| {
        let (slow, fast) = (slow.addr_str(), fast.addr_str());
        async move {
            let yaml = format!(
                "deployments:\n  - id: app\n    instances: [\"{slow}\", \"{fast}\"]\n    upstream: {{selection: {selection}}}\nroutes:\n  - host: app.test\n    deployment: app\n"
            );
            Gateway::start(&yaml).await
        }
    };
    let mut shares = HashMap::new();
    for selection in ["random", "p2c"] {
        let gw = run(selection).await;
        let before = slow.hits();
        // 8 concurrent clients, 12 requests each.
        let clients = (0..8).map(|_| {
            let client = gw.client().clone();
            let url = gw.http_url("/");
            tokio::spawn(async move {
                for _ in 0..12 {
                    let resp = client.get(&url).header("host", "app.test").send().await.unwrap();
                    assert_eq!(resp.status(), 200);
                }
            })
        });
        for client in clients.collect::<Vec<_>>() {
            client.await.unwrap();
        }
        shares.insert(selection, slow.hits() - before);
    }
    let (random, p2c) = (shares["random"], shares["p2c"]);
    assert!(
        p2c * 2 < random,
        "p2c sent {p2c} of 96 to the slow instance, random {random}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn dns_instances_resolve_every_address() {
    let up = Upstream::counting("up").await;
    let yaml = format!(
        "deployments:\n  - id: app\n    instances: [\"dns:localhost:{}\"]\nroutes:\n  - host: app.test\n    deployment: app\n",
        up.addr.port()
    );
    let gw = Gateway::start(&yaml).await;
    assert_eq!(gw.get("app.test", "/").send().await.unwrap().status(), 200);
    assert_eq!(up.hits(), 1);
    let out = gw
        .cli(
            &["routes", "--config", gw.config_path.to_str().unwrap()],
            &[("KEYGATE_ROOT_KEY", "")],
        )
        .await;
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains(&format!("127.0.0.1:{}", up.addr.port())), "{table}");
}

/// An HTTP/2-only (prior knowledge) server answering like a gRPC service:
/// echoes the body, then sends `grpc-status` as a trailer.
async fn h2c_grpc_server() -> (SocketAddr, Arc<std::sync::Mutex<Vec<String>>>) {
    let versions = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = versions.clone();
    let (addr, _) = serve_loopback(move |stream| {
        let seen = seen.clone();
        async move {
            let svc = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                let seen = seen.clone();
                async move {
                    seen.lock().unwrap().push(format!("{:?}", req.version()));
                    let body = req
                        .into_body()
                        .collect()
                        .await
                        .map(|b| b.to_bytes())
                        .unwrap_or_default();
                    let mut trailers = http::HeaderMap::new();
                    trailers.insert("grpc-status", "0".parse().unwrap());
                    trailers.insert("grpc-message", "fine".parse().unwrap());
                    let frames = vec![
                        Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(body)),
                        Ok(hyper::body::Frame::trailers(trailers)),
                    ];
                    let body = http_body_util::StreamBody::new(futures_util::stream::iter(frames));
                    let resp = hyper::Response::builder()
                        .header("content-type", "application/grpc")
                        .body(body)
                        .unwrap();
                    Ok::<_, std::convert::Infallible>(resp)
                }
            });
            let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        }
    })
    .await;
    (addr, versions)
}

#[tokio::test(flavor = "multi_thread")]
async fn h2c_upstream_carries_grpc_with_trailers() {
    let (upstream, versions) = h2c_grpc_server().await;
    let https_port = free_port();
    let tmp = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["grpc.test".to_string()]).unwrap();
    let certs_dir = tmp.path().join("certs");
    std::fs::create_dir_all(&certs_dir).unwrap();
    std::fs::write(certs_dir.join("grpc.crt"), cert.cert.pem()).unwrap();
    std::fs::write(certs_dir.join("grpc.key"), cert.key_pair.serialize_pem()).unwrap();
    let yaml = format!(
        "listen:\n  http: \"@HTTP@\"\n  https: \"127.0.0.1:{https_port}\"\n  admin: \"@ADMIN@\"\ntls:\n  certs_dir: {}\n  redirect_http: false\ndeployments:\n  - id: grpc\n    instances: [\"{upstream}\"]\n    upstream: {{protocol: h2c}}\nroutes:\n  - host: grpc.test\n    deployment: grpc\n",
        certs_dir.display()
    );
    let _gw = Gateway::start(&yaml).await;

    // A gRPC client: HTTP/2 over TLS to the gateway, trusting the test certificate.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", https_port)).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("grpc.test").unwrap();
    let tls = connector.connect(name, tcp).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);

    let message = Bytes::from_static(b"\x00\x00\x00\x00\x05hello");
    let request = hyper::Request::post("https://grpc.test/helloworld.Greeter/SayHello")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::new(message.clone()))
        .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(10), sender.send_request(request))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/grpc");
    let collected = response.into_body().collect().await.unwrap();
    let trailers = collected.trailers().cloned().expect("trailers reach the client");
    assert_eq!(trailers["grpc-status"], "0");
    assert_eq!(trailers["grpc-message"], "fine");
    assert_eq!(collected.to_bytes(), message, "the message round-trips byte for byte");
    assert_eq!(
        versions.lock().unwrap().as_slice(),
        ["HTTP/2.0"],
        "the instance was spoken to over HTTP/2"
    );
}
