//! The key data model (Unkey v2 field names): keyspaces ("APIs"),
//! key records as stored, and how keys and ids are generated and hashed.
//! A key's plaintext exists only in the create/reroll answer; everything
//! here holds its SHA-256.

use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// SHA-256 of a key's plaintext: the only form a key is kept in.
pub type KeyHash = [u8; 32];

pub fn hash_key(plaintext: &str) -> KeyHash {
    let digest = ring::digest::digest(&ring::digest::SHA256, plaintext.as_bytes());
    let mut hash = [0u8; 32];
    hash.copy_from_slice(digest.as_ref());
    hash
}

/// `sha256:<hex>` (hex case-insensitive) as written in static key config.
pub fn parse_hash(text: &str) -> Option<KeyHash> {
    let hex = text.strip_prefix("sha256:")?;
    if hex.len() != 64 {
        return None;
    }
    let mut hash = [0u8; 32];
    for (i, byte) in hash.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(hash)
}

/// A new id: `prefix_` + base58 of 16 random bytes (Unkey's id shape).
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", random_base58(16))
}

fn random_base58(bytes: usize) -> String {
    let mut raw = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    bs58::encode(raw).into_string()
}

/// A freshly generated key: shown once, then only its hash is kept.
pub struct NewKey {
    pub plaintext: String,
    /// The first characters, for display (`prefix_` + 4).
    pub start: String,
    pub hash: KeyHash,
}

/// `prefix_` + base58 of `byte_length` bytes from the OS CSPRNG.
pub fn generate_key(prefix: Option<&str>, byte_length: usize) -> NewKey {
    let body = random_base58(byte_length);
    let lead: String = body.chars().take(4).collect();
    let (plaintext, start) = match prefix {
        Some(prefix) => (format!("{prefix}_{body}"), format!("{prefix}_{lead}")),
        None => (body.clone(), lead),
    };
    NewKey {
        hash: hash_key(&plaintext),
        plaintext,
        start,
    }
}

/// A keyspace (Unkey: an API). Its id is the `apiId`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keyspace {
    pub id: String,
    pub name: String,
    pub created_at: i64,
}

/// A key as stored: everything but its hash and live credit balance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyRecord {
    pub id: String,
    pub keyspace_id: String,
    pub start: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub meta: Map<String, Value>,
    #[serde(default)]
    pub identity: Option<Identity>,
    /// Sorted, unique.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Sorted, unique.
    #[serde(default)]
    pub permissions: Vec<String>,
    /// Unix ms.
    #[serde(default)]
    pub expires: Option<i64>,
    pub enabled: bool,
    /// `None`: unlimited. The balance itself lives in the credit ledger.
    #[serde(default)]
    pub credits: Option<CreditPlan>,
    #[serde(default)]
    pub ratelimits: Vec<RateLimit>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// The identity a key belongs to (Unkey: `externalId`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Identity {
    pub external_id: String,
    #[serde(default)]
    pub meta: Map<String, Value>,
    #[serde(default)]
    pub ratelimits: Vec<RateLimit>,
}

impl Identity {
    pub fn new(external_id: String) -> Self {
        Self {
            external_id,
            meta: Map::new(),
            ratelimits: Vec::new(),
        }
    }

    /// Unkey's identity `id`: derived from the external id, so every key of
    /// one identity reports the same id without an identities table.
    pub fn id(&self) -> String {
        let digest = hash_key(&self.external_id);
        format!("id_{}", bs58::encode(&digest[..12]).into_string())
    }
}

/// Limited usage, with an optional refill schedule.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreditPlan {
    #[serde(default)]
    pub refill: Option<Refill>,
}

/// The balance is *replaced* by `amount` at 00:00 UTC (daily) or
/// on `refill_day` (monthly, clamped to the month's last day).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Refill {
    pub interval: RefillInterval,
    pub amount: i64,
    #[serde(default)]
    pub refill_day: Option<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RefillInterval {
    Daily,
    Monthly,
}

impl RefillInterval {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Daily => "daily",
            Self::Monthly => "monthly",
        }
    }
}

/// A named rate limit on a key or identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RateLimit {
    pub id: String,
    pub name: String,
    pub limit: u64,
    /// Window length in ms.
    pub duration: u64,
    pub auto_apply: bool,
}

/// A credit balance and the refill period it belongs to (see `credits`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Balance {
    pub remaining: i64,
    pub period: i64,
}

/// A key row: its record, hash and persisted balance.
#[derive(Debug, Clone)]
pub struct StoredKey {
    pub hash: KeyHash,
    pub record: KeyRecord,
    /// The last persisted balance; `None` for unlimited keys.
    pub balance: Option<Balance>,
}

/// Sorts and deduplicates a role or permission list.
pub fn normalized(mut list: Vec<String>) -> Vec<String> {
    list.sort();
    list.dedup();
    list
}

/// Records for tests: an enabled key with nothing else set.
#[cfg(test)]
impl KeyRecord {
    pub(crate) fn bare(id: &str, keyspace_id: &str, start: &str) -> Self {
        Self {
            id: id.into(),
            keyspace_id: keyspace_id.into(),
            start: start.into(),
            name: None,
            meta: Map::new(),
            identity: None,
            roles: vec![],
            permissions: vec![],
            expires: None,
            enabled: true,
            credits: None,
            ratelimits: vec![],
            created_at: 0,
            updated_at: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_have_prefix_start_and_hash() {
        let key = generate_key(Some("prod"), 16);
        assert!(key.plaintext.starts_with("prod_"));
        assert!(key.plaintext.len() > "prod_".len() + 20);
        assert!(key.plaintext.starts_with(&key.start));
        assert_eq!(key.start.len(), "prod_".len() + 4);
        assert_eq!(key.hash, hash_key(&key.plaintext));
        assert_ne!(generate_key(None, 16).plaintext, generate_key(None, 16).plaintext);
    }

    #[test]
    fn hashes_parse_case_insensitively() {
        let hash = hash_key("abc");
        let hex: String = hash.iter().map(|b| format!("{b:02X}")).collect();
        assert_eq!(parse_hash(&format!("sha256:{hex}")), Some(hash));
        assert_eq!(parse_hash(&format!("sha256:{}", hex.to_lowercase())), Some(hash));
        assert_eq!(parse_hash(&hex), None);
        assert_eq!(parse_hash("sha256:abcd"), None);
        assert_eq!(parse_hash(&format!("sha256:{}", "zz".repeat(32))), None);
    }

    #[test]
    fn identity_ids_are_stable() {
        assert_eq!(Identity::new("u1".into()).id(), Identity::new("u1".into()).id());
        assert_ne!(Identity::new("u1".into()).id(), Identity::new("u2".into()).id());
    }
}
