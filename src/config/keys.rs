//! The `keyspaces:` section: keyspaces declared in the file and their
//! static keys (local testing, and keys every replica must agree on).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::units::HumanDuration;

/// A keyspace (Unkey's API; its id is the `apiId`) and its static keys.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyspaceSpec {
    /// Letters, digits and `_` (at most 255).
    pub id: String,
    /// Default: the id.
    #[serde(default)]
    pub name: Option<String>,
    /// Keys every replica agrees on (read-only through the admin API).
    #[serde(default)]
    pub keys: Vec<StaticKeySpec>,
}

/// A static key: exactly one of `key` (the plaintext) and `hash`.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend("oneOf" = [{"required": ["key"]}, {"required": ["hash"]}]))]
pub struct StaticKeySpec {
    /// Letters, digits and `_`; unique across the file.
    pub id: String,
    /// The plaintext (local testing only) ... Masked by `keygate config print`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "super::mask::secret"
    )]
    pub key: Option<String>,
    /// ... or `sha256:<hex>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    /// A label.
    #[serde(default)]
    pub name: Option<String>,
    /// Free-form JSON, part of the Principal.
    #[serde(default)]
    pub meta: Map<String, Value>,
    /// Labels; they carry no permissions.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Permissions; `a.*` grants everything under `a.`, `*` everything.
    #[serde(default)]
    pub permissions: Vec<String>,
    /// The identity (user, tenant) the key belongs to.
    #[serde(default)]
    pub identity: Option<IdentitySpec>,
    /// RFC 3339 or unix ms.
    #[serde(default)]
    pub expires: Option<ExpiresSpec>,
    /// `false`: the key is refused.
    #[serde(default = "super::enabled")]
    pub enabled: bool,
    /// A credit balance; none: unlimited.
    #[serde(default)]
    pub credits: Option<CreditsSpec>,
    /// The key's named rate limits.
    #[serde(default)]
    pub ratelimits: Vec<NamedLimitSpec>,
}

/// A static key's identity.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IdentitySpec {
    /// The Principal's subject.
    pub external_id: String,
    /// Free-form JSON, part of the Principal.
    #[serde(default)]
    pub meta: Map<String, Value>,
    /// Limits shared by every key of the identity.
    #[serde(default)]
    pub ratelimits: Vec<NamedLimitSpec>,
}

/// When a key expires: unix milliseconds or an RFC 3339 time.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum ExpiresSpec {
    UnixMs(i64),
    Rfc3339(String),
}

/// A key's credit balance.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreditsSpec {
    /// The starting balance (0 or more).
    pub remaining: i64,
    /// Replaces the balance periodically.
    #[serde(default)]
    pub refill: Option<RefillSpec>,
}

/// `refill:` the balance becomes `amount` at 00:00 UTC daily, or monthly on `refill_day`.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RefillSpec {
    /// `daily` or `monthly`.
    pub interval: RefillIntervalSpec,
    /// The balance after a refill.
    pub amount: i64,
    /// Monthly only: 1–31, clamped to the month's last day.
    #[serde(default)]
    pub refill_day: Option<u8>,
}

/// A named rate limit of a key or identity.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NamedLimitSpec {
    /// The name `keyauth` policies refer to.
    pub name: String,
    /// Requests per `duration`.
    pub limit: u64,
    /// The window.
    pub duration: HumanDuration,
    /// Checked on every verification of the key, not only when a policy names it.
    #[serde(default)]
    pub auto_apply: bool,
}

/// How often credits refill.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RefillIntervalSpec {
    Daily,
    Monthly,
}
