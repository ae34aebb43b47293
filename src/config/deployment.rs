//! `deployments:` and `routes:`: what runs where, and which hosts and paths
//! reach it.

use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use serde::{de, Deserialize, Deserializer};

use super::policy::PolicySpec;
use super::units::HumanDuration;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentSpec {
    pub id: String,
    #[serde(default = "DeploymentSpec::default_environment")]
    pub environment: String,
    #[serde(default)]
    pub instances: Vec<InstanceAddr>,
    #[serde(default)]
    pub upstream: UpstreamSpec,
    /// The OpenAPI spec `openapi` policies validate against.
    #[serde(default)]
    pub openapi: Option<OpenapiSourceSpec>,
    #[serde(default)]
    pub policies: Vec<PolicySpec>,
}

impl DeploymentSpec {
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
pub struct UpstreamSpec {
    #[serde(default)]
    pub protocol: ProtocolSpec,
    #[serde(default)]
    pub health_check: Option<HealthCheckSpec>,
    /// `random` or `p2c` (power of two choices on requests in flight).
    #[serde(default)]
    pub selection: SelectionSpec,
    #[serde(default)]
    pub passive: PassiveSpec,
    /// How often `dns:` instances are re-resolved (at least 1s).
    #[serde(default = "UpstreamSpec::default_dns_refresh")]
    pub dns_refresh: HumanDuration,
}

impl UpstreamSpec {
    fn default_dns_refresh() -> HumanDuration {
        HumanDuration(Duration::from_secs(10))
    }
}

impl Default for UpstreamSpec {
    fn default() -> Self {
        Self {
            protocol: ProtocolSpec::default(),
            health_check: None,
            selection: SelectionSpec::default(),
            passive: PassiveSpec::default(),
            dns_refresh: Self::default_dns_refresh(),
        }
    }
}

/// Passive ejection: `failures` consecutive connect failures on live traffic
/// take an instance out for `ejection` (doubling on repeats; 0 failures = off).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PassiveSpec {
    #[serde(default = "PassiveSpec::default_failures")]
    pub failures: u32,
    #[serde(default = "PassiveSpec::default_ejection")]
    pub ejection: HumanDuration,
}

impl PassiveSpec {
    fn default_failures() -> u32 {
        3
    }
    fn default_ejection() -> HumanDuration {
        HumanDuration(Duration::from_secs(10))
    }
}

impl Default for PassiveSpec {
    fn default() -> Self {
        Self {
            failures: Self::default_failures(),
            ejection: Self::default_ejection(),
        }
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProtocolSpec {
    #[default]
    Http1,
    /// HTTP/2 with prior knowledge (cleartext).
    H2c,
}

/// How a request picks among a deployment's available instances.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SelectionSpec {
    /// Uniformly at random.
    Random,
    /// Power of two choices on requests in flight.
    #[default]
    P2c,
}

/// The `upstream.health_check` section.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckSpec {
    #[serde(default = "HealthCheckSpec::default_path")]
    pub path: String,
    #[serde(default = "HealthCheckSpec::default_method")]
    pub method: String,
    #[serde(default = "HealthCheckSpec::default_interval")]
    pub interval: HumanDuration,
    #[serde(default = "HealthCheckSpec::default_timeout")]
    pub timeout: HumanDuration,
    #[serde(default = "HealthCheckSpec::default_failure_threshold")]
    pub failure_threshold: u32,
    #[serde(default = "HealthCheckSpec::default_initial_delay")]
    pub initial_delay: HumanDuration,
}

impl HealthCheckSpec {
    fn default_path() -> String {
        "/healthz".into()
    }
    fn default_method() -> String {
        "GET".into()
    }
    fn default_interval() -> HumanDuration {
        HumanDuration(Duration::from_secs(10))
    }
    fn default_timeout() -> HumanDuration {
        HumanDuration(Duration::from_secs(2))
    }
    fn default_failure_threshold() -> u32 {
        3
    }
    fn default_initial_delay() -> HumanDuration {
        HumanDuration(Duration::ZERO)
    }
}

/// `deployments[].openapi`: exactly one of `file` and `fetch_path`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenapiSourceSpec {
    #[serde(default)]
    pub file: Option<String>,
    #[serde(default)]
    pub fetch_path: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSpec {
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
