//! What the pingora baselines of `scripts/bench-proxy.sh` share: their
//! command line (`LISTEN UPSTREAM [THREADS]`) and a one-service pingora
//! server with keygate's runtime settings (no work stealing).

use std::sync::Arc;

use pingora_core::apps::ServerApp;
use pingora_core::server::configuration::ServerConf;
use pingora_core::server::{RunArgs, Server};
use pingora_core::services::listening::Service;

/// Serves the service `build` makes (given the upstream address) on the
/// command line's LISTEN address, with its THREADS worker threads (1 by
/// default), until the process is stopped.
pub fn run<A>(default_listen: &str, build: impl FnOnce(&Arc<ServerConf>, String) -> Service<A>)
where
    A: ServerApp + Send + Sync + 'static,
{
    let mut args = std::env::args().skip(1);
    let listen = args.next().unwrap_or_else(|| default_listen.into());
    let upstream = args.next().unwrap_or_else(|| "127.0.0.1:9100".into());
    let threads = args.next().and_then(|n| n.parse().ok()).unwrap_or(1);
    let conf = ServerConf {
        threads,
        work_stealing: false,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut service = build(&server.configuration, upstream);
    service.add_tcp(&listen);
    server.add_service(service);
    server.run(RunArgs::default());
}
