//! The floor for `scripts/bench-proxy.sh`: a bare pingora proxy (no routing,
//! policies, headers or metrics) to the same upstream, with the same runtime
//! settings as keygate. keygate's overhead is what it adds on top of this.
//!
//! Usage: pingora_baseline LISTEN UPSTREAM [THREADS]   (e.g. 127.0.0.1:18082 127.0.0.1:9100 1)

#[path = "common/baseline.rs"]
mod baseline;

use async_trait::async_trait;
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
    baseline::run("127.0.0.1:18082", |conf, upstream| {
        pingora_proxy::http_proxy_service(conf, Baseline { upstream })
    });
}
