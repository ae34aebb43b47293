//! IP addresses as keygate compares them: client addresses in their
//! canonical form and the CIDR sets they are checked against (trusted
//! proxies, `ip` policies).

use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;

use crate::stack_text::StackText;

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

/// An address as text, kept on the stack (a rate-limit bucket or the
/// `X-Forwarded-For` value is made from it without an allocation). An IPv4
/// address — nearly every client — is written digit by digit: `Display`
/// goes through the formatting machinery, a measurable part of a proxied
/// request's cost. 45 bytes: the longest IPv6 text
/// (`ffff:…:255.255.255.255`).
pub struct IpText(StackText<45>);

impl IpText {
    pub fn of(ip: IpAddr) -> Self {
        let mut text = StackText::default();
        match ip {
            IpAddr::V4(v4) => ipv4_bytes(v4, |byte| {
                text.push(&[byte]);
            }),
            IpAddr::V6(v6) => {
                use std::fmt::Write as _;
                // Never longer than the room above.
                let _ = write!(text, "{v6}");
            }
        }
        IpText(text)
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII digits, hex letters, dots and colons are written.
        std::str::from_utf8(self.0.as_bytes()).unwrap_or_default()
    }
}

/// Appends an IPv4 address's text to `out` (as [`IpText`] writes it, and
/// without the check that turns its bytes into a `str`).
pub fn push_ipv4(out: &mut String, ip: Ipv4Addr) {
    ipv4_bytes(ip, |byte| out.push(char::from(byte)));
}

/// An IPv4 address's text, byte by byte: digits and dots.
fn ipv4_bytes(ip: Ipv4Addr, mut put: impl FnMut(u8)) {
    for (i, octet) in ip.octets().into_iter().enumerate() {
        if i > 0 {
            put(b'.');
        }
        for (place, shown) in [(100, octet >= 100), (10, octet >= 10), (1, true)] {
            if shown {
                put(b'0' + octet / place % 10);
            }
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
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "::ffff:255.255.255.255",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(IpText::of(ip).as_str(), ip.to_string());
            if let IpAddr::V4(v4) = ip {
                let mut pushed = String::from("x");
                push_ipv4(&mut pushed, v4);
                assert_eq!(pushed, format!("x{ip}"));
            }
        }
    }
}
