//! A raw HTTP/1.1 instance for keep-alive tests. It records every request
//! exactly as it arrived — the head bytes (header spelling and order as on
//! the wire, which hyper would normalise), the body (de-chunked) and which
//! connection carried it — counts accepted connections, and answers each
//! request with `"{method} {target}\n"` followed by the body it received, so
//! a client can match every response to its request. Its first response can
//! say `Connection: close` (see [`FirstResponse`]). Stops accepting on drop.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use super::upstreams::serve_loopback;

/// One request as the instance received it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// The head as received: request line and header fields, up to and
    /// including the blank line.
    pub head: Vec<u8>,
    /// The body: Content-Length bytes, or the chunks' data concatenated.
    pub body: Vec<u8>,
    /// Which connection carried it: 1 for the first one accepted, and so on.
    pub connection: usize,
}

impl RecordedRequest {
    pub fn head_text(&self) -> String {
        String::from_utf8_lossy(&self.head).into_owned()
    }

    /// Method and request target from the request line.
    pub fn method_and_target(&self) -> (String, String) {
        let head = self.head_text();
        let line = head.lines().next().unwrap_or_default().to_string();
        let mut parts = line.split(' ');
        let method = parts.next().unwrap_or_default().to_string();
        let target = parts.next().unwrap_or_default().to_string();
        (method, target)
    }

    /// The header fields in wire order, names spelled exactly as received,
    /// values trimmed.
    pub fn fields(&self) -> Vec<(String, String)> {
        self.head_text()
            .split("\r\n")
            .skip(1)
            .filter_map(|line| line.split_once(':'))
            .map(|(name, value)| (name.to_string(), value.trim().to_string()))
            .collect()
    }

    /// The first value of `name` (any case).
    pub fn field(&self, name: &str) -> Option<String> {
        self.fields()
            .into_iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }
}

/// How the instance answers the very first request it receives (on any
/// connection); every later one gets a plain keep-alive answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FirstResponse {
    KeepAlive,
    /// `Connection: close`, then the instance closes the socket.
    CloseAndHangUp,
    /// `Connection: close`, but the socket stays open and further requests
    /// on it are still answered: a client that reuses the connection anyway
    /// shows up as a later request recorded on connection 1.
    CloseButStayOpen,
}

struct State {
    first: FirstResponse,
    accepted: AtomicUsize,
    answered: AtomicUsize,
    requests: Mutex<Vec<RecordedRequest>>,
}

pub struct RecordingUpstream {
    pub addr: SocketAddr,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl RecordingUpstream {
    /// Keep-alive answers throughout.
    pub async fn start() -> Self {
        Self::with_first_response(FirstResponse::KeepAlive).await
    }

    pub async fn with_first_response(first: FirstResponse) -> Self {
        let state = Arc::new(State {
            first,
            accepted: AtomicUsize::new(0),
            answered: AtomicUsize::new(0),
            requests: Mutex::new(Vec::new()),
        });
        let st = state.clone();
        let (addr, task) = serve_loopback(move |stream| {
            let connection = st.accepted.fetch_add(1, Ordering::SeqCst) + 1;
            serve_connection(st.clone(), stream, connection)
        })
        .await;
        RecordingUpstream { addr, state, task }
    }

    /// "127.0.0.1:PORT", for an `instances:` list.
    pub fn addr_str(&self) -> String {
        self.addr.to_string()
    }

    /// TCP connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.state.accepted.load(Ordering::SeqCst)
    }

    /// Every complete request received so far, in arrival order. A request
    /// is recorded before it is answered.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.requests.lock().expect("requests lock").clone()
    }
}

impl Drop for RecordingUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve_connection(st: Arc<State>, stream: TcpStream, connection: usize) {
    let mut conn = Conn {
        stream,
        buf: Vec::new(),
    };
    // Any framing the instance does not understand ends the connection.
    while let Some(request) = conn.read_request(connection).await {
        let (method, target) = request.method_and_target();
        let mut payload = format!("{method} {target}\n").into_bytes();
        payload.extend_from_slice(&request.body);
        st.requests.lock().expect("requests lock").push(request);

        let is_first = st.answered.fetch_add(1, Ordering::SeqCst) == 0;
        let say_close = is_first && st.first != FirstResponse::KeepAlive;
        let mut answer = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nX-Upstream-Connection: {connection}\r\n",
            payload.len()
        );
        if say_close {
            answer.push_str("Connection: close\r\n");
        }
        answer.push_str("\r\n");
        let mut bytes = answer.into_bytes();
        bytes.extend_from_slice(&payload);
        if conn.stream.write_all(&bytes).await.is_err() {
            return;
        }
        if say_close && st.first == FirstResponse::CloseAndHangUp {
            // Dropping the stream closes the socket (FIN).
            return;
        }
    }
}

struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    /// Reads more bytes; `None` at EOF or on an error.
    async fn fill(&mut self) -> Option<()> {
        let mut chunk = [0u8; 16384];
        match self.stream.read(&mut chunk).await {
            Ok(0) | Err(_) => None,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Some(())
            }
        }
    }

    /// Takes everything up to and including the first `delim`.
    async fn take_through(&mut self, delim: &[u8]) -> Option<Vec<u8>> {
        loop {
            if let Some(p) = self.buf.windows(delim.len()).position(|w| w == delim) {
                return Some(self.buf.drain(..p + delim.len()).collect());
            }
            self.fill().await?;
        }
    }

    async fn take_exact(&mut self, n: usize) -> Option<Vec<u8>> {
        while self.buf.len() < n {
            self.fill().await?;
        }
        Some(self.buf.drain(..n).collect())
    }

    async fn read_request(&mut self, connection: usize) -> Option<RecordedRequest> {
        let head = self.take_through(b"\r\n\r\n").await?;
        let mut request = RecordedRequest {
            head,
            body: Vec::new(),
            connection,
        };
        let chunked = request
            .field("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        if chunked {
            loop {
                let line = self.take_through(b"\r\n").await?;
                let line = String::from_utf8_lossy(&line[..line.len() - 2]).into_owned();
                let size = usize::from_str_radix(line.split(';').next()?.trim(), 16).ok()?;
                if size == 0 {
                    // Trailer fields, if any, up to the blank line.
                    while self.take_through(b"\r\n").await?.len() > 2 {}
                    break;
                }
                let data = self.take_exact(size + 2).await?;
                if !data.ends_with(b"\r\n") {
                    return None;
                }
                request.body.extend_from_slice(&data[..size]);
            }
        } else if let Some(length) = request.field("content-length") {
            let n: usize = length.parse().ok()?;
            request.body = self.take_exact(n).await?;
        }
        Some(request)
    }
}
