//! Loopback addresses and the HTTP client every test uses.

use std::collections::HashSet;
use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::sync::Mutex;
use std::time::Duration;

/// Ports this test process has already handed out.
static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A loopback port that was free a moment ago (bound to :0, then released),
/// and never one this process handed out before: the kernel may give a
/// released port to the next `bind(:0)`, and two tests running side by side
/// would then configure the same listener (one gateway answering the other's
/// readiness probe while its own bind failed).
pub fn free_port() -> u16 {
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let handed_out = handed_out.get_or_insert_with(HashSet::new);
    loop {
        let port = StdTcpListener::bind("127.0.0.1:0")
            .expect("bind 127.0.0.1:0")
            .local_addr()
            .unwrap()
            .port();
        if handed_out.insert(port) {
            return port;
        }
    }
}

/// 127.0.0.1:`port`.
pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A loopback address whose port was free a moment ago (see [`free_port`]),
/// for a listener the test configures (HTTPS, admin).
pub fn free_addr() -> SocketAddr {
    loopback(free_port())
}

/// "127.0.0.1:PORT" for a port nobody listens on (connections are refused).
pub fn closed_addr() -> String {
    format!("127.0.0.1:{}", free_port())
}

/// A reqwest client that never uses a proxy and never waits forever.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .connect_timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}
