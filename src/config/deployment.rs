//! `deployments:`: what runs where and how it is reached (routes are in
//! [`super::route`]).

use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

use super::policy::PolicySpec;
use super::schema::text_pattern;
use super::units::HumanDuration;

/// A deployment: a set of instances, how to reach them, and the policies
/// every request must pass first.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeploymentSpec {
    /// Unique, non-empty. Routes name it; instances get it as `X-Deployment-Id`;
    /// it is the `deployment` label of metrics.
    pub id: String,
    /// A free-form name, shown by `keygate routes`.
    #[serde(default = "DeploymentSpec::default_environment")]
    pub environment: String,
    /// Where requests go; none: every request gets 503 `no_running_instances`.
    #[serde(default)]
    pub instances: Vec<InstanceAddr>,
    /// How instances are reached and checked.
    #[serde(default)]
    pub upstream: UpstreamSpec,
    /// The OpenAPI spec `openapi` policies validate against.
    #[serde(default)]
    pub openapi: Option<OpenapiSourceSpec>,
    /// The ordered policy chain every request runs through.
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
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_');
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

/// The form it is written in, which [`InstanceAddr::from_str`] reads back.
impl fmt::Display for InstanceAddr {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let host_port = |f: &mut fmt::Formatter, host: &str, port: u16| match host.contains(':') {
            true => write!(f, "[{host}]:{port}"),
            false => write!(f, "{host}:{port}"),
        };
        match self {
            Self::Host { host, port } => host_port(f, host, *port),
            Self::Dns { name, port } => {
                f.write_str("dns:")?;
                host_port(f, name, *port)
            }
            Self::Echo => f.write_str("builtin:echo"),
        }
    }
}

impl Serialize for InstanceAddr {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl JsonSchema for InstanceAddr {
    fn schema_name() -> Cow<'static, str> {
        "Instance".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "description": "`host:port` (an IP, `[v6]`, or a name resolved at load), \
                `dns:name:port` (every A/AAAA record, re-resolved), or `builtin:echo`.",
            "pattern": text_pattern("builtin:echo|(dns:)?([A-Za-z0-9_.-]+|\\[[0-9A-Fa-f:.]+\\]):[0-9]{1,5}"),
            "examples": ["127.0.0.1:3000", "app:3000", "dns:app.default.svc:3000", "builtin:echo"],
        })
    }
}

/// A deployment's `upstream:` section.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSpec {
    /// How requests are sent to instances.
    #[serde(default)]
    pub protocol: ProtocolSpec,
    /// Active health checks; none: instances are healthy unless ejected.
    #[serde(default)]
    pub health_check: Option<HealthCheckSpec>,
    /// `random` or `p2c` (power of two choices on requests in flight).
    #[serde(default)]
    pub selection: SelectionSpec,
    /// Passive ejection of instances that refuse connections.
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
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PassiveSpec {
    /// Consecutive connect failures that eject an instance; 0 turns ejection off.
    #[serde(default = "PassiveSpec::default_failures")]
    pub failures: u32,
    /// How long an ejected instance sits out (doubled on repeats, at most 32×).
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

/// The protocol spoken to instances.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ProtocolSpec {
    /// HTTP/1.1.
    #[default]
    Http1,
    /// HTTP/2 with prior knowledge (cleartext).
    H2c,
}

/// How a request picks among a deployment's available instances.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SelectionSpec {
    /// Uniformly at random.
    Random,
    /// Power of two choices on requests in flight.
    #[default]
    P2c,
}

/// The `upstream.health_check` section: a check passes on a 2xx within `timeout`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckSpec {
    /// The path checked (must start with `/`).
    #[serde(default = "HealthCheckSpec::default_path")]
    pub path: String,
    /// The method of the check request.
    #[serde(default = "HealthCheckSpec::default_method")]
    pub method: String,
    /// Time between checks (more than 0).
    #[serde(default = "HealthCheckSpec::default_interval")]
    pub interval: HumanDuration,
    /// How long one check may take.
    #[serde(default = "HealthCheckSpec::default_timeout")]
    pub timeout: HumanDuration,
    /// Consecutive failures that take an instance out (at least 1); one pass puts it back.
    #[serde(default = "HealthCheckSpec::default_failure_threshold")]
    pub failure_threshold: u32,
    /// Wait before the first check.
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
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend("oneOf" = [{"required": ["file"]}, {"required": ["fetch_path"]}]))]
pub struct OpenapiSourceSpec {
    /// A YAML or JSON OpenAPI 3.0/3.1 document, relative to the config file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// A path fetched from an available instance of the deployment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fetch_path: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_addresses() {
        assert_eq!("builtin:echo".parse(), Ok(InstanceAddr::Echo));
        assert_eq!(
            "127.0.0.1:3000".parse(),
            Ok(InstanceAddr::Host {
                host: "127.0.0.1".into(),
                port: 3000
            })
        );
        assert_eq!(
            "[::1]:80".parse(),
            Ok(InstanceAddr::Host {
                host: "::1".into(),
                port: 80
            })
        );
        assert_eq!(
            "app:80".parse(),
            Ok(InstanceAddr::Host {
                host: "app".into(),
                port: 80
            })
        );
        assert_eq!(
            "dns:app:80".parse(),
            Ok(InstanceAddr::Dns {
                name: "app".into(),
                port: 80
            })
        );
        for bad in [
            "127.0.0.1",
            "x:0",
            ":80",
            "a b:80",
            "builtin:nope",
            "h:99999",
            "dns:",
            "dns:app",
        ] {
            assert!(bad.parse::<InstanceAddr>().is_err(), "{bad}");
        }
    }
}
