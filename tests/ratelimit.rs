//! Rate limiting with in-memory counters: the `ratelimit` policy and its identifiers (remote IP through
//! trusted proxies, header, authenticated subject, path, Principal field),
//! escaping of identifier parts, buckets per deployment and policy,
//! epoch-aligned sliding windows, rejected requests not counting, the
//! rate-limit headers (one of each, from the most restrictive limit, also
//! when keyauth key limits are evaluated), exact counting under
//! concurrency, `POST /v2/ratelimit.limit`, load-time errors and reload.
//!
//! Time-sensitive tests use 2 s windows and start their bursts in the first
//! fifth of a window; the others use 60 s windows, where crossing a window
//! boundary changes nothing the test can observe (the previous window's
//! count decays by less than one request in the first 12 s).

mod support;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use support::gateway::Gateway;
use support::load_errors::{assert_load_error, check_config};
use support::problem::assert_problem;
use support::upstreams::Upstream;
use support::wait::{poll_until, wait_for, RELOAD_DEADLINE};

const ROOT: &str = "root_test_key";
const RATE_LIMITED: &str = "err:frontline:client:rate_limited";
const USAGE_EXCEEDED: &str = "err:frontline:client:usage_exceeded";
const INVALID_INPUT: &str = "err:unkey:application:invalid_input";

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

/// Unix ms at the end of the `window_ms` window that `t_ms` falls in.
fn window_end(t_ms: u64, window_ms: u64) -> u64 {
    (t_ms / window_ms + 1) * window_ms
}

/// Waits (bounded) until the wall clock is in the first fifth of a
/// `window_ms` window, so a burst that follows stays inside one window.
async fn align_to_window_start(window_ms: u64) {
    poll_until(
        format!("the first fifth of a {window_ms} ms window"),
        Duration::from_millis(window_ms + 2_000),
        || async move { (now_ms() % window_ms < window_ms / 5).then_some(()) },
    )
    .await;
}

/// Waits (bounded) until the clock is inside window `index` (of `window_ms`)
/// at an elapsed fraction in `[lo, hi)`; panics if that slot has passed.
async fn wait_for_slot(window_ms: u64, index: u64, lo: f64, hi: f64) {
    let start = index * window_ms + (lo * window_ms as f64) as u64;
    let end = index * window_ms + (hi * window_ms as f64) as u64;
    let timeout = Duration::from_millis(start.saturating_sub(now_ms()) + 1_000);
    poll_until(format!("clock in [{start}, {end}) ms"), timeout, || async move {
        let now = now_ms();
        assert!(
            now < end,
            "missed the slot [{start}, {end}) of window {index}: now {now} (machine too slow?)"
        );
        (now >= start).then_some(())
    })
    .await;
}

/// The rate-limit headers of a response; each may appear at most once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Limits {
    limit: Option<u64>,
    remaining: Option<u64>,
    reset: Option<u64>,
    retry_after: Option<u64>,
}

fn limits(resp: &reqwest::Response) -> Limits {
    let one = |name: &str| -> Option<u64> {
        let all: Vec<&str> = resp
            .headers()
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert!(all.len() <= 1, "{name} appears {} times: {all:?}", all.len());
        all.first().map(|v| {
            v.trim()
                .parse()
                .unwrap_or_else(|e| panic!("{name}: {v:?} is not a number ({e})"))
        })
    };
    Limits {
        limit: one("x-ratelimit-limit"),
        remaining: one("x-ratelimit-remaining"),
        reset: one("x-ratelimit-reset"),
        retry_after: one("retry-after"),
    }
}

/// `(X-RateLimit-Limit, X-RateLimit-Remaining)` of a response, both required.
fn limit_and_remaining(resp: &reqwest::Response) -> (u64, u64) {
    let l = limits(resp);
    (
        l.limit
            .unwrap_or_else(|| panic!("X-RateLimit-Limit missing: {:?}", resp.headers())),
        l.remaining
            .unwrap_or_else(|| panic!("X-RateLimit-Remaining missing: {:?}", resp.headers())),
    )
}

/// A GET to `host` with extra request headers (repeated names are sent as
/// repeated header lines).
async fn get(gw: &Gateway, host: &str, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut request = gw.get(host, path);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap_or_else(|e| panic!("GET {host}{path}: {e}"))
}

/// Asserts an admitted response carrying `(limit, remaining)`.
async fn admitted(gw: &Gateway, host: &str, path: &str, headers: &[(&str, &str)], want: (u64, u64), what: &str) {
    let resp = get(gw, host, path, headers).await;
    let status = resp.status().as_u16();
    let got = limits(&resp);
    assert_eq!(
        status,
        200,
        "{what}: expected 200, headers {got:?}, body {}",
        resp.text().await.unwrap_or_default()
    );
    assert_eq!(
        (got.limit, got.remaining),
        (Some(want.0), Some(want.1)),
        "{what}: limit/remaining"
    );
    assert_eq!(got.retry_after, None, "{what}: no Retry-After on success");
}

/// Asserts a `rate_limited` 429 problem with Retry-After; returns its headers.
async fn limited(resp: reqwest::Response, what: &str) -> Limits {
    let got = limits(&resp);
    assert_eq!(resp.status(), 429, "{what}: expected 429, headers {got:?}");
    let retry = got
        .retry_after
        .unwrap_or_else(|| panic!("{what}: Retry-After on a rate_limited 429"));
    assert!(retry >= 1, "{what}: Retry-After {retry} >= 1");
    assert_eq!(got.remaining, Some(0), "{what}: remaining on a 429");
    assert_problem(resp, 429, RATE_LIMITED, "Too Many Requests").await;
    got
}

async fn status_of(gw: &Gateway, host: &str, path: &str, headers: &[(&str, &str)]) -> u16 {
    get(gw, host, path, headers).await.status().as_u16()
}

/// `ratelimit: {...}` policy line (flow YAML, indented for a deployment's list).
fn rl(id: &str, limit: u64, window: &str, identifiers: Option<&str>) -> String {
    let identifiers = identifiers.map(|i| format!(", identifiers: {i}")).unwrap_or_default();
    format!("      - {{id: {id}, ratelimit: {{limit: {limit}, window: {window}{identifiers}}}}}\n")
}

const KEYSPACES: &str = r#"keyspaces:
  - id: ks_main
    keys:
      - {id: key_alice1, key: sk_alice1, identity: {external_id: alice}, meta: {org_id: acme}}
      - {id: key_alice2, key: sk_alice2, identity: {external_id: alice}, meta: {org_id: beta}}
      - {id: key_bob, key: sk_bob, meta: {org_id: acme}}
      - {id: key_nometa1, key: sk_nometa1}
      - {id: key_nometa2, key: sk_nometa2}
      - {id: key_tight, key: sk_tight, ratelimits: [{name: burst, limit: 2, duration: 60s}]}
      - {id: key_loose, key: sk_loose, ratelimits: [{name: burst, limit: 10, duration: 60s}]}
      - {id: key_broke, key: sk_broke, credits: {remaining: 0}}
"#;

/// A config with the root key, trusted loopback proxy, the test keyspace and
/// one deployment per `(name, policies)`, routed from `<name>.test`.
fn config(instance: &str, deployments: &[(&str, String)]) -> String {
    let mut text =
        format!("trusted_proxies: [\"127.0.0.1/32\"]\nadmin:\n  root_keys: [\"{ROOT}\"]\n{KEYSPACES}deployments:\n");
    for (name, policies) in deployments {
        text.push_str(&format!("  - id: dep_{name}\n    instances: [\"{instance}\"]\n"));
        if !policies.is_empty() {
            text.push_str(&format!("    policies:\n{policies}"));
        }
    }
    text.push_str("routes:\n");
    for (name, _) in deployments {
        text.push_str(&format!(
            "  - host: {}.test\n    deployment: dep_{name}\n",
            name.replace('_', "-")
        ));
    }
    text
}

const KEYAUTH: &str = "      - {id: auth, keyauth: {keyspaces: [ks_main], credits: 0}}\n";

// ---------------------------------------------------------------------------
// The policy: counting, rejection, headers
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn policy_limit_admits_up_to_the_limit_then_429_with_headers() {
    const W: u64 = 2_000;
    let up = Upstream::counting("app").await;
    let gw = Gateway::start(&config(&up.addr_str(), &[("app", rl("rl", 3, "2s", None))])).await;
    assert_eq!(
        gw.metric_opt("keygate_ratelimit_backend_errors_total").await,
        Some(0.0),
        "keygate_ratelimit_backend_errors_total is exported at 0 from start-up"
    );

    align_to_window_start(W).await;
    let t0 = now_ms();
    let mut resets = Vec::new();
    for remaining in [2, 1, 0] {
        let resp = get(&gw, "app.test", "/", &[]).await;
        let got = limits(&resp);
        assert_eq!(resp.status(), 200, "{got:?}");
        assert_eq!(
            (got.limit, got.remaining, got.retry_after),
            (Some(3), Some(remaining), None),
            "{got:?}"
        );
        resets.push(got.reset.expect("X-RateLimit-Reset on success"));
    }
    let over = get(&gw, "app.test", "/", &[]).await;
    let t1 = now_ms();
    let got = limited(over, "4th request in the window").await;
    assert_eq!(got.limit, Some(3));
    resets.push(got.reset.expect("X-RateLimit-Reset on 429"));
    // Reset: unix seconds at the end of the current (epoch-aligned) window.
    let ends = [window_end(t0, W) / 1000, window_end(t1, W) / 1000];
    for reset in &resets {
        assert!(
            ends.contains(reset),
            "X-RateLimit-Reset {reset} is the end of the 2 s window ({ends:?})"
        );
    }
    let retry = got.retry_after.unwrap();
    assert!((1..=2).contains(&retry), "Retry-After {retry} within the 2 s window");
    assert_eq!(up.hits(), 3, "the rejected request never reached the instance");

    gw.wait_metric(
        r#"keygate_policy_decisions_total{policy_type="ratelimit",decision="deny"}"#,
        1.0,
    )
    .await;
    gw.wait_metric(
        &format!(r#"keygate_requests_total{{status="429",error_code="{RATE_LIMITED}"}}"#),
        1.0,
    )
    .await;
    assert_eq!(
        gw.metric("keygate_ratelimit_backend_errors_total").await,
        0.0,
        "memory backend never errs"
    );

    // Not a permanent block: the window slides on.
    wait_for(
        "admitted again once the window has moved on",
        Duration::from_millis(3 * W + 1_000),
        || async { status_of(&gw, "app.test", "/", &[]).await == 200 },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sliding_window_weighs_the_previous_window_and_rejections_do_not_count() {
    const W: u64 = 2_000;
    let gw = Gateway::start(&config("builtin:echo", &[("app", rl("rl", 3, "2s", None))])).await;
    align_to_window_start(W).await;
    let index = now_ms() / W;
    for _ in 0..3 {
        assert_eq!(status_of(&gw, "app.test", "/", &[]).await, 200);
    }
    // Ten rejections in the same window: they must not count.
    for i in 0..10 {
        assert_eq!(status_of(&gw, "app.test", "/", &[]).await, 429, "rejection {i}");
    }
    assert_eq!(now_ms() / W, index, "the burst stayed inside one window");

    // Early in the next window the previous 3 still weigh ~3 × (1 − f) > 2:
    // a fixed window would admit here, a sliding one does not.
    wait_for_slot(W, index + 1, 0.0, 0.25).await;
    limited(get(&gw, "app.test", "/", &[]).await, "early in the next window").await;

    // Half-way: 3 × ~0.5 + 1 <= 3 → admitted (had the 10 rejections counted,
    // 13 × ~0.5 + 1 > 3 would still reject); a second request is over again.
    wait_for_slot(W, index + 1, 0.42, 0.62).await;
    let resp = get(&gw, "app.test", "/", &[]).await;
    let got = limits(&resp);
    assert_eq!(
        resp.status(),
        200,
        "half-way through the next window the weighted count leaves room: {got:?}"
    );
    assert_eq!((got.limit, got.remaining), (Some(3), Some(0)), "3 − ceil(~1.5 + 1)");
    assert_eq!(
        got.reset,
        Some(window_end((index + 1) * W, W) / 1000),
        "reset is the end of the new window"
    );
    limited(get(&gw, "app.test", "/", &[]).await, "second request half-way").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_burst_admits_exactly_the_limit() {
    const W: u64 = 4_000;
    let up = Upstream::counting("app").await;
    let gw = Arc::new(Gateway::start(&config(&up.addr_str(), &[("app", rl("rl", 20, "4s", None))])).await);
    align_to_window_start(W).await;
    let index = now_ms() / W;
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let gw = gw.clone();
            tokio::spawn(async move {
                let resp = get(&gw, "app.test", "/", &[]).await;
                let status = resp.status().as_u16();
                let (_, remaining) = limit_and_remaining(&resp);
                (status, remaining)
            })
        })
        .collect();
    let mut remaining_seen = Vec::new();
    let mut rejected = 0;
    for task in tasks {
        match task.await.unwrap() {
            (200, remaining) => remaining_seen.push(remaining),
            (429, remaining) => {
                assert_eq!(remaining, 0);
                rejected += 1;
            }
            (other, _) => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(
        now_ms() / W,
        index,
        "the burst stayed inside one window (machine too slow?)"
    );
    remaining_seen.sort();
    assert_eq!(
        remaining_seen,
        (0..20).collect::<Vec<u64>>(),
        "exactly 20 admitted, each saw its own remaining"
    );
    assert_eq!(rejected, 44);
    assert_eq!(up.hits(), 20);
}

// ---------------------------------------------------------------------------
// Identifiers
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn remote_ip_is_the_default_identifier_and_honours_trusted_proxies() {
    let gw = Gateway::start(&config("builtin:echo", &[("app", rl("rl", 2, "60s", None))])).await;
    let xff = |ip: &'static str| [("x-forwarded-for", ip)];

    admitted(&gw, "app.test", "/", &xff("203.0.113.1"), (2, 1), "client 1, first").await;
    admitted(&gw, "app.test", "/", &xff("203.0.113.1"), (2, 0), "client 1, second").await;
    limited(get(&gw, "app.test", "/", &xff("203.0.113.1")).await, "client 1, third").await;

    admitted(
        &gw,
        "app.test",
        "/",
        &xff("203.0.113.2"),
        (2, 1),
        "client 2 has its own bucket",
    )
    .await;
    // From the trusted peer, the right-most untrusted address is the client.
    admitted(
        &gw,
        "app.test",
        "/",
        &xff("198.51.100.9, 203.0.113.2"),
        (2, 0),
        "client 2 behind another proxy",
    )
    .await;
    limited(get(&gw, "app.test", "/", &xff("203.0.113.2")).await, "client 2, third").await;
    admitted(&gw, "app.test", "/", &[], (2, 1), "the peer itself (127.0.0.1)").await;
    admitted(&gw, "app.test", "/", &xff("2001:db8::7"), (2, 1), "an IPv6 client").await;

    // Without trusted proxies, X-Forwarded-For is not believed: one bucket for the peer.
    let untrusted = config("builtin:echo", &[("app", rl("rl", 2, "60s", None))])
        .replace("trusted_proxies: [\"127.0.0.1/32\"]\n", "");
    let gw = Gateway::start(&untrusted).await;
    admitted(
        &gw,
        "app.test",
        "/",
        &xff("203.0.113.1"),
        (2, 1),
        "untrusted peer, spoofed client 1",
    )
    .await;
    admitted(
        &gw,
        "app.test",
        "/",
        &xff("203.0.113.2"),
        (2, 0),
        "untrusted peer, spoofed client 2",
    )
    .await;
    limited(
        get(&gw, "app.test", "/", &xff("203.0.113.3")).await,
        "untrusted peer, spoofed client 3",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn header_identifier_takes_the_first_value_and_unknown_when_missing() {
    let policy = rl("rl", 2, "60s", Some("[{header: {name: X-Tenant-Id}}]"));
    let gw = Gateway::start(&config("builtin:echo", &[("app", policy)])).await;

    // Missing header → "unknown": shared by every client without it, whatever its IP.
    admitted(
        &gw,
        "app.test",
        "/",
        &[("x-forwarded-for", "203.0.113.1")],
        (2, 1),
        "no header, client 1",
    )
    .await;
    admitted(
        &gw,
        "app.test",
        "/",
        &[("x-forwarded-for", "203.0.113.2")],
        (2, 0),
        "no header, client 2",
    )
    .await;
    limited(
        get(&gw, "app.test", "/", &[("x-forwarded-for", "203.0.113.3")]).await,
        "no header, client 3",
    )
    .await;

    // Tenants have their own buckets, shared across client IPs.
    let a = ("x-tenant-id", "tenant-a");
    admitted(
        &gw,
        "app.test",
        "/",
        &[a, ("x-forwarded-for", "203.0.113.1")],
        (2, 1),
        "tenant a",
    )
    .await;
    admitted(
        &gw,
        "app.test",
        "/",
        &[("X-TENANT-ID", "tenant-a"), ("x-forwarded-for", "203.0.113.9")],
        (2, 0),
        "tenant a again",
    )
    .await;
    limited(get(&gw, "app.test", "/", &[a]).await, "tenant a, third").await;

    // Several values: the first one is the bucket.
    let both = [("x-tenant-id", "tenant-b"), ("x-tenant-id", "tenant-c")];
    admitted(&gw, "app.test", "/", &both, (2, 1), "b then c").await;
    admitted(&gw, "app.test", "/", &both, (2, 0), "b then c again").await;
    limited(
        get(&gw, "app.test", "/", &[("x-tenant-id", "tenant-b")]).await,
        "tenant b alone",
    )
    .await;
    admitted(
        &gw,
        "app.test",
        "/",
        &[("x-tenant-id", "tenant-c")],
        (2, 1),
        "tenant c was never counted",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn identifier_parts_are_escaped_so_different_tuples_never_share() {
    let policy = rl("rl", 1, "60s", Some("[{header: {name: X-A}}, {header: {name: X-B}}]"));
    let gw = Gateway::start(&config("builtin:echo", &[("app", policy)])).await;
    // Every tuple differs from every other one; naive joining with any common
    // separator (or escaping that is not injective) makes some of them collide.
    let tuples: &[(Option<&str>, Option<&str>)] = &[
        (Some("a:b"), Some("c")),
        (Some("a"), Some("b:c")),
        (Some("a|b"), Some("c")),
        (Some("a"), Some("b|c")),
        (Some("a/b"), Some("c")),
        (Some("a"), Some("b/c")),
        (Some("a,b"), Some("c")),
        (Some("a"), Some("b,c")),
        (Some("a\\"), Some("b")),
        (Some("a"), Some("\\b")),
        (Some("a\\:b"), Some("c")),
        (Some("a\\"), Some(":b:c")),
        (Some("a%3Ab"), Some("c")),
        (Some("a b"), Some("c")),
        (Some("a"), Some("b c")),
        (None, Some("u:v")),
        (Some("unknown:u"), Some("v")),
        (Some("x"), None),
        (Some("x:unknown"), None),
    ];
    let headers = |t: &(Option<&'static str>, Option<&'static str>)| {
        let mut h = Vec::new();
        if let Some(a) = t.0 {
            h.push(("x-a", a));
        }
        if let Some(b) = t.1 {
            h.push(("x-b", b));
        }
        h
    };
    for t in tuples {
        let resp = get(&gw, "app.test", "/", &headers(t)).await;
        assert_eq!(
            resp.status(),
            200,
            "{t:?} must have a bucket of its own (first request); {:?}",
            limits(&resp)
        );
    }
    for t in tuples {
        assert_eq!(
            status_of(&gw, "app.test", "/", &headers(t)).await,
            429,
            "{t:?}: second request in its bucket"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn path_identifier_ignores_the_query() {
    let gw = Gateway::start(&config(
        "builtin:echo",
        &[("app", rl("rl", 1, "60s", Some("[{path: {}}]")))],
    ))
    .await;
    admitted(&gw, "app.test", "/a", &[], (1, 0), "/a").await;
    limited(get(&gw, "app.test", "/a?x=1", &[]).await, "/a?x=1 is /a").await;
    admitted(&gw, "app.test", "/b?y=2", &[], (1, 0), "/b").await;
    limited(
        get(&gw, "app.test", "/b", &[("x-forwarded-for", "203.0.113.5")]).await,
        "/b from another client",
    )
    .await;
    admitted(&gw, "app.test", "/a/b", &[], (1, 0), "/a/b").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn authenticated_subject_and_principal_field_identifiers() {
    let subject = format!("{KEYAUTH}{}", rl("rl", 2, "60s", Some("[{authenticated_subject: {}}]")));
    let org = format!(
        "{KEYAUTH}{}",
        rl(
            "rl",
            2,
            "60s",
            Some("[{principal_field: {path: source.key.meta.org_id}}]")
        )
    );
    let anonymous = rl("rl", 1, "60s", Some("[{authenticated_subject: {}}]"));
    let gw = Gateway::start(&config(
        "builtin:echo",
        &[("subject", subject), ("org", org), ("anon", anonymous)],
    ))
    .await;
    let bearer = |key: &'static str| [("authorization", format!("Bearer {key}"))];
    async fn with(gw: &Gateway, host: &str, auth: &[(&str, String)]) -> reqwest::Response {
        get(gw, host, "/", &[(auth[0].0, auth[0].1.as_str())]).await
    }

    // Subject = identity external id when the key has one: two keys of alice share.
    let resp = with(&gw, "subject.test", &bearer("sk_alice1")).await;
    assert_eq!((resp.status().as_u16(), limit_and_remaining(&resp)), (200, (2, 1)));
    let resp = with(&gw, "subject.test", &bearer("sk_alice2")).await;
    assert_eq!(
        (resp.status().as_u16(), limit_and_remaining(&resp)),
        (200, (2, 0)),
        "alice's second key shares her bucket"
    );
    limited(with(&gw, "subject.test", &bearer("sk_alice1")).await, "alice, third").await;
    let resp = with(&gw, "subject.test", &bearer("sk_bob")).await;
    assert_eq!(
        (resp.status().as_u16(), limit_and_remaining(&resp)),
        (200, (2, 1)),
        "bob (subject = key id) is separate"
    );

    // Principal field: source.key.meta.org_id; keys without it share "unknown".
    for (key, want, what) in [
        ("sk_alice1", (2, 1), "acme, first"),
        ("sk_bob", (2, 0), "acme, bob's key"),
        ("sk_alice2", (2, 1), "beta"),
        ("sk_nometa1", (2, 1), "no org"),
        ("sk_nometa2", (2, 0), "no org, another key"),
    ] {
        let resp = with(&gw, "org.test", &bearer(key)).await;
        assert_eq!(
            (resp.status().as_u16(), limit_and_remaining(&resp)),
            (200, want),
            "{what}"
        );
    }
    limited(with(&gw, "org.test", &bearer("sk_alice1")).await, "acme, third").await;
    limited(with(&gw, "org.test", &bearer("sk_nometa1")).await, "no org, third").await;
    let resp = with(&gw, "org.test", &bearer("sk_alice2")).await;
    assert_eq!(
        (resp.status().as_u16(), limit_and_remaining(&resp)),
        (200, (2, 0)),
        "beta, second"
    );

    // No auth policy before it: the subject is missing → "unknown" for everyone.
    assert_eq!(
        status_of(&gw, "anon.test", "/", &[("x-forwarded-for", "203.0.113.1")]).await,
        200
    );
    let other = get(
        &gw,
        "anon.test",
        "/",
        &[("x-forwarded-for", "203.0.113.2"), ("authorization", "Bearer sk_bob")],
    )
    .await;
    limited(other, "unauthenticated requests share the unknown subject").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn composite_identifiers_and_buckets_per_deployment_and_policy() {
    let combo = rl("rl", 1, "60s", Some("[{remote_ip: {}}, {header: {name: X-Tenant-Id}}]"));
    let same = rl("rl", 1, "60s", None);
    let two = format!("{}{}", rl("rl_a", 2, "60s", None), rl("rl_b", 2, "60s", None));
    let gw = Gateway::start(&config(
        "builtin:echo",
        &[("combo", combo), ("x", same.clone()), ("y", same), ("two", two)],
    ))
    .await;

    let ip1t1 = [("x-forwarded-for", "203.0.113.1"), ("x-tenant-id", "t1")];
    assert_eq!(status_of(&gw, "combo.test", "/", &ip1t1).await, 200);
    limited(get(&gw, "combo.test", "/", &ip1t1).await, "same ip and tenant").await;
    assert_eq!(
        status_of(
            &gw,
            "combo.test",
            "/",
            &[("x-forwarded-for", "203.0.113.2"), ("x-tenant-id", "t1")]
        )
        .await,
        200,
        "other ip"
    );
    assert_eq!(
        status_of(
            &gw,
            "combo.test",
            "/",
            &[("x-forwarded-for", "203.0.113.1"), ("x-tenant-id", "t2")]
        )
        .await,
        200,
        "other tenant"
    );
    assert_eq!(
        status_of(&gw, "combo.test", "/", &[("x-forwarded-for", "203.0.113.1")]).await,
        200,
        "no tenant (unknown)"
    );

    // Same policy id and client in two deployments: separate buckets.
    assert_eq!(status_of(&gw, "x.test", "/", &[]).await, 200);
    limited(get(&gw, "x.test", "/", &[]).await, "deployment x, second").await;
    assert_eq!(
        status_of(&gw, "y.test", "/", &[]).await,
        200,
        "deployment y has its own bucket"
    );

    // Two identical policies in one deployment: each has its own bucket (a
    // shared one would count every request twice: remaining 0 at once).
    admitted(&gw, "two.test", "/", &[], (2, 1), "first request, two policies").await;
    admitted(&gw, "two.test", "/", &[], (2, 0), "second request, two policies").await;
    limited(get(&gw, "two.test", "/", &[]).await, "third request, two policies").await;
}

// ---------------------------------------------------------------------------
// Several limits: the most restrictive supplies the headers
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn most_restrictive_of_two_policies_supplies_the_headers() {
    let policies = format!(
        "{}{}",
        rl("per_tenant", 5, "60s", Some("[{header: {name: X-Tenant-Id}}]")),
        rl("per_path", 3, "60s", Some("[{path: {}}]"))
    );
    let gw = Gateway::start(&config("builtin:echo", &[("app", policies)])).await;
    let t = [("x-tenant-id", "acme")];
    // (path, tenant remaining, path remaining) → headers from the lowest remaining, ties by lowest limit.
    admitted(&gw, "app.test", "/p1", &t, (3, 2), "tenant 4 left, path 2 left").await;
    admitted(&gw, "app.test", "/p1", &t, (3, 1), "tenant 3 left, path 1 left").await;
    admitted(&gw, "app.test", "/p2", &t, (3, 2), "tie at 2: the lower limit (3)").await;
    admitted(&gw, "app.test", "/p3", &t, (5, 1), "tenant 1 left, path 2 left").await;
    admitted(&gw, "app.test", "/p4", &t, (5, 0), "tenant 0 left").await;
    let got = limited(get(&gw, "app.test", "/p5", &t).await, "tenant exhausted").await;
    assert_eq!(got.limit, Some(5));
    let reset = got.reset.expect("X-RateLimit-Reset");
    assert_eq!(reset % 60, 0, "a 60 s window ends on a minute boundary: {reset}");
    let now = now_ms() / 1000;
    assert!(
        reset > now && reset <= now + 60,
        "reset {reset} within the current minute (now {now})"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn key_limits_and_policy_limits_combine_into_one_set_of_headers() {
    let keyed = format!(
        "      - {{id: auth, keyauth: {{keyspaces: [ks_main], credits: 0, ratelimits: [{{name: burst}}]}}}}\n{}",
        rl("rl", 3, "60s", Some("[{authenticated_subject: {}}]"))
    );
    // A ratelimit policy before a paid keyauth: its headers are on the usage_exceeded 429 too.
    let paid = format!(
        "{}      - {{id: auth, keyauth: {{keyspaces: [ks_main]}}}}\n",
        rl("rl", 10, "60s", None)
    );
    let gw = Gateway::start(&config("builtin:echo", &[("keyed", keyed), ("paid", paid)])).await;
    let bearer = |key: &str| format!("Bearer {key}");

    // Key limit 10: the policy (3) is more restrictive.
    let loose = bearer("sk_loose");
    admitted(
        &gw,
        "keyed.test",
        "/",
        &[("authorization", &loose)],
        (3, 2),
        "loose key, 1",
    )
    .await;
    admitted(
        &gw,
        "keyed.test",
        "/",
        &[("authorization", &loose)],
        (3, 1),
        "loose key, 2",
    )
    .await;
    admitted(
        &gw,
        "keyed.test",
        "/",
        &[("authorization", &loose)],
        (3, 0),
        "loose key, 3",
    )
    .await;
    let got = limited(
        get(&gw, "keyed.test", "/", &[("authorization", &loose)]).await,
        "loose key, policy limit",
    )
    .await;
    assert_eq!(got.limit, Some(3));

    // Key limit 2: the key's limit is more restrictive, and rejects in keyauth.
    let tight = bearer("sk_tight");
    admitted(
        &gw,
        "keyed.test",
        "/",
        &[("authorization", &tight)],
        (2, 1),
        "tight key, 1",
    )
    .await;
    admitted(
        &gw,
        "keyed.test",
        "/",
        &[("authorization", &tight)],
        (2, 0),
        "tight key, 2",
    )
    .await;
    let got = limited(
        get(&gw, "keyed.test", "/", &[("authorization", &tight)]).await,
        "tight key, key limit",
    )
    .await;
    assert_eq!(got.limit, Some(2));
    let reset = got.reset.expect("X-RateLimit-Reset");
    assert_eq!(reset % 60, 0, "the key's 60 s window is epoch-aligned: {reset}");

    // usage_exceeded after a ratelimit policy: the limit's headers, never Retry-After.
    let resp = get(&gw, "paid.test", "/", &[("authorization", &bearer("sk_broke"))]).await;
    let got = limits(&resp);
    assert_eq!(
        got.limit,
        Some(10),
        "X-RateLimit-Limit of the evaluated policy on the usage_exceeded 429: {got:?}"
    );
    assert!(got.remaining.is_some() && got.reset.is_some(), "{got:?}");
    assert_eq!(got.retry_after, None, "no Retry-After on usage_exceeded");
    assert_problem(resp, 429, USAGE_EXCEEDED, "Too Many Requests").await;
}

// ---------------------------------------------------------------------------
// POST /v2/ratelimit.limit
// ---------------------------------------------------------------------------

async fn limit_call(gw: &Gateway, body: Value) -> Value {
    let (status, answer) = gw.admin_post("/v2/ratelimit.limit", Some(ROOT), &body).await;
    assert_eq!(status, 200, "{body}: {answer}");
    assert!(
        answer["meta"]["requestId"]
            .as_str()
            .is_some_and(|r| r.starts_with("req_")),
        "{answer}"
    );
    let data = answer["data"].clone();
    for field in ["limit", "remaining", "reset"] {
        assert!(data[field].is_u64(), "data.{field} is a non-negative integer: {answer}");
    }
    assert!(data["success"].is_boolean(), "{answer}");
    data
}

/// `(success, remaining)` of a `ratelimit.limit` answer.
fn outcome(data: &Value) -> (bool, u64) {
    (data["success"].as_bool().unwrap(), data["remaining"].as_u64().unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn ratelimit_limit_admin_api() {
    let gw = Gateway::start(&config("builtin:echo", &[("app", String::new())])).await;
    let body = json!({"namespace": "email", "identifier": "user_1", "limit": 3, "duration": 60_000});

    let (status, answer) = gw.admin_post("/v2/ratelimit.limit", None, &body).await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (401, Some("err:unkey:authentication:missing")),
        "{answer}"
    );
    let (status, answer) = gw.admin_post("/v2/ratelimit.limit", Some("wrong"), &body).await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (401, Some("err:unkey:authentication:key_not_found")),
        "{answer}"
    );
    assert!(
        answer["meta"]["requestId"]
            .as_str()
            .unwrap_or_default()
            .starts_with("req_"),
        "{answer}"
    );

    let before = now_ms();
    let first = limit_call(&gw, body.clone()).await;
    let after = now_ms();
    assert_eq!(outcome(&first), (true, 2));
    assert_eq!(first["limit"], 3);
    let reset = first["reset"].as_u64().unwrap();
    assert!(
        [window_end(before, 60_000), window_end(after, 60_000)].contains(&reset),
        "reset {reset} is the unix ms end of the epoch-aligned 60 s window"
    );
    assert_eq!(outcome(&limit_call(&gw, body.clone()).await), (true, 1));
    assert_eq!(outcome(&limit_call(&gw, body.clone()).await), (true, 0));
    let over = limit_call(&gw, body.clone()).await;
    assert_eq!((outcome(&over), over["limit"].clone()), ((false, 0), json!(3)));

    // Other identifiers and namespaces do not share.
    let other_id = json!({"namespace": "email", "identifier": "user_2", "limit": 3, "duration": 60_000});
    assert_eq!(outcome(&limit_call(&gw, other_id).await), (true, 2));
    let other_ns = json!({"namespace": "sms", "identifier": "user_1", "limit": 3, "duration": 60_000});
    assert_eq!(outcome(&limit_call(&gw, other_ns).await), (true, 2));
    // Escaping: namespace/identifier boundaries cannot be shifted.
    let shifted = json!({"namespace": "email:user", "identifier": "_1", "limit": 3, "duration": 60_000});
    assert_eq!(outcome(&limit_call(&gw, shifted).await), (true, 2));
    let shifted = json!({"namespace": "emai", "identifier": "l:user_1", "limit": 3, "duration": 60_000});
    assert_eq!(outcome(&limit_call(&gw, shifted).await), (true, 2));

    // Cost: default 1; a rejected call does not count.
    let costly =
        |cost: u64| json!({"namespace": "ai", "identifier": "u", "limit": 5, "duration": 60_000, "cost": cost});
    assert_eq!(outcome(&limit_call(&gw, costly(3)).await), (true, 2));
    assert_eq!(
        outcome(&limit_call(&gw, costly(3)).await),
        (false, 2),
        "3 + 3 > 5: rejected, nothing counted"
    );
    assert_eq!(outcome(&limit_call(&gw, costly(2)).await), (true, 0));
    assert_eq!(outcome(&limit_call(&gw, costly(1)).await), (false, 0));

    // Invalid input.
    let base = json!({"namespace": "n", "identifier": "i", "limit": 3, "duration": 1000});
    let with = |field: &str, value: Value| {
        let mut b = base.clone();
        b[field] = value;
        b
    };
    let without = |field: &str| {
        let mut b = base.clone();
        b.as_object_mut().unwrap().remove(field);
        b
    };
    for (what, bad) in [
        ("missing namespace", without("namespace")),
        ("missing identifier", without("identifier")),
        ("missing limit", without("limit")),
        ("missing duration", without("duration")),
        ("limit 0", with("limit", json!(0))),
        ("negative limit", with("limit", json!(-1))),
        ("duration 0", with("duration", json!(0))),
        ("negative duration", with("duration", json!(-1000))),
        ("limit as a string", with("limit", json!("3"))),
        ("duration as a string", with("duration", json!("1s"))),
        ("namespace as a number", with("namespace", json!(5))),
        ("negative cost", with("cost", json!(-1))),
        ("cost as a string", with("cost", json!("1"))),
    ] {
        let (status, answer) = gw.admin_post("/v2/ratelimit.limit", Some(ROOT), &bad).await;
        assert_eq!(
            (status, answer["error"]["code"].as_str()),
            (400, Some(INVALID_INPUT)),
            "{what}: {answer}"
        );
    }
    let not_json = gw
        .client()
        .post(gw.admin_url("/v2/ratelimit.limit"))
        .bearer_auth(ROOT)
        .body("{nope")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status(), 400, "a body that is not JSON");
}

#[tokio::test(flavor = "multi_thread")]
async fn ratelimit_limit_uses_epoch_aligned_sliding_windows() {
    const W: u64 = 2_000;
    let gw = Gateway::start(&config("builtin:echo", &[("app", String::new())])).await;
    let body = json!({"namespace": "slide", "identifier": "u", "limit": 4, "duration": W});
    align_to_window_start(W).await;
    let index = now_ms() / W;
    for remaining in [3, 2, 1, 0] {
        let data = limit_call(&gw, body.clone()).await;
        assert_eq!(outcome(&data), (true, remaining));
        assert_eq!(
            data["reset"],
            json!(window_end(index * W, W)),
            "reset = end of the aligned window (ms)"
        );
    }
    for _ in 0..6 {
        assert!(!outcome(&limit_call(&gw, body.clone()).await).0, "over the limit");
    }
    // Next window, early: 4 × (1 − f) + 1 > 4 for f < 0.25.
    wait_for_slot(W, index + 1, 0.0, 0.2).await;
    let data = limit_call(&gw, body.clone()).await;
    assert!(
        !data["success"].as_bool().unwrap(),
        "the previous window still weighs: {data}"
    );
    assert_eq!(data["reset"], json!(window_end((index + 1) * W, W)));
    // Past half-way: 4 × (1 − f) + 1 <= 4 (f >= 0.25); the 6 rejections did not count.
    wait_for_slot(W, index + 1, 0.5, 0.7).await;
    let data = limit_call(&gw, body.clone()).await;
    assert!(
        data["success"].as_bool().unwrap(),
        "weighted count leaves room half-way: {data}"
    );
}

// ---------------------------------------------------------------------------
// Config
// ---------------------------------------------------------------------------

#[test]
fn bad_ratelimit_config_is_a_load_error() {
    let base = "deployments:\n  - id: dep\n    instances: [\"builtin:echo\"]\n    policies:\n";
    let six = "[{remote_ip: {}}, {path: {}}, {header: {name: A}}, {header: {name: B}}, {authenticated_subject: {}}, {header: {name: C}}]";
    let cases: &[(&str, String, &str)] = &[
        (
            "no identifiers",
            "      - {id: rl, ratelimit: {limit: 1, window: 1s, identifiers: []}}\n".into(),
            "identifiers",
        ),
        (
            "six identifiers",
            format!("      - {{id: rl, ratelimit: {{limit: 1, window: 1s, identifiers: {six}}}}}\n"),
            "identifiers",
        ),
        (
            "unknown identifier",
            "      - {id: rl, ratelimit: {limit: 1, window: 1s, identifiers: [{cookie: {name: a}}]}}\n".into(),
            "cookie",
        ),
        (
            "header without name",
            "      - {id: rl, ratelimit: {limit: 1, window: 1s, identifiers: [{header: {}}]}}\n".into(),
            "name",
        ),
        (
            "missing limit",
            "      - {id: rl, ratelimit: {window: 1s}}\n".into(),
            "limit",
        ),
        (
            "bad window",
            "      - {id: rl, ratelimit: {limit: 1, window: soon}}\n".into(),
            "window",
        ),
        (
            "unknown field",
            "      - {id: rl, ratelimit: {limit: 1, window: 1s, burst: 3}}\n".into(),
            "burst",
        ),
        (
            "limit 0",
            "      - {id: rl, ratelimit: {limit: 0, window: 1s}}\n".into(),
            "ratelimit.limit",
        ),
        (
            "window 0",
            "      - {id: rl, ratelimit: {limit: 1, window: 0s}}\n".into(),
            "ratelimit.window",
        ),
    ];
    for (what, policy, needle) in cases {
        assert_load_error(what, &check_config(&format!("{base}{policy}")), &[*needle], &[5]);
    }
    // And a good one passes, with every identifier kind.
    let five = "[{remote_ip: {}}, {header: {name: X-Tenant-Id}}, {authenticated_subject: {}}, {path: {}}, {principal_field: {path: source.key.meta.org_id}}]";
    let out = check_config(&format!(
        "{base}      - {{id: rl, ratelimit: {{limit: 100, window: 1m30s, identifiers: {five}}}}}\n"
    ));
    assert_eq!(out.code, Some(0), "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn reload_applies_a_new_limit() {
    let gw = Gateway::start(&config("builtin:echo", &[("app", rl("rl", 2, "60s", None))])).await;
    admitted(
        &gw,
        "app.test",
        "/",
        &[("x-forwarded-for", "203.0.113.1")],
        (2, 1),
        "before the reload",
    )
    .await;
    gw.write_config(&config("builtin:echo", &[("app", rl("rl", 50, "60s", None))]));
    let mut n = 0;
    poll_until("the new limit in effect", RELOAD_DEADLINE, || {
        n += 1;
        let client = format!("203.0.113.{}", 10 + n % 200);
        let gw = &gw;
        async move {
            let resp = get(gw, "app.test", "/", &[("x-forwarded-for", &client)]).await;
            (resp.status() == 200 && limits(&resp).limit == Some(50)).then_some(())
        }
    })
    .await;
}
