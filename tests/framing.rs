//! Request framing and head limits, probed with raw sockets: every
//! ambiguous or oversized request is refused (400, 414, 431) with the
//! connection closed and *zero bytes* reaching the instance, and the
//! gateway keeps serving afterwards.

mod support;

use std::time::Duration;

use support::gateway::{one_route, Gateway};
use support::raw_http::{raw_request, RawConn};
use support::upstreams::{ByteCountingUpstream, Upstream};

const HOST: &str = "framing.test";

async fn setup() -> (ByteCountingUpstream, Gateway) {
    let up = ByteCountingUpstream::start().await;
    let gw = Gateway::start(&one_route(HOST, "dep_framing", &[&up.addr_str()])).await;
    (up, gw)
}

/// Sends `request`, expects `status` and a closed connection, and that the
/// instance saw nothing; then checks the gateway still serves.
async fn refused(gw: &Gateway, up: &ByteCountingUpstream, request: &[u8], status: u16, case: &str) {
    let before = up.bytes();
    let response = raw_request(gw.http, request).await;
    assert_eq!(response.status, status, "{case}: {response:?}");
    assert_eq!(up.bytes(), before, "{case}: bytes reached the instance");
    still_serving(gw, up, case).await;
}

async fn still_serving(gw: &Gateway, up: &ByteCountingUpstream, case: &str) {
    let before = up.bytes();
    let ok = raw_request(
        gw.http,
        format!("GET /ok HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await;
    assert_eq!(ok.status, 200, "after {case}: {ok:?}");
    assert!(up.bytes() > before, "after {case}");
}

fn post(extra_headers: &str, body: &str) -> Vec<u8> {
    format!("POST /p HTTP/1.1\r\nHost: {HOST}\r\n{extra_headers}Connection: close\r\n\r\n{body}").into_bytes()
}

#[tokio::test(flavor = "multi_thread")]
async fn ambiguous_framing_is_a_400_and_nothing_is_forwarded() {
    let (up, gw) = setup().await;
    let cases: &[(&str, Vec<u8>)] = &[
        (
            "CL then TE",
            post(
                "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
                "5\r\nhello\r\n0\r\n\r\n",
            ),
        ),
        (
            "TE then CL",
            post(
                "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
                "5\r\nhello\r\n0\r\n\r\n",
            ),
        ),
        (
            "two Content-Lengths",
            post("Content-Length: 5\r\nContent-Length: 6\r\n", "hello!"),
        ),
        (
            "chunked not last",
            post("Transfer-Encoding: chunked, identity\r\n", "5\r\nhello\r\n0\r\n\r\n"),
        ),
        (
            "xchunked",
            post("Transfer-Encoding: xchunked\r\n", "5\r\nhello\r\n0\r\n\r\n"),
        ),
        (
            "hex prefix chunk size",
            post(
                "Transfer-Encoding: chunked\r\n",
                "0x10\r\n0123456789abcdef\r\n0\r\n\r\n",
            ),
        ),
        (
            "negative chunk size",
            post("Transfer-Encoding: chunked\r\n", "-1\r\nx\r\n0\r\n\r\n"),
        ),
        (
            "20-digit chunk size",
            post(
                "Transfer-Encoding: chunked\r\n",
                "99999999999999999999\r\nx\r\n0\r\n\r\n",
            ),
        ),
        (
            "bare LF in the head",
            format!("GET / HTTP/1.1\nHost: {HOST}\nConnection: close\n\n").into_bytes(),
        ),
        (
            "bare LF after one header",
            format!("GET / HTTP/1.1\r\nHost: {HOST}\nConnection: close\r\n\r\n").into_bytes(),
        ),
        (
            "obs-fold",
            format!("GET / HTTP/1.1\r\nHost: {HOST}\r\nX-A: 1\r\n  folded\r\nConnection: close\r\n\r\n").into_bytes(),
        ),
        (
            "NUL in a value",
            format!("GET / HTTP/1.1\r\nHost: {HOST}\r\nX-A: a\0b\r\nConnection: close\r\n\r\n").into_bytes(),
        ),
        (
            "CR in a value",
            format!("GET / HTTP/1.1\r\nHost: {HOST}\r\nX-A: a\rb\r\nConnection: close\r\n\r\n").into_bytes(),
        ),
    ];
    for (case, request) in cases {
        refused(&gw, &up, request, 400, case).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_heads_are_431_and_long_request_lines_414() {
    let (up, gw) = setup().await;
    let big_header = format!("X-Big: {}\r\n", "a".repeat(70 << 10));
    refused(&gw, &up, &post(&big_header, ""), 431, "head over 64 KiB").await;
    let many: String = (0..101).map(|i| format!("X-H{i}: v\r\n")).collect();
    refused(&gw, &up, &post(&many, ""), 431, "101 headers").await;
    let line = format!(
        "GET /{} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n",
        "a".repeat(9 << 10)
    );
    refused(&gw, &up, line.as_bytes(), 414, "9 KiB request line").await;
    // Just inside the limits: forwarded.
    let fine: String = (0..90).map(|i| format!("X-H{i}: v\r\n")).collect();
    let ok = raw_request(
        gw.http,
        &format!(
            "GET /{} HTTP/1.1\r\nHost: {HOST}\r\n{fine}Connection: close\r\n\r\n",
            "a".repeat(7 << 10)
        )
        .into_bytes(),
    )
    .await;
    assert_eq!(ok.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn head_limits_follow_the_config() {
    let up = ByteCountingUpstream::start().await;
    let gw = Gateway::start(&format!(
        "limits:\n  max_headers: 5\n  max_header_bytes: 2KiB\n{}",
        one_route(HOST, "dep_framing", &[&up.addr_str()])
    ))
    .await;
    let six: String = (0..4).map(|i| format!("X-H{i}: v\r\n")).collect();
    refused(&gw, &up, &post(&six, ""), 431, "6 headers over max_headers 5").await;
    refused(
        &gw,
        &up,
        &post(&format!("X-Big: {}\r\n", "a".repeat(3000)), ""),
        431,
        "3 KB over 2 KiB",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_chunk_to_a_buffering_route_is_a_400_not_a_500() {
    let up = Upstream::inspector("up").await;
    let spec_dir = tempfile::tempdir().unwrap();
    let spec = spec_dir.path().join("openapi.yaml");
    std::fs::write(
        &spec,
        "openapi: 3.1.0\npaths:\n  /p:\n    post:\n      requestBody:\n        content:\n          text/plain: {schema: {type: string}}\n",
    )
    .unwrap();
    let gw = Gateway::start(&format!(
        "limits:\n  read_body_timeout: 1s\ndeployments:\n  - id: dep_body\n    instances: [\"{}\"]\n    openapi: {{file: \"{}\"}}\n    policies:\n      - id: validate\n        openapi: {{}}\nroutes:\n  - host: \"{HOST}\"\n    deployment: dep_body\n",
        up.addr_str(),
        spec.display()
    ))
    .await;
    let mutations = [
        "5\r\nhello\n0\r\n\r\n",
        "5\nhello\r\n0\r\n\r\n",
        "5\r\nhelloX\r\n0\r\n\r\n",
        "5\r\nhello\r\n0\r\nX",
        "zz\r\nhello\r\n0\r\n\r\n",
        "5\r\nhel",
    ];
    for body in mutations {
        let mut conn = RawConn::connect(gw.http).await;
        let request = format!(
            "POST /p HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n{body}"
        );
        let sent = conn.roundtrip(request.as_bytes());
        // A truncated body is answered once the read times out or the client closes.
        if let Ok(Ok(response)) = tokio::time::timeout(Duration::from_secs(3), sent).await {
            assert!(response.status < 500, "{body:?}: {response:?}");
        }
    }
    assert_eq!(up.hits(), 0, "no malformed body reached the instance");
    let ok = raw_request(
        gw.http,
        post(
            "Content-Type: text/plain\r\nTransfer-Encoding: chunked\r\n",
            "5\r\nhello\r\n0\r\n\r\n",
        )
        .as_slice(),
    )
    .await;
    assert_eq!(ok.status, 200, "{ok:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn chunked_bodies_are_forwarded_intact_with_and_without_expect() {
    let up = Upstream::inspector("up").await;
    let gw = Gateway::start(&one_route(HOST, "dep_chunked", &[&up.addr_str()])).await;
    for expect in ["", "Expect: 100-continue\r\n"] {
        let mut conn = RawConn::connect(gw.http).await;
        let head = format!(
            "POST /echo HTTP/1.1\r\nHost: {HOST}\r\nx-echo-body: 1\r\nTransfer-Encoding: chunked\r\n{expect}\r\n"
        );
        let body = "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
        let response = if expect.is_empty() {
            conn.roundtrip(format!("{head}{body}").as_bytes()).await.unwrap()
        } else {
            let proceed = conn.roundtrip(head.as_bytes()).await.unwrap();
            assert_eq!(proceed.status, 100);
            conn.roundtrip(body.as_bytes()).await.unwrap()
        };
        assert_eq!(response.status, 200, "{expect:?}");
        assert_eq!(response.body, b"hello world", "{expect:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn pipelined_requests_do_not_desync() {
    let (up, gw) = setup().await;
    let mut conn = RawConn::connect(gw.http).await;
    let two = format!("GET /a HTTP/1.1\r\nHost: {HOST}\r\n\r\nGET /b HTTP/1.1\r\nHost: {HOST}\r\n\r\n");
    let first = conn.roundtrip(two.as_bytes()).await.unwrap();
    assert_eq!(first.status, 200);
    still_serving(&gw, &up, "pipelining").await;
}
