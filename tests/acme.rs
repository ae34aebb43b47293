//! Automatic certificates against a real Pebble with
//! real HTTP-01 validation: issuance and serving, reuse after a restart,
//! hosts added by a hot reload, renewal, a CA outage that serving never
//! notices while retries back off, and replicas sharing one order through
//! Redis.

mod support;

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use support::gateway::{Gateway, Launch};
use support::net::{free_addr, free_port};
use support::pebble::Pebble;
use support::redis::Redis;
use support::tls::{https_get, tls_handshake, TLS_ANY};
use support::wait::{poll_until, WAIT};

/// Issuance (order, HTTP-01 validation through the gateway, finalisation)
/// takes about a second against Pebble; allow for a loaded machine.
const ISSUE_WAIT: Duration = Duration::from_secs(60);
const ORDERS: &str = "keygate_acme_orders_total";

/// A gateway whose plain listener is `@HTTP@` (Pebble validates there),
/// with ACME from `pebble` for the routes of `hosts`, state in `state`.
fn template(https: SocketAddr, pebble: &Pebble, state: &Path, hosts: &[&str]) -> String {
    replica_template(https, pebble, state, hosts, None)
}

/// [`template`] with `state.redis` set to `redis`.
fn replica_template(https: SocketAddr, pebble: &Pebble, state: &Path, hosts: &[&str], redis: Option<&Redis>) -> String {
    let mut routes = String::from(if hosts.is_empty() { " []\n" } else { "\n" });
    for host in hosts {
        routes.push_str(&format!("  - host: \"{host}\"\n    deployment: app\n"));
    }
    let redis = redis.map(|r| format!("  redis: \"{}\"\n", r.url())).unwrap_or_default();
    format!(
        "listen:\n  http: \"@HTTP@\"\n  https: \"{https}\"\n  admin: \"@ADMIN@\"\n\
         tls:\n  acme:\n    directory: \"{}\"\n    email: ops@example.com\n    ca_roots: \"{}\"\n    hosts: auto\n\
         state:\n  dir: \"{}\"\n{redis}\
         deployments:\n  - id: app\n    instances: [\"builtin:echo\"]\n\
         routes:{routes}",
        pebble.directory,
        pebble.root_pem.display(),
        state.display()
    )
}

/// Waits until `host` is served a certificate issued by Pebble; returns it (DER).
async fn wait_for_pebble_cert(gw: &Gateway, https: SocketAddr, host: &str) -> Vec<u8> {
    poll_until(
        format!("a Pebble certificate for {host}\n{}", gw.logs()),
        ISSUE_WAIT,
        || async {
            let hs = tls_handshake(https, host, TLS_ANY, &[]).await.ok()?;
            (hs.issuer.contains("Pebble") && hs.sans == [host]).then_some(hs.leaf)
        },
    )
    .await
}

async fn orders(gw: &Gateway, result: &str) -> f64 {
    gw.metric(&format!("{ORDERS}{{result=\"{result}\"}}")).await
}

#[tokio::test]
async fn a_route_host_gets_a_served_pebble_certificate_that_a_restart_reuses() {
    let http_port = free_port();
    let pebble = Pebble::start(http_port).await;
    let state = tempfile::tempdir().unwrap();
    let https = free_addr();
    let config = template(
        https,
        &pebble,
        state.path(),
        &["app.example.com", "localhost", "*.w.example.com"],
    );
    let gw = Launch::new(config.clone()).http_port(http_port).start().await;
    assert_eq!(orders(&gw, "success").await, 0.0, "counters exist from start-up");
    assert_eq!(
        gw.metric_opt(&format!("{ORDERS}{{result=\"failure\"}}")).await,
        Some(0.0)
    );

    let issued = wait_for_pebble_cert(&gw, https, "app.example.com").await;
    let resp = https_get(https, "app.example.com", "/hello?x=1").await.unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.json()["headers"]["x-forwarded-proto"], "https");
    gw.wait_metric(&format!("{ORDERS}{{result=\"success\"}}"), 1.0).await;
    assert_eq!(orders(&gw, "failure").await, 0.0);
    // Only the one orderable host: `localhost` and the wildcard are skipped, and say so.
    assert_eq!(pebble.issued(), 1);
    let logs = gw.stderr();
    assert!(logs.contains("DNS-01"), "wildcard skip not logged:\n{logs}");

    let key = std::fs::read_dir(state.path().join("acme"))
        .unwrap()
        .next()
        .expect("a directory per CA")
        .unwrap()
        .path()
        .join("certs/app.example.com.key");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{}", key.display());
    let key_pem = std::fs::read_to_string(&key).unwrap();
    assert!(
        !logs.contains(key_pem.lines().nth(1).unwrap()),
        "key material in the logs"
    );
    drop(gw);

    // A restart serves the saved certificate and orders nothing.
    let https = free_addr();
    let config = template(
        https,
        &pebble,
        state.path(),
        &["app.example.com", "localhost", "*.w.example.com"],
    );
    let gw = Launch::new(config).http_port(http_port).start().await;
    let served = poll_until(format!("the saved certificate served\n{}", gw.logs()), WAIT, || async {
        let hs = tls_handshake(https, "app.example.com", TLS_ANY, &[]).await.ok()?;
        hs.issuer.contains("Pebble").then_some(hs.leaf)
    })
    .await;
    assert_eq!(
        served, issued,
        "the restarted gateway serves the certificate issued before"
    );
    assert_eq!(orders(&gw, "success").await + orders(&gw, "failure").await, 0.0);
    assert_eq!(pebble.issued(), 1, "Pebble issued a second certificate");
}

#[tokio::test]
async fn reloaded_hosts_get_certificates_and_a_ca_outage_only_delays_orders() {
    let http_port = free_port();
    let mut pebble = Pebble::start(http_port).await;
    let state = tempfile::tempdir().unwrap();
    let https = free_addr();
    let gw = Launch::new(template(https, &pebble, state.path(), &["a.example.com"]))
        .http_port(http_port)
        .env("KEYGATE_ACME_RETRY_BASE", "400ms")
        .start()
        .await;
    let a = wait_for_pebble_cert(&gw, https, "a.example.com").await;

    // A host added by a hot reload gets its own certificate.
    gw.write_config(&template(
        https,
        &pebble,
        state.path(),
        &["a.example.com", "b.example.com"],
    ));
    let b = wait_for_pebble_cert(&gw, https, "b.example.com").await;
    gw.wait_metric(&format!("{ORDERS}{{result=\"success\"}}"), 2.0).await;

    // The CA goes away; a new host cannot be ordered and is retried with backoff.
    pebble.stop();
    gw.write_config(&template(
        https,
        &pebble,
        state.path(),
        &["a.example.com", "b.example.com", "c.example.com"],
    ));
    gw.wait_metric_at_least(&format!("{ORDERS}{{result=\"failure\"}}"), 3.0)
        .await;

    // Serving never noticed: issued hosts keep their certificates, the
    // pending one gets the default.
    for (host, leaf) in [("a.example.com", &a), ("b.example.com", &b)] {
        let hs = tls_handshake(https, host, TLS_ANY, &[]).await.unwrap();
        assert_eq!(&hs.leaf, leaf, "{host}");
        assert_eq!(https_get(https, host, "/").await.unwrap().status, 200, "{host}");
    }
    let pending = tls_handshake(https, "c.example.com", TLS_ANY, &[]).await.unwrap();
    assert_eq!(pending.sans, vec!["keygate.invalid".to_string()]);
    assert_eq!(https_get(https, "c.example.com", "/").await.unwrap().status, 200);

    // Each wait is at least the previous one (base 400ms doubling, equal jitter).
    let delays: Vec<u64> = gw
        .stderr()
        .lines()
        .filter(|l| l.contains("ACME order failed") && l.contains("c.example.com"))
        .filter_map(|l| l.split("retry_in_ms=").nth(1)?.split_whitespace().next()?.parse().ok())
        .collect();
    assert!(delays.len() >= 3, "failures logged: {delays:?}\n{}", gw.logs());
    assert!(
        delays.windows(2).all(|w| w[1] >= w[0]) && delays[2] >= 800,
        "retry delays do not back off: {delays:?}"
    );
}

#[tokio::test]
async fn a_certificate_is_renewed_before_it_expires() {
    // 20 s certificates: `renew_before` (30 d by default) is capped at half
    // the lifetime, so renewal comes about 10 s after issuance.
    let http_port = free_port();
    let pebble = Pebble::start_with_validity(http_port, Some(Duration::from_secs(20))).await;
    let state = tempfile::tempdir().unwrap();
    let https = free_addr();
    let gw = Launch::new(template(https, &pebble, state.path(), &["r.example.com"]))
        .http_port(http_port)
        .start()
        .await;
    let first = wait_for_pebble_cert(&gw, https, "r.example.com").await;

    let renewed = poll_until(format!("a renewed certificate\n{}", gw.logs()), ISSUE_WAIT, || async {
        let hs = tls_handshake(https, "r.example.com", TLS_ANY, &[]).await.ok()?;
        (hs.issuer.contains("Pebble") && hs.leaf != first).then_some(hs.leaf)
    })
    .await;
    assert_ne!(renewed, first);
    assert_eq!(orders(&gw, "success").await, 2.0);
    assert_eq!(pebble.issued(), 2);
}

#[tokio::test]
async fn replicas_share_challenge_tokens_and_certificates_through_redis() {
    // Pebble (the "load balancer") reaches replica A only; replica B orders.
    let redis = Redis::start().await;
    let a_http = free_port();
    let pebble = Pebble::start(a_http).await;
    let (a_state, b_state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a_https, b_https) = (free_addr(), free_addr());
    let a = Launch::new(replica_template(a_https, &pebble, a_state.path(), &[], Some(&redis)))
        .http_port(a_http)
        .start()
        .await;
    let b = Gateway::start(&replica_template(
        b_https,
        &pebble,
        b_state.path(),
        &["x.example.com"],
        Some(&redis),
    ))
    .await;

    // B's token was answered by A, through Redis.
    let issued = wait_for_pebble_cert(&b, b_https, "x.example.com").await;
    assert_eq!(orders(&b, "success").await, 1.0);

    // A gets the host by a reload and installs B's certificate instead of ordering.
    a.write_config(&replica_template(
        a_https,
        &pebble,
        a_state.path(),
        &["x.example.com"],
        Some(&redis),
    ));
    let served = wait_for_pebble_cert(&a, a_https, "x.example.com").await;
    assert_eq!(served, issued, "replica A serves the certificate B was issued");
    assert_eq!(orders(&a, "success").await + orders(&a, "failure").await, 0.0);
    assert_eq!(pebble.issued(), 1);
}

#[tokio::test]
async fn replicas_wanting_the_same_host_order_it_once() {
    let redis = Redis::start().await;
    let a_http = free_port();
    let pebble = Pebble::start(a_http).await;
    let (a_state, b_state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a_https, b_https) = (free_addr(), free_addr());
    let hosts = ["y.example.com"];
    let b_config = replica_template(b_https, &pebble, b_state.path(), &hosts, Some(&redis));
    let (a, b) = tokio::join!(
        Launch::new(replica_template(a_https, &pebble, a_state.path(), &hosts, Some(&redis)))
            .http_port(a_http)
            .start(),
        Gateway::start(&b_config),
    );

    let from_a = wait_for_pebble_cert(&a, a_https, "y.example.com").await;
    let from_b = wait_for_pebble_cert(&b, b_https, "y.example.com").await;
    assert_eq!(from_a, from_b, "both replicas serve the one certificate");
    assert_eq!(orders(&a, "success").await + orders(&b, "success").await, 1.0);
    assert_eq!(pebble.issued(), 1);
}
