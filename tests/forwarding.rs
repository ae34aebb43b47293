//! What the instance receives and what the client gets back: X-Forwarded-*, X-Deployment-Id, X-Request-Id, Server-Timing,
//! stripping of identity headers, Host and request target untouched, large
//! bodies intact in both directions.

mod support;

use serde_json::Value;
use support::gateway::{one_route, Gateway};
use support::raw_http::raw_request;
use support::upstreams::{pattern, Upstream};

const HOST: &str = "fwd.test";

async fn setup(extra: &str) -> (Upstream, Gateway) {
    let up = Upstream::inspector("up").await;
    let gw = Gateway::start(&format!("{extra}{}", one_route(HOST, "dep_fwd", &[&up.addr_str()]))).await;
    (up, gw)
}

#[tokio::test(flavor = "multi_thread")]
async fn untrusted_client_forwarded_headers_are_replaced() {
    let (up, gw) = setup("").await;
    let r = gw
        .get(HOST, "/who")
        .header("x-forwarded-for", "1.2.3.4, 5.6.7.8")
        .header("x-forwarded-host", "evil.test")
        .header("x-forwarded-proto", "https")
        .header("x-request-id", "req_spoofed")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let rid = r.headers()["x-request-id"].to_str().unwrap().to_string();
    let seen = up.last_seen();
    assert_eq!(
        seen.all("x-forwarded-for"),
        vec!["127.0.0.1"],
        "untrusted XFF replaced by the peer"
    );
    assert_eq!(
        seen.all("x-forwarded-host"),
        vec![HOST],
        "untrusted X-Forwarded-Host replaced"
    );
    assert_eq!(
        seen.all("x-forwarded-proto"),
        vec!["http"],
        "untrusted X-Forwarded-Proto replaced"
    );
    assert_ne!(rid, "req_spoofed", "untrusted X-Request-Id replaced");
    assert_eq!(seen.all("x-request-id"), vec![rid.as_str()]);
}

#[tokio::test(flavor = "multi_thread")]
async fn trusted_proxy_chain_is_kept_and_peer_appended() {
    let (up, gw) = setup("trusted_proxies: [\"127.0.0.0/8\"]\n").await;
    let r = gw
        .get(HOST, "/who")
        .header("x-forwarded-for", "1.2.3.4")
        .header("x-forwarded-host", "public.example.com")
        .header("x-forwarded-proto", "https")
        .header("x-request-id", "req_fromlb123")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = up.last_seen();
    let xff = seen.all("x-forwarded-for").join(",");
    let chain: Vec<&str> = xff.split(',').map(str::trim).collect();
    assert_eq!(
        chain,
        vec!["1.2.3.4", "127.0.0.1"],
        "XFF from a trusted peer: kept, peer appended"
    );
    // From a trusted proxy these are kept.
    assert_eq!(seen.one("x-forwarded-host"), Some("public.example.com"));
    assert_eq!(seen.one("x-forwarded-proto"), Some("https"));
    assert_eq!(seen.one("x-request-id"), Some("req_fromlb123"));
    assert_eq!(
        r.headers()["x-request-id"],
        "req_fromlb123",
        "the kept request id is returned"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn forwarded_host_proto_deployment_and_host_unchanged() {
    let (up, gw) = setup("").await;
    let host = "FWD.test:8080";
    let r = gw.get(host, "/x").send().await.unwrap();
    assert_eq!(r.status(), 200);
    let seen = up.last_seen();
    assert_eq!(seen.one("host"), Some(host), "Host passed unchanged");
    assert_eq!(
        seen.one("x-forwarded-host"),
        Some(host),
        "X-Forwarded-Host keeps the port"
    );
    assert_eq!(seen.one("x-forwarded-proto"), Some("http"));
    assert_eq!(seen.one("x-deployment-id"), Some("dep_fwd"));
    assert_eq!(seen.one("x-forwarded-for"), Some("127.0.0.1"));
    assert!(
        seen.one("x-unkey-principal").is_none(),
        "no principal without an auth policy"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn request_id_is_returned_and_forwarded_and_server_timing_present() {
    let (up, gw) = setup("").await;
    let mut ids = std::collections::HashSet::new();
    for _ in 0..5 {
        let r = gw.get(HOST, "/rid").send().await.unwrap();
        assert_eq!(r.status(), 200);
        let rid = r
            .headers()
            .get("x-request-id")
            .expect("X-Request-Id returned")
            .to_str()
            .unwrap()
            .to_string();
        assert!(rid.starts_with("req_") && rid.len() > 8, "request id {rid:?}");
        assert_eq!(
            up.last_seen().one("x-request-id"),
            Some(rid.as_str()),
            "forwarded id equals returned id"
        );
        let st = r
            .headers()
            .get("server-timing")
            .expect("Server-Timing")
            .to_str()
            .unwrap()
            .to_string();
        assert!(
            st.contains("gateway;dur=") && st.contains("instance;dur="),
            "Server-Timing {st:?}"
        );
        assert!(ids.insert(rid), "request ids are unique");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn client_principal_and_deployment_id_are_stripped() {
    let (up, gw) = setup("").await;
    // Raw bytes: mixed-case names and several copies, which HTTP libraries
    // would normalise away. A GET (keygate's fast path, whose parser leaves
    // them out) and a POST with a body (the full proxy, which removes them).
    for (method, framing, body) in [("GET", "", ""), ("POST", "Content-Length: 2\r\n", "hi")] {
        let req = format!(
            "{method} /strip HTTP/1.1\r\nHost: {HOST}\r\n\
             X-Unkey-Principal: {{\"subject\":\"admin\"}}\r\n\
             x-unkey-principal: second\r\n\
             X-UNKEY-PRINCIPAL: third\r\n\
             x-UnKeY-pRiNcIpAl: fourth\r\n\
             X-Deployment-Id: dep_evil\r\n\
             x-DEPLOYMENT-id: dep_evil2\r\n\
             X-Keep-Me: yes\r\n\
             {framing}Connection: close\r\n\r\n{body}"
        );
        let r = raw_request(gw.http, req.as_bytes()).await;
        assert_eq!(r.status, 200, "{method}: {}", String::from_utf8_lossy(&r.body));
        let seen = up.last_seen();
        assert!(
            seen.all("x-unkey-principal").is_empty(),
            "{method}: principal copies forwarded: {:?}",
            seen.headers
        );
        assert_eq!(
            seen.all("x-deployment-id"),
            vec!["dep_fwd"],
            "{method}: only the gateway's X-Deployment-Id"
        );
        assert_eq!(seen.one("x-keep-me"), Some("yes"), "{method}: other headers pass");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn request_target_is_forwarded_byte_for_byte() {
    let up = Upstream::inspector("up").await;
    let gw = Gateway::start(&format!(
        r#"
deployments:
  - id: dep_fwd
    instances: ["{up}"]
routes:
  - host: {HOST}
    deployment: dep_fwd
  - host: {HOST}
    path_prefix: /api
    strip_prefix: true
    deployment: dep_fwd
"#,
        up = up.addr_str()
    ))
    .await;

    let cases = [
        "/p/a%2Fb/%7e%7E/c%20d/;m=1/x?q=%2F%3f&r=a+b&s=%zz&t=&&u=%C3%BC",
        "/p//double//slash/?a=1&a=2",
        "/p/%2e%2E/x?%00=%FF",
        "/p/x?q=hello%20world&sort=-name,+age&empty=",
        "/p/UPPER/Case?Q=V",
        "/p/.%2F./%252F",
    ];
    for target in cases {
        let req = format!("GET {target} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n");
        let r = raw_request(gw.http, req.as_bytes()).await;
        assert_eq!(r.status, 200, "{target}: {}", String::from_utf8_lossy(&r.body));
        let v: Value = r.json();
        assert_eq!(v["uri"], target, "request target changed");
    }

    // strip_prefix removes only the prefix; the rest stays as received.
    let req = format!("GET /api/a%2Fb/%7e?x=%20y&z=%2f HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n");
    let r = raw_request(gw.http, req.as_bytes()).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["uri"], "/a%2Fb/%7e?x=%20y&z=%2f");

    // An empty query may be dropped, nothing else.
    let req = format!("GET /p/empty? HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n");
    let r = raw_request(gw.http, req.as_bytes()).await;
    assert_eq!(r.status, 200);
    let uri = r.json()["uri"].as_str().unwrap().to_string();
    assert!(uri == "/p/empty?" || uri == "/p/empty", "{uri}");
}

const FIVE_MIB: usize = 5 * 1024 * 1024;

#[tokio::test(flavor = "multi_thread")]
async fn five_mib_bodies_pass_intact_both_directions() {
    let (_up, gw) = setup("").await;
    let data = pattern(FIVE_MIB);

    // Request body with Content-Length, echoed back by the instance.
    let r = gw
        .request(reqwest::Method::POST, HOST, "/echo")
        .header("x-echo-body", "1")
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let back = r.bytes().await.unwrap();
    assert_eq!(back.len(), FIVE_MIB, "echoed length");
    assert!(back[..] == data[..], "echoed body differs");

    // Chunked request body (streamed, no Content-Length).
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = data.chunks(100_000).map(|c| Ok(c.to_vec())).collect();
    let r = gw
        .request(reqwest::Method::PUT, HOST, "/echo-chunked")
        .header("x-echo-body", "1")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let back = r.bytes().await.unwrap();
    assert_eq!(back.len(), FIVE_MIB, "echoed chunked length");
    assert!(back[..] == data[..], "echoed chunked body differs");
}

#[tokio::test(flavor = "multi_thread")]
async fn five_mib_response_body_passes_intact() {
    let large = Upstream::large_body("large", FIVE_MIB).await;
    let gw = Gateway::start(&one_route("large.test", "dep_large", &[&large.addr_str()])).await;
    let r = gw.get("large.test", "/download").send().await.unwrap();
    assert_eq!(r.status(), 200);
    let body = r.bytes().await.unwrap();
    assert_eq!(body.len(), FIVE_MIB);
    assert!(body[..] == pattern(FIVE_MIB)[..], "downloaded body differs");
}

#[tokio::test(flavor = "multi_thread")]
async fn builtin_echo_reports_what_an_instance_would_see() {
    let gw = Gateway::start(&one_route("echo.test", "dep_echo", &["builtin:echo"])).await;

    let req = "POST /echo/p%20q?x=1&y=2 HTTP/1.1\r\nHost: echo.test\r\nX-Multi: a\r\nx-multi: b\r\n\
               Keep-Alive: timeout=5\r\nTE: trailers\r\nX-Hop: 1\r\n\
               Content-Type: text/plain\r\nContent-Length: 11\r\nConnection: close, X-Hop\r\n\r\nhello wörl";
    // "hello wörl" is 11 bytes in UTF-8.
    let r = raw_request(gw.http, req.as_bytes()).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert!(r
        .header("content-type")
        .is_some_and(|v| v.starts_with("application/json")));
    let v = r.json();
    assert_eq!(v["method"], "POST", "{v}");
    assert_eq!(v["path"], "/echo/p%20q", "{v}");
    let q = v["query"].as_str().unwrap_or_default();
    assert!(q == "x=1&y=2" || q == "?x=1&y=2", "query {q:?}");
    assert_eq!(v["body"], "hello wörl", "{v}");
    assert!(v.get("body_encoding").is_none_or(|e| e.is_null()), "{v}");
    let h = &v["headers"];
    assert_eq!(h["x-multi"], "a, b", "repeated headers joined: {v}");
    assert_eq!(h["host"], "echo.test", "{v}");
    assert_eq!(h["x-deployment-id"], "dep_echo", "{v}");
    assert_eq!(h["x-forwarded-for"], "127.0.0.1", "{v}");
    assert_eq!(h["x-forwarded-host"], "echo.test", "{v}");
    assert_eq!(h["x-forwarded-proto"], "http", "{v}");
    assert_eq!(h["x-request-id"].as_str(), r.header("x-request-id"), "{v}");
    // Hop-by-hop fields (and those Connection nominates) never reach an instance.
    for hop in ["connection", "keep-alive", "te", "x-hop"] {
        assert!(h.get(hop).is_none(), "{hop} is hop-by-hop: {v}");
    }

    // Non-UTF-8 bodies come back as base64.
    let r = gw
        .request(reqwest::Method::PUT, "echo.test", "/bin")
        .body(vec![0xffu8, 0xfe, 0x00, 0x80])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["body"], "//4AgA==", "{v}");
    assert_eq!(v["body_encoding"], "base64", "{v}");
}
