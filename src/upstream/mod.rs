//! Instances (`instances`/`upstream`): their live state
//! (`endpoint`), a deployment's current set (`set`, DNS-refreshed), which one
//! a request tries (`select`), and the background work that keeps them
//! honest (`health`, `supervisor`).

mod endpoint;
pub mod health;
mod registry;
mod select;
mod set;
pub mod supervisor;

use std::net::{SocketAddr, ToSocketAddrs};

pub use endpoint::{Endpoint, InFlightGuard, PassivePolicy, Target};
pub use registry::Endpoints;
pub use select::{Picker, Strategy};
pub use set::{Entry, InstanceSet};

use crate::config::deployment::{InstanceAddr, ProtocolSpec};

/// How keygate talks to a deployment's instances.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    #[default]
    Http1,
    /// HTTP/2 with prior knowledge (cleartext).
    H2c,
}

impl From<ProtocolSpec> for Protocol {
    fn from(spec: ProtocolSpec) -> Self {
        match spec {
            ProtocolSpec::Http1 => Self::Http1,
            ProtocolSpec::H2c => Self::H2c,
        }
    }
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Self::Http1 => "http1",
            Self::H2c => "h2c",
        }
    }
}

/// Resolves one configured `instances:` entry. A hostname (`app:3000`) is
/// resolved once, at load (like nginx's `server app:3000`); `dns:name:port`
/// too, and then re-resolved by the supervisor.
pub fn resolve(addr: &InstanceAddr) -> Result<Entry, String> {
    match addr {
        InstanceAddr::Echo => Ok(Entry::Fixed(vec![Target::Echo])),
        InstanceAddr::Host { host, port } => {
            let addrs = lookup(host, *port)?;
            Ok(Entry::Fixed(addrs.into_iter().map(Target::Network).collect()))
        }
        InstanceAddr::Dns { name, port } => Ok(Entry::Dns {
            name: name.clone(),
            port: *port,
            resolved: lookup(name, *port)?,
        }),
    }
}

fn lookup(host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}:{port}: {e}"))?
        .collect();
    if addrs.is_empty() {
        return Err(format!("{host}:{port} resolves to no address"));
    }
    Ok(addrs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_names_and_dns_entries() {
        let Entry::Fixed(targets) = resolve(&InstanceAddr::Host {
            host: "localhost".into(),
            port: 80,
        })
        .unwrap() else {
            panic!("host:port is a fixed entry");
        };
        assert!(!targets.is_empty());
        let Entry::Dns { resolved, .. } = resolve(&InstanceAddr::Dns {
            name: "localhost".into(),
            port: 81,
        })
        .unwrap() else {
            panic!("dns: is a DNS entry");
        };
        assert!(resolved.iter().all(|a| a.port() == 81 && a.ip().is_loopback()));
    }
}
