//! WebSocket tunnelling: echo through the
//! gateway, sockets surviving a reload, 503 for an unreachable instance, and
//! a stress run of thousands of upgrades (vendor/PATCHES.md, pingora#946).

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::gateway::{one_route, Gateway};
use support::net::closed_addr;
use support::wait::{wait_for, RELOAD_DEADLINE};
use support::websocket::{ws_connect, ws_roundtrip, WsUpstream};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

fn ws_route(host: &str, dep: &str, instance: &str) -> String {
    one_route(host, dep, &[instance])
}

#[tokio::test(flavor = "multi_thread")]
async fn echoes_text_and_binary_frames() {
    let up = WsUpstream::start("A").await;
    let gw = Gateway::start(&ws_route("ws.test", "dep_ws", &up.addr_str())).await;

    let (mut ws, resp) = ws_connect(gw.http, "ws.test", "/chat?room=1")
        .await
        .expect("upgrade through gateway");
    assert_eq!(resp.status(), 101);
    assert!(resp.headers().get("x-request-id").is_some(), "X-Request-Id on the 101");

    assert_eq!(
        ws_roundtrip(&mut ws, Message::Text("hello".into())).await.unwrap(),
        Message::Text("hello".into())
    );
    let bin: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    assert_eq!(
        ws_roundtrip(&mut ws, Message::Binary(bin.clone())).await.unwrap(),
        Message::Binary(bin)
    );
    assert_eq!(
        ws_roundtrip(&mut ws, Message::Binary(vec![])).await.unwrap(),
        Message::Binary(vec![])
    );
    let big_text = "ü".repeat(100_000);
    assert_eq!(
        ws_roundtrip(&mut ws, Message::Text(big_text.clone())).await.unwrap(),
        Message::Text(big_text)
    );
    for i in 0..50 {
        let m = format!("msg {i}");
        assert_eq!(
            ws_roundtrip(&mut ws, Message::Text(m.clone())).await.unwrap(),
            Message::Text(m)
        );
    }
    ws.close(None).await.unwrap();

    // The upgrade request was forwarded with the usual headers.
    let h = up.last_handshake();
    assert_eq!(h.get("x-deployment-id").map(String::as_str), Some("dep_ws"));
    assert_eq!(h.get("x-forwarded-for").map(String::as_str), Some("127.0.0.1"));
    assert_eq!(h.get("host").map(String::as_str), Some("ws.test"));
    assert!(h.get("x-request-id").is_some_and(|v| v.starts_with("req_")), "{h:?}");
    assert_eq!(up.accepted(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn open_socket_survives_a_route_reload() {
    let a = WsUpstream::start("A").await;
    let b = WsUpstream::start("B").await;
    let config = |dep: &str| {
        format!(
            r#"
deployments:
  - id: dep_a
    instances: ["{a}"]
  - id: dep_b
    instances: ["{b}"]
routes:
  - host: ws.test
    deployment: {dep}
"#,
            a = a.addr_str(),
            b = b.addr_str()
        )
    };
    let gw = Gateway::start(&config("dep_a")).await;

    let (mut old, _) = ws_connect(gw.http, "ws.test", "/").await.unwrap();
    assert_eq!(
        ws_roundtrip(&mut old, Message::Text("__name__".into())).await.unwrap(),
        Message::Text("A".into())
    );

    gw.write_config(&config("dep_b"));
    // New sockets for the host land on B once the reload is in effect.
    wait_for("new websocket connections reach B", RELOAD_DEADLINE, || async {
        let Ok((mut ws, _)) = ws_connect(gw.http, "ws.test", "/").await else {
            return false;
        };
        let name = ws_roundtrip(&mut ws, Message::Text("__name__".into())).await;
        let _ = ws.close(None).await;
        name == Ok(Message::Text("B".into()))
    })
    .await;

    // The socket opened before the reload is still tunnelled to A.
    assert_eq!(
        ws_roundtrip(&mut old, Message::Text("__name__".into())).await.unwrap(),
        Message::Text("A".into())
    );
    assert_eq!(
        ws_roundtrip(&mut old, Message::Text("still here".into()))
            .await
            .unwrap(),
        Message::Text("still here".into())
    );
    assert_eq!(
        ws_roundtrip(&mut old, Message::Binary(vec![1, 2, 3])).await.unwrap(),
        Message::Binary(vec![1, 2, 3])
    );
    old.close(None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_instance_is_503_not_a_hang() {
    let gw = Gateway::start(&ws_route("ws.test", "dep_ws", &closed_addr())).await;
    let started = Instant::now();
    let res = tokio::time::timeout(Duration::from_secs(10), ws_connect(gw.http, "ws.test", "/"))
        .await
        .expect("the upgrade must be answered, not hang");
    match res {
        Err(WsError::Http(resp)) => {
            assert_eq!(resp.status(), 503);
            let body = resp.body().clone().unwrap_or_default();
            let v: serde_json::Value = serde_json::from_slice(&body)
                .unwrap_or_else(|e| panic!("503 body not JSON ({e}): {}", String::from_utf8_lossy(&body)));
            assert_eq!(v["error"]["code"], "err:frontline:upstream:service_unavailable", "{v}");
        }
        Err(e) => panic!("expected an HTTP 503 answer, got error {e}"),
        Ok(_) => panic!("upgrade to a closed port succeeded"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
}

/// ≥ 5,000 fresh upgrades through the gateway, each exchanging one message
/// right after the 101 (the window of pingora#946), with modest concurrency.
#[tokio::test(flavor = "multi_thread")]
async fn websocket_upgrade_stress() {
    const TOTAL: usize = 5_000;
    const CONCURRENCY: usize = 4;
    let up = WsUpstream::start("A").await;
    let gw = Gateway::start(&ws_route("ws.test", "dep_ws", &up.addr_str())).await;
    let addr = gw.http;

    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..CONCURRENCY {
        let next = next.clone();
        workers.push(tokio::spawn(async move {
            let mut failures: Vec<String> = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= TOTAL {
                    break;
                }
                let one = async {
                    let (mut ws, _) = ws_connect(addr, "ws.test", "/stress")
                        .await
                        .map_err(|e| format!("upgrade: {e}"))?;
                    let msg = if i.is_multiple_of(2) {
                        Message::Text(format!("m{i}"))
                    } else {
                        Message::Binary(i.to_be_bytes().to_vec())
                    };
                    let got = ws_roundtrip(&mut ws, msg.clone()).await?;
                    if got != msg {
                        return Err(format!("echo mismatch: sent {msg:?}, got {got:?}"));
                    }
                    let _ = ws.close(None).await;
                    Ok::<(), String>(())
                };
                match tokio::time::timeout(Duration::from_secs(10), one).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => failures.push(format!("#{i}: {e}")),
                    Err(_) => failures.push(format!("#{i}: timed out")),
                }
            }
            failures
        }));
    }
    let mut failures = Vec::new();
    for w in workers {
        let f = tokio::time::timeout(Duration::from_secs(240), w)
            .await
            .expect("stress run exceeded 240s")
            .unwrap();
        failures.extend(f);
    }
    let took = started.elapsed();
    eprintln!("websocket_upgrade_stress: {TOTAL} upgrades in {took:?}");
    assert!(
        failures.is_empty(),
        "{} of {TOTAL} upgrades failed; first: {:?}",
        failures.len(),
        &failures[..failures.len().min(10)]
    );
    assert!(up.accepted() >= TOTAL, "upstream accepted {} handshakes", up.accepted());
}
