//! The `tls:` section: the minimum version, the HTTP→HTTPS redirect, the
//! certificates directory and automatic certificates (ACME).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::units::HumanDuration;

/// The `tls:` section.
#[derive(Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TlsSpec {
    /// `"1.2"` (default) or `"1.3"`; read at start-up.
    #[serde(default)]
    pub min_version: Option<MinVersionSpec>,
    /// Default: true when `listen.https` is set.
    #[serde(default)]
    pub redirect_http: Option<bool>,
    /// `<name>.crt` + `<name>.key` pairs, watched; default `certs/` when
    /// `listen.https` is set. Relative to the config file.
    #[serde(default)]
    pub certs_dir: Option<String>,
    /// Automatic certificates (ACME HTTP-01).
    #[serde(default)]
    pub acme: Option<AcmeSpec>,
}

/// The oldest TLS version offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub enum MinVersionSpec {
    #[serde(rename = "1.2")]
    Tls12,
    #[serde(rename = "1.3")]
    Tls13,
}

/// The `tls.acme:` section as written.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AcmeSpec {
    /// The CA's directory URL (https://); default: Let's Encrypt.
    #[serde(default)]
    pub directory: Option<String>,
    /// Where the CA sends expiry notices.
    #[serde(default)]
    pub email: Option<String>,
    /// A PEM file, or a list of them: roots trusted for the directory on top
    /// of the system's (test CAs such as Pebble).
    #[serde(default)]
    pub ca_roots: Option<OneOrMany>,
    /// `auto` (default: every exact route host without a certificate) or a list of hostnames.
    #[serde(default)]
    pub hosts: Option<HostsSpec>,
    /// Renewal starts this long before expiry (default 30d).
    #[serde(default)]
    pub renew_before: Option<HumanDuration>,
}

/// One PEM file or a list of them.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// `auto` or a list of hostnames.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum HostsSpec {
    Keyword(String),
    List(Vec<String>),
}
