//! The configuration file's schema (SPEC §2): what an operator may write, with
//! unknown fields rejected. Each capability owns one top-level section; these
//! types are only ever *read* by `compile`, never used on the request path.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use ipnet::IpNet;
use serde::{de, Deserialize, Deserializer};

use super::units::{ByteSize, HumanDuration};
use crate::errors::DEFAULT_DOCS_BASE;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    #[serde(default)]
    pub listen: Listen,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub trusted_proxies: Vec<Cidr>,
    #[serde(default)]
    pub admin: Admin,
    #[serde(default)]
    pub errors: Errors,
    #[serde(default)]
    pub tls: crate::tls::TlsSpec,
    #[serde(default)]
    pub state: crate::state::StateSpec,
    #[serde(default)]
    pub request_log: Option<crate::telemetry::request_log::RequestLogSpec>,
    #[serde(default)]
    pub keyspaces: Vec<crate::keys::statics::KeyspaceSpec>,
    #[serde(default)]
    pub deployments: Vec<Deployment>,
    #[serde(default)]
    pub routes: Vec<Route>,
    /// Routing providers besides this file (Kubernetes ingress mode).
    #[serde(default)]
    pub providers: crate::providers::ProvidersSpec,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listen {
    /// Plain HTTP; `null` turns it off.
    #[serde(default = "Listen::default_http")]
    pub http: Option<ListenAddr>,
    /// TLS (HTTP/1.1 and h2 via ALPN); off unless set.
    #[serde(default)]
    pub https: Option<ListenAddr>,
    #[serde(default = "Listen::default_admin")]
    pub admin: Option<ListenAddr>,
    /// Worker threads; 0 = number of cores.
    #[serde(default)]
    pub threads: usize,
}

impl Listen {
    fn default_http() -> Option<ListenAddr> {
        Some(ListenAddr(SocketAddr::from(([0, 0, 0, 0], 8080))))
    }
    fn default_admin() -> Option<ListenAddr> {
        Some(ListenAddr(SocketAddr::from(([127, 0, 0, 1], 9901))))
    }
}

impl Default for Listen {
    fn default() -> Self {
        Self {
            http: Self::default_http(),
            https: None,
            admin: Self::default_admin(),
            threads: 0,
        }
    }
}

/// A listening address: `ip:port`, `[v6]:port`, or `:port` for every IPv4 interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenAddr(pub SocketAddr);

impl<'de> Deserialize<'de> for ListenAddr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        let full = match text.strip_prefix(':') {
            Some(port) => format!("0.0.0.0:{port}"),
            None => text.clone(),
        };
        SocketAddr::from_str(&full)
            .map(ListenAddr)
            .map_err(|_| de::Error::custom(format!("invalid listen address {text:?} (use ip:port, e.g. 0.0.0.0:8080)")))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    #[serde(default = "Limits::default_request_timeout")]
    pub request_timeout: HumanDuration,
    #[serde(default = "Limits::default_connect_timeout")]
    pub connect_timeout: HumanDuration,
    #[serde(default = "Limits::default_read_header_timeout")]
    pub read_header_timeout: HumanDuration,
    #[serde(default = "Limits::default_idle_timeout")]
    pub idle_timeout: HumanDuration,
    #[serde(default = "Limits::default_max_request_body")]
    pub max_request_body: ByteSize,
}

impl Limits {
    fn default_request_timeout() -> HumanDuration {
        HumanDuration(std::time::Duration::from_secs(15 * 60))
    }
    fn default_connect_timeout() -> HumanDuration {
        HumanDuration(std::time::Duration::from_secs(5))
    }
    fn default_read_header_timeout() -> HumanDuration {
        HumanDuration(std::time::Duration::from_secs(10))
    }
    fn default_idle_timeout() -> HumanDuration {
        HumanDuration(std::time::Duration::from_secs(60))
    }
    fn default_max_request_body() -> ByteSize {
        ByteSize(10 << 20)
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            request_timeout: Self::default_request_timeout(),
            connect_timeout: Self::default_connect_timeout(),
            read_header_timeout: Self::default_read_header_timeout(),
            idle_timeout: Self::default_idle_timeout(),
            max_request_body: Self::default_max_request_body(),
        }
    }
}

/// A CIDR block; a bare address means that one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr(pub IpNet);

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        let trimmed = text.trim();
        IpNet::from_str(trimmed)
            .or_else(|_| IpAddr::from_str(trimmed).map(IpNet::from))
            .map(Cidr)
            .map_err(|_| de::Error::custom(format!("invalid CIDR {text:?} (use e.g. 10.0.0.0/8, 2001:db8::/32 or one address)")))
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Admin {
    /// Bearer tokens accepted by the admin API.
    #[serde(default)]
    pub root_keys: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Errors {
    #[serde(default = "Errors::default_docs_base")]
    pub docs_base: String,
}

impl Errors {
    fn default_docs_base() -> String {
        DEFAULT_DOCS_BASE.to_string()
    }
}

impl Default for Errors {
    fn default() -> Self {
        Self {
            docs_base: Self::default_docs_base(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deployment {
    pub id: String,
    #[serde(default = "Deployment::default_environment")]
    pub environment: String,
    #[serde(default)]
    pub instances: Vec<InstanceAddr>,
    #[serde(default)]
    pub upstream: Upstream,
    /// The OpenAPI spec `openapi` policies validate against.
    #[serde(default)]
    pub openapi: Option<crate::openapi::OpenapiSourceSpec>,
    #[serde(default)]
    pub policies: Vec<crate::policy::config::PolicySpec>,
}

impl Deployment {
    fn default_environment() -> String {
        "production".to_string()
    }
}

/// Where an instance is: `host:port`, or `builtin:echo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstanceAddr {
    /// A host (IP or name, resolved at load) and port.
    Host { host: String, port: u16 },
    /// `dns:name:port`: every A/AAAA record is an instance, re-resolved periodically.
    Dns { name: String, port: u16 },
    /// The built-in echo server: answers with the request it saw, as JSON.
    Echo,
}

impl FromStr for InstanceAddr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        if text == "builtin:echo" {
            return Ok(Self::Echo);
        }
        if let Some(rest) = text.strip_prefix("builtin:") {
            return Err(format!("unknown builtin instance {rest:?} (only builtin:echo exists)"));
        }
        let invalid = || {
            format!("invalid instance address {text:?} (use host:port, e.g. 127.0.0.1:3000, dns:name:port, or builtin:echo)")
        };
        if let Some(rest) = text.strip_prefix("dns:") {
            return match rest.parse::<InstanceAddr>() {
                Ok(Self::Host { host, port }) => Ok(Self::Dns { name: host, port }),
                _ => Err(invalid()),
            };
        }
        let (host, port) = text.rsplit_once(':').ok_or_else(invalid)?;
        let port: u16 = port.parse().map_err(|_| invalid())?;
        let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
        let is_ip = IpAddr::from_str(host).is_ok();
        let is_name = !host.is_empty()
            && host.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_');
        if port == 0 || !(is_ip || is_name) {
            return Err(invalid());
        }
        Ok(Self::Host {
            host: host.to_string(),
            port,
        })
    }
}

impl<'de> Deserialize<'de> for InstanceAddr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(de::Error::custom)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upstream {
    #[serde(default)]
    pub protocol: Protocol,
    #[serde(default)]
    pub health_check: Option<crate::upstream::health::HealthCheckSpec>,
    /// `random` or `p2c` (power of two choices on requests in flight).
    #[serde(default)]
    pub selection: crate::upstream::Strategy,
    #[serde(default)]
    pub passive: Passive,
    /// How often `dns:` instances are re-resolved (at least 1s).
    #[serde(default = "Upstream::default_dns_refresh")]
    pub dns_refresh: HumanDuration,
}

impl Upstream {
    fn default_dns_refresh() -> HumanDuration {
        HumanDuration(std::time::Duration::from_secs(10))
    }
}

impl Default for Upstream {
    fn default() -> Self {
        Self {
            protocol: Protocol::default(),
            health_check: None,
            selection: crate::upstream::Strategy::default(),
            passive: Passive::default(),
            dns_refresh: Self::default_dns_refresh(),
        }
    }
}

/// Passive ejection: `failures` consecutive connect failures on live traffic
/// take an instance out for `ejection` (doubling on repeats; 0 failures = off).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Passive {
    #[serde(default = "Passive::default_failures")]
    pub failures: u32,
    #[serde(default = "Passive::default_ejection")]
    pub ejection: HumanDuration,
}

impl Passive {
    fn default_failures() -> u32 {
        3
    }
    fn default_ejection() -> HumanDuration {
        HumanDuration(std::time::Duration::from_secs(10))
    }
}

impl Default for Passive {
    fn default() -> Self {
        Self {
            failures: Self::default_failures(),
            ejection: Self::default_ejection(),
        }
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    #[default]
    Http1,
    /// HTTP/2 with prior knowledge (cleartext).
    H2c,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub host: String,
    #[serde(default)]
    pub path_prefix: Option<String>,
    pub deployment: String,
    #[serde(default)]
    pub strip_prefix: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_addresses() {
        assert_eq!("builtin:echo".parse(), Ok(InstanceAddr::Echo));
        assert_eq!(
            "127.0.0.1:3000".parse(),
            Ok(InstanceAddr::Host { host: "127.0.0.1".into(), port: 3000 })
        );
        assert_eq!("[::1]:80".parse(), Ok(InstanceAddr::Host { host: "::1".into(), port: 80 }));
        assert_eq!("app:80".parse(), Ok(InstanceAddr::Host { host: "app".into(), port: 80 }));
        assert_eq!("dns:app:80".parse(), Ok(InstanceAddr::Dns { name: "app".into(), port: 80 }));
        for bad in ["127.0.0.1", "x:0", ":80", "a b:80", "builtin:nope", "h:99999", "dns:", "dns:app"] {
            assert!(bad.parse::<InstanceAddr>().is_err(), "{bad}");
        }
    }
}
