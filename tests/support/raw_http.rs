//! A raw HTTP/1.1 client: exact bytes on the wire (header case, duplicates,
//! request targets that URL libraries would normalise), one request per
//! connection or several on a kept-alive [`RawConn`].

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

/// Sends `request` verbatim to `addr` (it should carry `Connection: close`),
/// reads the response to EOF (bounded) and parses it.
pub async fn raw_request(addr: SocketAddr, request: &[u8]) -> RawResponse {
    let fut = async {
        let mut s = TcpStream::connect(addr).await.expect("connect gateway");
        s.write_all(request).await.unwrap();
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.unwrap();
        buf
    };
    let buf = tokio::time::timeout(Duration::from_secs(15), fut)
        .await
        .expect("raw request timed out");
    parse_raw_response(&buf)
}

/// A kept-alive raw HTTP/1.1 connection: several requests, one at a time.
pub struct RawConn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl RawConn {
    pub async fn connect(addr: SocketAddr) -> RawConn {
        RawConn {
            stream: TcpStream::connect(addr).await.expect("connect gateway"),
            buf: Vec::new(),
        }
    }

    /// Sends `bytes` verbatim without reading anything (a request pipelined
    /// ahead of the answers; read them with `roundtrip(b"")`).
    pub async fn send(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.stream.write_all(bytes).await.map_err(|e| format!("write: {e}"))
    }

    /// Sends `request` verbatim and reads one response (bounded, 15 s).
    /// `Err` when the peer closed or reset the connection before a full response.
    pub async fn roundtrip(&mut self, request: &[u8]) -> Result<RawResponse, String> {
        self.send(request).await?;
        tokio::time::timeout(Duration::from_secs(15), self.read_response())
            .await
            .map_err(|_| "no response within 15s".to_string())?
    }

    async fn fill(&mut self) -> Result<(), String> {
        let mut chunk = [0u8; 16384];
        match self.stream.read(&mut chunk).await {
            Ok(0) => Err(format!("connection closed by peer ({} bytes pending)", self.buf.len())),
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(())
            }
            Err(e) => Err(format!("read: {e}")),
        }
    }

    async fn read_response(&mut self) -> Result<RawResponse, String> {
        let head_end = loop {
            if let Some(p) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
            self.fill().await?;
        };
        let head = parse_raw_response(&self.buf[..head_end]);
        let chunked = head
            .header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        let end = if chunked {
            loop {
                if let Some(p) = self.buf[head_end..].windows(5).position(|w| w == b"0\r\n\r\n") {
                    break head_end + p + 5;
                }
                self.fill().await?;
            }
        } else {
            let n: usize = head.header("content-length").map(|v| v.parse().unwrap()).unwrap_or(0);
            while self.buf.len() < head_end + n {
                self.fill().await?;
            }
            head_end + n
        };
        let resp = parse_raw_response(&self.buf[..end]);
        self.buf.drain(..end);
        Ok(resp)
    }
}

pub(super) fn parse_raw_response(buf: &[u8]) -> RawResponse {
    let head_end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head in {:?}", String::from_utf8_lossy(buf)));
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .expect("status code")
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let rest = &buf[head_end + 4..];
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.to_ascii_lowercase().contains("chunked"));
    let body = if chunked {
        let mut out = Vec::new();
        let mut i = 0;
        while let Some(le) = rest[i..].windows(2).position(|w| w == b"\r\n") {
            let size_str = String::from_utf8_lossy(&rest[i..i + le]).to_string();
            let size = usize::from_str_radix(size_str.split(';').next().unwrap().trim(), 16).unwrap_or(0);
            i += le + 2;
            if size == 0 || i + size > rest.len() {
                break;
            }
            out.extend_from_slice(&rest[i..i + size]);
            i += size + 2;
        }
        out
    } else if let Some(cl) = headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("content-length")) {
        let n: usize = cl.1.parse().unwrap();
        rest[..n.min(rest.len())].to_vec()
    } else {
        rest.to_vec()
    };
    RawResponse { status, headers, body }
}
