//! IP addresses as keygate compares them: client addresses in their
//! canonical form and the CIDR sets they are checked against (trusted
//! proxies, `ip` policies).

use std::net::IpAddr;

use ipnet::IpNet;

/// A set of CIDR blocks.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct IpSet(Vec<IpNet>);

impl IpSet {
    pub fn new(nets: Vec<IpNet>) -> Self {
        Self(nets)
    }

    /// Whether `ip` (in any form, see [`canonical_ip`]) is in one of the blocks.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical_ip(ip);
        self.0.iter().any(|net| net.contains(&ip))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// `::ffff:1.2.3.4` is `1.2.3.4` (dual-stack sockets report IPv4 peers that way).
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}
