//! The dashboard on the admin listener, driven in a real headless Chromium
//! (Debian's `chromium` + `chromium-driver`): sign-in, each page showing
//! what the config and the traffic say, a request appearing within two
//! seconds without a reload, revoking a key from the page, no credential
//! ever on the page, nothing loaded from another origin, no console
//! errors. Screenshots go to `target/test-artifacts/dashboard/`. Also the
//! JSON endpoints the page uses, and the static shell's headers.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::gateway::Gateway;
use support::upstreams::Upstream;
use support::wait::{poll_until, WAIT};
use support::webdriver::Browser;

const ROOT: &str = "root_dashboard_key_0123456789";

fn config() -> String {
    format!(
        r#"admin:
  root_keys: ["{ROOT}"]
keyspaces:
  - id: ks_dash
deployments:
  - id: dep_echo
    instances: ["builtin:echo"]
  - id: dep_keys
    environment: preview
    instances: ["builtin:echo"]
    policies:
      - id: auth
        keyauth: {{keyspaces: [ks_dash], credits: 0}}
routes:
  - host: open.test
    deployment: dep_echo
  - host: keys.test
    deployment: dep_keys
platform: {{base_domain: kg.test}}
projects:
  - {{id: proj_api, slug: api}}
"#
    )
}

async fn admin(gw: &Gateway, op: &str, body: Value) -> Value {
    let (status, answer) = gw.admin_post(&format!("/v2/{op}"), Some(ROOT), &body).await;
    // 201 for creates, as Unkey's API answers them.
    assert!((200..300).contains(&status), "{op}: {status} {answer}");
    answer["data"].clone()
}

/// Deploys `instance` to production of `proj_api`; returns its id.
async fn deploy(gw: &Gateway, instance: &Upstream) -> String {
    let body = json!({"projectId": "proj_api", "environmentSlug": "production", "branch": "main",
                      "instances": [instance.addr_str()]});
    admin(gw, "deploy.createDeployment", body).await["deploymentId"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Waits until `api.kg.test` is answered by the instance called `name`.
async fn wait_served_by(gw: &Gateway, name: &str) {
    poll_until(format!("api.kg.test served by {name}"), WAIT, || async {
        let response = gw.get("api.kg.test", "/").send().await.ok()?;
        (response.headers().get("x-upstream")? == name).then_some(())
    })
    .await;
}

async fn get_json(gw: &Gateway, path: &str, root_key: Option<&str>) -> (u16, Value) {
    let mut request = gw.client().get(gw.admin_url(path));
    if let Some(key) = root_key {
        request = request.bearer_auth(key);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_json_endpoints_need_a_root_key_and_show_recent_traffic() {
    let gw = Gateway::start(&config()).await;
    for path in ["/v1/requests", "/v1/stats"] {
        assert_eq!(get_json(&gw, path, None).await.0, 401, "{path} without a root key");
        assert_eq!(
            get_json(&gw, path, Some("wrong")).await.0,
            401,
            "{path} with a wrong key"
        );
    }
    let (_, before) = get_json(&gw, "/v1/requests", Some(ROOT)).await;
    let after = before["data"]["last"].as_u64().unwrap();
    let r = gw
        .get("open.test", "/orders/7?api_key=sk_secret_in_query")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let mut seen = Value::Null;
    for _ in 0..100 {
        let (status, answer) = get_json(&gw, &format!("/v1/requests?after={after}"), Some(ROOT)).await;
        assert_eq!(status, 200);
        if let Some(found) = answer["data"]["requests"]
            .as_array()
            .and_then(|r| r.iter().find(|r| r["host"] == "open.test"))
        {
            seen = found.clone();
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(seen["path"], "/orders/7", "{seen}");
    assert_eq!(seen["method"], "GET");
    assert_eq!(seen["status"], 200);
    assert_eq!(seen["deployment"], "dep_echo");
    assert!(
        seen["request_id"].as_str().is_some_and(|id| id.starts_with("req_")),
        "{seen}"
    );
    assert!(!seen.to_string().contains("sk_secret"), "no query string kept: {seen}");

    let (_, stats) = get_json(&gw, "/v1/stats", Some(ROOT)).await;
    let echo = stats["data"]["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == "dep_echo")
        .cloned();
    let minutes = echo.expect("a series for dep_echo")["minutes"].clone();
    let requests: u64 = minutes
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["requests"].as_u64().unwrap())
        .sum();
    assert!(requests >= 1, "{minutes}");

    // The shell: no data, strict headers, assets under content hashes, gzip when asked.
    let shell = gw
        .client()
        .get(gw.admin_url("/"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(shell.status(), 200);
    let csp = shell.headers()["content-security-policy"].to_str().unwrap().to_string();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("connect-src 'self'"),
        "{csp}"
    );
    assert_eq!(shell.headers()["content-encoding"], "gzip");
    let page = gw
        .client()
        .get(gw.admin_url("/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let script = page
        .split("src=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_string();
    assert!(
        script.starts_with("/assets/app.") && script.ends_with(".js"),
        "{script}"
    );
    let asset = gw.client().get(gw.admin_url(&script)).send().await.unwrap();
    assert_eq!(asset.headers()["cache-control"], "public, max-age=31536000, immutable");
    let (status, _) = get_json(&gw, "/assets/app.0000.js", None).await;
    assert_eq!(status, 404, "an unknown asset");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_signs_in_watches_traffic_and_revokes_a_key_in_a_real_browser() {
    let gw = Gateway::start(&config()).await;
    let created = admin(
        &gw,
        "keys.createKey",
        json!({"apiId": "ks_dash", "name": "mobile app", "externalId": "user_dash"}),
    )
    .await;
    let (key_id, key) = (
        created["keyId"].as_str().unwrap().to_string(),
        created["key"].as_str().unwrap().to_string(),
    );
    let origin = format!("http://{}", gw.admin);
    let browser = Browser::start().await;
    browser.goto(&format!("{origin}/")).await;

    // A wrong key is refused on the page; the right one opens the routes.
    browser.type_into("#root-key", "not_a_root_key").await;
    browser.click("#sign-in-form button").await;
    browser
        .wait_for_text("root key is not valid", Duration::from_secs(5))
        .await;
    browser.type_into("#root-key", ROOT).await;
    browser.click("#sign-in-form button").await;
    browser.wait_for_text("keys.test", Duration::from_secs(5)).await;
    let routes = browser.text().await;
    assert!(routes.contains("open.test") && routes.contains("dep_echo"), "{routes}");
    assert!(routes.contains("auth (keyauth)"), "the policy chain is shown: {routes}");
    assert!(routes.contains("builtin:echo"), "instances are shown: {routes}");
    browser.screenshot("routes").await;

    // A request through the gateway shows up without a reload.
    browser.goto(&format!("{origin}/#requests")).await;
    browser.find("[data-filter=host]").await;
    let r = gw.get("keys.test", "/profile").bearer_auth(&key).send().await.unwrap();
    assert_eq!(r.status(), 200);
    browser.wait_for_text("/profile", Duration::from_secs(2)).await;
    let requests = browser.text().await;
    assert!(
        requests.contains("user_dash"),
        "the principal's subject (its identity) is shown: {requests}"
    );
    browser.screenshot("requests").await;

    // Two API deployments, the second live: roll back and promote from the page.
    let (v1, v2) = (Upstream::counting("v1").await, Upstream::counting("v2").await);
    let first = deploy(&gw, &v1).await;
    wait_served_by(&gw, "v1").await;
    let second = deploy(&gw, &v2).await;
    wait_served_by(&gw, "v2").await;
    browser.goto(&format!("{origin}/#deployments")).await;
    browser.wait_for_text(&second, Duration::from_secs(5)).await;
    let text = browser.text().await;
    assert!(
        text.contains(&first) && text.contains("standby") && text.contains("api.kg.test"),
        "{text}"
    );
    assert!(!text.contains("null"), "{text}");
    assert!(
        text.to_lowercase().contains("preview"),
        "the configuration's deployments by environment: {text}"
    );
    browser.screenshot("deployments").await;
    browser
        .click("[data-action=rollback][data-environment=production]")
        .await;
    wait_served_by(&gw, "v1").await;
    browser
        .click(&format!("tr[data-deployment-id='{second}'] [data-action=promote]"))
        .await;
    wait_served_by(&gw, "v2").await;
    browser.goto(&format!("{origin}/#certificates")).await;
    browser.wait_for_text("Certificates", Duration::from_secs(5)).await;
    browser.screenshot("certificates").await;

    // Find the key by its external id and revoke it: it stops working.
    browser.goto(&format!("{origin}/#keys")).await;
    browser.type_into("#key-search", "user_dash").await;
    browser.click("form.filters button").await;
    browser.wait_for_text("mobile app", Duration::from_secs(5)).await;
    browser.screenshot("keys").await;
    browser
        .click(&format!("tr[data-key-id='{key_id}'] [data-action=revoke]"))
        .await;
    browser.accept_dialog().await;
    let revoked = async {
        for _ in 0..100 {
            if gw
                .get("keys.test", "/")
                .bearer_auth(&key)
                .send()
                .await
                .unwrap()
                .status()
                == 401
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    };
    assert!(revoked.await, "the revoked key still works");

    let html = browser.html().await;
    assert!(!html.contains(ROOT), "the root key is never on the page");
    assert!(!html.contains(&key), "an API key is never on the page");
    for url in browser.requested_urls().await {
        assert!(url.starts_with(&origin), "the page loaded {url} from another origin");
    }
    let errors = browser.console_errors().await;
    // The refused sign-in above is the page's own 401, which Chromium logs as a failed fetch.
    let unexpected: Vec<_> = errors.iter().filter(|e| !e.contains("401")).collect();
    assert!(unexpected.is_empty(), "console errors: {unexpected:?}");
}
