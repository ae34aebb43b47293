//! HTTP/1.1 keep-alive through the gateway, pinned with raw sockets on both
//! sides so that work on the HTTP/1 hot path (vendor/pingora-core,
//! vendor/pingora-proxy, src/proxy) cannot quietly change it: pipelined
//! requests answered in order with their bodies intact (also one that
//! arrives while the previous waits for the instance), `Connection: close`
//! honoured from the client and from the instance (without costing the
//! client its connection), a body-carrying request after a bodiless one on
//! the same connection, custom header fields forwarded with the
//! spelling and order the client used (a repeated name's lines travel
//! together), and hop-by-hop fields never forwarded. Upstream connection reuse over many requests is pinned by
//! tests/upstream_pool.rs.

mod support;

use support::gateway::{one_route, Gateway};
use support::raw_http::{RawConn, RawResponse};
use support::recording_upstream::{FirstResponse, RecordedRequest, RecordingUpstream};
use support::upstreams::Upstream;
use support::wait::{poll_until, WAIT};

const HOST: &str = "keepalive.test";

/// A gateway routing [`HOST`] to `up`, with client keep-alive explicitly on
/// (60 s idle), far longer than any bound these tests wait.
async fn gateway_to(up: &RecordingUpstream) -> Gateway {
    Gateway::start(&format!(
        "limits:\n  idle_timeout: 60s\n{}",
        one_route(HOST, "dep_keepalive", &[&up.addr_str()])
    ))
    .await
}

/// A request as the client writes it.
struct Req {
    method: &'static str,
    path: &'static str,
    body: &'static [u8],
    chunked: bool,
}

impl Req {
    const fn get(path: &'static str) -> Req {
        Req {
            method: "GET",
            path,
            body: b"",
            chunked: false,
        }
    }
    const fn post(path: &'static str, body: &'static [u8]) -> Req {
        Req {
            method: "POST",
            path,
            body,
            chunked: false,
        }
    }
    const fn post_chunked(path: &'static str, body: &'static [u8]) -> Req {
        Req {
            method: "POST",
            path,
            body,
            chunked: true,
        }
    }

    /// The bytes on the wire (keep-alive: no `Connection` header).
    fn wire(&self) -> Vec<u8> {
        let framing = if self.chunked {
            "Transfer-Encoding: chunked\r\n".to_string()
        } else if self.method == "GET" {
            String::new()
        } else {
            format!("Content-Length: {}\r\n", self.body.len())
        };
        let mut wire = format!(
            "{} {} HTTP/1.1\r\nHost: {HOST}\r\n{framing}\r\n",
            self.method, self.path
        )
        .into_bytes();
        if self.chunked {
            wire.extend_from_slice(&chunked(self.body));
        } else {
            wire.extend_from_slice(self.body);
        }
        wire
    }

    /// What the recording upstream answers for it.
    fn echo(&self) -> String {
        format!("{} {}\n{}", self.method, self.path, String::from_utf8_lossy(self.body))
    }

    fn describe(&self) -> String {
        let framing = if self.chunked { ", chunked" } else { "" };
        format!(
            "{} {} ({} body bytes{framing})",
            self.method,
            self.path,
            self.body.len()
        )
    }
}

/// `body` in chunks of 26, 1 and 7 bytes in turn (sizes in upper-case hex,
/// so both hex digits and letters are exercised), then the last chunk.
fn chunked(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = body;
    for size in [26usize, 1, 7].into_iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (chunk, tail) = rest.split_at(size.min(rest.len()));
        out.extend_from_slice(format!("{:X}\r\n", chunk.len()).as_bytes());
        out.extend_from_slice(chunk);
        out.extend_from_slice(b"\r\n");
        rest = tail;
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

/// Reads the next response on `conn` without sending anything (`RawConn`
/// has no read-only call; an empty write puts nothing on the wire).
async fn next_response(conn: &mut RawConn) -> Result<RawResponse, String> {
    conn.roundtrip(b"").await
}

/// Checks that `response` is a 200 carrying the upstream's echo of `req`.
fn assert_answers(response: &RawResponse, req: &Req, which: &str) {
    assert_eq!(
        response.status,
        200,
        "{which} ({}): {response:?}, body {:?}",
        req.describe(),
        String::from_utf8_lossy(&response.body)
    );
    assert_eq!(
        String::from_utf8_lossy(&response.body),
        req.echo(),
        "{which} ({}) answered with another request's response or a damaged body",
        req.describe()
    );
}

/// Checks that the upstream received exactly `sent`, in order, each body
/// byte for byte.
fn assert_upstream_received(up: &RecordingUpstream, sent: &[&Req]) {
    let received: Vec<(String, String, String)> = up
        .requests()
        .iter()
        .map(|r| {
            let (method, target) = r.method_and_target();
            (method, target, String::from_utf8_lossy(&r.body).into_owned())
        })
        .collect();
    let expected: Vec<(String, String, String)> = sent
        .iter()
        .map(|r| {
            (
                r.method.to_string(),
                r.path.to_string(),
                String::from_utf8_lossy(r.body).into_owned(),
            )
        })
        .collect();
    assert_eq!(
        received, expected,
        "requests (method, target, body) the upstream received"
    );
}

fn says_close(response: &RawResponse) -> bool {
    response
        .header("connection")
        .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")))
}

#[tokio::test(flavor = "multi_thread")]
async fn pipelined_requests_are_answered_in_order_with_bodies_intact() {
    let up = RecordingUpstream::start().await;
    let gw = gateway_to(&up).await;
    // The bodies look like requests: a body framed wrongly would show up at
    // the upstream as an extra request or shift every later response.
    let requests = [
        Req::get("/a"),
        Req::post("/b", b"b-body: GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"),
        Req::get("/c"),
        Req::post_chunked(
            "/d",
            b"d-body, chunked: POST /x HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
        ),
    ];
    let all_at_once: Vec<u8> = requests.iter().flat_map(Req::wire).collect();

    let mut conn = RawConn::connect(gw.http).await;
    let mut responses = Vec::new();
    for i in 1..=requests.len() {
        let response = if i == 1 {
            conn.roundtrip(&all_at_once).await
        } else {
            next_response(&mut conn).await
        };
        match response {
            Ok(response) => responses.push(response),
            Err(e) => panic!(
                "response {i} of {}: {e}; responses so far: {responses:?}; the upstream received: {:?}",
                requests.len(),
                up.requests().iter().map(|r| r.method_and_target()).collect::<Vec<_>>()
            ),
        }
    }

    for (i, (response, req)) in responses.iter().zip(&requests).enumerate() {
        assert_answers(response, req, &format!("response {}", i + 1));
    }
    assert_upstream_received(&up, &requests.iter().collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread")]
async fn client_connection_close_is_answered_then_the_gateway_closes() {
    let up = RecordingUpstream::start().await;
    let gw = gateway_to(&up).await;
    let mut conn = RawConn::connect(gw.http).await;
    let response = conn
        .roundtrip(format!("GET /bye HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .expect("a response to a Connection: close request");
    assert_answers(&response, &Req::get("/bye"), "the response");
    assert!(
        says_close(&response),
        "the response to a Connection: close request does not say Connection: close: {:?}",
        response.headers
    );
    // Well inside the 60 s idle timeout: the close comes from the request.
    match tokio::time::timeout(WAIT, next_response(&mut conn)).await {
        Err(_) => panic!("the connection was still open {WAIT:?} after the response to Connection: close"),
        Ok(Ok(extra)) => panic!("a further response instead of EOF: {extra:?}"),
        Ok(Err(e)) => assert!(
            e.starts_with("connection closed by peer (0 bytes pending)"),
            "expected a clean EOF right after the response, got: {e}"
        ),
    }
    assert_eq!(up.requests().len(), 1, "the upstream received exactly the one request");
}

/// Sends two requests on one client connection to an upstream whose first
/// response says `Connection: close` (`first`); the client keeps its
/// connection and the second request goes over a new upstream connection.
async fn upstream_close_keeps_the_client_connection(first: FirstResponse) {
    let up = RecordingUpstream::with_first_response(first).await;
    let gw = gateway_to(&up).await;
    let mut conn = RawConn::connect(gw.http).await;
    let (one, two) = (Req::get("/first"), Req::get("/second"));

    let response = conn
        .roundtrip(&one.wire())
        .await
        .expect("a response to the request the upstream answers with Connection: close");
    assert_answers(&response, &one, "the first response");
    assert!(
        !says_close(&response),
        "the upstream's Connection: close is hop-by-hop but reached the client: {:?}",
        response.headers
    );

    let response = conn
        .roundtrip(&two.wire())
        .await
        .expect("the client connection still serves after the upstream closed its own");
    assert_answers(&response, &two, "the second response");

    assert_upstream_received(&up, &[&one, &two]);
    let connections: Vec<usize> = up.requests().iter().map(|r| r.connection).collect();
    assert_eq!(
        connections,
        vec![1, 2],
        "upstream connection of each request: the second must not reuse the one the upstream closed"
    );
    assert_eq!(up.accepted(), 2, "upstream connections accepted");
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_connection_close_gets_a_new_upstream_connection_not_a_502() {
    upstream_close_keeps_the_client_connection(FirstResponse::CloseAndHangUp).await;
}

/// The idle-pool check finds a socket the upstream already closed; this
/// pins that the header alone is enough for the gateway not to reuse it.
#[tokio::test(flavor = "multi_thread")]
async fn upstream_connection_close_is_honoured_even_when_its_socket_stays_open() {
    upstream_close_keeps_the_client_connection(FirstResponse::CloseButStayOpen).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bodies_after_a_bodiless_request_on_one_connection_arrive_intact() {
    let up = RecordingUpstream::start().await;
    let gw = gateway_to(&up).await;
    let requests = [
        Req::get("/first-no-body"),
        Req::post(
            "/then-content-length",
            b"name=keygate&note=a body after a GET\r\nwith CRLF",
        ),
        Req::post_chunked(
            "/then-chunked",
            b"a chunked body after a Content-Length one: 0123456789abcdefghijklmnopqrstuvwxyz",
        ),
    ];
    let mut conn = RawConn::connect(gw.http).await;
    for (i, req) in requests.iter().enumerate() {
        let response = conn
            .roundtrip(&req.wire())
            .await
            .unwrap_or_else(|e| panic!("request {} ({}): {e}", i + 1, req.describe()));
        assert_answers(&response, req, &format!("response {}", i + 1));
    }
    assert_upstream_received(&up, &requests.iter().collect::<Vec<_>>());
}

/// Sends `GET path` with `fields` (in this order and spelling) through a
/// new gateway and returns the request the upstream received.
async fn forwarded(path: &'static str, fields: &[(&str, &str)]) -> RecordedRequest {
    let up = RecordingUpstream::start().await;
    let gw = gateway_to(&up).await;
    let fields: String = fields.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
    let mut conn = RawConn::connect(gw.http).await;
    let response = conn
        .roundtrip(format!("GET {path} HTTP/1.1\r\nHost: {HOST}\r\n{fields}\r\n").as_bytes())
        .await
        .unwrap_or_else(|e| panic!("a response to GET {path}: {e}"));
    assert_answers(&response, &Req::get(path), "the response");
    let mut recorded = up.requests();
    assert_eq!(recorded.len(), 1, "requests the upstream received");
    recorded.remove(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn custom_headers_reach_the_upstream_with_their_case_and_order() {
    let sent = [
        ("X-First", "1"),
        ("x-MiXeD-Case", "two"),
        ("X-Repeated", "a"),
        ("X-Other", "3"),
        ("X-Repeated", "b"),
    ];
    let recorded = forwarded("/headers", &sent).await;
    // Only the fields the client sent; the gateway adds X-Forwarded-* and others.
    let received: Vec<(String, String)> = recorded
        .fields()
        .into_iter()
        .filter(|(name, _)| sent.iter().any(|(k, _)| k.eq_ignore_ascii_case(name)))
        .collect();
    // RFC 9110 §5.3: the order of lines with one name is significant, the
    // order between different names is not. A plain GET goes out line for
    // line as it came, so the order is exactly the client's. (A request the
    // gateway rebuilds in a header map keeps each name's values in order,
    // sent together at the position of the name's first line.)
    let expected: Vec<(String, String)> = sent.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    assert_eq!(
        received,
        expected,
        "custom fields as forwarded (name spelling, value), in order; the upstream received this head:\n{}",
        recorded.head_text()
    );
}

/// The hop-by-hop fields of RFC 9110 §7.6.1 (and the legacy ones proxies
/// also drop) describe the client's connection, not the request: none
/// reaches the instance, in any spelling, and the fields beside them do.
#[tokio::test(flavor = "multi_thread")]
async fn hop_by_hop_fields_do_not_reach_the_upstream() {
    let hop_by_hop = [
        ("Keep-Alive", "timeout=5"),
        ("proxy-connection", "keep-alive"),
        ("Proxy-Authorization", "Basic Zm9vOmJhcg=="),
        ("TE", "trailers"),
        ("Trailer", "X-Checksum"),
        ("HTTP2-Settings", "AAMAAABkAAQAAP__"),
    ];
    let mut sent = hop_by_hop.to_vec();
    sent.push(("X-Kept", "yes"));
    let recorded = forwarded("/hop", &sent).await;
    let received = recorded.fields();
    let leaked: Vec<&(String, String)> = received
        .iter()
        .filter(|(name, _)| hop_by_hop.iter().any(|(k, _)| k.eq_ignore_ascii_case(name)))
        .collect();
    assert!(leaked.is_empty(), "hop-by-hop fields reached the upstream: {leaked:?}");
    assert!(
        received.iter().any(|(name, value)| name == "X-Kept" && value == "yes"),
        "the other field is forwarded; the upstream received:\n{}",
        recorded.head_text()
    );
}

/// A request pipelined while the previous one still waits for its answer
/// arrives when the gateway has nothing left to read for the first (it only
/// watches the client for a hang-up then): it is kept, and answered after
/// the first, on the same connection.
#[tokio::test(flavor = "multi_thread")]
async fn a_request_pipelined_while_the_previous_waits_is_answered_after_it() {
    let up = Upstream::held("held").await;
    let gw = Gateway::start(&format!(
        "limits:\n  idle_timeout: 60s\n{}",
        one_route(HOST, "dep_keepalive", &[&up.addr_str()])
    ))
    .await;
    let mut conn = RawConn::connect(gw.http).await;
    conn.send(format!("GET /slow/first HTTP/1.1\r\nHost: {HOST}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    poll_until("the first request at the instance", WAIT, || async {
        (up.hits() == 1).then_some(())
    })
    .await;
    conn.send(format!("GET /second HTTP/1.1\r\nHost: {HOST}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    up.release();

    for expected in ["/slow/first", "/second"] {
        let response = next_response(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("the answer to {expected}: {e}"));
        assert_eq!(response.status, 200, "{expected}: {response:?}");
        assert_eq!(response.json()["uri"], expected, "answers out of order");
    }
    assert_eq!(up.hits(), 2);
}
