//! `apis.*`: keyspaces (Unkey calls them APIs) and the keys in them, and
//! `apis.listApis`, keygate's own: every keyspace, config and store alike.

use serde_json::{json, Value};

use super::input::api_id_field;
use super::shapes::{found_json, page_of};
use super::{api_not_found, find_keyspace, protected, Found};
use crate::admin::envelope::Reply;
use crate::admin::fields::{Fields, Text};
use crate::admin::rpc::{internal, required, Answer};
use crate::clock::now_ms;
use crate::errors::GatewayError;
use crate::keys::model::{new_id, KeyRecord, Keyspace};
use crate::keys::store::StoreError;
use crate::keys::Keys;

fn keyspace_error(error: StoreError, id: &str) -> GatewayError {
    match error {
        StoreError::NotFound => api_not_found(id),
        other => internal(other),
    }
}

pub(in crate::admin) fn create_api(body: &[u8], keys: &Keys) -> Answer {
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
        .map_err(|e| keyspace_error(e, &keyspace.id))?;
    Ok(Reply::data(json!({"apiId": keyspace.id})))
}

pub(in crate::admin) fn get_api(body: &[u8], keys: &Keys) -> Answer {
    let mut f = Fields::parse(body)?;
    let id = api_id_field(&mut f);
    f.finish()?;
    let (keyspace, _) = find_keyspace(keys, &required(id, "apiId")?)?;
    Ok(Reply::data(json!({"id": keyspace.id, "name": keyspace.name})))
}

/// Every keyspace, by id: `[{id, name, source: config|store}]`.
pub(in crate::admin) fn list_apis(body: &[u8], keys: &Keys) -> Answer {
    let mut f = Fields::parse(body)?;
    let limit = f.int("limit", 1, 100, false).unwrap_or(100) as usize;
    let cursor = f.text("cursor", Text::len(1, 1024), false);
    f.finish()?;
    let stored = keys.service.store().list_keyspaces().map_err(internal)?;
    let mut all: Vec<(Keyspace, &str)> = keys.statics.keyspaces().iter().map(|k| (k.clone(), "config")).collect();
    all.extend(stored.into_iter().map(|k| (k, "store")));
    all.sort_by(|a, b| a.0.id.cmp(&b.0.id));
    let after = cursor.as_deref().unwrap_or("");
    let listed = all
        .into_iter()
        .filter(|(k, _)| k.id.as_str() > after)
        .map(|(k, source)| (k.id.clone(), json!({"id": k.id, "name": k.name, "source": source})))
        .collect();
    Ok(page_of(listed, limit))
}

pub(in crate::admin) fn delete_api(body: &[u8], keys: &Keys) -> Answer {
    let mut f = Fields::parse(body)?;
    let id = api_id_field(&mut f);
    f.finish()?;
    let id = required(id, "apiId")?;
    if keys.statics.keyspace(&id).is_some() {
        return Err(protected(&format!("The API {id:?}")));
    }
    keys.service.delete_keyspace(&id).map_err(|e| keyspace_error(e, &id))?;
    Ok(Reply::data(json!({})))
}

pub(in crate::admin) fn list_keys(body: &[u8], keys: &Keys) -> Answer {
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
                .is_none_or(|e| record.identity.as_ref().is_some_and(|i| i.external_id == e))
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
    page.extend(
        stored
            .into_iter()
            .map(|s| (s.record.id.clone(), found_json(keys, &Found::Stored(Box::new(s))))),
    );
    page.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(page_of(page, limit))
}
