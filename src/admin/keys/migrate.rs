//! `keys.migrateKeys`: keys created elsewhere, imported by the SHA-256 of
//! their plaintext (which never leaves the old system), with the same
//! settings `keys.createKey` takes. Unkey's schema requires a
//! `migrationId`; keygate has no migration configurations and accepts any.
//! A hash is 64 hex digits, `sha256:<hex>`, or the 32 bytes in base64
//! (Unkey's encoding). A key whose hash is already stored is `failed`.

use base64::Engine as _;
use serde_json::json;

use super::find_keyspace;
use super::lifecycle::{adopt_references, read_new_key, NewKey};
use crate::admin::envelope::Reply;
use crate::admin::fields::{Fields, Patch, Text};
use crate::admin::rpc::{internal, required, Answer};
use crate::clock::now_ms;
use crate::keys::model::{parse_hash, KeyHash};
use crate::keys::store::StoreError;
use crate::keys::Keys;

/// Keys one call migrates at most.
const MAX_KEYS: usize = 1000;

/// A SHA-256 as hex, `sha256:<hex>` or base64.
fn parse_any_hash(text: &str) -> Option<KeyHash> {
    if let Some(hash) = parse_hash(text).or_else(|| parse_hash(&format!("sha256:{text}"))) {
        return Some(hash);
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text))
        .ok()?;
    KeyHash::try_from(bytes).ok()
}

pub(in crate::admin) fn migrate_keys(body: &[u8], keys: &Keys) -> Answer {
    let mut f = Fields::parse(body)?;
    f.text("migrationId", Text::len(3, 255), true);
    let api_id = f.text("apiId", Text::len(3, 255), true);
    let mut wanted: Vec<(String, KeyHash, NewKey)> = Vec::new();
    match f.nested_list("keys", MAX_KEYS) {
        Patch::Set(items) => {
            for mut item in items {
                let text = item.text("hash", Text::len(3, 512), true);
                let hash = text.as_deref().and_then(parse_any_hash);
                if text.is_some() && hash.is_none() {
                    item.reject(
                        "hash",
                        "expected a SHA-256: 64 hex digits, sha256:<hex> or 32 bytes in base64",
                    );
                }
                let settings = read_new_key(&mut item);
                f.absorb(item);
                if let (Some(text), Some(hash)) = (text, hash) {
                    wanted.push((text, hash, settings));
                }
            }
        }
        Patch::Keep | Patch::Clear => f.reject("keys", "is required (an array of keys)"),
    }
    f.finish()?;
    let api_id = required(api_id, "apiId")?;
    find_keyspace(keys, &api_id)?;
    let now = now_ms();
    let (mut migrated, mut failed) = (Vec::new(), Vec::new());
    for (text, hash, settings) in wanted {
        let stored = settings.into_stored(api_id.clone(), hash, String::new(), now);
        adopt_references(keys, &stored.record)?;
        match keys.service.insert_key(&stored) {
            Ok(()) => migrated.push(json!({"hash": text, "keyId": stored.record.id})),
            Err(StoreError::Conflict(_)) => failed.push(text),
            Err(other) => return Err(internal(other)),
        }
    }
    Ok(Reply::data(json!({"migrated": migrated, "failed": failed})))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::model::hash_key;

    #[test]
    fn hashes_in_every_encoding() {
        let hash = hash_key("sk_old");
        let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
        let b64 = base64::engine::general_purpose::STANDARD.encode(hash);
        for text in [hex.clone(), format!("sha256:{hex}"), hex.to_uppercase(), b64] {
            assert_eq!(parse_any_hash(&text), Some(hash), "{text}");
        }
        assert_eq!(parse_any_hash("abcd"), None);
        assert_eq!(parse_any_hash("not base64!"), None);
    }
}
