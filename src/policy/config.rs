//! The `policies:` section of a deployment (SPEC §3): what an operator may
//! write. Compiled by [`super::PolicyChain::compile`]; never read per request.

use serde::Deserialize;

use crate::config::file::Cidr;
use crate::config::units::ByteSize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySpec {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
    #[serde(default, rename = "match")]
    pub matches: Vec<MatchSpec>,
    // Exactly one action key; see `ActionSpec::of`.
    #[serde(default)]
    pub firewall: Option<FirewallSpec>,
    #[serde(default)]
    pub ip: Option<IpSpec>,
    #[serde(default)]
    pub logging: Option<LoggingSpec>,
    #[serde(default)]
    pub keyauth: Option<super::keyauth::KeyAuthSpec>,
    #[serde(default)]
    pub jwtauth: Option<super::jwtauth::JwtAuthSpec>,
    #[serde(default)]
    pub ratelimit: Option<super::ratelimit::RateLimitSpec>,
    #[serde(default)]
    pub openapi: Option<super::openapi::OpenapiPolicySpec>,
}

fn enabled_by_default() -> bool {
    true
}

/// One match expression: exactly one of the keys.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchSpec {
    #[serde(default)]
    pub path: Option<StringMatchSpec>,
    #[serde(default)]
    pub method: Option<Vec<String>>,
    #[serde(default)]
    pub header: Option<FieldMatchSpec>,
    #[serde(default)]
    pub query: Option<FieldMatchSpec>,
}

/// `{exact | prefix | regex: ..., ignore_case: bool}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StringMatchSpec {
    #[serde(default)]
    pub exact: Option<String>,
    #[serde(default)]
    pub prefix: Option<String>,
    #[serde(default)]
    pub regex: Option<String>,
    #[serde(default)]
    pub ignore_case: bool,
}

/// A header or query parameter: `{name, present: bool}` or `{name, value: {...}}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldMatchSpec {
    pub name: String,
    #[serde(default)]
    pub present: Option<bool>,
    #[serde(default)]
    pub value: Option<StringMatchSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FirewallSpec {
    pub action: FirewallActionSpec,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FirewallActionSpec {
    Deny,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IpSpec {
    #[serde(default)]
    pub allow: Vec<Cidr>,
    #[serde(default)]
    pub deny: Vec<Cidr>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoggingSpec {
    #[serde(default)]
    pub bodies: bool,
    #[serde(default = "LoggingSpec::default_max_body_bytes")]
    pub max_body_bytes: ByteSize,
    #[serde(default)]
    pub redact_headers: Vec<String>,
}

impl LoggingSpec {
    fn default_max_body_bytes() -> ByteSize {
        ByteSize(64 << 10)
    }
}

/// The action a policy names, once "exactly one key" is checked.
pub enum ActionSpec<'a> {
    Firewall(&'a FirewallSpec),
    Ip(&'a IpSpec),
    Logging(&'a LoggingSpec),
    KeyAuth(&'a super::keyauth::KeyAuthSpec),
    Openapi(&'a super::openapi::OpenapiPolicySpec),
    JwtAuth(&'a super::jwtauth::JwtAuthSpec),
    RateLimit(&'a super::ratelimit::RateLimitSpec),
}

impl PolicySpec {
    /// The one action key, or why there is not exactly one.
    pub fn action(&self) -> Result<ActionSpec<'_>, String> {
        let mut found = Vec::new();
        if let Some(spec) = &self.firewall {
            found.push(ActionSpec::Firewall(spec));
        }
        if let Some(spec) = &self.ip {
            found.push(ActionSpec::Ip(spec));
        }
        if let Some(spec) = &self.logging {
            found.push(ActionSpec::Logging(spec));
        }
        if let Some(spec) = &self.keyauth {
            found.push(ActionSpec::KeyAuth(spec));
        }
        if let Some(spec) = &self.openapi {
            found.push(ActionSpec::Openapi(spec));
        }
        if let Some(spec) = &self.jwtauth {
            found.push(ActionSpec::JwtAuth(spec));
        }
        if let Some(spec) = &self.ratelimit {
            found.push(ActionSpec::RateLimit(spec));
        }
        match found.len() {
            1 => Ok(found.remove(0)),
            0 => Err("a policy needs exactly one action: firewall, ip, keyauth, jwtauth, ratelimit, openapi or logging".into()),
            n => Err(format!("a policy has exactly one action, this one has {n}")),
        }
    }
}
