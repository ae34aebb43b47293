//! Rate limits and credits shared by replicas through Redis: two keygate processes with the same config
//! (own ports, own state dirs, one redis-server) share a policy limit within
//! a bounded delay and with a bounded overshoot, spend a static key's
//! credits exactly, fall back to local counters when Redis dies (no 5xx, no
//! 401, limits still enforced, errors counted, credits over-spent by at most
//! `outage_credits`), and share again once Redis is back on the same port.
//!
//! Policy limits use 60 s windows: nothing here depends on where a window
//! boundary falls (the previous window's count decays by less than one
//! request in the first 12 s).

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::gateway::Gateway;
use support::redis::Redis;
use support::wait::poll_until;

const ROOT: &str = "root_test_key";
const RATE_LIMITED: &str = "err:frontline:client:rate_limited";
const USAGE_EXCEEDED: &str = "err:frontline:client:usage_exceeded";
const BACKEND_ERRORS: &str = "keygate_ratelimit_backend_errors_total";
/// `state.sync_interval` in the config below.
const SYNC: Duration = Duration::from_millis(50);
/// `state.outage_credits` in the config below.
const OUTAGE_CREDITS: u64 = 10;
/// How long a burst on one replica may take to be seen by the other.
const VISIBLE_WITHIN: Duration = Duration::from_secs(2);
/// How many requests a replica polled every 25 ms may admit after the other
/// one has used up a shared limit: 200 ms of polling, four sync intervals
/// (one before the push, one before the pull, slack for a loaded machine).
const FOLLOW_TOLERANCE: u64 = 8;

/// One config for every replica: a tenant-limited deployment, a paid one,
/// and keyauth + a tenant limit; static keys with credits.
fn replica_config(redis: &Redis, limit: u64) -> String {
    let rl = format!(
        "{{id: rl, ratelimit: {{limit: {limit}, window: 60s, identifiers: [{{header: {{name: X-Tenant-Id}}}}]}}}}"
    );
    format!(
        r#"admin:
  root_keys: ["{ROOT}"]
state:
  redis: "{url}"
  sync_interval: 50ms
  credit_lease: 1
  outage_credits: {OUTAGE_CREDITS}
keyspaces:
  - id: ks_main
    keys:
      - {{id: key_open, key: sk_open}}
      - {{id: key_alternate, key: sk_alternate, credits: {{remaining: 20}}}}
      - {{id: key_concurrent, key: sk_concurrent, credits: {{remaining: 20}}}}
      - {{id: key_late, key: sk_late, credits: {{remaining: 20}}}}
      - {{id: key_outage, key: sk_outage, credits: {{remaining: 20}}}}
deployments:
  - id: dep_limited
    instances: ["builtin:echo"]
    policies:
      - {rl}
  - id: dep_paid
    instances: ["builtin:echo"]
    policies:
      - {{id: auth, keyauth: {{keyspaces: [ks_main]}}}}
  - id: dep_both
    instances: ["builtin:echo"]
    policies:
      - {{id: auth, keyauth: {{keyspaces: [ks_main], credits: 0}}}}
      - {rl}
routes:
  - host: limited.test
    deployment: dep_limited
  - host: paid.test
    deployment: dep_paid
  - host: both.test
    deployment: dep_both
"#,
        url = redis.url()
    )
}

/// Two replicas of `replica_config`.
async fn replicas(redis: &Redis, limit: u64) -> (Gateway, Gateway) {
    let config = replica_config(redis, limit);
    tokio::join!(Gateway::start(&config), Gateway::start(&config))
}

/// What a response said, for bookkeeping.
#[derive(Debug, Clone)]
struct Outcome {
    status: u16,
    limit: Option<u64>,
    remaining: Option<u64>,
    retry_after: Option<u64>,
    code: Option<String>,
}

async fn call(gw: &Gateway, host: &str, headers: &[(&str, &str)]) -> Outcome {
    let mut request = gw.get(host, "/");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let resp = request.send().await.unwrap_or_else(|e| panic!("GET {host}: {e}"));
    let header = |name: &str| -> Option<u64> {
        let all: Vec<&str> = resp
            .headers()
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert!(all.len() <= 1, "{name} appears {} times: {all:?}", all.len());
        all.first().map(|v| v.trim().parse().unwrap())
    };
    let (limit, remaining, retry_after) = (
        header("x-ratelimit-limit"),
        header("x-ratelimit-remaining"),
        header("retry-after"),
    );
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    let code = (status >= 400)
        .then(|| serde_json::from_str::<Value>(&text).ok())
        .flatten()
        .and_then(|v| v["error"]["code"].as_str().map(str::to_string));
    Outcome {
        status,
        limit,
        remaining,
        retry_after,
        code,
    }
}

/// Asserts a response is what a rate-limited route may answer at any time:
/// 200, or 429 `rate_limited` with Retry-After — never a 5xx or a 401.
fn assert_ok_or_limited(o: &Outcome, what: &str) {
    match o.status {
        200 => {}
        429 => {
            assert_eq!(o.code.as_deref(), Some(RATE_LIMITED), "{what}: {o:?}");
            assert!(o.retry_after.is_some_and(|r| r >= 1), "{what}: Retry-After: {o:?}");
            assert_eq!(o.remaining, Some(0), "{what}: {o:?}");
        }
        _ => panic!("{what}: unexpected answer {o:?}"),
    }
}

/// Asserts 200 or 429 `usage_exceeded` without Retry-After.
fn assert_ok_or_spent(o: &Outcome, what: &str) {
    match o.status {
        200 => {}
        429 => {
            assert_eq!(o.code.as_deref(), Some(USAGE_EXCEEDED), "{what}: {o:?}");
            assert_eq!(o.retry_after, None, "{what}: no Retry-After on usage_exceeded: {o:?}");
        }
        _ => panic!("{what}: unexpected answer {o:?}"),
    }
}

/// Sends to `gw` until the first 429 (at most `max` requests); returns how
/// many were admitted before it.
async fn admitted_until_429(gw: &Gateway, host: &str, headers: &[(&str, &str)], max: usize, what: &str) -> u64 {
    for admitted in 0..max {
        let o = call(gw, host, headers).await;
        assert_ok_or_limited(&o, what);
        if o.status == 429 {
            return admitted as u64;
        }
    }
    panic!("{what}: no 429 within {max} requests");
}

/// Polls `gw` (bounded by `within`) until it answers 429; returns how many
/// it admitted meanwhile.
async fn admitted_until_429_polling(
    gw: &Gateway,
    host: &str,
    headers: &[(&str, &str)],
    within: Duration,
    what: &str,
) -> u64 {
    let mut admitted = 0;
    let deadline = Instant::now() + within;
    loop {
        let o = call(gw, host, headers).await;
        assert_ok_or_limited(&o, what);
        if o.status == 429 {
            return admitted;
        }
        admitted += 1;
        assert!(
            Instant::now() < deadline,
            "{what}: still admitting after {within:?} ({admitted} admitted)"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The most admissions one replica made within any span of `span`.
fn densest(times: &[Instant], span: Duration) -> usize {
    (0..times.len())
        .map(|i| {
            times[i..]
                .iter()
                .take_while(|t| t.duration_since(times[i]) < span)
                .count()
        })
        .max()
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------
// Shared policy limits
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn a_burst_on_one_replica_is_seen_by_the_other() {
    let redis = Redis::start().await;
    let (a, b) = replicas(&redis, 20).await;
    let tenant = [("x-tenant-id", "shared")];

    for used in 1..=5 {
        let o = call(&a, "limited.test", &tenant).await;
        assert_eq!(
            (o.status, o.limit, o.remaining),
            (200, Some(20), Some(20 - used)),
            "A, request {used}"
        );
    }
    // B's k-th request leaves 20 − 5 − k once A's five are visible to it.
    let started = Instant::now();
    let b_admitted_at = std::sync::Mutex::new(Vec::new());
    let mut k = 0;
    let seen_remaining = poll_until("B sees A's five requests", VISIBLE_WITHIN, || {
        k += 1;
        let (b, k, b_admitted_at) = (&b, k, &b_admitted_at);
        async move {
            let o = call(b, "limited.test", &tenant).await;
            assert_eq!(o.status, 200, "B, request {k}: {o:?}");
            b_admitted_at.lock().unwrap().push(Instant::now());
            let remaining = o.remaining.expect("X-RateLimit-Remaining");
            (remaining <= 20 - 5 - k).then_some(remaining)
        }
    })
    .await;
    eprintln!(
        "visibility: B reflected A's burst after {:?} and {k} request(s) of its own (remaining {seen_remaining})",
        started.elapsed()
    );
    assert_eq!(
        seen_remaining,
        20 - 5 - k,
        "B counts A's five and its own {k} exactly once"
    );

    // A uses up the rest at once: it may not see yet what B admitted within
    // the last sync delay (one interval before B's push, one before A's pull;
    // four intervals allowed for a loaded machine).
    let burst = Instant::now();
    let unseen_b = b_admitted_at
        .lock()
        .unwrap()
        .iter()
        .filter(|t| burst.duration_since(**t) < 4 * SYNC)
        .count() as u64;
    let on_a = admitted_until_429(&a, "limited.test", &tenant, 40, "A, rest of the limit").await;
    // B follows within the bound, admitting only what it polled before A's burst became visible.
    let started = Instant::now();
    let on_b = admitted_until_429_polling(&b, "limited.test", &tenant, VISIBLE_WITHIN, "B after A's burst").await;
    let b_took = started.elapsed();
    let total = 5 + k + on_a + on_b;
    eprintln!(
        "shared limit 20: A 5 + {on_a}, B {k} + {on_b} → {total} admitted (overshoot {}); B's requests possibly unseen by A at its burst: {unseen_b}; B rejected after {b_took:?}",
        total.saturating_sub(20)
    );
    assert!(
        total >= 20,
        "only {total} admitted: shared counts must not be double counted"
    );
    assert!(
        5 + k - unseen_b + on_a <= 20,
        "A admitted {on_a} although it had seen {} of the 20",
        5 + k - unseen_b
    );
    assert!(
        on_b <= FOLLOW_TOLERANCE,
        "B admitted {on_b} (> {FOLLOW_TOLERANCE}) after A exhausted the shared limit"
    );
    let o = call(&b, "limited.test", &tenant).await;
    assert_eq!((o.status, o.limit, o.remaining), (429, Some(20), Some(0)), "{o:?}");
    // Another tenant is untouched.
    assert_eq!(
        call(&b, "limited.test", &[("x-tenant-id", "other")]).await.remaining,
        Some(19)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn interleaved_traffic_overshoot_is_bounded_by_the_sync_delay() {
    const LIMIT: u64 = 20;
    let redis = Redis::start().await;
    let (a, b) = replicas(&redis, LIMIT).await;
    let tenant = [("x-tenant-id", "interleaved")];
    let began = Instant::now();
    let mut admitted_at: [Vec<Instant>; 2] = [Vec::new(), Vec::new()];
    let mut rounds = 0;
    let mut quiet_rounds = 0;
    // A then B, once per 25 ms poll tick, until both have rejected three rounds in a row.
    let deadline = Instant::now() + Duration::from_secs(20);
    while quiet_rounds < 3 {
        assert!(
            Instant::now() < deadline,
            "replicas still admitting after 20 s: {admitted_at:?}"
        );
        rounds += 1;
        let mut rejected = 0;
        for (i, gw) in [&a, &b].into_iter().enumerate() {
            let o = call(gw, "limited.test", &tenant).await;
            assert_ok_or_limited(&o, "interleaved");
            if o.status == 200 {
                admitted_at[i].push(Instant::now());
            } else {
                rejected += 1;
            }
        }
        quiet_rounds = if rejected == 2 { quiet_rounds + 1 } else { 0 };
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let (on_a, on_b) = (admitted_at[0].len() as u64, admitted_at[1].len() as u64);
    let total = on_a + on_b;
    let overshoot = total.saturating_sub(LIMIT);
    // Worst case: what the other replica admitted while its counts were not
    // yet visible — at most one interval before its push and one before the
    // peer's pull.
    let bound_1 = densest(&admitted_at[0], SYNC).max(densest(&admitted_at[1], SYNC)) as u64;
    let bound_2 = densest(&admitted_at[0], 2 * SYNC).max(densest(&admitted_at[1], 2 * SYNC)) as u64;
    eprintln!(
        "OVERSHOOT (interleaved A,B every ~25 ms, limit {LIMIT}, sync 50ms): {total} admitted (A {on_a}, B {on_b}), \
         overshoot {overshoot}; densest admissions by one replica: {bound_1} per sync interval, {bound_2} per two; \
         {rounds} rounds in {:?}",
        began.elapsed()
    );
    assert!(
        total >= LIMIT,
        "only {total} admitted: shared counts must not be double counted"
    );
    assert!(
        overshoot <= bound_2.max(1),
        "overshoot {overshoot} exceeds what one replica admitted within two sync intervals ({bound_2})"
    );
    assert!(
        overshoot <= LIMIT / 4,
        "overshoot {overshoot} is not small: are the replicas sharing at all?"
    );
}

/// 32 requests at once on `gw`; how many were admitted.
async fn concurrent_burst(gw: &Arc<Gateway>, tenant: &'static str) -> u64 {
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let gw = gw.clone();
            tokio::spawn(async move {
                let o = call(&gw, "limited.test", &[("x-tenant-id", tenant)]).await;
                assert_ok_or_limited(&o, "concurrent burst");
                o.status == 200
            })
        })
        .collect();
    let mut admitted = 0;
    for task in tasks {
        admitted += task.await.unwrap() as u64;
    }
    admitted
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_burst_on_an_idle_replica_is_measured_and_converges() {
    const LIMIT: u64 = 20;
    let redis = Redis::start().await;
    let (a, b) = replicas(&redis, LIMIT).await;
    let b = Arc::new(b);
    // "warm": B counted one request in the bucket before A used the rest;
    // "cold": B never saw the bucket.
    let warm = [("x-tenant-id", "warm")];
    let cold = [("x-tenant-id", "cold")];
    assert_eq!(call(&b, "limited.test", &warm).await.status, 200);
    let on_a_warm =
        admitted_until_429_polling(&a, "limited.test", &warm, VISIBLE_WITHIN, "A uses the rest (warm)").await;
    let on_a_cold = admitted_until_429(&a, "limited.test", &cold, 40, "A uses the whole limit (cold)").await;
    assert_eq!(on_a_cold, LIMIT);
    // The scenario, not a synchronisation: B gets no traffic at all for ten
    // sync intervals, then 32 requests at once per bucket. The figures are
    // reported; asserted are the ceiling of one limit per replica and window,
    // a tight bound for both buckets, and convergence afterwards.
    tokio::time::sleep(10 * SYNC).await;
    let mut figures = Vec::new();
    for (name, tenant, others) in [("warm", "warm", 1 + on_a_warm), ("cold", "cold", on_a_cold)] {
        let burst = concurrent_burst(&b, tenant).await;
        let then = admitted_until_429_polling(
            &b,
            "limited.test",
            &[("x-tenant-id", tenant)],
            VISIBLE_WITHIN,
            "B after its burst",
        )
        .await;
        let total = others + burst + then;
        figures.push(format!(
            "{name}: B admitted {burst} in the burst + {then} after → {total} in all, overshoot {}",
            total.saturating_sub(LIMIT)
        ));
        assert!(
            total <= 2 * LIMIT,
            "{name}: {total} admitted: more than one limit per replica"
        );
        // Warm: B used the bucket within the last second and kept reading A's
        // totals. Cold: B reads them before its first decision in the bucket.
        assert!(
            total <= LIMIT + 8,
            "{name}: {total} admitted: B did not take A's counts into account"
        );
        assert!(total >= LIMIT, "{name}: only {total} admitted");
        let o = call(&a, "limited.test", &[("x-tenant-id", tenant)]).await;
        assert_eq!(o.status, 429, "{name}: A still rejects: {o:?}");
    }
    eprintln!(
        "OVERSHOOT (idle replica: 32 concurrent requests on B 500 ms = 10 sync intervals after A used up limit {LIMIT}): {}",
        figures.join("; ")
    );
}

// ---------------------------------------------------------------------------
// Shared credits of static keys
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn static_key_credits_are_spent_exactly_across_replicas() {
    let redis = Redis::start().await;
    let (a, b) = replicas(&redis, 1000).await;
    let a = Arc::new(a);
    let b = Arc::new(b);

    // Alternating, as fast as the replicas answer.
    let auth = [("authorization", "Bearer sk_alternate")];
    let mut admitted = [0u64; 2];
    for i in 0..60 {
        let gw = if i % 2 == 0 { &a } else { &b };
        let o = call(gw, "paid.test", &auth).await;
        assert_ok_or_spent(&o, "alternating");
        if o.status == 200 {
            admitted[i % 2] += 1;
        }
    }
    eprintln!("alternating: A admitted {}, B admitted {}", admitted[0], admitted[1]);
    assert_eq!(admitted[0] + admitted[1], 20, "exactly the key's 20 credits, in all");
    assert!(
        admitted[0] > 0 && admitted[1] > 0,
        "both replicas spent some: {admitted:?}"
    );

    // Concurrently: 32 requests on each replica at once.
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let gw = if i % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move {
                let o = call(&gw, "paid.test", &[("authorization", "Bearer sk_concurrent")]).await;
                assert_ok_or_spent(&o, "concurrent");
                (i % 2, o.status == 200)
            })
        })
        .collect();
    let mut admitted = [0u64; 2];
    for task in tasks {
        let (replica, ok) = task.await.unwrap();
        admitted[replica] += ok as u64;
    }
    eprintln!("concurrent: A admitted {}, B admitted {}", admitted[0], admitted[1]);
    assert_eq!(
        admitted[0] + admitted[1],
        20,
        "exactly the key's 20 credits under 2 × 32 concurrent requests"
    );

    for (name, gw) in [("A", &a), ("B", &b)] {
        for key in ["sk_alternate", "sk_concurrent"] {
            let o = call(gw, "paid.test", &[("authorization", &format!("Bearer {key}"))]).await;
            assert_eq!(
                (o.status, o.code.as_deref(), o.retry_after),
                (429, Some(USAGE_EXCEEDED), None),
                "{name}, {key}"
            );
        }
        let o = call(gw, "paid.test", &[("authorization", "Bearer sk_open")]).await;
        assert_eq!(o.status, 200, "{name}: an unlimited key is unaffected");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replica_started_later_does_not_reset_shared_credits() {
    let redis = Redis::start().await;
    let config = replica_config(&redis, 1000);
    let a = Gateway::start(&config).await;
    let auth = [("authorization", "Bearer sk_late")];
    for i in 0..8 {
        assert_eq!(call(&a, "paid.test", &auth).await.status, 200, "A, request {i}");
    }
    let b = Gateway::start(&config).await;
    let mut admitted = 8;
    for i in 0..40 {
        let gw = if i % 2 == 0 { &b } else { &a };
        let o = call(gw, "paid.test", &auth).await;
        assert_ok_or_spent(&o, "after B joined");
        admitted += (o.status == 200) as u64;
    }
    assert_eq!(
        admitted, 20,
        "the key's 20 credits, not 20 more for the replica that started later"
    );
}

// ---------------------------------------------------------------------------
// Redis outage
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn redis_outage_falls_back_to_local_limits_and_sharing_resumes() {
    const LIMIT: u64 = 20;
    let mut redis = Redis::start().await;
    let (a, b) = replicas(&redis, LIMIT).await;
    let auth = ("authorization", "Bearer sk_open");
    for gw in [&a, &b] {
        assert_eq!(
            gw.metric_opt(BACKEND_ERRORS).await,
            Some(0.0),
            "{BACKEND_ERRORS} exported at 0"
        );
    }
    // Sharing works before the outage.
    let before = [auth, ("x-tenant-id", "before")];
    assert_eq!(
        admitted_until_429(&a, "both.test", &before, 30, "A before the outage").await,
        LIMIT
    );
    let on_b = admitted_until_429_polling(&b, "both.test", &before, VISIBLE_WITHIN, "B before the outage").await;
    assert!(on_b <= FOLLOW_TOLERANCE, "B admitted {on_b} of a limit A had used up");

    redis.stop().await;
    let outage = Instant::now();
    // Each replica still enforces the limit on its own: no 5xx, no 401.
    for (name, gw, tenant) in [("A", &a, "down-a"), ("B", &b, "down-b")] {
        let headers = [auth, ("x-tenant-id", tenant)];
        let admitted = admitted_until_429(
            gw,
            "both.test",
            &headers,
            3 * LIMIT as usize,
            &format!("{name} during the outage"),
        )
        .await;
        eprintln!("outage: {name} admitted {admitted} of {LIMIT} on its own");
        assert!(
            admitted <= LIMIT,
            "{name} admitted {admitted} > {LIMIT} during the outage"
        );
        assert!(admitted >= 1, "{name} admitted nothing during the outage");
        for _ in 0..3 {
            let o = call(gw, "both.test", &headers).await;
            assert_eq!(
                (o.status, o.code.as_deref()),
                (429, Some(RATE_LIMITED)),
                "{name} keeps rejecting"
            );
        }
        let o = call(gw, "both.test", &[auth, ("x-tenant-id", &format!("{tenant}-fresh"))]).await;
        assert_eq!(
            o.status, 200,
            "{name}: another tenant is still admitted during the outage: {o:?}"
        );
    }
    for (name, gw) in [("A", &a), ("B", &b)] {
        let errors = gw.wait_metric_at_least(BACKEND_ERRORS, 1.0).await;
        eprintln!("outage: {name} {BACKEND_ERRORS} = {errors}");
    }

    redis.restart().await;
    let restarted = Instant::now();
    eprintln!("redis was down for {:?}", restarted - outage);
    // Within a bounded time, a burst on A is seen on B again.
    let mut round = 0;
    poll_until("sharing resumes after Redis is back", Duration::from_secs(15), || {
        round += 1;
        let (a, b) = (&a, &b);
        async move {
            let tenant = format!("after-{round}");
            let headers = [auth, ("x-tenant-id", tenant.as_str())];
            let on_a = admitted_until_429(a, "both.test", &headers, 3 * LIMIT as usize, "A after the restart").await;
            assert!(on_a <= LIMIT, "A admitted {on_a} > {LIMIT}");
            let on_b =
                admitted_until_429_polling(b, "both.test", &headers, Duration::from_secs(3), "B after the restart")
                    .await;
            eprintln!("after restart, round {round}: A admitted {on_a}, then B {on_b}");
            (on_b <= FOLLOW_TOLERANCE).then_some(())
        }
    })
    .await;
    eprintln!("sharing resumed {:?} after Redis came back", restarted.elapsed());
}

#[tokio::test(flavor = "multi_thread")]
async fn credits_over_spent_during_an_outage_are_bounded() {
    let mut redis = Redis::start().await;
    let (a, b) = replicas(&redis, 1000).await;
    let auth = [("authorization", "Bearer sk_outage")];
    // 15 of the key's 20 credits, spent through both replicas while Redis is up.
    for i in 0..15 {
        let gw = if i % 2 == 0 { &a } else { &b };
        assert_eq!(
            call(gw, "paid.test", &auth).await.status,
            200,
            "request {i} before the outage"
        );
    }

    redis.stop().await;
    let mut during = [0u64; 2];
    for (i, (name, gw)) in [("A", &a), ("B", &b)].into_iter().enumerate() {
        let mut rejected = false;
        for _ in 0..(3 * OUTAGE_CREDITS + 20) {
            let o = call(gw, "paid.test", &auth).await;
            assert_ok_or_spent(&o, &format!("{name} during the outage"));
            if o.status == 429 {
                rejected = true;
                break;
            }
            during[i] += 1;
        }
        assert!(
            rejected,
            "{name} never ran out of credits during the outage ({} admitted)",
            during[i]
        );
        let o = call(gw, "paid.test", &[("authorization", "Bearer sk_open")]).await;
        assert_eq!(o.status, 200, "{name}: keys still verify during the outage: {o:?}");
    }
    let spent = 15 + during[0] + during[1];
    let over = spent.saturating_sub(20);
    eprintln!(
        "credits during the outage: A spent {}, B spent {} with 5 left → {spent} of 20 spent, over-spent by {over} \
         (outage_credits {OUTAGE_CREDITS} per replica)",
        during[0], during[1]
    );
    for (name, n) in [("A", during[0]), ("B", during[1])] {
        assert!(
            n <= 5 + OUTAGE_CREDITS,
            "{name} spent {n}: more than the 5 left plus outage_credits {OUTAGE_CREDITS}"
        );
    }
    assert!(
        over <= 2 * OUTAGE_CREDITS,
        "over-spent by {over}: more than outage_credits per replica"
    );
    a.wait_metric_at_least(BACKEND_ERRORS, 1.0).await;
    b.wait_metric_at_least(BACKEND_ERRORS, 1.0).await;
}
