//! Replicas sharing keys through PostgreSQL (`state.database`), each test
//! with its own real PostgreSQL server: a key created on one replica
//! verifies on another, a revocation reaches every replica within a
//! second, replicas starting at once migrate one empty database safely,
//! the data outlives the replicas and holds no plaintext key, and a
//! database outage keeps cached keys working, answers 503 for what it
//! cannot know and heals without a restart; `keygate state migrate`
//! moves an embedded store into the database.

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::gateway::{run_keygate, Gateway, Launch};
use support::net::free_addr;
use support::postgres::Postgres;
use support::problem::assert_problem;
use support::wait::{poll_until, wait_for, WAIT};

const ROOT: &str = "root_fleet_key";

/// One keyspace with a config key that has credits, a route that requires
/// its keys, one that spends a credit per request and one that is open.
fn config(pg: &Postgres) -> String {
    format!("state:\n  database: \"{}\"\n{}", pg.url(), embedded_config())
}

/// [`config`] on the embedded store.
fn embedded_config() -> String {
    format!(
        r#"admin:
  root_keys: ["{ROOT}"]
keyspaces:
  - id: ks_fleet
    keys:
      - {{id: key_config, key: sk_config_fleet, credits: {{remaining: 6}}}}
deployments:
  - id: dep_keys
    instances: ["builtin:echo"]
    policies:
      - id: auth
        keyauth: {{keyspaces: [ks_fleet], credits: 0}}
  - id: dep_paid
    instances: ["builtin:echo"]
    policies:
      - id: auth
        keyauth: {{keyspaces: [ks_fleet]}}
  - id: dep_open
    instances: ["builtin:echo"]
routes:
  - host: keys.test
    deployment: dep_keys
  - host: paid.test
    deployment: dep_paid
  - host: open.test
    deployment: dep_open
"#
    )
}

async fn admin(gw: &Gateway, op: &str, body: Value) -> Value {
    let (status, answer) = gw.admin_post(&format!("/v2/{op}"), Some(ROOT), &body).await;
    // 201 for creates, as Unkey's API answers them.
    assert!((200..300).contains(&status), "{op}: {status} {answer}");
    answer["data"].clone()
}

/// Creates a key in `ks_fleet` through `gw`; returns (keyId, key).
async fn create_key(gw: &Gateway) -> (String, String) {
    let data = admin(gw, "keys.createKey", json!({"apiId": "ks_fleet"})).await;
    (
        data["keyId"].as_str().unwrap().to_string(),
        data["key"].as_str().unwrap().to_string(),
    )
}

async fn status_with(gw: &Gateway, key: &str) -> u16 {
    gw.get("keys.test", "/")
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Polls `gw` with `key` until it answers `want`; returns how long that took.
async fn time_until_status(gw: &Gateway, key: &str, want: u16) -> Duration {
    let started = Instant::now();
    poll_until(format!("{key} answering {want}"), WAIT, || async {
        (status_with(gw, key).await == want).then_some(())
    })
    .await;
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_keys_and_revocations_reach_every_replica_within_a_second() {
    let pg = Postgres::start().await;
    let text = config(&pg);
    // Both replicas start at once on the empty database: migrations take turns.
    let (a, b) = tokio::join!(Gateway::start(&text), Gateway::start(&text));

    // KEYGATE_REVOCATIONS=1000 measures the distribution (scripts/revocation-propagation.sh).
    let rounds: usize = std::env::var("KEYGATE_REVOCATIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10);
    let mut revocations = Vec::new();
    for round in 0..rounds {
        let (id, key) = create_key(&a).await;
        assert_eq!(
            status_with(&a, &key).await,
            200,
            "round {round}: the key works where it was made"
        );
        assert_eq!(
            status_with(&b, &key).await,
            200,
            "round {round}: and on the other replica"
        );
        let (op, body) = if round % 2 == 0 {
            ("keys.deleteKey", json!({"keyId": id}))
        } else {
            ("keys.updateKey", json!({"keyId": id, "enabled": false}))
        };
        admin(&a, op, body).await;
        revocations.push(time_until_status(&b, &key, 401).await);
    }
    revocations.sort();
    let at = |q: f64| revocations[((revocations.len() as f64 * q).ceil() as usize).clamp(1, revocations.len()) - 1];
    eprintln!(
        "{} revocations reached the other replica after p50 {:?}, p99 {:?}, max {:?}",
        revocations.len(),
        at(0.5),
        at(0.99),
        at(1.0)
    );
    assert!(
        at(1.0) < Duration::from_secs(1),
        "a revocation took {:?} to reach the other replica",
        at(1.0)
    );

    // A permission granted on A is required and seen on B at once.
    let (id, key) = create_key(&a).await;
    let verify = json!({"key": key, "permissions": "docs.write"});
    assert_eq!(admin(&b, "keys.verifyKey", verify.clone()).await["valid"], false);
    admin(
        &a,
        "permissions.createPermission",
        json!({"name": "docs.write", "slug": "docs.write"}),
    )
    .await;
    admin(
        &a,
        "keys.addPermissions",
        json!({"keyId": id, "permissions": ["docs.write"]}),
    )
    .await;
    let started = Instant::now();
    poll_until("the permission seen on B", WAIT, || async {
        (admin(&b, "keys.verifyKey", verify.clone()).await["valid"] == true).then_some(())
    })
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "a permission took {:?}",
        started.elapsed()
    );

    // A key unknown to B (and remembered as unknown) becomes known once A creates it:
    // identities and keys made on B show up on A too.
    let identity = json!({"externalId": "user_7", "meta": {"plan": "pro"}});
    let (status, _) = b
        .admin_post("/v2/identities.createIdentity", Some(ROOT), &identity)
        .await;
    assert_eq!(status, 200);
    let got = admin(&a, "identities.getIdentity", json!({"externalId": "user_7"})).await;
    assert_eq!(got["meta"]["plan"], "pro", "{got}");
    let (_, key) = create_key(&b).await;
    assert_eq!(status_with(&a, &key).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_outlive_the_replicas_and_only_hashes_are_stored() {
    let pg = Postgres::start().await;
    let text = config(&pg);
    let a = Gateway::start(&text).await;
    let (_, key) = create_key(&a).await;
    drop(a);

    // A new replica with its own, empty state directory serves the key.
    let c = Gateway::start(&text).await;
    assert_eq!(status_with(&c, &key).await, 200);

    let db = pg.connect().await;
    let tables = db
        .query(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'",
            &[],
        )
        .await
        .unwrap();
    assert!(tables.len() >= 3, "keygate's tables exist");
    for row in tables {
        let table: String = row.get(0);
        let rows = db
            .query(&format!("SELECT t::text FROM \"{table}\" t"), &[])
            .await
            .unwrap();
        for row in rows {
            let text: String = row.get(0);
            assert!(!text.contains(&key), "{table} holds the plaintext key: {text}");
            assert!(!text.contains(ROOT), "{table} holds the root key: {text}");
        }
    }
    let versions = db.query("SELECT version FROM keygate_schema", &[]).await.unwrap();
    assert!(!versions.is_empty(), "the schema version is recorded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_keeps_cached_keys_working_and_heals_without_a_restart() {
    let mut pg = Postgres::start().await;
    let text = config(&pg);
    let (gw, other) = tokio::join!(Gateway::start(&text), Gateway::start(&text));
    let (_, cached) = create_key(&gw).await;
    let (revoked_id, revoked) = create_key(&gw).await;
    assert_eq!(status_with(&gw, &cached).await, 200);
    assert_eq!(status_with(&gw, &revoked).await, 200);
    admin(&gw, "keys.deleteKey", json!({"keyId": revoked_id})).await;
    assert_eq!(status_with(&gw, &revoked).await, 401);

    pg.stop().await;

    assert_eq!(
        status_with(&gw, &cached).await,
        200,
        "a key verified before the outage keeps verifying"
    );
    assert_eq!(
        status_with(&gw, &revoked).await,
        401,
        "a revocation made before the outage holds"
    );
    let unknown = gw
        .get("keys.test", "/")
        .bearer_auth("sk_never_seen")
        .send()
        .await
        .unwrap();
    assert_problem(
        unknown,
        503,
        "err:frontline:platform:store_unavailable",
        "Service Unavailable",
    )
    .await;
    let (status, body) = gw
        .admin_post("/v2/keys.createKey", Some(ROOT), &json!({"apiId": "ks_fleet"}))
        .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(
        body["error"]["code"], "err:unkey:application:service_unavailable",
        "{body}"
    );
    let open = gw.get("open.test", "/").send().await.unwrap();
    assert_eq!(open.status(), 200, "routes without keyauth are unaffected");
    assert!(gw.metric("keygate_store_errors_total").await > 0.0, "outage counted");

    pg.restart().await;
    let healed = Instant::now();
    wait_for("admin writes work again", Duration::from_secs(5), || async {
        gw.admin_post("/v2/keys.createKey", Some(ROOT), &json!({"apiId": "ks_fleet"}))
            .await
            .0
            == 200
    })
    .await;
    let (fresh_id, fresh) = create_key(&gw).await;
    assert_eq!(status_with(&gw, &fresh).await, 200);
    assert_eq!(status_with(&gw, &cached).await, 200);
    // The replicas hear each other again (a listener that reconnects drops its caches,
    // so even a change announced before it listened again is honoured).
    assert_eq!(status_with(&other, &fresh).await, 200);
    admin(&gw, "keys.deleteKey", json!({"keyId": fresh_id})).await;
    time_until_status(&other, &fresh, 401).await;
    assert!(
        healed.elapsed() < Duration::from_secs(5),
        "healed after {:?}",
        healed.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_migrate_copies_the_embedded_store_into_the_database_once() {
    let pg = Postgres::start().await;
    let mut single = Gateway::start(&embedded_config()).await;
    let created = admin(
        &single,
        "keys.createKey",
        json!({"apiId": "ks_fleet", "externalId": "user_9", "permissions": ["docs.read"], "roles": ["reader"]}),
    )
    .await;
    let key = created["key"].as_str().unwrap().to_string();
    admin(
        &single,
        "ratelimit.setOverride",
        json!({"namespace": "api", "identifier": "user_9", "limit": 5, "duration": 60000}),
    )
    .await;
    single.signal("TERM");
    single.wait_exit(WAIT).await;

    let config_path = single.config_path.display().to_string();
    let migrate = ["state", "migrate", "--config", config_path.as_str(), "--to", &pg.url()];
    let first = single.cli(&migrate, &[]).await;
    let report = String::from_utf8_lossy(&first.stdout).to_string();
    assert!(
        first.status.success(),
        "{report}{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let line = |report: &str, what: &str| {
        report
            .lines()
            .find(|l| l.starts_with(&format!("{what} ")))
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|w| w.parse::<u32>().ok())
            .collect::<Vec<_>>()
    };
    assert_eq!(line(&report, "keys"), [1, 0], "{report}");
    assert_eq!(line(&report, "permissions"), [1, 0], "{report}");
    assert_eq!(line(&report, "rate-limit overrides"), [1, 0], "{report}");
    let again = single.cli(&migrate, &[]).await;
    let report = String::from_utf8_lossy(&again.stdout).to_string();
    assert!(again.status.success(), "{report}");
    assert_eq!(line(&report, "keys"), [0, 1], "a second run copies nothing: {report}");

    let fleet = Gateway::start(&config(&pg)).await;
    assert_eq!(
        status_with(&fleet, &key).await,
        200,
        "the migrated key verifies against the database"
    );
    let got = admin(&fleet, "keys.getKey", json!({"keyId": created["keyId"]})).await;
    assert_eq!(got["permissions"], json!(["docs.read"]), "{got}");
    assert_eq!(got["roles"], json!(["reader"]), "{got}");
    let limit = admin(
        &fleet,
        "ratelimit.getOverride",
        json!({"namespace": "api", "identifier": "user_9"}),
    )
    .await;
    assert_eq!(limit["limit"], 5, "{limit}");

    let nowhere = single
        .cli(
            &[
                "state",
                "migrate",
                "--config",
                config_path.as_str(),
                "--to",
                "postgres://postgres@127.0.0.1:1/none",
            ],
            &[],
        )
        .await;
    assert!(!nowhere.status.success());
    assert!(
        String::from_utf8_lossy(&nowhere.stderr).contains("unreachable"),
        "{}",
        String::from_utf8_lossy(&nowhere.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sslmode_require_speaks_tls_verified_against_the_trusted_roots() {
    let pg = Postgres::start_with_tls().await;
    let trusted = pg.certificate().display().to_string();
    let text = format!(
        "state:\n  database: \"{}?sslmode=require\"\n{}",
        pg.url(),
        embedded_config()
    );
    // rustls-native-certs reads the system roots from SSL_CERT_FILE when set.
    let gw = Launch::new(text.clone()).env("SSL_CERT_FILE", &trusted).start().await;
    let (_, key) = create_key(&gw).await;
    assert_eq!(status_with(&gw, &key).await, 200);
    let db = pg.connect().await;
    let encrypted: i64 = db
        .query_one("SELECT count(*) FROM pg_stat_ssl WHERE ssl", &[])
        .await
        .unwrap()
        .get(0);
    assert!(encrypted >= 1, "the gateway's connections use TLS");

    // A server certificate nobody trusts is refused: the gateway does not start.
    let dir = tempfile::tempdir().unwrap();
    let (stranger, _) = support::tls::self_signed_pem(&["127.0.0.1"]);
    std::fs::write(dir.path().join("ca.pem"), stranger).unwrap();
    let listen = format!("listen:\n  http: \"{}\"\n  admin: \"{}\"\n", free_addr(), free_addr());
    std::fs::write(dir.path().join("keygate.yaml"), listen + &text).unwrap();
    let cwd = dir.path().to_path_buf();
    let ca = cwd.join("ca.pem").display().to_string();
    let refused = tokio::task::spawn_blocking(move || {
        run_keygate(
            &["run", "--config", "keygate.yaml"],
            &cwd,
            &[("SSL_CERT_FILE", &ca)],
            &[],
        )
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success(),
        "started against an untrusted server: {stderr}"
    );
    assert!(stderr.contains("TLS") || stderr.contains("certificate"), "{stderr}");
}

/// Spends `key` on the paid route `rounds` times, alternating between the
/// replicas; returns how many requests were admitted.
async fn admitted_alternating(replicas: [&Gateway; 2], key: &str, rounds: usize) -> usize {
    let mut admitted = 0;
    for round in 0..rounds {
        let gw = replicas[round % 2];
        let status = gw.get("paid.test", "/").bearer_auth(key).send().await.unwrap().status();
        if status == 200 {
            admitted += 1;
        }
    }
    admitted
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credits_spent_on_two_replicas_admit_exactly_the_balance() {
    let pg = Postgres::start().await;
    let text = config(&pg);
    let (a, b) = tokio::join!(Gateway::start(&text), Gateway::start(&text));

    let created = admin(
        &a,
        "keys.createKey",
        json!({"apiId": "ks_fleet", "credits": {"remaining": 20}}),
    )
    .await;
    let (id, key) = (created["keyId"].clone(), created["key"].as_str().unwrap().to_string());
    assert_eq!(
        admitted_alternating([&a, &b], &key, 30).await,
        20,
        "an API key with 20 credits"
    );
    let refused = b.get("paid.test", "/").bearer_auth(&key).send().await.unwrap();
    assert_eq!(refused.status(), 429, "usage exceeded");

    // A balance set through one replica is what both spend from next.
    admin(
        &b,
        "keys.updateCredits",
        json!({"keyId": id, "operation": "set", "value": 5}),
    )
    .await;
    assert_eq!(
        admitted_alternating([&a, &b], &key, 10).await,
        5,
        "after setting 5 credits"
    );
    let got = admin(&a, "keys.getKey", json!({"keyId": id})).await;
    assert_eq!(got["credits"]["remaining"], 0, "{got}");

    // Config keys share the database's ledger too when there is no Redis.
    assert_eq!(
        admitted_alternating([&a, &b], "sk_config_fleet", 10).await,
        6,
        "a config key with 6 credits"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_created_on_one_replica_is_served_by_every_replica() {
    let pg = Postgres::start().await;
    let instance = support::upstreams::Upstream::counting("v1").await;
    let text = format!(
        "{}platform: {{base_domain: kg.test}}\nprojects:\n  - {{id: proj_api, slug: api}}\n",
        config(&pg)
    );
    let (a, b) = tokio::join!(Gateway::start(&text), Gateway::start(&text));
    let body = json!({"projectId": "proj_api", "environmentSlug": "production", "branch": "main",
                      "instances": [instance.addr_str()]});
    let created = admin(&a, "deploy.createDeployment", body).await;
    let id = created["deploymentId"].as_str().unwrap().to_string();
    for replica in [&a, &b] {
        poll_until("api.kg.test served on every replica", WAIT, || async {
            let response = replica.get("api.kg.test", "/").send().await.unwrap();
            (response.headers().get("x-upstream").is_some_and(|v| v == "v1")).then_some(())
        })
        .await;
    }
    let seen_on_b = admin(&b, "deploy.getDeployment", json!({"deploymentId": id})).await;
    assert_eq!(seen_on_b["live"], true, "{seen_on_b}");
}
