//! Instances of a deployment and the order a request tries them in: a random
//! start, then the next one on each connect failure, so one dead instance
//! costs a request one extra connect, never a failure.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};

use rand::Rng;

use crate::config::file::InstanceAddr;

/// One place a request can be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Instance {
    Network(SocketAddr),
    /// Answered inside the gateway (see `proxy::echo`).
    Echo,
}

impl fmt::Display for Instance {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Self::Network(addr) => write!(f, "{addr}"),
            Self::Echo => f.write_str("builtin:echo"),
        }
    }
}

impl Instance {
    /// Resolves a configured address; a hostname becomes one instance per
    /// address it resolves to (resolved at load, like nginx's `server name:port`).
    pub fn resolve(addr: &InstanceAddr) -> Result<Vec<Self>, String> {
        match addr {
            InstanceAddr::Echo => Ok(vec![Self::Echo]),
            InstanceAddr::Host { host, port } => {
                let resolved: Vec<Self> = (host.as_str(), *port)
                    .to_socket_addrs()
                    .map_err(|e| format!("cannot resolve {host}:{port}: {e}"))?
                    .map(Self::Network)
                    .collect();
                if resolved.is_empty() {
                    return Err(format!("{host}:{port} resolves to no address"));
                }
                Ok(resolved)
            }
        }
    }
}

/// Which instance a request tries next: a random start, then round the list.
#[derive(Debug, Default, Clone, Copy)]
pub struct Attempts {
    start: usize,
    tried: usize,
}

impl Attempts {
    pub fn new(instance_count: usize) -> Self {
        let start = if instance_count > 1 {
            rand::thread_rng().gen_range(0..instance_count)
        } else {
            0
        };
        Self { start, tried: 0 }
    }

    /// The instance for the next try, or `None` when every one was tried.
    pub fn next<'a>(&mut self, instances: &'a [Instance]) -> Option<&'a Instance> {
        if self.tried >= instances.len() {
            return None;
        }
        let instance = &instances[(self.start + self.tried) % instances.len()];
        self.tried += 1;
        Some(instance)
    }

    /// The instance the next try would use, without using it up.
    pub fn peek<'a>(&self, instances: &'a [Instance]) -> Option<&'a Instance> {
        (self.tried < instances.len()).then(|| &instances[(self.start + self.tried) % instances.len()])
    }

    /// Whether another instance is left to try.
    pub fn remaining(&self, instances: &[Instance]) -> bool {
        self.tried < instances.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tries_every_instance_once() {
        let instances: Vec<Instance> = (1..=4)
            .map(|p| Instance::Network(SocketAddr::from(([127, 0, 0, 1], p))))
            .collect();
        let mut attempts = Attempts::new(instances.len());
        let mut seen = Vec::new();
        while let Some(instance) = attempts.next(&instances) {
            seen.push(instance.clone());
        }
        seen.sort_by_key(|i| i.to_string());
        assert_eq!(seen, instances);
        assert!(!attempts.remaining(&instances));
    }

    #[test]
    fn resolves_names() {
        let addrs = Instance::resolve(&InstanceAddr::Host { host: "localhost".into(), port: 80 }).unwrap();
        assert!(!addrs.is_empty());
        assert_eq!(Instance::resolve(&InstanceAddr::Echo).unwrap(), vec![Instance::Echo]);
    }
}
