//! Redis on loopback (`state.redis`): a throwaway redis-server without
//! persistence, killed on drop; it can be stopped and restarted on the same
//! port to simulate an outage.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::net::TcpStream;

use super::net::{free_port, loopback};
use super::wait::{poll_until, wait_for, WAIT};

pub struct Redis {
    pub port: u16,
    child: Child,
}

impl Redis {
    /// Starts redis-server on a free loopback port; returns once it accepts connections.
    pub async fn start() -> Redis {
        let port = free_port();
        let child = Self::spawn(port);
        let addr = loopback(port);
        wait_for(format!("redis-server on {addr}"), WAIT, || async move {
            TcpStream::connect(addr).await.is_ok()
        })
        .await;
        Redis { port, child }
    }

    /// redis-server on `port`, without persistence.
    fn spawn(port: u16) -> Child {
        Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server (apt-get install redis-server)")
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// SIGKILLs redis-server (an outage: no shutdown, nothing persisted) and
    /// waits until it is gone and its port refuses connections.
    pub async fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let addr = loopback(self.port);
        wait_for(format!("redis-server on {addr} gone"), WAIT, || async move {
            TcpStream::connect(addr).await.is_err()
        })
        .await;
    }

    /// Starts a new, empty redis-server on the same port (after [`Redis::stop`]);
    /// returns once it accepts connections.
    pub async fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let port = self.port;
        let addr = loopback(port);
        // The port may linger briefly after the kill; retry the spawn until it binds.
        let deadline = Instant::now() + WAIT;
        loop {
            self.child = Self::spawn(port);
            let up = poll_until(format!("redis-server restarted on {addr}"), WAIT, || {
                let exited = self.child.try_wait().ok().flatten().is_some();
                async move {
                    if exited {
                        return Some(false);
                    }
                    TcpStream::connect(addr).await.is_ok().then_some(true)
                }
            })
            .await;
            if up {
                return;
            }
            if Instant::now() >= deadline {
                panic!("redis-server could not be restarted on {addr}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
