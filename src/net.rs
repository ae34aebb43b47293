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

/// An address as header text (`X-Forwarded-For`); see [`push_ip`].
pub fn ip_text(ip: IpAddr) -> String {
    let mut text = String::with_capacity(15);
    push_ip(&mut text, ip);
    text
}

/// Appends an address as text. An IPv4 address — nearly every client — is
/// written digit by digit into a buffer on the stack: `Display` goes
/// through the formatting machinery, a measurable part of a proxied
/// request's cost.
pub fn push_ip(out: &mut String, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            let mut text = [0u8; 15];
            let mut len = 0;
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    text[len] = b'.';
                    len += 1;
                }
                for (place, shown) in [(100, octet >= 100), (10, octet >= 10), (1, true)] {
                    if shown {
                        text[len] = b'0' + octet / place % 10;
                        len += 1;
                    }
                }
            }
            // Digits and dots only.
            out.push_str(std::str::from_utf8(&text[..len]).unwrap_or_default());
        }
        IpAddr::V6(v6) => {
            use std::fmt::Write as _;
            let _ = write!(out, "{v6}");
        }
    }
}

/// `::ffff:1.2.3.4` is `1.2.3.4` (dual-stack sockets report IPv4 peers that way).
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_text_matches_display() {
        for ip in [
            "0.0.0.0",
            "10.0.0.1",
            "127.0.0.1",
            "192.168.100.255",
            "255.255.255.255",
            "::1",
            "2001:db8::8a2e:370:7334",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(ip_text(ip), ip.to_string());
        }
    }
}
