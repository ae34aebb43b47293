//! The configuration file's root and its small top-level sections
//! (`listen`, `limits`, `trusted_proxies`, `admin`, `errors`). Unknown fields
//! are rejected everywhere. These types are only ever *read* by the compile
//! step, never used on the request path.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use std::borrow::Cow;

use ipnet::IpNet;
use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

use super::deployment::DeploymentSpec;
use super::keys::KeyspaceSpec;
use super::platform::{PlatformSpec, ProjectSpec};
use super::policy::PolicySetsSpec;
use super::providers::ProvidersSpec;
use super::route::RouteSpec;
use super::schema::text_pattern;
use super::state::StateSpec;
use super::telemetry::{RequestLogSpec, TelemetrySpec};
use super::tls::TlsSpec;
use super::units::{ByteSize, HumanDuration};
use crate::errors::DEFAULT_DOCS_BASE;

/// keygate's configuration file. Every section is optional: an empty file
/// listens on 0.0.0.0:8080 (HTTP) and 127.0.0.1:9901 (admin) and routes
/// nothing. Unknown fields are errors. A value may hold `${VAR}`: the
/// environment variable's value replaces it once the file is parsed.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "keygate configuration")]
pub struct ConfigFile {
    /// The addresses keygate listens on.
    #[serde(default)]
    pub listen: ListenSpec,
    /// Timeouts and the body size limit.
    #[serde(default)]
    pub limits: LimitsSpec,
    /// Peers (CIDRs or single addresses) whose forwarding headers are
    /// believed, e.g. your load balancer's.
    #[serde(default)]
    pub trusted_proxies: Vec<Cidr>,
    /// The admin API's credentials.
    #[serde(default)]
    pub admin: AdminSpec,
    /// The gateway's error responses.
    #[serde(default)]
    pub errors: ErrorsSpec,
    /// TLS for `listen.https`: minimum version, redirect, certificates, ACME.
    #[serde(default)]
    pub tls: TlsSpec,
    /// Where keygate keeps its state, and the Redis replicas share counters through.
    #[serde(default)]
    pub state: StateSpec,
    /// Where `logging` policies write their records.
    #[serde(default)]
    pub request_log: Option<RequestLogSpec>,
    /// OpenTelemetry traces.
    #[serde(default)]
    pub telemetry: TelemetrySpec,
    /// Keyspaces and static API keys declared in the file.
    #[serde(default)]
    pub keyspaces: Vec<KeyspaceSpec>,
    /// What requests are sent to: instances, how to reach them, policies.
    #[serde(default)]
    pub deployments: Vec<DeploymentSpec>,
    /// Which hosts and path prefixes reach which deployment.
    #[serde(default)]
    pub routes: Vec<RouteSpec>,
    /// Routing providers besides this file (Kubernetes ingress mode, Docker).
    #[serde(default)]
    pub providers: ProvidersSpec,
    /// Named policy lists the providers attach to their deployments.
    #[serde(default)]
    pub policy_sets: PolicySetsSpec,
    /// The control plane: generated domains, standby, readiness.
    #[serde(default)]
    pub platform: PlatformSpec,
    /// Projects whose deployments the Deployments API creates.
    #[serde(default)]
    pub projects: Vec<ProjectSpec>,
}

/// The `listen:` section. Listeners are bound at start-up: a change needs a restart.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListenSpec {
    /// Plain HTTP; `null` turns it off.
    #[serde(default = "ListenSpec::default_http")]
    pub http: Option<ListenAddr>,
    /// TLS (HTTP/1.1 and h2 via ALPN); off unless set.
    #[serde(default)]
    pub https: Option<ListenAddr>,
    /// Health, readiness, metrics and the admin API; `null` turns it off.
    #[serde(default = "ListenSpec::default_admin")]
    pub admin: Option<ListenAddr>,
    /// Worker threads; 0 = number of cores.
    #[serde(default)]
    pub threads: usize,
}

impl ListenSpec {
    fn default_http() -> Option<ListenAddr> {
        Some(ListenAddr(SocketAddr::from(([0, 0, 0, 0], 8080))))
    }
    fn default_admin() -> Option<ListenAddr> {
        Some(ListenAddr(SocketAddr::from(([127, 0, 0, 1], 9901))))
    }
}

impl Default for ListenSpec {
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
        SocketAddr::from_str(&full).map(ListenAddr).map_err(|_| {
            de::Error::custom(format!(
                "invalid listen address {text:?} (use ip:port, e.g. 0.0.0.0:8080)"
            ))
        })
    }
}

impl Serialize for ListenAddr {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

impl JsonSchema for ListenAddr {
    fn schema_name() -> Cow<'static, str> {
        "ListenAddress".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "description": "`ip:port`, `[v6]:port`, or `:port` for every IPv4 interface.",
            "pattern": text_pattern("([0-9.]+|\\[[0-9A-Fa-f:.]+\\])?:[0-9]{1,5}"),
            "examples": ["0.0.0.0:8080", "[::]:8443", ":9901"],
        })
    }
}

/// The `limits:` section.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitsSpec {
    /// The budget for the whole exchange with the instance (each read and
    /// write may take what is left of it).
    #[serde(default = "LimitsSpec::default_request_timeout")]
    pub request_timeout: HumanDuration,
    /// Each connection attempt to an instance.
    #[serde(default = "LimitsSpec::default_connect_timeout")]
    pub connect_timeout: HumanDuration,
    /// Reading the client's request head and body.
    #[serde(default = "LimitsSpec::default_read_header_timeout")]
    pub read_header_timeout: HumanDuration,
    /// HTTP/1.1 client keep-alive between requests; under 1s turns keep-alive off.
    #[serde(default = "LimitsSpec::default_idle_timeout")]
    pub idle_timeout: HumanDuration,
    /// The largest body the gateway holds whole (`openapi` policies,
    /// `builtin:echo`); beyond it: 413.
    #[serde(default = "LimitsSpec::default_max_request_body")]
    pub max_request_body: ByteSize,
    /// The longest pause between two reads of a request body (then 408 or close).
    #[serde(default = "LimitsSpec::default_read_body_timeout")]
    pub read_body_timeout: HumanDuration,
    /// A request head (request line and header fields) larger than this is a 431.
    #[serde(default = "LimitsSpec::default_max_header_bytes")]
    pub max_header_bytes: ByteSize,
    /// More header fields than this is a 431.
    #[serde(default = "LimitsSpec::default_max_headers")]
    pub max_headers: usize,
    /// Client connections held open at once; more are closed as they arrive.
    #[serde(default = "LimitsSpec::default_max_connections")]
    pub max_connections: usize,
    /// Header names with `_` are dropped unless this is true (CGI-style
    /// instances read `X_Foo` as `X-Foo`, so they could spoof a protected header).
    #[serde(default)]
    pub allow_underscores_in_headers: bool,
}

impl LimitsSpec {
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
    fn default_read_body_timeout() -> HumanDuration {
        HumanDuration(std::time::Duration::from_secs(60))
    }
    fn default_max_header_bytes() -> ByteSize {
        ByteSize(64 << 10)
    }
    fn default_max_headers() -> usize {
        100
    }
    fn default_max_connections() -> usize {
        10_000
    }
}

impl Default for LimitsSpec {
    fn default() -> Self {
        Self {
            request_timeout: Self::default_request_timeout(),
            connect_timeout: Self::default_connect_timeout(),
            read_header_timeout: Self::default_read_header_timeout(),
            idle_timeout: Self::default_idle_timeout(),
            max_request_body: Self::default_max_request_body(),
            read_body_timeout: Self::default_read_body_timeout(),
            max_header_bytes: Self::default_max_header_bytes(),
            max_headers: Self::default_max_headers(),
            max_connections: Self::default_max_connections(),
            allow_underscores_in_headers: false,
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
            .map_err(|_| {
                de::Error::custom(format!(
                    "invalid CIDR {text:?} (use e.g. 10.0.0.0/8, 2001:db8::/32 or one address)"
                ))
            })
    }
}

impl Serialize for Cidr {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

impl JsonSchema for Cidr {
    fn schema_name() -> Cow<'static, str> {
        "Cidr".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "description": "A CIDR block (`10.0.0.0/8`, `2001:db8::/32`) or one address.",
            "pattern": text_pattern("\\s*[0-9A-Fa-f:.]+(/[0-9]{1,3})?\\s*"),
            "examples": ["10.0.0.0/8", "2001:db8::/32", "192.0.2.7"],
        })
    }
}

/// The `admin:` section.
#[derive(Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AdminSpec {
    /// Bearer tokens the admin API accepts (`Authorization: Bearer <key>`);
    /// empty: a local root key is generated in `state.dir`. Masked by
    /// `keygate config print`.
    #[serde(default, serialize_with = "super::mask::secrets")]
    pub root_keys: Vec<String>,
}

/// The `errors:` section.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ErrorsSpec {
    /// Prefix of the `type` URL in error responses: `<docs_base>/<category>/<name>`.
    #[serde(default = "ErrorsSpec::default_docs_base")]
    pub docs_base: String,
}

impl ErrorsSpec {
    fn default_docs_base() -> String {
        DEFAULT_DOCS_BASE.to_string()
    }
}

impl Default for ErrorsSpec {
    fn default() -> Self {
        Self {
            docs_base: Self::default_docs_base(),
        }
    }
}
