//! The `state:` section: where keygate keeps what it must not lose, and the
//! Redis URL replicas share counters through.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::units::HumanDuration;

/// The `state:` section.
#[derive(Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StateSpec {
    /// Relative to the config file's directory; default `state/`.
    #[serde(default)]
    pub dir: Option<String>,
    /// e.g. `redis://127.0.0.1:6379`; shared counters across replicas.
    /// Its password is masked by `keygate config print`.
    #[serde(default, serialize_with = "super::mask::url_password")]
    pub redis: Option<String>,
    /// How often rate-limit counts are exchanged through Redis (default 50ms).
    #[serde(default)]
    pub sync_interval: Option<HumanDuration>,
    /// Credits a replica takes from Redis at a time (default 1: exact and
    /// always current; more saves round trips, and unspent leases go back
    /// after a second without use).
    #[serde(default)]
    pub credit_lease: Option<u32>,
    /// Credits per key a replica may spend while Redis is unreachable, on
    /// top of its lease (default 10): the bound on over-spending.
    #[serde(default)]
    pub outage_credits: Option<u32>,
}
