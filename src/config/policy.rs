//! A deployment's `policies:` list: what an operator may write for each
//! policy (match expressions and exactly one action), and the top-level
//! `policy_sets:` of named lists. Compiled into policy chains at load; never
//! read per request.

use std::collections::BTreeMap;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::file::Cidr;
use super::units::{ByteSize, HumanDuration};

/// The top-level `policy_sets:`: named policy lists that routing providers
/// attach to the deployments they build (a Docker container names one with
/// its `keygate.policies` label), by name.
pub type PolicySetsSpec = BTreeMap<String, Vec<PolicySpec>>;

/// One policy of a chain: an id, optional match expressions, and exactly
/// one action key (`firewall`, `ip`, `logging`, `keyauth`, `jwtauth`,
/// `ratelimit` or `openapi`).
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend("oneOf" = [
    {"required": ["firewall"]}, {"required": ["ip"]}, {"required": ["logging"]},
    {"required": ["keyauth"]}, {"required": ["jwtauth"]}, {"required": ["ratelimit"]},
    {"required": ["openapi"]},
]))]
pub struct PolicySpec {
    /// Unique within the chain; names the policy in errors and rate-limit buckets.
    pub id: String,
    /// A label.
    #[serde(default)]
    pub name: Option<String>,
    /// `false` skips the policy (it is still validated).
    #[serde(default = "super::enabled")]
    pub enabled: bool,
    /// Match expressions, all of which must match (AND); empty = every request.
    #[serde(default, rename = "match")]
    pub matches: Vec<MatchSpec>,
    // Exactly one action key; see `ActionSpec::of`.
    /// Action: reject the matching request (403 `firewall_denied`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firewall: Option<FirewallSpec>,
    /// Action: allow and deny lists of client IPs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<IpSpec>,
    /// Action: write a request-log record (`request_log`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logging: Option<LoggingSpec>,
    /// Action: require an API key from keygate's keyspaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyauth: Option<KeyAuthSpec>,
    /// Action: require a JSON Web Token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwtauth: Option<JwtAuthSpec>,
    /// Action: a request rate limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratelimit: Option<RateLimitSpec>,
    /// Action: validate the request against the deployment's OpenAPI document.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub openapi: Option<OpenapiPolicySpec>,
}

/// One match expression: exactly one of `path`, `method`, `header`, `query`.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend("oneOf" = [
    {"required": ["path"]}, {"required": ["method"]}, {"required": ["header"]}, {"required": ["query"]},
]))]
pub struct MatchSpec {
    /// The URL path without the query, as the client sent it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<StringMatchSpec>,
    /// Any of these methods (case-insensitive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<Vec<String>>,
    /// A request header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<FieldMatchSpec>,
    /// A query parameter (names and values compared form-decoded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<FieldMatchSpec>,
}

/// A value test: exactly one of `exact`, `prefix`, `regex`.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend("oneOf" = [{"required": ["exact"]}, {"required": ["prefix"]}, {"required": ["regex"]}]))]
pub struct StringMatchSpec {
    /// The whole value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact: Option<String>,
    /// The value's start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// A Rust `regex` searched in the value (unanchored: write `^…$` to anchor).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
    /// Compare case-insensitively.
    #[serde(default)]
    pub ignore_case: bool,
}

/// A header or query parameter: `{name, present: bool}` or `{name, value: {...}}`.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend("oneOf" = [{"required": ["present"]}, {"required": ["value"]}]))]
pub struct FieldMatchSpec {
    /// The header or parameter name.
    pub name: String,
    /// `true`: it must be there; `false`: it must be absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub present: Option<bool>,
    /// A test any of its values must pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<StringMatchSpec>,
}

/// `firewall: {action: deny}`.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FirewallSpec {
    /// `deny`, the only action: use `match` to say which requests.
    pub action: FirewallActionSpec,
}

/// What a firewall policy does with a matching request.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FirewallActionSpec {
    Deny,
}

/// `ip:` allow and deny lists of the client IP (deny beats allow).
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IpSpec {
    /// When not empty, only these clients are admitted.
    #[serde(default)]
    pub allow: Vec<Cidr>,
    /// These clients get 403 `firewall_denied`.
    #[serde(default)]
    pub deny: Vec<Cidr>,
}

/// `logging:` one JSON record per request to the `request_log` sink.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoggingSpec {
    /// Record request and response bodies too.
    #[serde(default)]
    pub bodies: bool,
    /// Per body, when `bodies` is on.
    #[serde(default = "LoggingSpec::default_max_body_bytes")]
    pub max_body_bytes: ByteSize,
    /// Headers recorded as `[REDACTED]`, besides Authorization (always redacted).
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
            0 => Err(
                "a policy needs exactly one action: firewall, ip, keyauth, jwtauth, ratelimit, openapi or logging"
                    .into(),
            ),
            n => Err(format!("a policy has exactly one action, this one has {n}")),
        }
    }
}

// `keyauth`: API keys.

/// `keyauth:` API keys from the file's keyspaces or the store.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyAuthSpec {
    /// Keyspace ids (at least one) a key may belong to.
    pub keyspaces: Vec<String>,
    /// Where the key is looked for, in order; empty: `[bearer: {}]`.
    #[serde(default)]
    pub locations: Vec<LocationSpec>,
    /// Permissions the key needs, e.g. `api.read AND (api.write OR docs.edit)`.
    #[serde(default)]
    pub permission_query: Option<String>,
    /// Credits per request; 0 verifies without spending.
    #[serde(default = "KeyAuthSpec::default_cost")]
    pub credits: u32,
    /// Rate limits checked for the key: its own or its identity's by name, or inline.
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
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend("oneOf" = [{"required": ["bearer"]}, {"required": ["header"]}, {"required": ["query"]}]))]
pub struct LocationSpec {
    /// `Authorization: Bearer <key>` (scheme case-insensitive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer: Option<BearerSpec>,
    /// A request header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<HeaderLocationSpec>,
    /// A query parameter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<QueryLocationSpec>,
}

/// `bearer: {}` (no fields).
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BearerSpec {}

/// `header: {name, strip_prefix}`.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HeaderLocationSpec {
    /// The header's name.
    pub name: String,
    /// A prefix the value must start with, removed before the lookup (e.g. `"ApiKey "`).
    #[serde(default)]
    pub strip_prefix: Option<String>,
}

/// `query: {name}`.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QueryLocationSpec {
    /// The query parameter's name.
    pub name: String,
}

/// `{name}` (a limit of the key or its identity) or `{name, limit, duration}`.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyRateLimitSpec {
    /// The limit's name.
    pub name: String,
    /// Requests per `duration`, when neither the key nor its identity has a limit by this name.
    #[serde(default)]
    pub limit: Option<u64>,
    /// The window of the inline `limit`.
    #[serde(default)]
    pub duration: Option<HumanDuration>,
}

// `jwtauth`: JSON Web Tokens.

/// `jwtauth:` as written: exactly one key source (`jwks_uri`,
/// `oidc_issuer`, `public_key_pem`, `public_key_file`) and the claim checks.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend("oneOf" = [
    {"required": ["jwks_uri"]}, {"required": ["oidc_issuer"]},
    {"required": ["public_key_pem"]}, {"required": ["public_key_file"]},
]))]
pub struct JwtAuthSpec {
    /// A JSON Web Key Set URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    /// An OpenID Connect issuer: discovery gives the `jwks_uri` (and the default `issuer`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oidc_issuer: Option<String>,
    /// Inline PEM public key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key_pem: Option<String>,
    /// A PEM public key file, relative to the config file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key_file: Option<String>,
    /// The required `iss` claim.
    #[serde(default)]
    pub issuer: Option<String>,
    /// `aud` must contain one of these; empty: not checked.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Accepted asymmetric algorithms (`RS256/384/512`, `PS256/384/512`, `ES256/384`, `EdDSA`).
    #[serde(default = "JwtAuthSpec::default_algorithms")]
    pub algorithms: Vec<String>,
    /// The claim that becomes the Principal's subject.
    #[serde(default = "JwtAuthSpec::default_subject_claim")]
    pub subject_claim: String,
    /// A request without a token passes, without a Principal.
    #[serde(default)]
    pub allow_anonymous: bool,
    /// Leeway for `exp`, `nbf` and `iat`.
    #[serde(default = "JwtAuthSpec::default_clock_skew")]
    pub clock_skew: HumanDuration,
    /// How long a fetched key set is used.
    #[serde(default = "JwtAuthSpec::default_jwks_cache")]
    pub jwks_cache: HumanDuration,
    /// Tokens without `exp` are refused.
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

/// `ratelimit:` an epoch-aligned sliding window per identifier.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSpec {
    /// Requests admitted per window (at least 1).
    pub limit: u64,
    /// The window (more than 0).
    pub window: HumanDuration,
    /// The parts of a bucket's key (1 to 5); default: `[remote_ip: {}]`.
    #[serde(default)]
    pub identifiers: Option<Vec<IdentifierSpec>>,
}

/// One part of a rate-limit bucket's key: exactly one of the keys.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend("oneOf" = [
    {"required": ["remote_ip"]}, {"required": ["header"]}, {"required": ["authenticated_subject"]},
    {"required": ["path"]}, {"required": ["principal_field"]},
]))]
pub struct IdentifierSpec {
    /// The client IP (see `trusted_proxies`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_ip: Option<EmptySpec>,
    /// A request header's first value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<NamedSpec>,
    /// The Principal's subject (needs an auth policy earlier in the chain).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authenticated_subject: Option<EmptySpec>,
    /// The URL path without the query.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<EmptySpec>,
    /// A dotted path into the Principal JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal_field: Option<FieldPathSpec>,
}

/// `{}` (no fields).
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EmptySpec {}

/// `{name}`.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NamedSpec {
    /// A header name.
    pub name: String,
}

/// `{path}`.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FieldPathSpec {
    /// A dotted path, e.g. `source.key.meta.org_id`.
    pub path: String,
}

// `openapi`: request validation.

/// `openapi: {}` — the spec itself is the deployment's `openapi:`.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenapiPolicySpec {}
