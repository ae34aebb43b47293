//! The Deployments API against real instances: a deployment goes
//! `deploying → ready`, gets its commit, branch, environment and live
//! domains and goes live for the production branch; the next one replaces
//! it under a request loop without a failed request; rollback and promote
//! switch back and forth; an unreachable deployment fails and changes
//! nothing; a live deployment cannot be deleted; standby ends in archive;
//! a restart keeps everything.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::gateway::Gateway;
use support::upstreams::{DocServer, Upstream};
use support::wait::{poll_until, WAIT};

const ROOT: &str = "root_deploy_key";

fn config(standby: &str) -> String {
    format!(
        r#"admin:
  root_keys: ["{ROOT}"]
platform:
  base_domain: kg.test
  ready_timeout: 2s
  standby: {standby}
projects:
  - id: proj_api
    slug: api
    production_branch: main
    domains: [api.example.test]
    environments:
      production: {{}}
      preview:
        policies:
          - id: preview-only
            match: [{{path: {{prefix: /private}}}}]
            firewall: {{action: deny}}
"#
    )
}

async fn call(gw: &Gateway, op: &str, body: Value) -> (u16, Value) {
    gw.admin_post(&format!("/v2/{op}"), Some(ROOT), &body).await
}

async fn ok(gw: &Gateway, op: &str, body: Value) -> Value {
    let (status, answer) = call(gw, op, body).await;
    assert!((200..300).contains(&status), "{op}: {status} {answer}");
    answer["data"].clone()
}

async fn create(gw: &Gateway, environment: &str, branch: &str, sha: &str, instance: &str) -> String {
    let body = json!({
        "projectId": "proj_api",
        "environmentSlug": environment,
        "branch": branch,
        "gitCommit": {"commitSha": sha, "commitMessage": "ship it", "authorHandle": "dev", "timestamp": 1764900000000_i64},
        "dockerImage": "registry.example/api:1",
        "instances": [instance],
    });
    ok(gw, "deploy.createDeployment", body).await["deploymentId"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn wait_status(gw: &Gateway, id: &str, want: &str) -> Value {
    poll_until(format!("{id} {want}"), WAIT, || async {
        let got = ok(gw, "deploy.getDeployment", json!({"deploymentId": id})).await;
        // Upper-case, as in Unkey's internal API.
        (got["status"] == want.to_ascii_uppercase()).then_some(got)
    })
    .await
}

/// Which instance answers for `host` (its `x-upstream`), or the status when none does.
async fn served_by(gw: &Gateway, host: &str) -> String {
    let response = gw.get(host, "/").send().await.unwrap();
    match response.headers().get("x-upstream") {
        Some(name) => name.to_str().unwrap().to_string(),
        None => response.status().as_u16().to_string(),
    }
}

async fn wait_served_by(gw: &Gateway, host: &str, want: &str) {
    poll_until(format!("{host} served by {want}"), WAIT, || async {
        (served_by(gw, host).await == want).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_goes_live_and_the_next_replaces_it_without_a_failed_request() {
    let (v1, v2) = (Upstream::counting("v1").await, Upstream::counting("v2").await);
    let mut gw = Gateway::start(&config("30m")).await;

    let first = create(&gw, "production", "main", "abc1234def", &v1.addr_str()).await;
    let got = wait_status(&gw, &first, "ready").await;
    assert_eq!(got["live"], true, "the production branch goes live by itself: {got}");
    let domains: Vec<&str> = got["domains"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for domain in [
        "api-abc1234.kg.test",
        "api-git-main.kg.test",
        "api-production.kg.test",
        "api.kg.test",
        "api.example.test",
    ] {
        assert!(domains.contains(&domain), "{domain} in {domains:?}");
        wait_served_by(&gw, domain, "v1").await;
    }
    assert_eq!(got["gitCommit"]["commitSha"], "abc1234def");
    assert_eq!(got["instances"][0]["address"], v1.addr_str());

    // The next deployment replaces it while requests keep flowing: each is answered by v1 or v2.
    let looping = {
        let client = gw.client().clone();
        let url = gw.http_url("/");
        tokio::spawn(async move {
            let mut answers = Vec::new();
            for _ in 0..400 {
                let response = client.get(&url).header("host", "api.kg.test").send().await;
                answers.push(match response {
                    Ok(r) => r
                        .headers()
                        .get("x-upstream")
                        .map(|v| v.to_str().unwrap().to_string())
                        .unwrap_or(r.status().to_string()),
                    Err(e) => e.to_string(),
                });
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            answers
        })
    };
    let second = create(&gw, "production", "main", "fedcba98765", &v2.addr_str()).await;
    wait_status(&gw, &second, "ready").await;
    wait_served_by(&gw, "api.kg.test", "v2").await;
    let answers = looping.await.unwrap();
    assert!(
        answers.iter().all(|a| a == "v1" || a == "v2"),
        "every request answered by v1 or v2: {answers:?}"
    );
    assert_eq!(wait_status(&gw, &first, "standby").await["live"], false);
    served_by(&gw, "api-abc1234.kg.test")
        .await
        .eq("v1")
        .then_some(())
        .expect("a standby deployment keeps its commit domain");

    // Rollback, promote.
    let rolled = ok(
        &gw,
        "deploy.rollback",
        json!({"projectId": "proj_api", "environmentSlug": "production"}),
    )
    .await;
    assert_eq!(rolled["deploymentId"], first.as_str());
    wait_served_by(&gw, "api.example.test", "v1").await;
    ok(&gw, "deploy.promote", json!({"deploymentId": second})).await;
    wait_served_by(&gw, "api.kg.test", "v2").await;

    // The live deployment cannot be deleted; the other one can.
    let (status, refused) = call(&gw, "deploy.deleteDeployment", json!({"deploymentId": second})).await;
    assert_eq!(status, 409, "{refused}");
    let listed = ok(&gw, "deploy.listDeployments", json!({"projectId": "proj_api"})).await;
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [second.as_str(), first.as_str()], "newest first");

    // Two automatic promotions, a rollback and a promote.
    assert_eq!(gw.metric("keygate_deployment_promotions_total").await, 4.0);
    gw.wait_metric("keygate_deployments{status=\"ready\"}", 1.0).await;
    gw.wait_metric("keygate_deployments{status=\"standby\"}", 1.0).await;

    // A restart keeps the deployments and what is live.
    gw.kill9().await;
    gw.restart().await;
    wait_served_by(&gw, "api.kg.test", "v2").await;
    assert_eq!(
        ok(&gw, "deploy.getDeployment", json!({"deploymentId": first})).await["status"],
        "STANDBY"
    );
    ok(&gw, "deploy.deleteDeployment", json!({"deploymentId": first})).await;
    let (status, _) = call(&gw, "deploy.getDeployment", json!({"deploymentId": first})).await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn previews_get_their_domains_and_policies_failures_change_nothing_and_standby_ends() {
    let (v1, preview) = (Upstream::counting("v1").await, Upstream::counting("preview").await);
    let gw = Gateway::start(&config("1s")).await;
    let live = create(&gw, "production", "main", "1111111aaa", &v1.addr_str()).await;
    wait_status(&gw, &live, "ready").await;

    // A preview deployment: its own domains, its environment's policies, never live in production.
    let pr = create(&gw, "preview", "feat/Login", "2222222bbb", &preview.addr_str()).await;
    let got = wait_status(&gw, &pr, "ready").await;
    wait_served_by(&gw, "api-git-feat-login.kg.test", "preview").await;
    wait_served_by(&gw, "api-2222222.kg.test", "preview").await;
    assert_eq!(got["live"], false, "a preview is not promoted by itself");
    let denied = gw.get("api-git-feat-login.kg.test", "/private/x").send().await.unwrap();
    assert_eq!(denied.status(), 403, "the preview environment's firewall applies");
    assert_eq!(served_by(&gw, "api.kg.test").await, "v1");

    // Unreachable instances: failed after ready_timeout, the live deployment untouched.
    let broken = create(&gw, "production", "main", "3333333ccc", "127.0.0.1:1").await;
    assert_eq!(
        ok(&gw, "deploy.getDeployment", json!({"deploymentId": broken})).await["status"],
        "DEPLOYING"
    );
    let failed = wait_status(&gw, &broken, "failed").await;
    assert!(failed["error"].as_str().unwrap().contains("127.0.0.1:1"), "{failed}");
    assert_eq!(served_by(&gw, "api.kg.test").await, "v1");
    let (status, _) = call(&gw, "deploy.promote", json!({"deploymentId": broken})).await;
    assert_eq!(status, 409, "a failed deployment cannot be promoted");

    // A pending deployment gets its instances later; the replaced one is archived after standby.
    let later = ok(
        &gw,
        "deploy.createDeployment",
        json!({"projectId": "proj_api", "environmentSlug": "production", "branch": "main"}),
    )
    .await["deploymentId"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        ok(&gw, "deploy.getDeployment", json!({"deploymentId": later})).await["status"],
        "PENDING"
    );
    ok(
        &gw,
        "deploy.addInstances",
        json!({"deploymentId": later, "instances": [preview.addr_str()]}),
    )
    .await;
    wait_status(&gw, &later, "ready").await;
    wait_served_by(&gw, "api.kg.test", "preview").await;
    wait_status(&gw, &live, "archived").await;
    assert_eq!(
        served_by(&gw, "api-1111111.kg.test").await,
        "404",
        "an archived deployment is not routed"
    );

    // Bad input is refused with the field named, and nothing is created.
    let (status, bad) = call(
        &gw,
        "deploy.createDeployment",
        json!({"projectId": "proj_api", "environmentSlug": "staging"}),
    )
    .await;
    assert_eq!(status, 400, "{bad}");
    let (status, bad) = call(
        &gw,
        "deploy.createDeployment",
        json!({"projectId": "nope", "environmentSlug": "production"}),
    )
    .await;
    assert_eq!(
        (status, bad["error"]["code"].as_str()),
        (404, Some("err:unkey:data:project_not_found"))
    );
    let (status, bad) = call(
        &gw,
        "deploy.createDeployment",
        json!({"projectId": "proj_api", "environmentSlug": "production", "instances": ["not-an-address"]}),
    )
    .await;
    assert_eq!(status, 400, "{bad}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keygate_deploy_waits_for_ready_or_failed_and_says_so_in_its_exit_code() {
    let v1 = Upstream::counting("v1").await;
    let gw = Gateway::start(&config("30m")).await;
    let admin = format!("http://{}", gw.admin);
    let base = ["--admin", admin.as_str(), "--root-key", ROOT];
    let instance = v1.addr_str();
    let mut create = vec![
        "deploy",
        "create",
        "--project",
        "proj_api",
        "--env",
        "production",
        "--branch",
        "main",
    ];
    create.extend(["--commit", "9a8b7c6d5e", "--instance", instance.as_str(), "--wait"]);
    create.extend(base);
    let out = gw.cli(&create, &[]).await;
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout.contains("status: ready") && stdout.contains("api-9a8b7c6.kg.test"),
        "{stdout}"
    );
    assert_eq!(served_by(&gw, "api.kg.test").await, "v1");

    let mut broken = vec![
        "deploy",
        "create",
        "--project",
        "proj_api",
        "--instance",
        "127.0.0.1:1",
        "--wait",
    ];
    broken.extend(base);
    let out = gw.cli(&broken, &[]).await;
    assert!(!out.status.success(), "an unreachable deployment fails the command");
    assert!(String::from_utf8_lossy(&out.stdout).contains("status: failed"));

    let mut list = vec!["deploy", "list", "--project", "proj_api"];
    list.extend(base);
    let out = gw.cli(&list, &[]).await;
    let listed = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success() && listed.contains("failed") && listed.contains("live"),
        "{listed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_health_check_gates_readiness_and_a_rollback_pauses_automatic_promotion() {
    let checked = DocServer::start().await;
    let (v2, v3) = (Upstream::counting("v2").await, Upstream::counting("v3").await);
    let gw = Gateway::start(&config("1h")).await;

    // Its instance accepts connections at once, but /ready answers 404 until it is set.
    let first = ok(
        &gw,
        "deploy.createDeployment",
        json!({
            "projectId": "proj_api", "environmentSlug": "production", "branch": "main",
            "instances": [checked.addr.to_string()],
            "healthCheck": {"path": "/ready", "interval": "100ms", "timeout": "1s"},
        }),
    )
    .await["deploymentId"]
        .as_str()
        .unwrap()
        .to_string();
    poll_until("a readiness probe of /ready", WAIT, || async {
        (checked.hits("/ready") >= 2).then_some(())
    })
    .await;
    let waiting = ok(&gw, "deploy.getDeployment", json!({"deploymentId": first})).await;
    assert_eq!(
        waiting["status"], "DEPLOYING",
        "a failing health check keeps it deploying: {waiting}"
    );
    assert_eq!(waiting["healthCheck"]["path"], "/ready");
    checked.set("/ready", "text/plain", "ok");
    assert_eq!(wait_status(&gw, &first, "ready").await["live"], true);

    // A bad health check is refused with its field.
    let (status, bad) = call(
        &gw,
        "deploy.createDeployment",
        json!({"projectId": "proj_api", "environmentSlug": "production", "healthCheck": {"interval": "soon"}}),
    )
    .await;
    assert_eq!(status, 400, "{bad}");
    assert!(bad.to_string().contains("healthCheck.interval"), "{bad}");

    // After a rollback, a new deployment of the production branch waits for an explicit promote.
    let second = create(&gw, "production", "main", "2222222", &v2.addr_str()).await;
    wait_served_by(&gw, "api.kg.test", "v2").await;
    let rolled = ok(
        &gw,
        "deploy.rollback",
        json!({"projectId": "proj_api", "environmentSlug": "production"}),
    )
    .await;
    assert_eq!(rolled["deploymentId"], first.as_str());
    let third = create(&gw, "production", "main", "3333333", &v3.addr_str()).await;
    assert_eq!(
        wait_status(&gw, &third, "ready").await["live"],
        false,
        "paused by the rollback"
    );
    assert_eq!(
        served_by(&gw, "api.kg.test").await,
        "404",
        "still the rolled-back-to deployment"
    );
    assert_eq!(
        ok(&gw, "deploy.getDeployment", json!({"deploymentId": second})).await["status"],
        "STANDBY"
    );
    ok(&gw, "deploy.promote", json!({"deploymentId": third})).await;
    wait_served_by(&gw, "api.kg.test", "v3").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_projects_apps_and_idle_previews() {
    let (site, web, api, busy, idle) = (
        Upstream::counting("site").await,
        Upstream::counting("web").await,
        Upstream::counting("api").await,
        Upstream::counting("busy").await,
        Upstream::counting("idle").await,
    );
    let config = format!(
        r#"admin:
  root_keys: ["{ROOT}"]
platform:
  base_domain: kg.test
  preview_idle_archive: 2s
projects:
  - id: proj_shop
    slug: shop
    apps: [{{slug: web}}, {{slug: api}}]
"#
    );
    let mut gw = Gateway::start(&config).await;

    // A project created through the API: its deployments go live on its domains.
    let project = ok(
        &gw,
        "projects.createProject",
        json!({"name": "Blog", "slug": "blog", "domains": ["blog.example.test"]}),
    )
    .await["projectId"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, taken) = call(&gw, "projects.createProject", json!({"slug": "shop"})).await;
    assert_eq!(status, 409, "the file's slug is taken: {taken}");
    let deploy = |project: &str, app: Option<&str>, environment: &str, branch: &str, instance: String| {
        let mut body =
            json!({"project": project, "environmentSlug": environment, "branch": branch, "instances": [instance]});
        if let Some(app) = app {
            body["app"] = json!(app);
        }
        let gw = &gw;
        async move {
            ok(gw, "deploy.createDeployment", body).await["deploymentId"]
                .as_str()
                .unwrap()
                .to_string()
        }
    };
    deploy("blog", None, "production", "main", site.addr_str()).await;
    wait_served_by(&gw, "blog.kg.test", "site").await;
    wait_served_by(&gw, "blog.example.test", "site").await;

    // Several apps: `{app}-{slug}` domains; an unknown app is refused.
    deploy("proj_shop", Some("web"), "production", "main", web.addr_str()).await;
    deploy("proj_shop", Some("api"), "production", "main", api.addr_str()).await;
    wait_served_by(&gw, "web-shop.kg.test", "web").await;
    wait_served_by(&gw, "api-shop.kg.test", "api").await;
    let (status, refused) = call(
        &gw,
        "deploy.createDeployment",
        json!({"project": "proj_shop", "app": "admin", "environmentSlug": "production"}),
    )
    .await;
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (404, Some("err:unkey:data:project_not_found")),
        "{refused}"
    );

    // Previews without requests for preview_idle_archive are archived; a used one stays.
    let quiet = deploy(&project, None, "preview", "feat-quiet", idle.addr_str()).await;
    let used = deploy(&project, None, "preview", "feat-used", busy.addr_str()).await;
    wait_status(&gw, &quiet, "ready").await;
    wait_status(&gw, &used, "ready").await;
    let archived = poll_until("the idle preview archived", WAIT, || async {
        assert_eq!(served_by(&gw, "blog-git-feat-used.kg.test").await, "busy");
        let got = ok(&gw, "deploy.getDeployment", json!({"deploymentId": quiet})).await;
        (got["status"] == "ARCHIVED").then_some(got)
    })
    .await;
    assert_eq!(archived["domains"], json!([]), "{archived}");
    assert_eq!(
        ok(&gw, "deploy.getDeployment", json!({"deploymentId": used})).await["status"],
        "READY"
    );
    assert_eq!(
        served_by(&gw, "blog.kg.test").await,
        "site",
        "production is never idle-archived"
    );

    // The API's project survives a restart.
    gw.kill9().await;
    gw.restart().await;
    assert_eq!(
        ok(&gw, "projects.getProject", json!({"project": "blog"})).await["id"],
        project.as_str()
    );
    wait_served_by(&gw, "blog.example.test", "site").await;
}

/// How long a promote takes, from the API call to traffic switched, with
/// 10,000 file routes in the table (printed; `scripts/promote-latency.sh`
/// repeats it). What is asserted is the switch itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promote_switches_traffic_with_ten_thousand_routes_in_the_table() {
    let (v1, v2) = (Upstream::counting("v1").await, Upstream::counting("v2").await);
    let mut config = config("1h");
    config.push_str("deployments:\n  - id: filler\n    instances: [\"builtin:echo\"]\nroutes:\n");
    for i in 0..10_000 {
        config.push_str(&format!("  - {{host: host-{i}.filler.test, deployment: filler}}\n"));
    }
    let gw = Gateway::start(&config).await;
    let first = create(&gw, "production", "main", "1111111", &v1.addr_str()).await;
    wait_served_by(&gw, "api.kg.test", "v1").await;
    let second = create(&gw, "production", "feature", "2222222", &v2.addr_str()).await;
    wait_status(&gw, &second, "ready").await;
    assert_eq!(
        served_by(&gw, "api.kg.test").await,
        "v1",
        "not the production branch: not live by itself"
    );

    let rounds: usize = std::env::var("KEYGATE_PROMOTES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(5);
    let mut took = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let (target, name) = if round % 2 == 0 {
            (&second, "v2")
        } else {
            (&first, "v1")
        };
        let started = std::time::Instant::now();
        ok(&gw, "deploy.promote", json!({"deploymentId": target})).await;
        wait_served_by(&gw, "api.kg.test", name).await;
        took.push(started.elapsed());
    }
    took.sort();
    eprintln!(
        "promote → traffic switched, 10,000 routes, {rounds} promotes: median {:?}, max {:?}",
        took[took.len() / 2],
        took[took.len() - 1]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_stays_open_on_the_deployment_a_promote_replaced() {
    use support::websocket::{ws_connect, ws_roundtrip, WsUpstream};
    use tokio_tungstenite::tungstenite::Message;

    let (chat, v2) = (WsUpstream::start("chat").await, Upstream::counting("v2").await);
    let gw = Gateway::start(&config("1h")).await;
    let first = create(&gw, "production", "main", "1111111", &chat.addr_str()).await;
    wait_status(&gw, &first, "ready").await;
    // Ready is recorded before the routing table that serves it is swapped
    // in: wait until the host is routed (a plain GET is no handshake, so
    // `accepted` below still counts only the socket).
    poll_until("api.kg.test routed", WAIT, || async {
        (served_by(&gw, "api.kg.test").await != "404").then_some(())
    })
    .await;
    let (mut ws, response) = ws_connect(gw.http, "api.kg.test", "/chat").await.expect("upgrade");
    assert_eq!(response.status(), 101);
    assert_eq!(
        ws_roundtrip(&mut ws, Message::Text("before".into())).await.unwrap(),
        Message::Text("before".into())
    );

    let second = create(&gw, "production", "main", "2222222", &v2.addr_str()).await;
    wait_served_by(&gw, "api.kg.test", "v2").await;
    assert_eq!(wait_status(&gw, &second, "ready").await["live"], true);
    assert_eq!(
        ws_roundtrip(&mut ws, Message::Text("after".into())).await.unwrap(),
        Message::Text("after".into()),
        "the socket stays on the replaced (standby) deployment"
    );
    assert_eq!(chat.accepted(), 1, "no reconnect");
}
