//! `apis.*`: keyspaces (Unkey calls them APIs) and the keys in them.

use serde_json::{json, Value};

use super::input::api_id_field;
use super::shapes::found_json;
use super::{api_not_found, find_keyspace, internal, protected, required, store_error, Found, Reply};
use crate::admin::fields::{Fields, Text};
use crate::errors::GatewayError;
use crate::keys::model::{new_id, KeyRecord, Keyspace};
use crate::clock::now_ms;
use crate::keys::Keys;

// ---------------------------------------------------------------------------
// apis.*
// ---------------------------------------------------------------------------

pub(super) fn create_api(body: &[u8], keys: &Keys) -> Result<Reply, GatewayError> {
    let mut f = Fields::parse(body)?;
    let name = f.text("name", Text::len(3, 256), true);
    f.finish()?;
    let keyspace = Keyspace {
        id: new_id("api"),
        name: required(name, "name")?,
        created_at: now_ms(),
    };
    keys.service
        .store()
        .create_keyspace(&keyspace)
        .map_err(|e| store_error(e, || api_not_found(&keyspace.id)))?;
    Ok(Reply::data(json!({"apiId": keyspace.id})))
}

pub(super) fn get_api(body: &[u8], keys: &Keys) -> Result<Reply, GatewayError> {
    let mut f = Fields::parse(body)?;
    let id = api_id_field(&mut f);
    f.finish()?;
    let (keyspace, _) = find_keyspace(keys, &required(id, "apiId")?)?;
    Ok(Reply::data(json!({"id": keyspace.id, "name": keyspace.name})))
}

pub(super) fn delete_api(body: &[u8], keys: &Keys) -> Result<Reply, GatewayError> {
    let mut f = Fields::parse(body)?;
    let id = api_id_field(&mut f);
    f.finish()?;
    let id = required(id, "apiId")?;
    if keys.statics.keyspace(&id).is_some() {
        return Err(protected(&format!("The API {id:?}")));
    }
    keys.service.delete_keyspace(&id).map_err(|e| store_error(e, || api_not_found(&id)))?;
    Ok(Reply::data(json!({})))
}

pub(super) fn list_keys(body: &[u8], keys: &Keys) -> Result<Reply, GatewayError> {
    let mut f = Fields::parse(body)?;
    let id = f.text("apiId", Text::len(1, 255), true);
    let limit = f.int("limit", 1, 100, false).unwrap_or(100) as usize;
    let cursor = f.text("cursor", Text::len(1, 1024), false);
    let external_id = f.text("externalId", Text::len(1, 255), false);
    // Plaintext is never stored: `decrypt` has nothing to return.
    f.boolean("decrypt");
    f.boolean("revalidateKeysCache");
    f.finish()?;
    let id = required(id, "apiId")?;
    find_keyspace(keys, &id)?;
    let after = cursor.as_deref().unwrap_or("");
    let wanted = |record: &KeyRecord| {
        record.id.as_str() > after
            && external_id
                .as_deref()
                .map_or(true, |e| record.identity.as_ref().is_some_and(|i| i.external_id == e))
    };
    let mut page: Vec<(String, Value)> = keys
        .statics
        .keys_in(&id)
        .into_iter()
        .filter(|k| wanted(&k.record))
        .map(|k| (k.record.id.clone(), found_json(keys, &Found::Static(k.clone()))))
        .collect();
    let stored = keys
        .service
        .store()
        .list_keys(&id, cursor.as_deref(), limit + 1, external_id.as_deref())
        .map_err(internal)?;
    page.extend(stored.into_iter().map(|s| (s.record.id.clone(), found_json(keys, &Found::Stored(Box::new(s))))));
    page.sort_by(|a, b| a.0.cmp(&b.0));
    let has_more = page.len() > limit;
    page.truncate(limit);
    let mut pagination = json!({"hasMore": has_more});
    if has_more {
        if let Some((last, _)) = page.last() {
            pagination["cursor"] = json!(last);
        }
    }
    Ok(Reply {
        data: Value::Array(page.into_iter().map(|(_, v)| v).collect()),
        pagination: Some(pagination),
    })
}
