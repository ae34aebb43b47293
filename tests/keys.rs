//! API keys through the real gateway: every `keyauth` outcome with its status and code, key
//! locations and their order, the exact Principal, credits under
//! concurrency, refill, admin changes taking effect at once, the
//! Unkey-compatible admin API (auth, validation, every endpoint), the CLI,
//! and a store that survives `kill -9` in the middle of writes.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use support::gateway::Gateway;
use support::load_errors::names_some_line;
use support::net::client;
use support::problem::assert_problem;
use support::wait::{wait_for, WAIT};

const ROOT: &str = "root_test_key";

fn sha256_hex(text: &str) -> String {
    keygate::keys::model::hash_key(text)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect()
}

/// Config keys of every kind, and one route per keyauth flavour (all on the echo instance).
fn config() -> String {
    let deployment = |id: &str, keyauth: &str| {
        format!("  - id: {id}\n    instances: [\"builtin:echo\"]\n    policies:\n      - id: auth\n        keyauth: {keyauth}\n")
    };
    let mut text = format!(
        r#"admin:
  root_keys: ["{ROOT}"]
keyspaces:
  - id: ks_main
    name: main
    keys:
      - id: key_static
        key: sk_static_full
        name: ACME prod
        meta: {{org: acme}}
        roles: [writer, admin]
        permissions: [docs.*, api.read]
        identity: {{external_id: user_42, meta: {{plan: pro}}}}
        expires: "2100-01-01T00:00:00Z"
        credits: {{remaining: 100}}
      - {{id: key_plain, key: sk_plain}}
      - {{id: key_disabled, key: sk_disabled, enabled: false}}
      - {{id: key_expired, key: sk_expired, expires: 1000}}
      - {{id: key_hashed, hash: "sha256:{hashed}"}}
      - {{id: key_broke, key: sk_broke, credits: {{remaining: 0}}}}
      - {{id: key_burst, key: sk_burst, ratelimits: [{{name: burst, limit: 2, duration: 60s}}]}}
      - {{id: key_auto, key: sk_auto, ratelimits: [{{name: auto, limit: 1, duration: 60s, auto_apply: true}}]}}
  - id: ks_other
    keys:
      - {{id: key_other, key: sk_other}}
deployments:
"#,
        hashed = sha256_hex("sk_hashed")
    );
    for (id, keyauth) in [
        ("dep_open", "{keyspaces: [ks_main], credits: 0}"),
        ("dep_paid", "{keyspaces: [ks_main]}"),
        ("dep_perm", "{keyspaces: [ks_main], credits: 0, permission_query: 'api.read AND (api.write OR docs.edit)'}"),
        ("dep_paid_perm", "{keyspaces: [ks_main], credits: 1, permission_query: api.write}"),
        (
            "dep_locs",
            "{keyspaces: [ks_main], credits: 0, locations: [{header: {name: X-API-Key, strip_prefix: 'ApiKey '}}, {query: {name: api_key}}, {bearer: {}}]}",
        ),
        ("dep_limits", "{keyspaces: [ks_main], credits: 0, ratelimits: [{name: burst}]}"),
        ("dep_inline", "{keyspaces: [ks_main], credits: 0, ratelimits: [{name: inline, limit: 1, duration: 60s}]}"),
        ("dep_broken", "{keyspaces: [ks_main], credits: 0, ratelimits: [{name: nowhere}]}"),
        (
            "dep_strip",
            "{keyspaces: [ks_main], credits: 0, strip_credential: true, locations: [{query: {name: api_key}}, {bearer: {}}]}",
        ),
    ] {
        text.push_str(&deployment(id, keyauth));
    }
    text.push_str("routes:\n");
    for host in [
        "open",
        "paid",
        "perm",
        "paid_perm",
        "locs",
        "limits",
        "inline",
        "broken",
        "strip",
    ] {
        text.push_str(&format!(
            "  - host: {}.test\n    deployment: dep_{host}\n",
            host.replace('_', "-")
        ));
    }
    text
}

async fn start() -> Gateway {
    Gateway::start(&config()).await
}

/// GET `host` with `Authorization: Bearer key`.
async fn with_bearer(gw: &Gateway, host: &str, key: &str) -> reqwest::Response {
    gw.get(host, "/").bearer_auth(key).send().await.unwrap()
}

/// The Principal the instance received (the echo instance answers with its request).
async fn principal(resp: reqwest::Response) -> Value {
    assert_eq!(resp.status(), 200, "request admitted");
    let echoed: Value = resp.json().await.unwrap();
    let raw = echoed["headers"]["x-unkey-principal"]
        .as_str()
        .expect("X-Unkey-Principal forwarded");
    serde_json::from_str(raw).unwrap()
}

async fn principal_text(resp: reqwest::Response) -> String {
    assert_eq!(resp.status(), 200, "request admitted");
    let echoed: Value = resp.json().await.unwrap();
    echoed["headers"]["x-unkey-principal"]
        .as_str()
        .expect("X-Unkey-Principal forwarded")
        .to_string()
}

async fn admin(gw: &Gateway, op: &str, body: Value) -> Value {
    let (status, answer) = gw.admin_post(&format!("/v2/{op}"), Some(ROOT), &body).await;
    assert_eq!(status, 200, "{op}: {answer}");
    assert!(
        answer["meta"]["requestId"]
            .as_str()
            .is_some_and(|r| r.starts_with("req_")),
        "{answer}"
    );
    answer["data"].clone()
}

/// Creates a store key in `ks_main`; returns (keyId, key).
async fn create_key(gw: &Gateway, extra: Value) -> (String, String) {
    let mut body = json!({"apiId": "ks_main"});
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    let data = admin(gw, "keys.createKey", body).await;
    (
        data["keyId"].as_str().unwrap().to_string(),
        data["key"].as_str().unwrap().to_string(),
    )
}

async fn verify_code(gw: &Gateway, body: Value) -> String {
    admin(gw, "keys.verifyKey", body).await["code"]
        .as_str()
        .unwrap()
        .to_string()
}

fn header(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers().get(name).map(|v| v.to_str().unwrap().to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn every_verification_outcome_has_its_status_and_code() {
    let gw = start().await;
    let missing = "err:frontline:client:missing_credentials";
    let invalid = "err:frontline:client:invalid_key";

    assert_problem(
        gw.get("open.test", "/").send().await.unwrap(),
        401,
        missing,
        "Unauthorized",
    )
    .await;
    let basic = gw
        .get("open.test", "/")
        .header("authorization", "Basic dXNlcjpwdw==")
        .send()
        .await
        .unwrap();
    assert_problem(basic, 401, missing, "Unauthorized").await;
    let empty = gw
        .get("open.test", "/")
        .header("authorization", "Bearer   ")
        .send()
        .await
        .unwrap();
    assert_problem(empty, 401, missing, "Unauthorized").await;

    for (key, why) in [
        ("sk_unknown", "unknown"),
        ("sk_disabled", "disabled"),
        ("sk_expired", "expired"),
        ("sk_other", "another keyspace"),
    ] {
        let resp = with_bearer(&gw, "open.test", key).await;
        let body = assert_problem(resp, 401, invalid, "Unauthorized").await;
        assert_eq!(
            body["error"]["detail"], "The API key is invalid, disabled or expired.",
            "{why}"
        );
    }
    assert_eq!(with_bearer(&gw, "open.test", "sk_plain").await.status(), 200);
    assert_eq!(
        with_bearer(&gw, "open.test", "sk_hashed").await.status(),
        200,
        "static key given by hash"
    );

    // Permissions: granted through `docs.*`; refused for a key without them.
    assert_eq!(with_bearer(&gw, "perm.test", "sk_static_full").await.status(), 200);
    let refused = with_bearer(&gw, "perm.test", "sk_plain").await;
    assert_problem(
        refused,
        403,
        "err:frontline:client:insufficient_permissions",
        "Forbidden",
    )
    .await;

    // No credits → usage_exceeded even though permissions would fail too; no Retry-After.
    let broke = with_bearer(&gw, "paid-perm.test", "sk_broke").await;
    assert_eq!(header(&broke, "retry-after"), None);
    assert_problem(broke, 429, "err:frontline:client:usage_exceeded", "Too Many Requests").await;
    // A 403 for permissions spends nothing: the next paid request sees 100 - 1.
    let refused = with_bearer(&gw, "paid-perm.test", "sk_static_full").await;
    assert_eq!(refused.status(), 403);
    let p = principal(with_bearer(&gw, "paid.test", "sk_static_full").await).await;
    assert_eq!(p["source"]["key"]["credits"], 99);

    // Named key limit through the policy: 2 per minute, headers on success and failure.
    for remaining in ["1", "0"] {
        let ok = with_bearer(&gw, "limits.test", "sk_burst").await;
        assert_eq!(ok.status(), 200);
        assert_eq!(header(&ok, "x-ratelimit-limit").as_deref(), Some("2"));
        assert_eq!(header(&ok, "x-ratelimit-remaining").as_deref(), Some(remaining));
        assert!(header(&ok, "x-ratelimit-reset").is_some());
        assert_eq!(header(&ok, "retry-after"), None);
    }
    let limited = with_bearer(&gw, "limits.test", "sk_burst").await;
    let retry: u64 = header(&limited, "retry-after").expect("Retry-After").parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(header(&limited, "x-ratelimit-remaining").as_deref(), Some("0"));
    assert_problem(limited, 429, "err:frontline:client:rate_limited", "Too Many Requests").await;

    // auto_apply limits run on every verification; inline limits apply to keys without one.
    assert_eq!(with_bearer(&gw, "open.test", "sk_auto").await.status(), 200);
    assert_eq!(with_bearer(&gw, "open.test", "sk_auto").await.status(), 429);
    assert_eq!(with_bearer(&gw, "inline.test", "sk_plain").await.status(), 200);
    assert_eq!(with_bearer(&gw, "inline.test", "sk_plain").await.status(), 429);
    // A named limit nobody has, without inline values: 500, not a panic.
    let broken = with_bearer(&gw, "broken.test", "sk_plain").await;
    assert_problem(
        broken,
        500,
        "err:frontline:platform:internal_server_error",
        "Internal Server Error",
    )
    .await;

    gw.wait_metric(
        r#"keygate_policy_decisions_total{policy_type="keyauth",decision="deny"}"#,
        14.0,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn key_locations_are_tried_in_order() {
    let gw = start().await;
    let key_id = |p: Value| p["source"]["key"]["keyId"].as_str().unwrap().to_string();
    let locs = |path: &str| gw.get("locs.test", path);

    let p = principal(locs("/").header("x-api-key", "ApiKey sk_plain").send().await.unwrap()).await;
    assert_eq!(key_id(p), "key_plain");
    let p = principal(locs("/").header("X-API-KEY", "apikey sk_hashed").send().await.unwrap()).await;
    assert_eq!(key_id(p), "key_hashed", "strip_prefix is case-insensitive");
    // A header without the prefix counts as empty: the query is next.
    let p = principal(
        locs("/?api_key=sk_plain")
            .header("x-api-key", "sk_hashed")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(key_id(p), "key_plain");
    // Empty query value: bearer is next.
    let p = principal(locs("/?api_key=").bearer_auth("sk_hashed").send().await.unwrap()).await;
    assert_eq!(key_id(p), "key_hashed");
    // Percent-decoded query.
    let p = principal(locs("/?x=1&api_key=sk%5Fplain").send().await.unwrap()).await;
    assert_eq!(key_id(p), "key_plain");
    // First non-empty location wins, even when its key is bad.
    let p = principal(
        locs("/?api_key=sk_bogus")
            .header("x-api-key", "ApiKey sk_plain")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(key_id(p), "key_plain");
    let bad_first = locs("/?api_key=sk_plain")
        .header("x-api-key", "ApiKey sk_bogus")
        .send()
        .await
        .unwrap();
    assert_problem(bad_first, 401, "err:frontline:client:invalid_key", "Unauthorized").await;
    let none = locs("/").header("x-api-key", "Token sk_plain").send().await.unwrap();
    assert_problem(none, 401, "err:frontline:client:missing_credentials", "Unauthorized").await;

    // The bearer scheme is case-insensitive; the credential is forwarded unchanged.
    let resp = gw
        .get("open.test", "/")
        .header("authorization", "BEARER sk_plain")
        .send()
        .await
        .unwrap();
    let echoed: Value = resp.json().await.unwrap();
    assert_eq!(echoed["headers"]["authorization"], "BEARER sk_plain");
    // ... unless strip_credential says otherwise.
    let resp = gw
        .get("strip.test", "/p?a=1&api_key=sk_plain&b=%20")
        .send()
        .await
        .unwrap();
    let echoed: Value = resp.json().await.unwrap();
    assert_eq!(
        (echoed["path"].clone(), echoed["query"].clone()),
        (json!("/p"), json!("a=1&b=%20")),
        "{echoed}"
    );
    let resp = gw
        .get("strip.test", "/p")
        .bearer_auth("sk_plain")
        .header("x-other", "1")
        .send()
        .await
        .unwrap();
    let echoed: Value = resp.json().await.unwrap();
    assert!(echoed["headers"].get("authorization").is_none(), "{echoed}");
    assert!(echoed["headers"]["x-unkey-principal"].is_string());
}

#[tokio::test(flavor = "multi_thread")]
async fn principal_has_the_exact_spec_shape() {
    let gw = start().await;
    // Full: identity, name, expiry, credits (after this request), meta, sorted roles and permissions.
    let full = principal_text(with_bearer(&gw, "paid.test", "sk_static_full").await).await;
    assert_eq!(
        full,
        r#"{"version":"v1","subject":"user_42","type":"API_KEY","identity":{"externalId":"user_42","meta":{"plan":"pro"}},"source":{"key":{"keyId":"key_static","keySpaceId":"ks_main","name":"ACME prod","expiresAt":4102444800000,"credits":99,"meta":{"org":"acme"},"roles":["admin","writer"],"permissions":["api.read","docs.*"]}}}"#
    );
    // Minimal: subject is the key id, only meta is always there.
    let spoofed = gw
        .get("open.test", "/")
        .bearer_auth("sk_plain")
        .header("x-unkey-principal", r#"{"subject":"admin"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(
        principal_text(spoofed).await,
        r#"{"version":"v1","subject":"key_plain","type":"API_KEY","source":{"key":{"keyId":"key_plain","keySpaceId":"ks_main","meta":{}}}}"#
    );
    // A store key with an identity but no meta: identity.meta is {}; credits 0 verifies without spending.
    let (id, key) = create_key(
        &gw,
        json!({"externalId": "cust_7", "credits": {"remaining": 5}, "roles": ["b", "a"]}),
    )
    .await;
    let p = principal_text(with_bearer(&gw, "open.test", &key).await).await;
    assert_eq!(
        p,
        format!(
            r#"{{"version":"v1","subject":"cust_7","type":"API_KEY","identity":{{"externalId":"cust_7","meta":{{}}}},"source":{{"key":{{"keyId":"{id}","keySpaceId":"ks_main","credits":5,"meta":{{}},"roles":["a","b"]}}}}}}"#
        )
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn credits_are_exact_under_64_concurrent_requests() {
    let gw = Arc::new(start().await);
    let (id, key) = create_key(&gw, json!({"credits": {"remaining": 20}})).await;
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let gw = gw.clone();
            let key = key.clone();
            tokio::spawn(async move {
                let resp = with_bearer(&gw, "paid.test", &key).await;
                match resp.status().as_u16() {
                    200 => Some(principal(resp).await["source"]["key"]["credits"].as_i64().unwrap()),
                    429 => None,
                    other => panic!("unexpected status {other}"),
                }
            })
        })
        .collect();
    let mut balances = Vec::new();
    for task in tasks {
        if let Some(balance) = task.await.unwrap() {
            balances.push(balance);
        }
    }
    balances.sort();
    assert_eq!(
        balances,
        (0..20).collect::<Vec<i64>>(),
        "exactly 20 admitted, each saw its own balance"
    );
    let data = admin(&gw, "keys.getKey", json!({"keyId": id})).await;
    assert_eq!(data["credits"]["remaining"], 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn refill_replaces_the_balance_and_balances_survive_restarts() {
    let mut gw = start().await;
    let refill = json!({"interval": "daily", "amount": 5});
    let (empty_id, empty) = create_key(&gw, json!({"credits": {"remaining": 0, "refill": refill}})).await;
    let (rich_id, rich) = create_key(&gw, json!({"credits": {"remaining": 100, "refill": refill}})).await;
    let (spent_id, spent) = create_key(&gw, json!({"credits": {"remaining": 10}})).await;
    assert_eq!(
        with_bearer(&gw, "paid.test", &empty).await.status(),
        429,
        "created today: no refill yet"
    );
    assert_eq!(with_bearer(&gw, "paid.test", &spent).await.status(), 200);
    // Spent credits are written back within a second.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    gw.kill9().await;

    // Move the two refilling keys' balances into yesterday's period.
    let db = rusqlite::Connection::open(gw.dir.path().join("state/keys/keys.db")).unwrap();
    let moved = db
        .execute(
            "UPDATE credits SET period = period - 1 WHERE key_id IN (?1, ?2)",
            [&empty_id, &rich_id],
        )
        .unwrap();
    assert_eq!(moved, 2);
    drop(db);
    gw.restart().await;

    let p = principal(with_bearer(&gw, "paid.test", &empty).await).await;
    assert_eq!(p["source"]["key"]["credits"], 4, "refilled to 5, then 1 spent");
    let p = principal(with_bearer(&gw, "paid.test", &rich).await).await;
    assert_eq!(p["source"]["key"]["credits"], 4, "replaced by 5, not added to 100");
    let p = principal(with_bearer(&gw, "paid.test", &spent).await).await;
    assert_eq!(
        p["source"]["key"]["credits"], 8,
        "the spend before the restart was kept"
    );
    let data = admin(&gw, "keys.getKey", json!({"keyId": spent_id})).await;
    assert_eq!(data["credits"], json!({"remaining": 8}));
}

#[tokio::test(flavor = "multi_thread")]
async fn disable_expire_reroll_and_delete_take_effect_at_once() {
    let gw = start().await;
    let (id, key) = create_key(&gw, json!({})).await;
    assert_eq!(with_bearer(&gw, "open.test", &key).await.status(), 200, "now cached");

    admin(&gw, "keys.updateKey", json!({"keyId": id, "enabled": false})).await;
    assert_eq!(with_bearer(&gw, "open.test", &key).await.status(), 401);
    assert_eq!(verify_code(&gw, json!({"key": key})).await, "DISABLED");
    admin(&gw, "keys.updateKey", json!({"keyId": id, "enabled": true})).await;
    assert_eq!(with_bearer(&gw, "open.test", &key).await.status(), 200);

    admin(&gw, "keys.updateKey", json!({"keyId": id, "expires": 1000})).await;
    assert_eq!(with_bearer(&gw, "open.test", &key).await.status(), 401);
    assert_eq!(verify_code(&gw, json!({"key": key})).await, "EXPIRED");
    admin(&gw, "keys.updateKey", json!({"keyId": id, "expires": null})).await;
    assert_eq!(with_bearer(&gw, "open.test", &key).await.status(), 200);

    let rerolled = admin(&gw, "keys.rerollKey", json!({"keyId": id, "expiration": 0})).await;
    let new_key = rerolled["key"].as_str().unwrap();
    assert_ne!(rerolled["keyId"], json!(id));
    assert_eq!(
        with_bearer(&gw, "open.test", &key).await.status(),
        401,
        "the old key is revoked at once"
    );
    assert_eq!(with_bearer(&gw, "open.test", new_key).await.status(), 200);

    admin(&gw, "keys.deleteKey", json!({"keyId": rerolled["keyId"]})).await;
    assert_eq!(with_bearer(&gw, "open.test", new_key).await.status(), 401);
    assert_eq!(verify_code(&gw, json!({"key": new_key})).await, "NOT_FOUND");
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_api_auth_validation_and_errors() {
    let gw = start().await;
    let body = json!({"keyId": "key_plain"});
    let (status, answer) = gw.admin_post("/v2/keys.getKey", None, &body).await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (401, Some("err:unkey:authentication:missing"))
    );
    let (status, answer) = gw.admin_post("/v2/keys.getKey", Some("wrong"), &body).await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (401, Some("err:unkey:authentication:key_not_found"))
    );
    assert!(answer["meta"]["requestId"].as_str().unwrap().starts_with("req_"));

    let bad = json!({
        "apiId": "bad id!", "byteLength": 8, "expires": -1, "credits": {"remaining": -1},
        "ratelimits": [{"name": "x", "limit": 0}], "permissions": ["a b"], "addedByANewerUnkey": 1
    });
    let (status, answer) = gw.admin_post("/v2/keys.createKey", Some(ROOT), &bad).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["error"]["code"], "err:unkey:application:invalid_input");
    assert_eq!(answer["error"]["status"], 400);
    let mut locations: Vec<&str> = answer["error"]["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["location"].as_str().unwrap())
        .collect();
    locations.sort();
    assert_eq!(
        locations,
        [
            "body.apiId",
            "body.byteLength",
            "body.credits.remaining",
            "body.expires",
            "body.permissions[0]",
            "body.ratelimits[0].duration",
            "body.ratelimits[0].limit",
            "body.ratelimits[0].name",
        ]
    );
    let not_json = gw
        .client()
        .post(gw.admin_url("/v2/apis.createApi"))
        .bearer_auth(ROOT)
        .body("{nope")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status(), 400);

    for (op, body, status, code) in [
        (
            "keys.getKey",
            json!({"keyId": "key_nope"}),
            404,
            "err:unkey:data:key_not_found",
        ),
        (
            "apis.getApi",
            json!({"apiId": "api_nope"}),
            404,
            "err:unkey:data:api_not_found",
        ),
        (
            "keys.createKey",
            json!({"apiId": "api_nope"}),
            404,
            "err:unkey:data:api_not_found",
        ),
        (
            "keys.updateKey",
            json!({"keyId": "key_static", "enabled": false}),
            412,
            "err:unkey:application:protected_resource",
        ),
        (
            "keys.deleteKey",
            json!({"keyId": "key_static"}),
            412,
            "err:unkey:application:protected_resource",
        ),
        (
            "keys.updateCredits",
            json!({"keyId": "key_static", "operation": "set", "value": 1}),
            412,
            "err:unkey:application:protected_resource",
        ),
        (
            "keys.rerollKey",
            json!({"keyId": "key_static", "expiration": 0}),
            412,
            "err:unkey:application:protected_resource",
        ),
        (
            "apis.deleteApi",
            json!({"apiId": "ks_main"}),
            412,
            "err:unkey:application:protected_resource",
        ),
        (
            "keys.verifyKey",
            json!({"key": "sk_plain", "permissions": "a AND"}),
            400,
            "err:unkey:application:invalid_input",
        ),
        (
            "keys.updateCredits",
            json!({"keyId": "key_plain", "operation": "grow"}),
            400,
            "err:unkey:application:invalid_input",
        ),
    ] {
        let (got, answer) = gw.admin_post(&format!("/v2/{op}"), Some(ROOT), &body).await;
        assert_eq!(
            (got, answer["error"]["code"].as_str()),
            (status, Some(code)),
            "{op}: {answer}"
        );
    }

    // Static keys are visible, read-only.
    let data = admin(&gw, "keys.getKey", json!({"keyId": "key_static"})).await;
    assert_eq!(data["identity"]["externalId"], "user_42");
    assert_eq!(data["credits"]["remaining"], 100);

    // verifyKey answers 200 with valid:false and Unkey's codes.
    for (body, code) in [
        (json!({"key": "sk_nope"}), "NOT_FOUND"),
        (json!({"key": "sk_disabled"}), "DISABLED"),
        (json!({"key": "sk_expired"}), "EXPIRED"),
        (json!({"key": "sk_broke"}), "USAGE_EXCEEDED"),
        (
            json!({"key": "sk_plain", "permissions": "api.read"}),
            "INSUFFICIENT_PERMISSIONS",
        ),
        (
            json!({"key": "sk_static_full", "permissions": "api.read AND docs.x", "credits": {"cost": 0}}),
            "VALID",
        ),
        (json!({"key": "sk_other"}), "VALID"),
    ] {
        let data = admin(&gw, "keys.verifyKey", body.clone()).await;
        assert_eq!(data["code"], code, "{body}: {data}");
        assert_eq!(data["valid"], code == "VALID", "{data}");
    }
    assert_eq!(
        admin(&gw, "keys.verifyKey", json!({"key": "sk_nope"})).await,
        json!({"valid": false, "code": "NOT_FOUND"})
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_api_round_trip_through_every_endpoint() {
    let gw = start().await;
    let api = admin(&gw, "apis.createApi", json!({"name": "payments"})).await["apiId"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(api.starts_with("api_"));
    assert_eq!(
        admin(&gw, "apis.getApi", json!({"apiId": api})).await,
        json!({"id": api, "name": "payments"})
    );

    let created = admin(
        &gw,
        "keys.createKey",
        json!({
            "apiId": api, "prefix": "pay", "name": "Checkout", "externalId": "cust_1",
            "meta": {"plan": "pro"}, "roles": ["writer", "admin"], "permissions": ["pay.write", "pay.read"],
            "expires": 4102444000000i64, "byteLength": 24,
            "credits": {"remaining": 10, "refill": {"interval": "monthly", "amount": 10, "refillDay": 31}},
            "ratelimits": [{"name": "requests", "limit": 100, "duration": 60000, "autoApply": true}],
            "enabled": true
        }),
    )
    .await;
    let (id, key) = (
        created["keyId"].as_str().unwrap().to_string(),
        created["key"].as_str().unwrap().to_string(),
    );
    assert!(id.starts_with("key_") && key.starts_with("pay_"), "{created}");

    let mut got = admin(&gw, "keys.getKey", json!({"keyId": id})).await;
    assert!(key.starts_with(got["start"].as_str().unwrap()) && got["start"].as_str().unwrap().len() == 8);
    assert!(got["createdAt"].as_i64().unwrap() > 0);
    assert!(got["identity"]["id"].as_str().unwrap().starts_with("id_"));
    assert!(got["ratelimits"][0]["id"].as_str().unwrap().starts_with("rl_"));
    for volatile in ["start", "createdAt"] {
        got.as_object_mut().unwrap().remove(volatile);
    }
    got["identity"].as_object_mut().unwrap().remove("id");
    got["ratelimits"][0].as_object_mut().unwrap().remove("id");
    assert_eq!(
        got,
        json!({
            "keyId": id, "enabled": true, "name": "Checkout", "meta": {"plan": "pro"}, "expires": 4102444000000i64,
            "permissions": ["pay.read", "pay.write"], "roles": ["admin", "writer"],
            "credits": {"remaining": 10, "refill": {"interval": "monthly", "amount": 10, "refillDay": 31}},
            "identity": {"externalId": "cust_1", "meta": {}},
            "ratelimits": [{"name": "requests", "limit": 100, "duration": 60000, "autoApply": true}]
        })
    );

    let verified = admin(
        &gw,
        "keys.verifyKey",
        json!({"key": key, "credits": {"cost": 2}, "permissions": "pay.read AND pay.write"}),
    )
    .await;
    assert_eq!(
        (verified["valid"].clone(), verified["credits"].clone()),
        (json!(true), json!(8))
    );
    assert_eq!(verified["ratelimits"][0]["remaining"], 99);
    assert_eq!(verified["ratelimits"][0]["exceeded"], false);
    assert_eq!(verified["identity"]["externalId"], "cust_1");

    let credits = |op: &str, value: Value| json!({"keyId": id, "operation": op, "value": value});
    let refill = json!({"interval": "monthly", "amount": 10, "refillDay": 31});
    assert_eq!(
        admin(&gw, "keys.updateCredits", credits("increment", json!(5))).await,
        json!({"remaining": 13, "refill": refill})
    );
    assert_eq!(
        admin(&gw, "keys.updateCredits", credits("decrement", json!(20))).await["remaining"],
        0
    );
    assert_eq!(
        admin(&gw, "keys.updateCredits", credits("set", json!(7))).await["remaining"],
        7
    );
    assert_eq!(
        admin(&gw, "keys.updateCredits", credits("set", Value::Null)).await,
        json!({"remaining": null})
    );
    assert!(
        admin(&gw, "keys.getKey", json!({"keyId": id}))
            .await
            .get("credits")
            .is_none(),
        "unlimited now"
    );

    admin(
        &gw,
        "keys.updateKey",
        json!({"keyId": id, "name": null, "meta": {"plan": "team"}, "permissions": ["x"]}),
    )
    .await;
    let got = admin(&gw, "keys.getKey", json!({"keyId": id})).await;
    assert!(
        got.get("name").is_none() && got["updatedAt"].as_i64().unwrap() > 0,
        "{got}"
    );
    assert_eq!(
        (got["meta"].clone(), got["permissions"].clone()),
        (json!({"plan": "team"}), json!(["x"]))
    );

    let (second, _) = {
        let data = admin(&gw, "keys.createKey", json!({"apiId": api})).await;
        (data["keyId"].as_str().unwrap().to_string(), ())
    };
    let (status, page) = gw
        .admin_post("/v2/apis.listKeys", Some(ROOT), &json!({"apiId": api, "limit": 1}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(page["pagination"]["hasMore"], true);
    let cursor = page["pagination"]["cursor"].as_str().unwrap().to_string();
    let (_, rest) = gw
        .admin_post(
            "/v2/apis.listKeys",
            Some(ROOT),
            &json!({"apiId": api, "cursor": cursor}),
        )
        .await;
    assert_eq!(rest["pagination"], json!({"hasMore": false}));
    let mut ids = vec![page["data"][0]["keyId"].clone(), rest["data"][0]["keyId"].clone()];
    ids.sort_by_key(|v| v.as_str().unwrap().to_string());
    let mut want = vec![json!(id), json!(second)];
    want.sort_by_key(|v| v.as_str().unwrap().to_string());
    assert_eq!(ids, want);
    let (_, by_identity) = gw
        .admin_post(
            "/v2/apis.listKeys",
            Some(ROOT),
            &json!({"apiId": api, "externalId": "cust_1"}),
        )
        .await;
    assert_eq!(by_identity["data"].as_array().unwrap().len(), 1);

    let rerolled = admin(&gw, "keys.rerollKey", json!({"keyId": id, "expiration": 3_600_000})).await;
    let new_key = rerolled["key"].as_str().unwrap();
    assert!(new_key.starts_with("pay_"));
    assert_eq!(verify_code(&gw, json!({"key": new_key})).await, "VALID");
    assert_eq!(
        verify_code(&gw, json!({"key": key})).await,
        "VALID",
        "an hour of overlap"
    );

    admin(
        &gw,
        "keys.deleteKey",
        json!({"keyId": rerolled["keyId"], "permanent": true}),
    )
    .await;
    assert_eq!(verify_code(&gw, json!({"key": new_key})).await, "NOT_FOUND");
    assert_eq!(admin(&gw, "apis.deleteApi", json!({"apiId": api})).await, json!({}));
    assert_eq!(
        verify_code(&gw, json!({"key": key})).await,
        "NOT_FOUND",
        "deleting the API deletes its keys"
    );
    let (status, _) = gw
        .admin_post("/v2/apis.getApi", Some(ROOT), &json!({"apiId": api}))
        .await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn policies_may_name_store_keyspaces_checked_at_load() {
    let gw = start().await;
    let api = admin(&gw, "apis.createApi", json!({"name": "partners"})).await["apiId"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, key) = {
        let data = admin(&gw, "keys.createKey", json!({"apiId": api})).await;
        (data["keyId"].clone(), data["key"].as_str().unwrap().to_string())
    };
    let with_partner = config().replace(
        "{keyspaces: [ks_main], credits: 0}",
        &format!("{{keyspaces: [ks_main, {api}], credits: 0}}"),
    );
    gw.write_config(&with_partner);
    let mut admitted = false;
    for _ in 0..100 {
        if with_bearer(&gw, "open.test", &key).await.status() == 200 {
            admitted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        admitted,
        "a policy naming an admin-created keyspace loads and admits its keys"
    );

    let unknown = config().replace(
        "{keyspaces: [ks_main], credits: 0}",
        "{keyspaces: [ks_nope], credits: 0}",
    );
    std::fs::write(gw.dir.path().join("unknown.yaml"), gw.render(&unknown)).unwrap();
    let out = gw.cli(&["check", "--config", "unknown.yaml"], &[]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("deployments[0].policies[0].keyauth.keyspaces[0]") && stderr.contains("ks_nope"),
        "{stderr}"
    );
    let bad_query = config().replace("api.read AND (api.write OR docs.edit)", "api.read AND (");
    std::fs::write(gw.dir.path().join("query.yaml"), gw.render(&bad_query)).unwrap();
    let out = gw.cli(&["check", "--config", "query.yaml"], &[]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("keyauth.permission_query") && names_some_line(&stderr),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn cli_manages_keys_through_the_admin_api_and_the_embedded_store() {
    let gw = start().await;
    let admin_url = format!("http://{}", gw.admin);
    let env = [("KEYGATE_ROOT_KEY", ROOT)];
    let out = gw
        .cli(
            &[
                "keys",
                "--admin",
                &admin_url,
                "create",
                "--api",
                "ks_main",
                "--name",
                "cli",
                "--credits",
                "3",
                "--json",
            ],
            &env,
        )
        .await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let created: Value = serde_json::from_slice(&out.stdout).unwrap();
    let (id, key) = (
        created["data"]["keyId"].as_str().unwrap(),
        created["data"]["key"].as_str().unwrap(),
    );
    assert_eq!(with_bearer(&gw, "paid.test", key).await.status(), 200);

    let out = gw
        .cli(&["keys", "--admin", &admin_url, "list", "--api", "ks_main"], &env)
        .await;
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.starts_with("KEY ID") && table.contains(id) && table.contains("key_static"),
        "{table}"
    );
    let out = gw.cli(&["keys", "--admin", &admin_url, "verify", key], &env).await;
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("VALID"));
    let out = gw.cli(&["keys", "--admin", &admin_url, "revoke", id], &env).await;
    assert!(out.status.success());
    assert_eq!(with_bearer(&gw, "paid.test", key).await.status(), 401);
    let out = gw.cli(&["keys", "--admin", &admin_url, "verify", key], &env).await;
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stdout).contains("NOT_FOUND"));
    let out = gw.cli(&["keys", "--admin", &admin_url, "get", "key_nope"], &[]).await;
    assert!(String::from_utf8_lossy(&out.stderr).contains("err:unkey:authentication:missing"));

    // Without --admin: the gateway at the config's listen.admin (tests/cli.rs
    // covers the embedded store, used when no gateway answers).
    let config = gw.config_path.to_str().unwrap();
    let out = gw
        .cli(
            &[
                "--config",
                config,
                "keys",
                "create",
                "--api",
                "ks_main",
                "--external-id",
                "local",
                "--json",
            ],
            &env,
        )
        .await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let created: Value = serde_json::from_slice(&out.stdout).unwrap();
    let local_key = created["data"]["key"].as_str().unwrap();
    let p = principal(with_bearer(&gw, "open.test", local_key).await).await;
    assert_eq!(p["subject"], "local");
    let out = gw.cli(&["--config", config, "keys", "get", "key_static"], &env).await;
    assert!(String::from_utf8_lossy(&out.stdout).contains("ACME prod"));
    let out = gw
        .cli(
            &["--config", config, "keys", "update", "key_static", "--enabled", "false"],
            &env,
        )
        .await;
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("protected_resource"));
}

#[tokio::test(flavor = "multi_thread")]
async fn store_keeps_every_acknowledged_key_after_kill_9_mid_write() {
    let mut gw = start().await;
    let acknowledged: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let url = gw.admin_url("/v2/keys.createKey");
    let writers: Vec<_> = (0..4)
        .map(|_| {
            let (acknowledged, stop, url) = (acknowledged.clone(), stop.clone(), url.clone());
            tokio::spawn(async move {
                let client = client();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let body = json!({"apiId": "ks_main", "credits": {"remaining": 5}, "meta": {"n": 1}});
                    let Ok(resp) = client.post(&url).bearer_auth(ROOT).json(&body).send().await else {
                        break;
                    };
                    if resp.status() != 200 {
                        break;
                    }
                    let Ok(answer) = resp.json::<Value>().await else { break };
                    let data = &answer["data"];
                    acknowledged.lock().unwrap().push((
                        data["keyId"].as_str().unwrap().to_string(),
                        data["key"].as_str().unwrap().to_string(),
                    ));
                }
            })
        })
        .collect();
    wait_for("40 acknowledged keys", WAIT, || {
        let count = acknowledged.lock().unwrap().len();
        async move { count >= 40 }
    })
    .await;
    gw.kill9().await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for writer in writers {
        writer.await.unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();

    gw.restart().await;
    for (id, key) in &acknowledged {
        let resp = with_bearer(&gw, "open.test", key).await;
        assert_eq!(resp.status(), 200, "acknowledged key {id} verifies after kill -9");
    }
    let mut listed = Vec::new();
    let mut page = json!({"apiId": "ks_main", "limit": 100});
    loop {
        let (status, answer) = gw.admin_post("/v2/apis.listKeys", Some(ROOT), &page).await;
        assert_eq!(status, 200, "{answer}");
        listed.extend(
            answer["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|k| k["keyId"].as_str().unwrap().to_string()),
        );
        match answer["pagination"]["cursor"].as_str() {
            Some(cursor) => page["cursor"] = json!(cursor),
            None => break,
        }
    }
    for (id, _) in &acknowledged {
        assert!(listed.contains(id), "{id} is listed");
    }
}
