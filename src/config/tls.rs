//! The `tls:` section: the minimum version, the HTTP→HTTPS redirect, the
//! certificates directory and automatic certificates (ACME).

use serde::Deserialize;

use super::units::HumanDuration;

/// The `tls:` section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSpec {
    #[serde(default)]
    pub min_version: Option<MinVersionSpec>,
    /// Default: true when `listen.https` is set.
    #[serde(default)]
    pub redirect_http: Option<bool>,
    #[serde(default)]
    pub certs_dir: Option<String>,
    #[serde(default)]
    pub acme: Option<AcmeSpec>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum MinVersionSpec {
    #[serde(rename = "1.2")]
    Tls12,
    #[serde(rename = "1.3")]
    Tls13,
}

/// The `tls.acme:` section as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcmeSpec {
    #[serde(default)]
    pub directory: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    /// A PEM file, or a list of them: roots trusted for the directory on top
    /// of the system's (test CAs such as Pebble).
    #[serde(default)]
    pub ca_roots: Option<OneOrMany>,
    #[serde(default)]
    pub hosts: Option<HostsSpec>,
    #[serde(default)]
    pub renew_before: Option<HumanDuration>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// `auto` or a list of hostnames.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum HostsSpec {
    Keyword(String),
    List(Vec<String>),
}
