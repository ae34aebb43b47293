//! The `state:` section: where keygate keeps what it must not lose, the
//! PostgreSQL database replicas share keys through, and the Redis URL they
//! share counters through.

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
    /// e.g. `postgres://keygate:${PGPASSWORD}@db:5432/keygate`: keyspaces,
    /// keys, identities, permissions, roles and rate-limit overrides live
    /// there, shared by every replica, instead of in `dir`. Its password is
    /// masked by `keygate config print`.
    #[serde(default, serialize_with = "super::mask::url_password")]
    pub database: Option<String>,
    /// With `database`: how long a verified key is served from a replica's
    /// cache (changes reach every replica at once through the database's
    /// notifications; this bounds how long keys keep verifying while the
    /// database is unreachable). Default 10m.
    #[serde(default)]
    pub cache_ttl: Option<HumanDuration>,
    /// e.g. `redis://127.0.0.1:6379`; shared counters across replicas.
    /// Its password is masked by `keygate config print`.
    #[serde(default, serialize_with = "super::mask::url_password")]
    pub redis: Option<String>,
    /// How often rate-limit counts are exchanged through Redis (default 50ms).
    #[serde(default)]
    pub sync_interval: Option<HumanDuration>,
    /// Credits a replica takes from the shared ledger (Redis or the
    /// database) at a time (default 1: exact and
    /// always current; more saves round trips, and unspent leases go back
    /// after a second without use).
    #[serde(default)]
    pub credit_lease: Option<u32>,
    /// Credits per key a replica may spend while the shared ledger is unreachable, on
    /// top of its lease (default 10): the bound on over-spending.
    #[serde(default)]
    pub outage_credits: Option<u32>,
}
