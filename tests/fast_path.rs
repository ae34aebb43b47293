//! keygate's own HTTP/1 path (src/proxy/fast) against instances that answer
//! with exact bytes: what it serves and what it hands to the full proxy
//! (counted in `keygate_http1_requests{path}`), and how it passes a
//! response through — chunked bodies split across reads, bytes past a
//! response's end, a body delimited by the instance closing, ambiguous
//! lengths, large bodies passed in the kernel (spliced) whole, cut short
//! or followed by stray bytes — and when it may reuse the instance's
//! connection.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use support::gateway::{one_route, Gateway};
use support::raw_http::{RawConn, RawResponse};
use support::recording_upstream::RecordingUpstream;
use support::upstreams::serve_loopback;

const HOST: &str = "fast.test";

/// An instance that answers every request head it reads with the same raw
/// response, written in `pieces` (each flushed on its own), and counts the
/// connections it accepted. With `close_after`, it closes the connection
/// after each response.
struct Scripted {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
}

async fn scripted(pieces: &'static [&'static [u8]], close_after: bool) -> Scripted {
    serve_pieces(pieces.iter().map(|p| p.to_vec()).collect(), close_after).await
}

/// [`scripted`] with pieces made at run time.
async fn serve_pieces(pieces: Vec<Vec<u8>>, close_after: bool) -> Scripted {
    let pieces = Arc::new(pieces);
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    let (addr, _task) = serve_loopback(move |mut stream: TcpStream| {
        counter.fetch_add(1, Ordering::SeqCst);
        let pieces = pieces.clone();
        async move {
            let mut buf = Vec::new();
            loop {
                let head_end = loop {
                    if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break p + 4;
                    }
                    let mut chunk = [0u8; 4096];
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                };
                buf.drain(..head_end);
                for piece in pieces.iter() {
                    if stream.write_all(piece).await.is_err() || stream.flush().await.is_err() {
                        return;
                    }
                    tokio::task::yield_now().await;
                }
                if close_after {
                    return;
                }
            }
        }
    })
    .await;
    Scripted { addr, accepted }
}

/// A gateway routing [`HOST`] to the instance at `addr`, client keep-alive on.
async fn gateway_to(addr: &str) -> Gateway {
    Gateway::start(&format!(
        "limits:\n  idle_timeout: 60s\n{}",
        one_route(HOST, "dep_fast", &[addr])
    ))
    .await
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: {HOST}\r\n\r\n").into_bytes()
}

#[tokio::test(flavor = "multi_thread")]
async fn plain_gets_take_the_fast_path_and_the_rest_is_handed_over_on_the_same_connection() {
    let up = RecordingUpstream::start().await;
    let gw = gateway_to(&up.addr_str()).await;
    let fast = "keygate_http1_requests_total{path=\"fast\"}";
    let proxy = "keygate_http1_requests_total{path=\"proxy\"}";
    let mut conn = RawConn::connect(gw.http).await;
    let post = format!("POST /b HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 4\r\n\r\nbody");
    for (request, want_body) in [
        (get("/a"), "GET /a\n"),
        (post.into_bytes(), "POST /b\nbody"),
        (get("/c"), "GET /c\n"),
        (get("/d"), "GET /d\n"),
    ] {
        let response = conn.roundtrip(&request).await.unwrap();
        assert_eq!(response.status, 200, "{response:?}");
        assert_eq!(String::from_utf8_lossy(&response.body), want_body);
    }
    assert_eq!(gw.metric(fast).await, 3.0, "the GETs are served by the fast path");
    assert_eq!(gw.metric(proxy).await, 1.0, "the POST is handed to the full proxy");
    assert!(
        up.requests().iter().all(|r| r.connection == 1),
        "one instance connection carried all four, whichever path sent them"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_chunked_response_split_across_reads_arrives_whole_and_its_connection_is_reused() {
    const PIECES: &[&[u8]] = &[
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhel",
        b"lo\r\n6\r\n wor",
        b"ld\r\n0\r\n",
        b"\r\n",
    ];
    let up = scripted(PIECES, false).await;
    let gw = gateway_to(&up.addr.to_string()).await;
    let mut conn = RawConn::connect(gw.http).await;
    for i in 0..3 {
        let response = conn.roundtrip(&get("/chunked")).await.unwrap();
        assert_eq!(response.status, 200, "request {i}: {response:?}");
        assert_eq!(response.body, b"hello world", "request {i}");
        assert_eq!(response.header("connection"), Some("keep-alive"), "request {i}");
    }
    assert_eq!(
        up.accepted.load(Ordering::SeqCst),
        1,
        "the instance connection is reused after each body's end"
    );
}

/// Sends `GET path` twice on one client connection to an instance that
/// answers with `pieces`; both answers must be 200 with `body`. Returns
/// them and how many connections the instance accepted.
async fn get_twice(pieces: &'static [&'static [u8]], path: &str, body: &[u8]) -> (Vec<RawResponse>, usize) {
    let up = scripted(pieces, false).await;
    let gw = gateway_to(&up.addr.to_string()).await;
    let mut conn = RawConn::connect(gw.http).await;
    let mut responses = Vec::new();
    for i in 0..2 {
        let response = conn.roundtrip(&get(path)).await.unwrap();
        assert_eq!((response.status, response.body.as_slice()), (200, body), "request {i}");
        responses.push(response);
    }
    (responses, up.accepted.load(Ordering::SeqCst))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_response_head_in_pieces_after_an_interim_answer_arrives_whole_and_its_connection_is_reused() {
    let (responses, accepted) = get_twice(
        &[
            b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\nConte",
            b"nt-Length: 5\r\nX-Pie",
            b"ce: 1\r\n\r\nhel",
            b"lo",
        ],
        "/pieces",
        b"hello",
    )
    .await;
    for response in &responses {
        assert_eq!(response.header("x-piece"), Some("1"), "{response:?}");
        assert_eq!(response.header("link"), None, "the interim answer is not passed on");
    }
    assert_eq!(accepted, 1, "the connection is reused once the body ended");
}

#[tokio::test(flavor = "multi_thread")]
async fn bytes_past_a_responses_end_are_dropped_with_the_instance_connection() {
    let (_, accepted) = get_twice(
        &[b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA"],
        "/extra",
        b"ok",
    )
    .await;
    assert_eq!(
        accepted, 2,
        "a connection that sent more than its response is never reused"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_delimited_by_the_instance_closing_reaches_the_client_which_is_then_closed() {
    let up = scripted(
        &[b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil ", b"close"],
        true,
    )
    .await;
    let gw = gateway_to(&up.addr.to_string()).await;
    let mut client = TcpStream::connect(gw.http).await.unwrap();
    client.write_all(&get("/stream")).await.unwrap();
    let mut received = Vec::new();
    tokio::time::timeout(Duration::from_secs(15), client.read_to_end(&mut received))
        .await
        .expect("the gateway closes the client connection after the body")
        .unwrap();
    let text = String::from_utf8_lossy(&received).to_string();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        text.to_ascii_lowercase().contains("\r\nconnection: close\r\n"),
        "{text}"
    );
    assert!(text.ends_with("\r\n\r\nuntil close"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_response_with_conflicting_lengths_is_a_502_never_passed_on() {
    let up = scripted(
        &[b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"],
        false,
    )
    .await;
    let gw = gateway_to(&up.addr.to_string()).await;
    let mut conn = RawConn::connect(gw.http).await;
    let response = conn.roundtrip(&get("/smuggle")).await.unwrap();
    assert_eq!(response.status, 502, "{response:?}");
    assert_eq!(
        response.json()["error"]["code"],
        "err:frontline:upstream:bad_gateway",
        "{response:?}"
    );
    assert_eq!(response.header("x-unkey-error-source"), Some("gateway"));
    assert!(!String::from_utf8_lossy(&response.body).contains("hello"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_chunked_response_that_also_declares_a_length_is_read_as_chunked_on_a_connection_not_reused() {
    const PIECES: &[&[u8]] =
        &[b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"];
    let (responses, accepted) = get_twice(PIECES, "/both", b"hello").await;
    for response in &responses {
        assert_eq!(
            response.header("content-length"),
            None,
            "the length is not passed on: {response:?}"
        );
    }
    assert_eq!(accepted, 2, "the connection that declared both is not reused");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_gateways_own_response_fields_replace_an_instances_and_the_rest_pass() {
    // The instance sends every field the gateway may set, in odd case, plus
    // a Retry-After of its own: the request is allowed, so that one is the
    // instance's to send.
    let up = scripted(
        &[
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Request-Id: theirs\r\nSERVER-TIMING: theirs\r\n\
            x-ratelimit-limit: 999\r\nX-RateLimit-Remaining: 999\r\nX-Ratelimit-Reset: 1\r\n\
            Retry-After: 30\r\nX-Kept: yes\r\n\r\nok",
        ],
        false,
    )
    .await;
    let gw = Gateway::start(&format!(
        "limits:\n  idle_timeout: 60s\ndeployments:\n  - id: dep_fast\n    instances: [\"{}\"]\n    policies:\n      \
         - {{id: rl, ratelimit: {{limit: 5, window: 60s}}}}\nroutes:\n  - host: \"{HOST}\"\n    deployment: dep_fast\n",
        up.addr
    ))
    .await;
    let mut conn = RawConn::connect(gw.http).await;
    let response = conn.roundtrip(&get("/own")).await.unwrap();
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(String::from_utf8_lossy(&response.body), "ok");
    let all = |name: &str| -> Vec<&str> {
        response
            .headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    };
    let id = all("x-request-id");
    assert!(id.len() == 1 && id[0].starts_with("req_"), "{id:?}");
    let timing = all("server-timing");
    assert!(timing.len() == 1 && timing[0].starts_with("gateway;dur="), "{timing:?}");
    assert_eq!(all("x-ratelimit-limit"), ["5"]);
    assert_eq!(all("x-ratelimit-remaining"), ["4"]);
    assert_eq!(all("x-ratelimit-reset").len(), 1);
    assert_ne!(all("x-ratelimit-reset"), ["1"]);
    assert_eq!(
        all("retry-after"),
        ["30"],
        "not refused: the instance's Retry-After passes"
    );
    assert_eq!(all("x-kept"), ["yes"]);
    assert_eq!(
        gw.metric("keygate_http1_requests_total{path=\"fast\"}").await,
        1.0,
        "served by the fast path"
    );
}

/// A body no 64 KiB piece of which equals the one before (251 is prime),
/// so bytes passed out of order would show.
fn patterned(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// A 200 head for a body of `len` bytes.
fn head_for(len: usize) -> Vec<u8> {
    format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\n\r\n").into_bytes()
}

/// Reads one response head and exactly `len` body bytes, or what came
/// before the connection closed.
async fn read_large(client: &mut TcpStream, len: usize) -> (String, Vec<u8>) {
    let mut received = Vec::new();
    let mut chunk = vec![0u8; 64 << 10];
    let head_end = loop {
        if let Some(p) = received.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        match client.read(&mut chunk).await.unwrap() {
            0 => panic!("closed before the head: {}", String::from_utf8_lossy(&received)),
            n => received.extend_from_slice(&chunk[..n]),
        }
    };
    let mut body = received.split_off(head_end);
    while body.len() < len {
        match client.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    (String::from_utf8_lossy(&received).to_string(), body)
}

/// The head and the body's first `first` bytes, one write of an instance.
fn head_and_start(body: &[u8], first: usize) -> Vec<u8> {
    let mut piece = head_for(body.len());
    piece.extend_from_slice(&body[..first]);
    piece
}

/// Sends `GET path` on `client` and reads a 200 with a body of `len`
/// bytes, or what came of it before the connection closed.
async fn get_large(client: &mut TcpStream, path: &str, len: usize) -> Vec<u8> {
    client.write_all(&get(path)).await.unwrap();
    let (head, body) = tokio::time::timeout(Duration::from_secs(30), read_large(client, len))
        .await
        .expect("the body ends, or the connection closes, in time");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body
}

#[tokio::test(flavor = "multi_thread")]
async fn large_bodies_are_passed_whole_in_order_and_both_connections_are_reused() {
    let body = patterned(3 << 20);
    // The body's rest in pieces of uneven sizes, as an instance's writes arrive.
    let pieces = vec![
        head_and_start(&body, 1000),
        body[1000..700_000].to_vec(),
        body[700_000..].to_vec(),
    ];
    let up = serve_pieces(pieces, false).await;
    let gw = gateway_to(&up.addr.to_string()).await;
    let mut client = TcpStream::connect(gw.http).await.unwrap();
    for i in 0..3 {
        let received = get_large(&mut client, "/large", body.len()).await;
        assert_eq!(received.len(), body.len(), "request {i}");
        assert!(received == body, "request {i}: the body arrives as sent");
    }
    assert_eq!(
        up.accepted.load(Ordering::SeqCst),
        1,
        "the instance connection is reused"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_large_body_the_instance_cuts_short_ends_the_client_connection_and_the_next_gets_a_new_one() {
    let body = patterned(1 << 20);
    let up = serve_pieces(vec![head_and_start(&body, 300_000)], true).await;
    let gw = gateway_to(&up.addr.to_string()).await;
    for i in 0..2 {
        let mut client = TcpStream::connect(gw.http).await.unwrap();
        let received = get_large(&mut client, "/cut", body.len()).await;
        assert_eq!(
            received,
            body[..300_000],
            "attempt {i}: what the instance sent, then the end"
        );
    }
    assert_eq!(
        up.accepted.load(Ordering::SeqCst),
        2,
        "a connection that ended early is not reused"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bytes_past_a_large_body_never_reach_the_next_request() {
    let body = patterned(1 << 20);
    let mut rest = body[1000..].to_vec();
    rest.extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstray");
    let up = serve_pieces(vec![head_and_start(&body, 1000), rest], false).await;
    let gw = gateway_to(&up.addr.to_string()).await;
    let mut client = TcpStream::connect(gw.http).await.unwrap();
    for i in 0..2 {
        let received = get_large(&mut client, "/stray", body.len()).await;
        assert!(received == body, "request {i}: the body, not the stray response");
    }
    assert_eq!(
        up.accepted.load(Ordering::SeqCst),
        2,
        "the connection that sent more than its response is not reused"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_leaves_during_a_large_body_does_not_disturb_the_next() {
    let body = patterned(4 << 20);
    let up = serve_pieces(vec![head_and_start(&body, 1000), body[1000..].to_vec()], false).await;
    let gw = gateway_to(&up.addr.to_string()).await;
    let mut leaving = TcpStream::connect(gw.http).await.unwrap();
    leaving.write_all(&get("/leave")).await.unwrap();
    let mut start = [0u8; 1024];
    let n = leaving.read(&mut start).await.unwrap();
    assert!(start[..n].starts_with(b"HTTP/1.1 200"));
    drop(leaving);
    let mut client = TcpStream::connect(gw.http).await.unwrap();
    let received = get_large(&mut client, "/stay", body.len()).await;
    assert!(received == body, "the next client's body is whole");
}
