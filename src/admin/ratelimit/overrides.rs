//! `ratelimit.setOverride`, `getOverride`, `listOverrides`,
//! `deleteOverride`: per namespace, a different limit and duration for the
//! identifiers an override matches — exactly, or by a pattern with `*`
//! (the exact one, else the most specific pattern, wins). A namespace is
//! created by its first override and named by name or id (`rlns_…`) here;
//! `ratelimit.limit` and `ratelimit` policies (whose namespace is the
//! policy's id) apply overrides from the next decision on.

use serde_json::{json, Value};

use super::{MAX_DURATION_MS, NAME};
use crate::admin::envelope::Reply;
use crate::admin::fields::{Fields, Text};
use crate::admin::keys::shapes::page_of;
use crate::admin::rpc::{internal, refusal, required, Answer};
use crate::clock::now_ms;
use crate::errors::{ErrorCode, GatewayError};
use crate::keys::catalogue::Namespace;
use crate::keys::model::new_id;
use crate::keys::store::StoreError;
use crate::keys::Keys;
use crate::ratelimit::overrides::Override;

fn override_json(item: &Override) -> Value {
    json!({"overrideId": item.id, "identifier": item.identifier, "limit": item.limit, "duration": item.duration_ms})
}

fn namespace_not_found(name: &str) -> GatewayError {
    refusal(
        ErrorCode::RatelimitNamespaceNotFound,
        &format!("The namespace {name:?}"),
        "does not exist (a namespace exists once it has an override)",
    )
}

fn override_not_found(identifier: &str) -> GatewayError {
    refusal(
        ErrorCode::RatelimitOverrideNotFound,
        &format!("The override for {identifier:?}"),
        "does not exist",
    )
}

fn find_namespace(keys: &Keys, name: &str) -> Result<Namespace, GatewayError> {
    keys.service
        .catalogue()
        .namespace(name)
        .map_err(internal)?
        .ok_or_else(|| namespace_not_found(name))
}

/// `{namespace, identifier}` of get and delete.
fn read_target(body: &[u8]) -> Result<(String, String), GatewayError> {
    let mut f = Fields::parse(body)?;
    let namespace = f.text("namespace", NAME, true);
    let identifier = f.text("identifier", NAME, true);
    f.finish()?;
    Ok((required(namespace, "namespace")?, required(identifier, "identifier")?))
}

/// Makes the stored overrides the limiter's.
fn changed(keys: &Keys) -> Result<(), GatewayError> {
    keys.service.overrides_changed().map_err(internal)
}

pub(in crate::admin) fn set_override(body: &[u8], keys: &Keys) -> Answer {
    let mut f = Fields::parse(body)?;
    let namespace = f.text("namespace", NAME, true);
    let identifier = f.text("identifier", NAME, true);
    let limit = f.int("limit", 0, i64::MAX, true);
    let duration = f.int("duration", 1, MAX_DURATION_MS, true);
    f.finish()?;
    let name = required(namespace, "namespace")?;
    let catalogue = keys.service.catalogue();
    let namespace = match catalogue.namespace(&name).map_err(internal)? {
        Some(existing) => existing,
        None => catalogue.ensure_namespace(&name, now_ms()).map_err(internal)?,
    };
    let wanted = Override {
        id: new_id("rlor"),
        namespace: namespace.name.clone(),
        identifier: required(identifier, "identifier")?,
        limit: required(limit, "limit")? as u64,
        duration_ms: required(duration, "duration")? as u64,
    };
    let stored = catalogue
        .set_override(&namespace, &wanted, now_ms())
        .map_err(internal)?;
    changed(keys)?;
    Ok(Reply::data(json!({"overrideId": stored.id})))
}

pub(in crate::admin) fn get_override(body: &[u8], keys: &Keys) -> Answer {
    let (name, identifier) = read_target(body)?;
    let namespace = find_namespace(keys, &name)?;
    let found = keys
        .service
        .catalogue()
        .override_of(&namespace, &identifier)
        .map_err(internal)?;
    Ok(Reply::data(override_json(
        &found.ok_or_else(|| override_not_found(&identifier))?,
    )))
}

pub(in crate::admin) fn list_overrides(body: &[u8], keys: &Keys) -> Answer {
    let mut f = Fields::parse(body)?;
    let namespace = f.text("namespace", NAME, true);
    let cursor = f.text("cursor", Text::len(1, 1024), false);
    let limit = f.int("limit", 1, 100, false).unwrap_or(10) as usize;
    f.finish()?;
    let namespace = find_namespace(keys, &required(namespace, "namespace")?)?;
    let found = keys
        .service
        .catalogue()
        .list_overrides(&namespace, cursor.as_deref(), limit + 1)
        .map_err(internal)?;
    Ok(page_of(
        found.iter().map(|o| (o.id.clone(), override_json(o))).collect(),
        limit,
    ))
}

pub(in crate::admin) fn delete_override(body: &[u8], keys: &Keys) -> Answer {
    let (name, identifier) = read_target(body)?;
    let namespace = find_namespace(keys, &name)?;
    keys.service
        .catalogue()
        .delete_override(&namespace, &identifier)
        .map_err(|e| match e {
            StoreError::NotFound => override_not_found(&identifier),
            other => internal(other),
        })?;
    changed(keys)?;
    Ok(Reply::data(json!({})))
}
