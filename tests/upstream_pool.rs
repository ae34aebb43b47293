//! The upstream keep-alive pool (vendor/PATCHES.md, patch 9): consecutive
//! requests reuse one connection to the instance, and a pooled connection
//! the instance closed while idle is never used for a request (which would
//! then fail), and asking for a connection does not carry the connect
//! state (patch 19). Reads on pingora's streams are not timed (patch 25).
//! Each worker thread reuses only the connections it opened (patch 28).

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::gateway::{one_route, Gateway};
use support::raw_http::RawConn;
use support::upstreams::{serve_loopback, Upstream};
use support::wait::{poll_until, WAIT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_keep_alive_requests_use_one_upstream_connection() {
    let up = Upstream::counting("pooled").await;
    let gw = Gateway::start(&one_route("pool.test", "dep_pool", &[&up.addr_str()])).await;
    // One client connection: an HTTP client library may open a second one
    // while its first is on its way back to its own pool, and that request
    // could then race the gateway's release of the upstream connection.
    let mut client = RawConn::connect(gw.http).await;
    for i in 0..1_000 {
        let request = format!("GET /{i} HTTP/1.1\r\nHost: pool.test\r\n\r\n");
        let response = client.roundtrip(request.as_bytes()).await.unwrap();
        assert_eq!(response.status, 200, "request {i}");
    }
    assert_eq!(up.hits(), 1_000);
    assert_eq!(
        up.connections(),
        1,
        "every request after the first reused the pooled connection"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn each_worker_thread_keeps_its_own_upstream_connections() {
    let up = Upstream::counting("per-thread").await;
    let gw = Gateway::start(&format!(
        "listen:\n  http: \"@HTTP@\"\n  admin: \"@ADMIN@\"\n  threads: 2\nlimits:\n  idle_timeout: 60s\n{}",
        one_route("threads.test", "dep_threads", &[&up.addr_str()])
    ))
    .await;
    // Sixteen client connections, one request at a time: each lands on
    // either worker thread (at random), and a thread reuses only the
    // instance connections it opened itself. A pool shared by both would
    // carry all sixteen requests over one connection. (All sixteen on one
    // thread: a chance of 1 in 32,768.)
    let mut clients = Vec::new();
    for i in 0..16 {
        let mut client = RawConn::connect(gw.http).await;
        let request = format!("GET /{i} HTTP/1.1\r\nHost: threads.test\r\n\r\n");
        let response = client.roundtrip(request.as_bytes()).await.unwrap();
        assert_eq!(response.status, 200, "request {i}");
        clients.push(client);
    }
    assert_eq!(up.hits(), 16);
    assert_eq!(up.connections(), 2, "one instance connection per worker thread");
}

/// An instance that answers one request per connection with keep-alive
/// framing, then closes the connection once it has been idle 50 ms — as
/// servers with a short keep-alive timeout do.
struct ClosingWhenIdle {
    addr: std::net::SocketAddr,
    accepted: Arc<AtomicUsize>,
    closed: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl ClosingWhenIdle {
    async fn start() -> Self {
        let (accepted, closed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (a, c) = (accepted.clone(), closed.clone());
        let (addr, task) = serve_loopback(move |mut stream| {
            let (a, c) = (a.clone(), c.clone());
            async move {
                a.fetch_add(1, Ordering::SeqCst);
                let mut head = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let read = tokio::time::timeout(Duration::from_millis(50), stream.read(&mut chunk)).await;
                    match read {
                        Ok(Ok(n)) if n > 0 => head.extend_from_slice(&chunk[..n]),
                        // Idle (or closed by the gateway): close.
                        _ => break,
                    }
                    if head.windows(4).any(|w| w == b"\r\n\r\n") {
                        head.clear();
                        let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Upstream: closing\r\n\r\nok";
                        if stream.write_all(answer).await.is_err() {
                            break;
                        }
                    }
                }
                drop(stream);
                c.fetch_add(1, Ordering::SeqCst);
            }
        })
        .await;
        ClosingWhenIdle {
            addr,
            accepted,
            closed,
            task,
        }
    }
}

impl Drop for ClosingWhenIdle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connection_the_instance_closed_while_idle_is_not_reused() {
    let up = ClosingWhenIdle::start().await;
    let gw = Gateway::start(&one_route("closing.test", "dep_closing", &[&up.addr.to_string()])).await;
    for round in 1..=5 {
        let response = gw.get("closing.test", "/").send().await.unwrap();
        assert_eq!(response.status(), 200, "round {round}");
        assert_eq!(response.text().await.unwrap(), "ok");
        // The instance closes the pooled connection before the next request.
        poll_until(format!("the instance closed connection {round}"), WAIT, || async {
            (up.closed.load(Ordering::SeqCst) >= round).then_some(())
        })
        .await;
    }
    assert_eq!(
        up.accepted.load(Ordering::SeqCst),
        5,
        "each request got a fresh connection instead of the closed pooled one"
    );
}

/// Patch 19: asking the connector for a connection is a small future; the
/// connect and TLS handshake state is only allocated when a connection is
/// made. Every proxied request's future holds this one, so letting the
/// connect state back in would make each request carry (and copy) several
/// KiB it almost never uses.
#[test]
fn asking_for_an_upstream_connection_is_a_small_future() {
    use pingora_core::connectors::http::Connector;
    use pingora_core::connectors::TransportConnector;
    use pingora_core::upstreams::peer::HttpPeer;

    let peer = HttpPeer::new("127.0.0.1:9", false, String::new());
    let transport = TransportConnector::new(None);
    let stream = transport.get_stream(&peer);
    let http = Connector::new(None);
    let session = http.get_http_session(&peer);
    // Measured in a debug build: 80 and 560 bytes (8,432 and more with
    // the connect state inline). Release builds lay futures out tighter.
    let limit = 2_048;
    for (what, size) in [
        ("TransportConnector::get_stream", std::mem::size_of_val(&stream)),
        ("http::Connector::get_http_session", std::mem::size_of_val(&session)),
    ] {
        eprintln!("{what}: {size} bytes");
        assert!(size <= limit, "{what}'s future is {size} bytes (limit {limit})");
    }
}

/// Patch 25: a read that had to wait reads no clock for a pending-time
/// total nothing uses (two clock reads per waiting read before).
#[tokio::test]
async fn a_read_that_waited_is_not_timed() {
    use pingora_core::protocols::l4::stream::Stream;
    use pingora_core::protocols::GetTimingDigest;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (go, ready) = tokio::sync::oneshot::channel::<()>();
    let writer = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        ready.await.unwrap();
        socket.write_all(b"late").await.unwrap();
    });
    let mut stream: Stream = tokio::net::TcpStream::connect(addr).await.unwrap().into();
    let mut buf = [0; 4];
    {
        let mut read = std::pin::pin!(stream.read_exact(&mut buf));
        assert!(futures_util::poll!(read.as_mut()).is_pending(), "nothing was sent yet");
        go.send(()).unwrap();
        tokio::time::timeout(WAIT, read).await.unwrap().unwrap();
    }
    assert_eq!(&buf, b"late");
    assert_eq!(stream.get_read_pending_time(), Duration::ZERO);
    writer.await.unwrap();
}
