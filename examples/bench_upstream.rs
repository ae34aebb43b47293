//! Minimal, fast HTTP/1.1 keep-alive upstream for proxy benchmarks
//! (used by `scripts/bench-proxy.sh`).
//!
//! ```text
//! cargo run --release --example bench_upstream -- [ADDR]   # default 127.0.0.1:9100
//! ```
//!
//! * `GET /small` → 200, body `ok\n`
//! * `GET /1m`    → 200, 1 MiB body (one preallocated `Bytes`, cloned per request)
//! * `GET /healthz` → 200, body `ok\n`
//! * anything else → 404
//!
//! The request body, if any, is ignored (hyper drains it for keep-alive).

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

const DEFAULT_ADDR: &str = "127.0.0.1:9100";
const SMALL: &[u8] = b"ok\n";
const ONE_MIB: usize = 1024 * 1024;

fn response(status: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    resp
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr: SocketAddr = std::env::args().nth(1).as_deref().unwrap_or(DEFAULT_ADDR).parse()?;

    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(serve(addr))
}

async fn serve(addr: SocketAddr) -> Result<(), Box<dyn std::error::Error>> {
    // Built once; `Bytes::clone` is a refcount bump, so /1m costs no copy here.
    let big = Bytes::from(vec![b'x'; ONE_MIB]);
    let small = Bytes::from_static(SMALL);

    let listener = TcpListener::bind(addr).await?;
    eprintln!("bench_upstream listening on http://{}", listener.local_addr()?);

    loop {
        let (stream, _peer) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                eprintln!("accept error: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let big = big.clone();
        let small = small.clone();

        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<Incoming>| {
                let resp = match (req.method().as_str(), req.uri().path()) {
                    ("GET" | "HEAD", "/small" | "/healthz") => response(StatusCode::OK, small.clone()),
                    ("GET" | "HEAD", "/1m") => response(StatusCode::OK, big.clone()),
                    _ => response(StatusCode::NOT_FOUND, Bytes::from_static(b"not found\n")),
                };
                async move { Ok::<_, Infallible>(resp) }
            });
            // Errors here are client resets/timeouts; nothing useful to do.
            let _ = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}
