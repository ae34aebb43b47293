//! The `keyspaces:` section: keyspaces declared in the file and their
//! static keys (local testing, and keys every replica must agree on).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::units::HumanDuration;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyspaceSpec {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub keys: Vec<StaticKeySpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticKeySpec {
    pub id: String,
    /// The plaintext (local testing only) ...
    #[serde(default)]
    pub key: Option<String>,
    /// ... or `sha256:<hex>`.
    #[serde(default)]
    pub hash: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub meta: Map<String, Value>,
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub permissions: Vec<String>,
    #[serde(default)]
    pub identity: Option<IdentitySpec>,
    /// RFC 3339 or unix ms.
    #[serde(default)]
    pub expires: Option<ExpiresSpec>,
    #[serde(default = "super::enabled")]
    pub enabled: bool,
    #[serde(default)]
    pub credits: Option<CreditsSpec>,
    #[serde(default)]
    pub ratelimits: Vec<NamedLimitSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentitySpec {
    pub external_id: String,
    #[serde(default)]
    pub meta: Map<String, Value>,
    #[serde(default)]
    pub ratelimits: Vec<NamedLimitSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum ExpiresSpec {
    UnixMs(i64),
    Rfc3339(String),
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreditsSpec {
    pub remaining: i64,
    #[serde(default)]
    pub refill: Option<RefillSpec>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefillSpec {
    pub interval: RefillIntervalSpec,
    pub amount: i64,
    #[serde(default)]
    pub refill_day: Option<u8>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamedLimitSpec {
    pub name: String,
    pub limit: u64,
    pub duration: HumanDuration,
    #[serde(default)]
    pub auto_apply: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RefillIntervalSpec {
    Daily,
    Monthly,
}
