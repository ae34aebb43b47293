//! WebSocket on both ends (tokio-tungstenite): the echoing [`WsUpstream`]
//! behind the gateway and a client that connects through it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

use super::upstreams::serve_loopback;

/// Echoes text and binary frames. The text message `__name__` is answered
/// with the server's name instead, so a test can tell which instance a
/// socket is tunnelled to.
pub struct WsUpstream {
    pub addr: SocketAddr,
    name: String,
    accepted: Arc<AtomicUsize>,
    handshakes: Arc<Mutex<Vec<HashMap<String, String>>>>,
    task: JoinHandle<()>,
}

impl WsUpstream {
    pub async fn start(name: &str) -> Self {
        let accepted = Arc::new(AtomicUsize::new(0));
        let handshakes = Arc::new(Mutex::new(Vec::new()));
        let (acc, hs, nm) = (accepted.clone(), handshakes.clone(), name.to_string());
        let (addr, task) =
            serve_loopback(move |stream| {
                let (acc, hs, nm) = (acc.clone(), hs.clone(), nm.clone());
                async move {
                    let hs2 = hs.clone();
                    #[allow(clippy::result_large_err)] // the callback's signature is tungstenite's
                let cb = move |req: &tokio_tungstenite::tungstenite::handshake::server::Request,
                               resp: tokio_tungstenite::tungstenite::handshake::server::Response| {
                    let h = req
                        .headers()
                        .iter()
                        .map(|(k, v)| (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).to_string()))
                        .collect();
                    hs2.lock().unwrap().push(h);
                    Ok(resp)
                };
                    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, cb).await else {
                        return;
                    };
                    acc.fetch_add(1, Ordering::SeqCst);
                    while let Some(Ok(msg)) = ws.next().await {
                        let reply = match msg {
                            Message::Text(t) if t == "__name__" => Message::Text(nm.clone()),
                            Message::Text(t) => Message::Text(t),
                            Message::Binary(b) => Message::Binary(b),
                            Message::Close(_) => break,
                            _ => continue,
                        };
                        if ws.send(reply).await.is_err() {
                            return;
                        }
                    }
                    let _ = ws.close(None).await;
                }
            })
            .await;
        WsUpstream {
            addr,
            name: name.to_string(),
            accepted,
            handshakes,
            task,
        }
    }
    pub fn addr_str(&self) -> String {
        self.addr.to_string()
    }
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Completed WebSocket handshakes.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
    /// Headers of the most recent handshake request (names lowercased).
    pub fn last_handshake(&self) -> HashMap<String, String> {
        self.handshakes
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("no websocket handshake seen")
    }
}

impl Drop for WsUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub type Ws = tokio_tungstenite::WebSocketStream<TcpStream>;

/// Opens a WebSocket through the gateway at `addr` with `Host: host`.
pub async fn ws_connect(
    addr: SocketAddr,
    host: &str,
    path: &str,
) -> Result<(Ws, tokio_tungstenite::tungstenite::handshake::client::Response), tokio_tungstenite::tungstenite::Error> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = format!("ws://{addr}{path}").into_client_request()?;
    req.headers_mut().insert("host", host.parse().unwrap());
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    tokio_tungstenite::client_async(req, stream).await
}

/// Sends `msg` and returns the next data frame (bounded).
pub async fn ws_roundtrip(ws: &mut Ws, msg: Message) -> Result<Message, String> {
    ws.send(msg).await.map_err(|e| format!("send: {e}"))?;
    loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
            Err(_) => return Err("no reply within 5s".into()),
            Ok(None) => return Err("connection closed".into()),
            Ok(Some(Err(e))) => return Err(format!("recv: {e}")),
            Ok(Some(Ok(m @ (Message::Text(_) | Message::Binary(_))))) => return Ok(m),
            Ok(Some(Ok(Message::Close(c)))) => return Err(format!("closed by peer: {c:?}")),
            Ok(Some(Ok(_))) => continue,
        }
    }
}
