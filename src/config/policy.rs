//! A deployment's `policies:` list: what an operator may write for each
//! policy (match expressions and exactly one action), and the top-level
//! `policy_sets:` of named lists. Compiled into policy chains at load; never
//! read per request.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::file::Cidr;
use super::units::{ByteSize, HumanDuration};

/// The top-level `policy_sets:`: named policy lists that routing providers
/// attach to the deployments they build (a Docker container names one with
/// its `keygate.policies` label), by name.
pub type PolicySetsSpec = BTreeMap<String, Vec<PolicySpec>>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySpec {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default = "super::enabled")]
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
    pub keyauth: Option<KeyAuthSpec>,
    #[serde(default)]
    pub jwtauth: Option<JwtAuthSpec>,
    #[serde(default)]
    pub ratelimit: Option<RateLimitSpec>,
    #[serde(default)]
    pub openapi: Option<OpenapiPolicySpec>,
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
    KeyAuth(&'a KeyAuthSpec),
    Openapi(&'a OpenapiPolicySpec),
    JwtAuth(&'a JwtAuthSpec),
    RateLimit(&'a RateLimitSpec),
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

// `keyauth`: API keys.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyAuthSpec {
    pub keyspaces: Vec<String>,
    /// Default: `[bearer: {}]`.
    #[serde(default)]
    pub locations: Vec<LocationSpec>,
    #[serde(default)]
    pub permission_query: Option<String>,
    /// Credits per request; 0 verifies without spending.
    #[serde(default = "KeyAuthSpec::default_cost")]
    pub credits: u32,
    #[serde(default)]
    pub ratelimits: Vec<KeyRateLimitSpec>,
    /// Remove the key from the request before it goes to the instance.
    #[serde(default)]
    pub strip_credential: bool,
}

impl KeyAuthSpec {
    fn default_cost() -> u32 {
        1
    }
}

/// One of `bearer: {}`, `header: {name, strip_prefix}`, `query: {name}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocationSpec {
    #[serde(default)]
    pub bearer: Option<BearerSpec>,
    #[serde(default)]
    pub header: Option<HeaderLocationSpec>,
    #[serde(default)]
    pub query: Option<QueryLocationSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BearerSpec {}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderLocationSpec {
    pub name: String,
    #[serde(default)]
    pub strip_prefix: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryLocationSpec {
    pub name: String,
}

/// `{name}` (a limit of the key or its identity) or `{name, limit, duration}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRateLimitSpec {
    pub name: String,
    #[serde(default)]
    pub limit: Option<u64>,
    #[serde(default)]
    pub duration: Option<HumanDuration>,
}

// `jwtauth`: JSON Web Tokens.

/// `jwtauth:` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtAuthSpec {
    #[serde(default)]
    pub jwks_uri: Option<String>,
    #[serde(default)]
    pub oidc_issuer: Option<String>,
    /// Inline PEM public key.
    #[serde(default)]
    pub public_key_pem: Option<String>,
    /// A PEM public key file, relative to the config file.
    #[serde(default)]
    pub public_key_file: Option<String>,
    #[serde(default)]
    pub issuer: Option<String>,
    #[serde(default)]
    pub audiences: Vec<String>,
    #[serde(default = "JwtAuthSpec::default_algorithms")]
    pub algorithms: Vec<String>,
    #[serde(default = "JwtAuthSpec::default_subject_claim")]
    pub subject_claim: String,
    #[serde(default)]
    pub allow_anonymous: bool,
    #[serde(default = "JwtAuthSpec::default_clock_skew")]
    pub clock_skew: HumanDuration,
    #[serde(default = "JwtAuthSpec::default_jwks_cache")]
    pub jwks_cache: HumanDuration,
    #[serde(default = "JwtAuthSpec::default_require_exp")]
    pub require_exp: bool,
}

impl JwtAuthSpec {
    fn default_algorithms() -> Vec<String> {
        vec!["RS256".into()]
    }
    fn default_subject_claim() -> String {
        "sub".into()
    }
    fn default_clock_skew() -> HumanDuration {
        HumanDuration(Duration::from_secs(30))
    }
    fn default_jwks_cache() -> HumanDuration {
        HumanDuration(Duration::from_secs(3600))
    }
    fn default_require_exp() -> bool {
        true
    }
}

// `ratelimit`: request rate limits.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSpec {
    pub limit: u64,
    pub window: HumanDuration,
    /// Default: `[remote_ip: {}]`.
    #[serde(default)]
    pub identifiers: Option<Vec<IdentifierSpec>>,
}

/// Exactly one of the keys.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentifierSpec {
    #[serde(default)]
    pub remote_ip: Option<EmptySpec>,
    #[serde(default)]
    pub header: Option<NamedSpec>,
    #[serde(default)]
    pub authenticated_subject: Option<EmptySpec>,
    #[serde(default)]
    pub path: Option<EmptySpec>,
    #[serde(default)]
    pub principal_field: Option<FieldPathSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmptySpec {}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamedSpec {
    pub name: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldPathSpec {
    pub path: String,
}

// `openapi`: request validation.

/// `openapi: {}` — the spec itself is the deployment's `openapi:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenapiPolicySpec {}
