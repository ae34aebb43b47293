//! What a replica tells the others after it changed the shared store, so
//! their caches drop what went stale at once instead of after a TTL. The
//! text form is the PostgreSQL `NOTIFY` payload.

use super::model::KeyHash;

/// One change to the shared store, as caches need to know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A key was created, changed or deleted: forget its hash.
    Key(KeyHash),
    /// An identity changed: forget its keys.
    Identity(String),
    /// Roles or their permissions changed; with `records_rewritten`, key
    /// records were rewritten too (a rename or a deletion).
    Roles { records_rewritten: bool },
    /// Rate-limit overrides changed.
    Overrides,
    /// The control plane's records (deployments) changed.
    Records,
    /// Anything may have changed (notifications were missed): forget everything.
    Everything,
}

impl Change {
    /// The payload: `key:<hex hash>`, `identity:<externalId>`, `roles:0|1`,
    /// `overrides`, `records` or `everything`.
    pub fn encode(&self) -> String {
        match self {
            Self::Key(hash) => format!("key:{}", hex(hash)),
            Self::Identity(external_id) => format!("identity:{external_id}"),
            Self::Roles { records_rewritten } => format!("roles:{}", u8::from(*records_rewritten)),
            Self::Overrides => "overrides".into(),
            Self::Records => "records".into(),
            Self::Everything => "everything".into(),
        }
    }

    /// A payload of [`Self::encode`]; anything else is `None` (a newer
    /// replica's change kind is ignored, not misread).
    pub fn decode(text: &str) -> Option<Self> {
        let (kind, value) = text.split_once(':').unwrap_or((text, ""));
        match (kind, value) {
            ("key", hash) => unhex(hash).map(Self::Key),
            ("identity", external_id) if !external_id.is_empty() => Some(Self::Identity(external_id.into())),
            ("roles", "0") => Some(Self::Roles {
                records_rewritten: false,
            }),
            ("roles", "1") => Some(Self::Roles {
                records_rewritten: true,
            }),
            ("overrides", "") => Some(Self::Overrides),
            ("records", "") => Some(Self::Records),
            ("everything", "") => Some(Self::Everything),
            _ => None,
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<KeyHash> {
    let mut hash = [0u8; 32];
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    for (i, byte) in hash.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip_and_garbage_is_ignored() {
        let changes = [
            Change::Key([0xab; 32]),
            Change::Identity("user:42".into()),
            Change::Roles {
                records_rewritten: true,
            },
            Change::Roles {
                records_rewritten: false,
            },
            Change::Overrides,
            Change::Everything,
        ];
        for change in changes {
            assert_eq!(Change::decode(&change.encode()), Some(change.clone()), "{change:?}");
        }
        for garbage in [
            "",
            "key:zz",
            "key:abcd",
            "roles:2",
            "identity:",
            "later:1",
            "overrides:x",
        ] {
            assert_eq!(Change::decode(garbage), None, "{garbage}");
        }
    }
}
