//! The floor for `scripts/bench-proxy.sh`: a bare pingora proxy (no routing,
//! policies, headers or metrics) to the same upstream, with the same runtime
//! settings as keygate. keygate's overhead is what it adds on top of this.
//!
//! Usage: pingora_baseline LISTEN UPSTREAM [THREADS]   (e.g. 127.0.0.1:18082 127.0.0.1:9100 1)

use async_trait::async_trait;
use pingora_core::server::configuration::ServerConf;
use pingora_core::server::{RunArgs, Server};
use pingora_core::upstreams::peer::HttpPeer;
use pingora_proxy::{ProxyHttp, Session};

struct Baseline {
    upstream: String,
}

#[async_trait]
impl ProxyHttp for Baseline {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> pingora_error::Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.upstream.as_str(), false, String::new())))
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:18082".into());
    let upstream = args.next().unwrap_or_else(|| "127.0.0.1:9100".into());
    let threads = args.next().and_then(|n| n.parse().ok()).unwrap_or(1);
    let conf = ServerConf {
        threads,
        work_stealing: false,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut proxy = pingora_proxy::http_proxy_service(&server.configuration, Baseline { upstream });
    proxy.add_tcp(&listen);
    server.add_service(proxy);
    server.run(RunArgs::default());
}
