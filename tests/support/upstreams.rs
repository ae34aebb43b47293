//! HTTP servers on loopback that the gateway forwards to (hyper 1): the
//! request-inspecting [`Upstream`] in its variants, the [`DocServer`] for
//! fetched documents (JWKS, OIDC discovery, OpenAPI), and the
//! [`DroppingUpstream`] that hangs up without answering. All stop on drop.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type Body = BoxBody<Bytes, BoxError>;

/// A server on a free 127.0.0.1 port: every accepted connection is handed to
/// `on_connection`, whose future runs on a task of its own. Accepting stops
/// when the returned task is aborted (the servers here do that on drop).
pub async fn serve_loopback<F, Fut>(on_connection: F) -> (SocketAddr, JoinHandle<()>)
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(on_connection(stream));
        }
    });
    (addr, task)
}

/// Deterministic, non-repeating-looking bytes for body integrity checks.
pub fn pattern(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x9E37_79B9;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

/// What an upstream received (header names lowercased by hyper; order and
/// repeated headers kept).
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub uri: String,
    pub headers: Vec<(String, String)>,
}

impl Seen {
    /// Every value of header `name`.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
    /// The single value of header `name`; panics when it is repeated.
    pub fn one(&self, name: &str) -> Option<&str> {
        let all = self.all(name);
        assert!(all.len() <= 1, "header {name} arrived {} times: {all:?}", all.len());
        all.first().copied()
    }
}

#[derive(Clone)]
enum Kind {
    /// Answers JSON describing the request; with `x-echo-body: 1` it streams
    /// the request body back instead.
    Inspector,
    /// Waits this long, then answers like the inspector.
    Slow(Duration),
    /// Requests whose path starts with `/slow` wait until `release()`;
    /// everything answers like the inspector.
    Held,
    /// Plain `200 ok`.
    Counting,
    /// Answers `pattern(n)` streamed in 64 KiB chunks.
    Large(usize),
}

struct UpState {
    name: String,
    kind: Kind,
    hits: AtomicUsize,
    completed: AtomicUsize,
    /// TCP connections accepted (a request that never reaches the instance opens none).
    connections: AtomicUsize,
    seen: Mutex<Vec<Seen>>,
    release: tokio::sync::watch::Sender<bool>,
}

/// An HTTP/1.1 server on 127.0.0.1 that the gateway forwards to. Stops on drop.
pub struct Upstream {
    pub addr: SocketAddr,
    state: Arc<UpState>,
    task: JoinHandle<()>,
}

impl Upstream {
    pub async fn inspector(name: &str) -> Upstream {
        Self::serve(name, Kind::Inspector).await
    }
    pub async fn slow(name: &str, delay: Duration) -> Upstream {
        Self::serve(name, Kind::Slow(delay)).await
    }
    /// Holds requests for `/slow...` until [`Upstream::release`] is called;
    /// other paths answer at once (so a test can poll the same instance).
    pub async fn held(name: &str) -> Upstream {
        Self::serve(name, Kind::Held).await
    }
    pub async fn counting(name: &str) -> Upstream {
        Self::serve(name, Kind::Counting).await
    }
    pub async fn large_body(name: &str, size: usize) -> Upstream {
        Self::serve(name, Kind::Large(size)).await
    }

    async fn serve(name: &str, kind: Kind) -> Upstream {
        let (release, _) = tokio::sync::watch::channel(false);
        let state = Arc::new(UpState {
            name: name.to_string(),
            kind,
            hits: AtomicUsize::new(0),
            completed: AtomicUsize::new(0),
            connections: AtomicUsize::new(0),
            seen: Mutex::new(Vec::new()),
            release,
        });
        let st = state.clone();
        let (addr, task) = serve_loopback(move |stream| {
            st.connections.fetch_add(1, Ordering::SeqCst);
            let st = st.clone();
            async move {
                let svc = hyper::service::service_fn(move |req| handle(st.clone(), req));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .with_upgrades()
                    .await;
            }
        })
        .await;
        Upstream { addr, state, task }
    }

    /// "127.0.0.1:PORT", for an `instances:` list.
    pub fn addr_str(&self) -> String {
        self.addr.to_string()
    }
    pub fn name(&self) -> &str {
        &self.state.name
    }
    /// Requests that reached the handler (counted on arrival).
    pub fn hits(&self) -> usize {
        self.state.hits.load(Ordering::SeqCst)
    }
    /// TCP connections the upstream accepted.
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }
    /// Requests whose response head was produced.
    pub fn completed(&self) -> usize {
        self.state.completed.load(Ordering::SeqCst)
    }
    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }
    pub fn last_seen(&self) -> Seen {
        self.seen()
            .last()
            .cloned()
            .unwrap_or_else(|| panic!("upstream {} saw no request", self.state.name))
    }
    /// Lets held requests (and future ones) through.
    pub fn release(&self) {
        self.state.release.send_replace(true);
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
        self.release();
    }
}

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into())
        .map_err(|e: Infallible| -> BoxError { match e {} })
        .boxed()
}

fn describe(st: &UpState, seen: &Seen) -> Value {
    json!({
        "name": st.name,
        "method": seen.method,
        "uri": seen.uri,
        "headers": seen.headers.iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>(),
    })
}

async fn handle(st: Arc<UpState>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let seen = Seen {
        method: req.method().to_string(),
        uri: req.uri().to_string(),
        headers: req
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).to_string(),
                )
            })
            .collect(),
    };
    st.seen.lock().unwrap().push(seen.clone());
    st.hits.fetch_add(1, Ordering::SeqCst);

    let mut builder = Response::builder().header("x-upstream", st.name.as_str());
    let resp = match st.kind.clone() {
        Kind::Counting => {
            let _ = req.into_body().collect().await;
            builder.header("content-type", "text/plain").body(full("ok")).unwrap()
        }
        Kind::Large(n) => {
            let _ = req.into_body().collect().await;
            let data = Bytes::from(pattern(n));
            let chunks: Vec<Result<Frame<Bytes>, BoxError>> = (0..n)
                .step_by(64 * 1024)
                .map(|i| Ok(Frame::data(data.slice(i..(i + 64 * 1024).min(n)))))
                .collect();
            builder = builder.header("content-type", "application/octet-stream");
            builder
                .body(BodyExt::boxed(StreamBody::new(futures_util::stream::iter(chunks))))
                .unwrap()
        }
        kind => {
            match kind {
                Kind::Slow(d) => tokio::time::sleep(d).await,
                Kind::Held if req.uri().path().starts_with("/slow") => {
                    let mut rx = st.release.subscribe();
                    let _ = rx.wait_for(|r| *r).await;
                }
                _ => {}
            }
            let echo = req.headers().get("x-echo-body").is_some();
            if echo {
                builder = builder.header("content-type", "application/octet-stream");
                if let Some(cl) = req.headers().get("content-length") {
                    builder = builder.header("content-length", cl.clone());
                }
                let body = req.into_body().map_err(|e| -> BoxError { Box::new(e) }).boxed();
                builder.body(body).unwrap()
            } else {
                let _ = req.into_body().collect().await;
                builder
                    .header("content-type", "application/json")
                    .body(full(describe(&st, &seen).to_string()))
                    .unwrap()
            }
        }
    };
    st.completed.fetch_add(1, Ordering::SeqCst);
    Ok(resp)
}

/// An HTTP/1.1 server of documents (JWKS, OIDC discovery, OpenAPI specs):
/// `set(path, content_type, body)` publishes or replaces one, other paths
/// answer 404; `hits(path)` counts requests per path. Stops on drop.
pub struct DocServer {
    pub addr: SocketAddr,
    docs: Arc<Mutex<HashMap<String, (String, Bytes)>>>,
    hits: Arc<Mutex<HashMap<String, usize>>>,
    task: JoinHandle<()>,
}

impl DocServer {
    pub async fn start() -> DocServer {
        let docs: Arc<Mutex<HashMap<String, (String, Bytes)>>> = Arc::default();
        let hits: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let (d, h) = (docs.clone(), hits.clone());
        let (addr, task) = serve_loopback(move |stream| {
            let (d, h) = (d.clone(), h.clone());
            async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let path = req.uri().path().to_string();
                    *h.lock().unwrap().entry(path.clone()).or_default() += 1;
                    let doc = d.lock().unwrap().get(&path).cloned();
                    async move {
                        let resp = match doc {
                            Some((ct, body)) => Response::builder().header("content-type", ct).body(full(body)),
                            None => Response::builder().status(404).body(full("not found")),
                        };
                        Ok::<_, Infallible>(resp.unwrap())
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            }
        })
        .await;
        DocServer { addr, docs, hits, task }
    }

    /// `http://127.0.0.1:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn set(&self, path: &str, content_type: &str, body: impl Into<Bytes>) {
        self.docs
            .lock()
            .unwrap()
            .insert(path.to_string(), (content_type.to_string(), body.into()));
    }

    pub fn hits(&self, path: &str) -> usize {
        self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
    }
}

impl Drop for DocServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A TCP server that reads a request head and closes the connection without
/// answering (a "connection reset / invalid response" instance).
pub struct DroppingUpstream {
    pub addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl DroppingUpstream {
    pub async fn start() -> Self {
        let hits = Arc::new(AtomicUsize::new(0));
        let h = hits.clone();
        let (addr, task) = serve_loopback(move |mut s| {
            let h = h.clone();
            async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                h.fetch_add(1, Ordering::SeqCst);
                drop(s);
            }
        })
        .await;
        DroppingUpstream { addr, hits, task }
    }
    pub fn addr_str(&self) -> String {
        self.addr.to_string()
    }
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for DroppingUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A raw HTTP/1.1 instance that counts every byte it receives and answers
/// each request head with `200 ok` (bodies are not expected): proves that
/// nothing of a refused request reached an instance.
pub struct ByteCountingUpstream {
    pub addr: SocketAddr,
    bytes: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl ByteCountingUpstream {
    pub async fn start() -> Self {
        let bytes = Arc::new(AtomicUsize::new(0));
        let counter = bytes.clone();
        let (addr, task) = serve_loopback(move |mut s| {
            let counter = counter.clone();
            async move {
                use tokio::io::AsyncWriteExt;
                let mut pending = Vec::new();
                let mut chunk = [0u8; 16384];
                loop {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            counter.fetch_add(n, Ordering::SeqCst);
                            pending.extend_from_slice(&chunk[..n]);
                        }
                    }
                    while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                        pending.drain(..end + 4);
                        let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                        if s.write_all(answer).await.is_err() {
                            return;
                        }
                    }
                }
            }
        })
        .await;
        ByteCountingUpstream { addr, bytes, task }
    }
    pub fn addr_str(&self) -> String {
        self.addr.to_string()
    }
    /// Bytes received so far, on every connection.
    pub fn bytes(&self) -> usize {
        self.bytes.load(Ordering::SeqCst)
    }
}

impl Drop for ByteCountingUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}
