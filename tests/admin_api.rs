//! The admin API beyond keys' own lifecycle (tests/keys.rs), through the
//! real gateway: its routing (JSON 404/405, JSON errors), root-key checks
//! and validation on every operation, identities, the permission and role
//! catalogue and what it grants keys (permission queries, the Principal,
//! at once for cached and config keys), a key's permissions and roles,
//! whoami, migrateKeys, multiLimit, rate-limit overrides applied by
//! `ratelimit.limit` and by `ratelimit` policies, `apis.listApis`, and the
//! CLI commands over them.

mod support;

use serde_json::{json, Value};
use support::gateway::Gateway;

const ROOT: &str = "root_admin_test";
/// A config key (read-only) with a role; a keyauth deployment requiring
/// `docs.write`; a rate limit per `X-User` header (policy id `per_user`).
const CONFIG: &str = r#"admin:
  root_keys: ["root_admin_test"]
keyspaces:
  - id: ks_main
    keys:
      - {id: key_static, key: sk_static, roles: [editor]}
deployments:
  - id: dep_docs
    instances: ["builtin:echo"]
    policies:
      - id: auth
        keyauth: {keyspaces: [ks_main], credits: 0, permission_query: docs.write}
  - id: dep_open
    instances: ["builtin:echo"]
    policies:
      - id: auth
        keyauth: {keyspaces: [ks_main], credits: 0}
  - id: dep_limited
    instances: ["builtin:echo"]
    policies:
      - id: per_user
        ratelimit: {limit: 2, window: 60s, identifiers: [header: {name: X-User}]}
routes:
  - host: docs.test
    deployment: dep_docs
  - host: open.test
    deployment: dep_open
  - host: limited.test
    deployment: dep_limited
"#;

/// Every operation below `/v2/`.
const OPERATIONS: &[&str] = &[
    "apis.createApi",
    "apis.getApi",
    "apis.listApis",
    "apis.listKeys",
    "apis.deleteApi",
    "keys.createKey",
    "keys.getKey",
    "keys.updateKey",
    "keys.deleteKey",
    "keys.updateCredits",
    "keys.rerollKey",
    "keys.verifyKey",
    "keys.whoami",
    "keys.addPermissions",
    "keys.removePermissions",
    "keys.setPermissions",
    "keys.addRoles",
    "keys.removeRoles",
    "keys.setRoles",
    "keys.migrateKeys",
    "identities.createIdentity",
    "identities.getIdentity",
    "identities.listIdentities",
    "identities.updateIdentity",
    "identities.deleteIdentity",
    "permissions.createPermission",
    "permissions.getPermission",
    "permissions.listPermissions",
    "permissions.updatePermission",
    "permissions.deletePermission",
    "permissions.createRole",
    "permissions.getRole",
    "permissions.listRoles",
    "permissions.updateRole",
    "permissions.deleteRole",
    "permissions.setRolePermissions",
    "ratelimit.limit",
    "ratelimit.multiLimit",
    "ratelimit.setOverride",
    "ratelimit.getOverride",
    "ratelimit.listOverrides",
    "ratelimit.deleteOverride",
];

async fn start() -> Gateway {
    Gateway::start(CONFIG).await
}

async fn call(gw: &Gateway, op: &str, body: Value) -> (u16, Value) {
    gw.admin_post(&format!("/v2/{op}"), Some(ROOT), &body).await
}

/// The `data` of a successful call.
async fn admin(gw: &Gateway, op: &str, body: Value) -> Value {
    let (status, answer) = call(gw, op, body).await;
    assert_eq!(status, 200, "{op}: {answer}");
    answer["data"].clone()
}

/// Asserts a call fails with `status` and `code`.
async fn refused(gw: &Gateway, op: &str, body: Value, status: u16, code: &str) -> Value {
    let (got, answer) = call(gw, op, body.clone()).await;
    assert_eq!(
        (got, answer["error"]["code"].as_str()),
        (status, Some(code)),
        "{op} {body}: {answer}"
    );
    answer
}

/// A store key in `ks_main`: (keyId, key).
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

/// The status of a GET on `host` with the key as bearer.
async fn status_with(gw: &Gateway, host: &str, key: &str) -> u16 {
    gw.get(host, "/")
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// The Principal the echo instance received.
async fn principal(gw: &Gateway, host: &str, key: &str) -> Value {
    let resp = gw.get(host, "/").bearer_auth(key).send().await.unwrap();
    assert_eq!(resp.status(), 200, "admitted");
    let echoed: Value = resp.json().await.unwrap();
    serde_json::from_str(echoed["headers"]["x-unkey-principal"].as_str().expect("a Principal")).unwrap()
}

fn slugs(list: &Value) -> Vec<&str> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|p| p["slug"].as_str().unwrap())
        .collect()
}

fn names(list: &Value) -> Vec<&str> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_paths_and_methods_and_errors_are_json() {
    let gw = start().await;
    let client = gw.client();
    let content_type = |r: &reqwest::Response| r.headers()["content-type"].to_str().unwrap().to_string();

    let resp = client
        .post(gw.admin_url("/v2/keys.nope"))
        .bearer_auth(ROOT)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        (resp.status().as_u16(), content_type(&resp).as_str()),
        (404, "application/json")
    );
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "err:unkey:application:route_not_found");
    assert!(body["meta"]["requestId"].as_str().unwrap().starts_with("req_"));
    let resp = client.get(gw.admin_url("/nothing/here")).send().await.unwrap();
    assert_eq!(
        (resp.status().as_u16(), content_type(&resp).as_str()),
        (404, "application/json")
    );

    for (method, path, allowed) in [
        (reqwest::Method::GET, "/v2/keys.getKey", "POST"),
        (reqwest::Method::PUT, "/v1/admin.reload", "POST"),
        (reqwest::Method::POST, "/healthz", "GET"),
        (reqwest::Method::DELETE, "/v1/routes", "GET"),
    ] {
        let resp = client
            .request(method.clone(), gw.admin_url(path))
            .bearer_auth(ROOT)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 405, "{method} {path}");
        assert_eq!(resp.headers()["allow"], allowed);
        assert_eq!(content_type(&resp), "application/json");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], "err:unkey:application:method_not_allowed");
    }

    // Health endpoints are as they were: plain text, no auth.
    let resp = client.get(gw.admin_url("/healthz")).send().await.unwrap();
    assert_eq!(
        (resp.status().as_u16(), resp.text().await.unwrap().as_str()),
        (200, "ok\n")
    );
    assert_eq!(client.get(gw.admin_url("/readyz")).send().await.unwrap().status(), 200);
    assert_eq!(client.get(gw.admin_url("/metrics")).send().await.unwrap().status(), 200);

    // Errors are JSON (Unkey's SDKs type them by it), with the
    // code, title and detail fields of the gateway's problem bodies.
    let resp = client
        .post(gw.admin_url("/v2/keys.getKey"))
        .bearer_auth(ROOT)
        .json(&json!({"keyId": "key_nope"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        (resp.status().as_u16(), content_type(&resp).as_str()),
        (404, "application/json")
    );
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["title"], "Not Found");
    assert_eq!(
        body["error"]["type"],
        "https://unkey.com/docs/errors/unkey/data/key_not_found"
    );
    // … but identities.deleteIdentity's, which Unkey declares (and its SDKs parse) as problem+json.
    let resp = client
        .post(gw.admin_url("/v2/identities.deleteIdentity"))
        .bearer_auth(ROOT)
        .json(&json!({"identity": "ghost"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        (resp.status().as_u16(), content_type(&resp).as_str()),
        (404, "application/problem+json")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_operation_needs_a_root_key_and_validates_its_body() {
    let gw = start().await;
    for op in OPERATIONS {
        let path = format!("/v2/{op}");
        let (status, answer) = gw.admin_post(&path, None, &json!({})).await;
        assert_eq!(
            (status, answer["error"]["code"].as_str()),
            (401, Some("err:unkey:authentication:missing")),
            "{op}"
        );
        let (status, answer) = gw.admin_post(&path, Some("not_a_root_key"), &json!({})).await;
        assert_eq!(
            (status, answer["error"]["code"].as_str()),
            (401, Some("err:unkey:authentication:key_not_found")),
            "{op}"
        );
        // An API key is a known credential, but not one for the admin API.
        let (status, answer) = gw.admin_post(&path, Some("sk_static"), &json!({})).await;
        assert_eq!(
            (status, answer["error"]["code"].as_str()),
            (403, Some("err:unkey:authorization:forbidden")),
            "{op}"
        );
        assert!(
            answer["error"]["detail"].as_str().unwrap().contains("ks_main"),
            "{answer}"
        );

        let not_json = gw
            .client()
            .post(gw.admin_url(&path))
            .bearer_auth(ROOT)
            .body("{nope")
            .send()
            .await
            .unwrap();
        assert_eq!(not_json.status(), 400, "{op}: a body that is not JSON");
    }
    // Operations with required fields name them.
    let lists = [
        "apis.listApis",
        "identities.listIdentities",
        "permissions.listPermissions",
        "permissions.listRoles",
        "ratelimit.multiLimit",
    ];
    for op in OPERATIONS.iter().filter(|op| !lists.contains(op)) {
        let answer = refused(&gw, op, json!({}), 400, "err:unkey:application:invalid_input").await;
        let errors = answer["error"]["errors"].as_array().unwrap();
        assert!(
            !errors.is_empty()
                && errors
                    .iter()
                    .all(|e| e["location"].as_str().unwrap().starts_with("body.")),
            "{op}: {answer}"
        );
    }
    refused(
        &gw,
        "ratelimit.multiLimit",
        json!({}),
        400,
        "err:unkey:application:invalid_input",
    )
    .await;
    let answer = refused(
        &gw,
        "ratelimit.multiLimit",
        json!([{"namespace": "n"}, 3]),
        400,
        "err:unkey:application:invalid_input",
    )
    .await;
    let mut locations: Vec<&str> = answer["error"]["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["location"].as_str().unwrap())
        .collect();
    locations.sort_unstable();
    assert_eq!(
        locations,
        ["body[0].duration", "body[0].identifier", "body[0].limit", "body[1]"]
    );

    // Fields a newer Unkey added are ignored, not refused.
    let data = admin(
        &gw,
        "keys.getKey",
        json!({"keyId": "key_static", "someFutureField": {"x": 1}}),
    )
    .await;
    assert_eq!(data["keyId"], "key_static");
    let data = admin(
        &gw,
        "keys.verifyKey",
        json!({"key": "sk_static", "tags": ["a=b"], "keyspaces": ["ks_main"], "newThing": true}),
    )
    .await;
    assert_eq!(data["code"], "VALID");
    // keyspaces restricts, as in Unkey: elsewhere the key does not exist.
    let data = admin(
        &gw,
        "keys.verifyKey",
        json!({"key": "sk_static", "keyspaces": ["ks_other"]}),
    )
    .await;
    assert_eq!(data, json!({"valid": false, "code": "NOT_FOUND"}));
}

#[tokio::test(flavor = "multi_thread")]
async fn identities_own_meta_and_limits_of_their_keys() {
    let gw = start().await;
    let created = admin(
        &gw,
        "identities.createIdentity",
        json!({"externalId": "acme", "meta": {"plan": "pro"}, "ratelimits": [{"name": "org", "limit": 3, "duration": 60000, "autoApply": true}]}),
    )
    .await;
    let identity_id = created["identityId"].as_str().unwrap().to_string();
    refused(
        &gw,
        "identities.createIdentity",
        json!({"externalId": "acme"}),
        409,
        "err:unkey:data:identity_already_exists",
    )
    .await;
    refused(
        &gw,
        "identities.createIdentity",
        json!({"externalId": "no spaces"}),
        400,
        "err:unkey:application:invalid_input",
    )
    .await;

    let (key_id, key) = create_key(&gw, json!({"externalId": "acme"})).await;
    let p = principal(&gw, "open.test", &key).await;
    assert_eq!(p["subject"], "acme");
    assert_eq!(p["identity"], json!({"externalId": "acme", "meta": {"plan": "pro"}}));
    let got = admin(&gw, "keys.getKey", json!({"keyId": key_id})).await;
    assert_eq!(got["identity"]["id"], json!(identity_id));
    assert_eq!(got["identity"]["ratelimits"][0]["name"], "org");

    // A change reaches the cached key at once.
    let updated = admin(
        &gw,
        "identities.updateIdentity",
        json!({"identity": identity_id, "meta": {"plan": "team"}}),
    )
    .await;
    assert_eq!(updated["meta"], json!({"plan": "team"}));
    assert_eq!(updated["ratelimits"][0]["limit"], 3, "limits kept when not sent");
    assert_eq!(
        principal(&gw, "open.test", &key).await["identity"]["meta"],
        json!({"plan": "team"})
    );
    // The identity's limit (auto-applied) counts every request of its keys: 2 above, 1 more.
    let (_, second_key) = create_key(&gw, json!({"externalId": "acme"})).await;
    assert_eq!(status_with(&gw, "open.test", &second_key).await, 200);
    assert_eq!(status_with(&gw, "open.test", &key).await, 429, "shared by both keys");

    let got = admin(&gw, "identities.getIdentity", json!({"identity": "acme"})).await;
    assert_eq!(
        (got["id"].clone(), got["externalId"].clone()),
        (json!(identity_id), json!("acme"))
    );
    assert_eq!(
        admin(&gw, "identities.getIdentity", json!({"externalId": "acme"})).await["id"],
        json!(identity_id),
        "older SDKs' field"
    );
    refused(
        &gw,
        "identities.getIdentity",
        json!({"identity": "ghost"}),
        404,
        "err:unkey:data:identity_not_found",
    )
    .await;
    refused(
        &gw,
        "identities.updateIdentity",
        json!({"identity": "ghost", "meta": {}}),
        404,
        "err:unkey:data:identity_not_found",
    )
    .await;

    // createKey made identities for new externalIds; listing pages by id.
    create_key(&gw, json!({"externalId": "beta"})).await;
    admin(&gw, "identities.createIdentity", json!({"externalId": "gamma"})).await;
    let (_, page) = call(&gw, "identities.listIdentities", json!({"limit": 2})).await;
    assert_eq!(page["data"].as_array().unwrap().len(), 2);
    assert_eq!(page["pagination"]["hasMore"], true);
    let (_, rest) = call(
        &gw,
        "identities.listIdentities",
        json!({"cursor": page["pagination"]["cursor"]}),
    )
    .await;
    assert_eq!(rest["pagination"], json!({"hasMore": false}));
    let mut all: Vec<String> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .chain(rest["data"].as_array().unwrap())
        .map(|i| i["externalId"].as_str().unwrap().to_string())
        .collect();
    all.sort();
    assert_eq!(all, ["acme", "beta", "gamma"]);
    let found = admin(&gw, "identities.listIdentities", json!({"search": "amm"})).await;
    assert_eq!(found.as_array().unwrap().len(), 1);

    // Deleting the identity leaves its keys without one, at once.
    admin(&gw, "identities.deleteIdentity", json!({"identity": "acme"})).await;
    let (_, third_key) = create_key(&gw, json!({})).await;
    let p = principal(&gw, "open.test", &third_key).await;
    assert!(p.get("identity").is_none());
    let got = admin(&gw, "keys.getKey", json!({"keyId": key_id})).await;
    assert!(got.get("identity").is_none(), "{got}");
    assert_eq!(
        principal(&gw, "open.test", &second_key).await["subject"],
        json!(admin(&gw, "keys.whoami", json!({"key": second_key})).await["keyId"])
    );
    refused(
        &gw,
        "identities.deleteIdentity",
        json!({"identity": "acme"}),
        404,
        "err:unkey:data:identity_not_found",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn roles_grant_their_permissions_at_once_to_every_key() {
    let gw = start().await;
    let (key_id, key) = create_key(&gw, json!({"roles": ["editor"], "permissions": ["docs.read"]})).await;
    // Both keys are cached by these requests; the role grants nothing yet.
    assert_eq!(status_with(&gw, "docs.test", &key).await, 403);
    assert_eq!(status_with(&gw, "docs.test", "sk_static").await, 403);
    let editor = admin(&gw, "permissions.getRole", json!({"role": "editor"})).await;
    assert!(
        editor.get("permissions").is_none(),
        "created by createKey, empty: {editor}"
    );

    let set = admin(
        &gw,
        "permissions.setRolePermissions",
        json!({"role": "editor", "permissions": ["docs.write"]}),
    )
    .await;
    assert_eq!(slugs(&set), ["docs.write"]);
    for key in [key.as_str(), "sk_static"] {
        let p = principal(&gw, "docs.test", key).await;
        assert!(
            p["source"]["key"]["permissions"]
                .as_array()
                .unwrap()
                .contains(&json!("docs.write")),
            "{p}"
        );
    }
    assert_eq!(
        principal(&gw, "docs.test", &key).await["source"]["key"]["permissions"],
        json!(["docs.read", "docs.write"])
    );
    assert_eq!(
        principal(&gw, "docs.test", &key).await["source"]["key"]["roles"],
        json!(["editor"])
    );
    let verified = admin(
        &gw,
        "keys.verifyKey",
        json!({"key": key, "permissions": "docs.read AND docs.write"}),
    )
    .await;
    assert_eq!(verified["permissions"], json!(["docs.read", "docs.write"]));
    // getKey keeps showing the key's own permissions.
    assert_eq!(
        admin(&gw, "keys.getKey", json!({"keyId": key_id})).await["permissions"],
        json!(["docs.read"])
    );

    // A wildcard in a role works as anywhere else.
    admin(
        &gw,
        "permissions.setRolePermissions",
        json!({"roleId": editor["id"], "permissions": ["docs.*"]}),
    )
    .await;
    assert_eq!(status_with(&gw, "docs.test", &key).await, 200);

    // Renaming the role renames it in the stored key; the config key names the old name.
    let renamed = admin(
        &gw,
        "permissions.updateRole",
        json!({"role": "editor", "name": "writer", "description": "writes"}),
    )
    .await;
    assert_eq!(
        renamed,
        json!({"id": editor["id"], "name": "writer", "description": "writes"})
    );
    assert_eq!(
        admin(&gw, "keys.getKey", json!({"keyId": key_id})).await["roles"],
        json!(["writer"])
    );
    assert_eq!(status_with(&gw, "docs.test", &key).await, 200);
    assert_eq!(status_with(&gw, "docs.test", "sk_static").await, 403);

    // Deleting a permission takes it from roles and keys; deleting a role from keys.
    admin(&gw, "permissions.deletePermission", json!({"permission": "docs.*"})).await;
    assert_eq!(status_with(&gw, "docs.test", &key).await, 403);
    admin(
        &gw,
        "permissions.setRolePermissions",
        json!({"role": "writer", "permissions": ["docs.write"]}),
    )
    .await;
    assert_eq!(status_with(&gw, "docs.test", &key).await, 200);
    admin(&gw, "permissions.deleteRole", json!({"role": "writer"})).await;
    assert_eq!(
        admin(&gw, "keys.getKey", json!({"keyId": key_id})).await.get("roles"),
        None
    );
    assert_eq!(status_with(&gw, "docs.test", &key).await, 403);
    refused(
        &gw,
        "permissions.deleteRole",
        json!({"role": "writer"}),
        404,
        "err:unkey:data:role_not_found",
    )
    .await;
    refused(
        &gw,
        "permissions.getRole",
        json!({"role": "writer"}),
        404,
        "err:unkey:data:role_not_found",
    )
    .await;
    refused(
        &gw,
        "permissions.createRole",
        json!({"name": "x", "permissions": ["bad slug"]}),
        400,
        "err:unkey:application:invalid_input",
    )
    .await;

    // A permission's new slug is renamed in its keys.
    let read = admin(&gw, "permissions.getPermission", json!({"permission": "docs.read"})).await;
    let updated = admin(
        &gw,
        "permissions.updatePermission",
        json!({"permission": read["id"], "slug": "docs.view", "description": "views"}),
    )
    .await;
    assert_eq!(
        (updated["slug"].clone(), updated["description"].clone()),
        (json!("docs.view"), json!("views"))
    );
    assert_eq!(
        admin(&gw, "keys.getKey", json!({"keyId": key_id})).await["permissions"],
        json!(["docs.view"])
    );
    admin(
        &gw,
        "permissions.createPermission",
        json!({"name": "Write", "slug": "docs.write2"}),
    )
    .await;
    refused(
        &gw,
        "permissions.updatePermission",
        json!({"permission": "docs.view", "slug": "docs.write2"}),
        409,
        "err:unkey:data:permission_already_exists",
    )
    .await;
    refused(
        &gw,
        "permissions.updatePermission",
        json!({"permission": "nope", "name": "x"}),
        404,
        "err:unkey:data:permission_not_found",
    )
    .await;

    // The catalogue lists by id, with search and cursor.
    let (_, page) = call(&gw, "permissions.listPermissions", json!({"limit": 1})).await;
    assert_eq!(page["pagination"]["hasMore"], true);
    let found = admin(&gw, "permissions.listPermissions", json!({"search": "view"})).await;
    assert_eq!(slugs(&found), ["docs.view"]);
    admin(
        &gw,
        "permissions.createRole",
        json!({"name": "auditor", "description": "audits", "permissions": ["audit.read"]}),
    )
    .await;
    let roles = admin(&gw, "permissions.listRoles", json!({"search": "aud"})).await;
    assert_eq!(roles[0]["permissions"][0]["slug"], "audit.read");
    assert_eq!(roles[0]["description"], "audits");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_keys_permissions_and_roles_change_at_once() {
    let gw = start().await;
    admin(
        &gw,
        "permissions.createRole",
        json!({"name": "editor", "permissions": ["docs.write"]}),
    )
    .await;
    admin(&gw, "permissions.createRole", json!({"name": "viewer"})).await;
    let (key_id, key) = create_key(&gw, json!({})).await;
    assert_eq!(status_with(&gw, "docs.test", &key).await, 403);

    let added = admin(
        &gw,
        "keys.addPermissions",
        json!({"keyId": key_id, "permissions": ["docs.write", "misc.new"]}),
    )
    .await;
    assert_eq!(slugs(&added), ["docs.write", "misc.new"]);
    assert_eq!(
        admin(&gw, "permissions.getPermission", json!({"permission": "misc.new"})).await["name"],
        "misc.new",
        "created"
    );
    assert_eq!(status_with(&gw, "docs.test", &key).await, 200);
    let removed = admin(
        &gw,
        "keys.removePermissions",
        json!({"keyId": key_id, "permissions": ["docs.write", "never.had"]}),
    )
    .await;
    assert_eq!(slugs(&removed), ["misc.new"]);
    assert_eq!(status_with(&gw, "docs.test", &key).await, 403);
    let set = admin(&gw, "keys.setPermissions", json!({"keyId": key_id, "permissions": []})).await;
    assert_eq!(set, json!([]));

    let added = admin(&gw, "keys.addRoles", json!({"keyId": key_id, "roles": ["editor"]})).await;
    assert_eq!(names(&added), ["editor"]);
    assert_eq!(slugs(&added[0]["permissions"]), ["docs.write"]);
    assert_eq!(status_with(&gw, "docs.test", &key).await, 200);
    // An unknown role changes nothing.
    refused(
        &gw,
        "keys.addRoles",
        json!({"keyId": key_id, "roles": ["viewer", "ghost"]}),
        404,
        "err:unkey:data:role_not_found",
    )
    .await;
    refused(
        &gw,
        "keys.setRoles",
        json!({"keyId": key_id, "roles": ["ghost"]}),
        404,
        "err:unkey:data:role_not_found",
    )
    .await;
    assert_eq!(
        admin(&gw, "keys.getKey", json!({"keyId": key_id})).await["roles"],
        json!(["editor"])
    );
    let set = admin(&gw, "keys.setRoles", json!({"keyId": key_id, "roles": ["viewer"]})).await;
    assert_eq!(names(&set), ["viewer"]);
    assert_eq!(status_with(&gw, "docs.test", &key).await, 403);
    let removed = admin(&gw, "keys.removeRoles", json!({"keyId": key_id, "roles": ["viewer"]})).await;
    assert_eq!(removed, json!([]));

    for op in ["keys.addPermissions", "keys.removePermissions", "keys.setPermissions"] {
        refused(
            &gw,
            op,
            json!({"keyId": "key_nope", "permissions": ["a"]}),
            404,
            "err:unkey:data:key_not_found",
        )
        .await;
        refused(
            &gw,
            op,
            json!({"keyId": "key_static", "permissions": ["a"]}),
            412,
            "err:unkey:application:protected_resource",
        )
        .await;
        refused(
            &gw,
            op,
            json!({"keyId": key_id, "permissions": ["a b"]}),
            400,
            "err:unkey:application:invalid_input",
        )
        .await;
    }
    for op in ["keys.addRoles", "keys.removeRoles", "keys.setRoles"] {
        refused(
            &gw,
            op,
            json!({"keyId": "key_nope", "roles": ["viewer"]}),
            404,
            "err:unkey:data:key_not_found",
        )
        .await;
        refused(
            &gw,
            op,
            json!({"keyId": "key_static", "roles": ["viewer"]}),
            412,
            "err:unkey:application:protected_resource",
        )
        .await;
        refused(
            &gw,
            op,
            json!({"keyId": key_id, "roles": "viewer"}),
            400,
            "err:unkey:application:invalid_input",
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn whoami_and_migrated_keys() {
    let gw = start().await;
    let static_key = admin(&gw, "keys.whoami", json!({"key": "sk_static"})).await;
    assert_eq!(
        (static_key["keyId"].clone(), static_key["roles"].clone()),
        (json!("key_static"), json!(["editor"]))
    );
    let (key_id, key) = create_key(&gw, json!({"credits": {"remaining": 5}})).await;
    let me = admin(&gw, "keys.whoami", json!({"key": key})).await;
    assert_eq!(
        (me["keyId"].clone(), me["credits"]["remaining"].clone()),
        (json!(key_id), json!(5))
    );
    assert_eq!(
        admin(&gw, "keys.whoami", json!({"key": key})).await["credits"]["remaining"],
        5,
        "whoami spends nothing"
    );
    refused(
        &gw,
        "keys.whoami",
        json!({"key": "sk_nope"}),
        404,
        "err:unkey:data:key_not_found",
    )
    .await;

    let hex: String = keygate::keys::model::hash_key("old_one")
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let prefixed = format!(
        "sha256:{}",
        keygate::keys::model::hash_key("old_two")
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<String>()
    );
    let body = json!({
        "migrationId": "from_legacy", "apiId": "ks_main",
        "keys": [
            {"hash": hex, "name": "first", "externalId": "legacy_user", "permissions": ["docs.write"], "credits": {"remaining": 2}},
            {"hash": prefixed, "enabled": false},
        ]
    });
    let migrated = admin(&gw, "keys.migrateKeys", body.clone()).await;
    assert_eq!(migrated["failed"], json!([]));
    assert_eq!(migrated["migrated"][0]["hash"], json!(hex));
    assert_eq!(
        status_with(&gw, "docs.test", "old_one").await,
        200,
        "a migrated key verifies by its plaintext"
    );
    assert_eq!(status_with(&gw, "open.test", "old_two").await, 401, "disabled");
    let p = principal(&gw, "docs.test", "old_one").await;
    assert_eq!(
        (p["subject"].clone(), p["source"]["key"]["name"].clone()),
        (json!("legacy_user"), json!("first"))
    );
    assert_eq!(
        admin(&gw, "identities.getIdentity", json!({"identity": "legacy_user"})).await["externalId"],
        "legacy_user"
    );
    let again = admin(&gw, "keys.migrateKeys", body).await;
    assert_eq!(
        (again["migrated"].clone(), again["failed"].clone()),
        (json!([]), json!([hex, prefixed]))
    );

    let answer = refused(
        &gw,
        "keys.migrateKeys",
        json!({"migrationId": "mig_1", "apiId": "ks_main", "keys": [{"hash": "not-a-hash"}]}),
        400,
        "err:unkey:application:invalid_input",
    )
    .await;
    assert_eq!(answer["error"]["errors"][0]["location"], "body.keys[0].hash");
    refused(
        &gw,
        "keys.migrateKeys",
        json!({"migrationId": "mig_1", "apiId": "api_nope", "keys": []}),
        404,
        "err:unkey:data:api_not_found",
    )
    .await;
}

/// The status of a request to the rate-limited host as `X-User: name`.
async fn as_user(gw: &Gateway, name: &str) -> u16 {
    gw.get("limited.test", "/")
        .header("x-user", name)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread")]
async fn overrides_apply_to_ratelimit_limit_and_to_policies_and_persist() {
    let mut gw = start().await;
    assert_eq!(
        [
            as_user(&gw, "plain").await,
            as_user(&gw, "plain").await,
            as_user(&gw, "plain").await
        ],
        [200, 200, 429]
    );

    // The policy's id is the namespace; the identifier its parts.
    let set = admin(
        &gw,
        "ratelimit.setOverride",
        json!({"namespace": "per_user", "identifier": "vip_*", "limit": 4, "duration": 60000}),
    )
    .await;
    let vip_override = set["overrideId"].as_str().unwrap().to_string();
    for _ in 0..4 {
        assert_eq!(as_user(&gw, "vip_ann").await, 200);
    }
    assert_eq!(as_user(&gw, "vip_ann").await, 429);
    // An exact override beats the pattern; 0 blocks.
    admin(
        &gw,
        "ratelimit.setOverride",
        json!({"namespace": "per_user", "identifier": "vip_bob", "limit": 0, "duration": 60000}),
    )
    .await;
    assert_eq!(as_user(&gw, "vip_bob").await, 429);
    // Setting again replaces, keeping the id.
    let again = admin(
        &gw,
        "ratelimit.setOverride",
        json!({"namespace": "per_user", "identifier": "vip_*", "limit": 6, "duration": 60000}),
    )
    .await;
    assert_eq!(again["overrideId"], json!(vip_override));

    let got = admin(
        &gw,
        "ratelimit.getOverride",
        json!({"namespace": "per_user", "identifier": "vip_*"}),
    )
    .await;
    assert_eq!(
        got,
        json!({"overrideId": vip_override, "identifier": "vip_*", "limit": 6, "duration": 60000})
    );
    let (_, page) = call(
        &gw,
        "ratelimit.listOverrides",
        json!({"namespace": "per_user", "limit": 1}),
    )
    .await;
    assert_eq!(
        (
            page["data"].as_array().unwrap().len(),
            page["pagination"]["hasMore"].clone()
        ),
        (1, json!(true))
    );
    let (_, rest) = call(
        &gw,
        "ratelimit.listOverrides",
        json!({"namespace": "per_user", "cursor": page["pagination"]["cursor"]}),
    )
    .await;
    assert_eq!(rest["data"].as_array().unwrap().len(), 1);

    // ratelimit.limit: the override's limit and id.
    let limited = admin(
        &gw,
        "ratelimit.limit",
        json!({"namespace": "per_user", "identifier": "vip_cat", "limit": 1, "duration": 1000}),
    )
    .await;
    assert_eq!(
        (limited["limit"].clone(), limited["overrideId"].clone()),
        (json!(6), json!(vip_override))
    );
    let plain = admin(
        &gw,
        "ratelimit.limit",
        json!({"namespace": "other_ns", "identifier": "vip_cat", "limit": 1, "duration": 1000}),
    )
    .await;
    assert!(plain.get("overrideId").is_none() && plain["limit"] == 1, "{plain}");

    // Overrides are stored: they survive a restart.
    gw.kill9().await;
    gw.restart().await;
    let after = admin(
        &gw,
        "ratelimit.getOverride",
        json!({"namespace": "per_user", "identifier": "vip_bob"}),
    )
    .await;
    assert_eq!(after["limit"], 0);
    assert_eq!(as_user(&gw, "vip_bob").await, 429, "applied after the restart");

    admin(
        &gw,
        "ratelimit.deleteOverride",
        json!({"namespace": "per_user", "identifier": "vip_bob"}),
    )
    .await;
    assert_eq!(as_user(&gw, "vip_bob").await, 200, "the pattern applies again");
    refused(
        &gw,
        "ratelimit.deleteOverride",
        json!({"namespace": "per_user", "identifier": "vip_bob"}),
        404,
        "err:unkey:data:ratelimit_override_not_found",
    )
    .await;
    refused(
        &gw,
        "ratelimit.getOverride",
        json!({"namespace": "per_user", "identifier": "nobody"}),
        404,
        "err:unkey:data:ratelimit_override_not_found",
    )
    .await;
    for op in [
        "ratelimit.getOverride",
        "ratelimit.deleteOverride",
        "ratelimit.listOverrides",
    ] {
        refused(
            &gw,
            op,
            json!({"namespace": "no_such", "identifier": "x"}),
            404,
            "err:unkey:data:ratelimit_namespace_not_found",
        )
        .await;
    }
    refused(
        &gw,
        "ratelimit.setOverride",
        json!({"namespace": "n", "identifier": "x", "limit": -1, "duration": 1000}),
        400,
        "err:unkey:application:invalid_input",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn multi_limit_counts_all_or_nothing() {
    let gw = start().await;
    let check = |identifier: &str, limit: u64| json!({"namespace": "multi", "identifier": identifier, "limit": limit, "duration": 60000});
    let (status, answer) = gw
        .admin_post(
            "/v2/ratelimit.multiLimit",
            Some(ROOT),
            &json!([check("a", 2), check("b", 1)]),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["data"]["passed"], true);
    assert_eq!(answer["data"]["limits"][0]["namespace"], "multi");
    assert_eq!(answer["data"]["limits"][0]["remaining"], 1);
    let data = admin(&gw, "ratelimit.multiLimit", json!([check("a", 2), check("b", 1)])).await;
    assert_eq!(data["passed"], false);
    assert_eq!(data["limits"][1]["passed"], false);
    let data = admin(&gw, "ratelimit.multiLimit", json!([check("a", 2)])).await;
    assert_eq!(
        (data["passed"].clone(), data["limits"][0]["remaining"].clone()),
        (json!(true), json!(0)),
        "the refused call counted nothing"
    );
    let too_many: Vec<Value> = (0..101).map(|i| check(&format!("u{i}"), 1)).collect();
    refused(
        &gw,
        "ratelimit.multiLimit",
        Value::Array(too_many),
        400,
        "err:unkey:application:invalid_input",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn list_apis_shows_config_and_store_keyspaces() {
    let gw = start().await;
    let created = admin(&gw, "apis.createApi", json!({"name": "payments"})).await["apiId"]
        .as_str()
        .unwrap()
        .to_string();
    let listed = admin(&gw, "apis.listApis", json!({})).await;
    let mut rows: Vec<(String, String)> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["id"].as_str().unwrap().to_string(),
                a["source"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    rows.sort();
    let mut want = vec![
        (created.clone(), "store".to_string()),
        ("ks_main".to_string(), "config".to_string()),
    ];
    want.sort();
    assert_eq!(rows, want);
    let (_, page) = call(&gw, "apis.listApis", json!({"limit": 1})).await;
    assert_eq!(page["pagination"]["hasMore"], true);
}

#[tokio::test(flavor = "multi_thread")]
async fn cli_manages_apis_permissions_roles_and_identities() {
    let gw = start().await;
    let admin_url = format!("http://{}", gw.admin);
    let run = |args: &[&str]| {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--admin", admin_url.as_str(), "--root-key", ROOT]);
        let owned: Vec<String> = all.iter().map(|a| a.to_string()).collect();
        let gw = &gw;
        async move {
            let refs: Vec<&str> = owned.iter().map(String::as_str).collect();
            let output = gw.cli(&refs, &[]).await;
            let (stdout, stderr) = (
                String::from_utf8_lossy(&output.stdout).into_owned(),
                String::from_utf8_lossy(&output.stderr).into_owned(),
            );
            assert!(output.status.success(), "keygate {refs:?}: {stdout}{stderr}");
            stdout
        }
    };
    let created = run(&["apis", "create", "payments", "--json"]).await;
    let api: Value = serde_json::from_str(&created).unwrap();
    let api_id = api["data"]["apiId"].as_str().unwrap().to_string();
    let listed = run(&["apis", "list"]).await;
    assert!(
        listed.starts_with("API ID")
            && listed.contains(&api_id)
            && listed.contains("ks_main")
            && listed.contains("config"),
        "{listed}"
    );

    let out = run(&["keys", "permissions", "create", "docs.write", "--description", "writes"]).await;
    assert!(out.contains("permissionId"), "{out}");
    run(&["keys", "roles", "create", "editor", "--permissions", "docs.read"]).await;
    let out = run(&["keys", "roles", "set-permissions", "editor", "docs.read,docs.write"]).await;
    assert!(out.starts_with("PERMISSION ID") && out.contains("docs.write"), "{out}");
    let roles = run(&["keys", "roles", "list"]).await;
    assert!(
        roles.contains("editor") && roles.contains("docs.read,docs.write"),
        "{roles}"
    );
    run(&["keys", "identities", "create", "acme", "--meta", r#"{"plan":"pro"}"#]).await;
    let identity = run(&["keys", "identities", "get", "acme"]).await;
    assert!(
        identity.contains("externalId") && identity.contains(r#"{"plan":"pro"}"#),
        "{identity}"
    );
    let identities = run(&["keys", "identities", "list"]).await;
    assert!(
        identities.starts_with("IDENTITY ID") && identities.contains("acme"),
        "{identities}"
    );

    let (key_id, key) = create_key(&gw, json!({})).await;
    let roles = run(&["keys", "add-roles", &key_id, "editor"]).await;
    assert!(roles.starts_with("ROLE ID") && roles.contains("editor"), "{roles}");
    assert_eq!(status_with(&gw, "docs.test", &key).await, 200);
    let permissions = run(&["keys", "add-permissions", &key_id, "misc.a,misc.b"]).await;
    assert!(
        permissions.contains("misc.a") && permissions.contains("misc.b"),
        "{permissions}"
    );
    let me = run(&["keys", "whoami", &key]).await;
    assert!(me.contains(&key_id), "{me}");
    let out = run(&["keys", "set-roles", &key_id]).await;
    assert!(!out.contains("editor"), "{out}");
    assert_eq!(status_with(&gw, "docs.test", &key).await, 403);
    assert_eq!(run(&["keys", "permissions", "delete", "misc.a"]).await, "ok\n");
    assert_eq!(run(&["keys", "identities", "delete", "acme"]).await, "ok\n");
    assert_eq!(run(&["apis", "delete", &api_id]).await, "ok\n");
}
