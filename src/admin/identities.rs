//! `identities.*`: the identities keys belong to. An identity is named by
//! its `externalId` (a key's `externalId` is its identity) and owns the
//! `meta` the Principal shows and rate limits every key of it shares.
//! Creating a key with an unknown externalId creates its identity; deleting
//! an identity leaves its keys without one. Changes apply to cached keys at once.

use serde_json::{json, Map};

use super::envelope::Reply;
use super::fields::{Fields, Patch, Text};
use super::keys::input::{read_ratelimits, set_or, EXTERNAL_ID};
use super::keys::shapes::{identity_json, Listing};
use super::rpc::{internal, refusal, required, store_error, Answer};
use crate::clock::now_ms;
use crate::errors::{ErrorCode, GatewayError};
use crate::keys::model::Identity;
use crate::keys::store::StoreError;
use crate::keys::Keys;

/// `identity` (id or externalId); older SDKs send `identityId` or `externalId`.
fn identity_field(f: &mut Fields) -> Option<String> {
    let rules = Text::len(1, 255);
    let named = f.text("identity", rules, false);
    let by_id = f.text("identityId", rules, false);
    let by_external_id = f.text("externalId", rules, false);
    let found = named.or(by_id).or(by_external_id);
    if found.is_none() {
        f.reject("identity", "is required (the identity's id or externalId)");
    }
    found
}

fn not_found(name: &str) -> GatewayError {
    refusal(
        ErrorCode::IdentityNotFound,
        &format!("The identity {name:?}"),
        "does not exist",
    )
}

fn find(keys: &Keys, name: &str) -> Result<Identity, GatewayError> {
    keys.service
        .catalogue()
        .identity(name)
        .map_err(internal)?
        .ok_or_else(|| not_found(name))
}

pub(super) fn create_identity(body: &[u8], keys: &Keys) -> Answer {
    let mut f = Fields::parse(body)?;
    let external_id = f.text("externalId", EXTERNAL_ID, true);
    let meta = set_or(f.object_patch("meta", 100), Map::new());
    let ratelimits = set_or(read_ratelimits(&mut f), Vec::new());
    f.finish()?;
    let identity = Identity {
        external_id: required(external_id, "externalId")?,
        meta,
        ratelimits,
    };
    let what = format!("The identity {:?}", identity.external_id);
    keys.service
        .catalogue()
        .create_identity(&identity, now_ms())
        .map_err(|e| store_error(e, &what, ErrorCode::IdentityNotFound, ErrorCode::IdentityAlreadyExists))?;
    keys.service.identity_changed(&identity.external_id);
    Ok(Reply::data(json!({"identityId": identity.id()})))
}

pub(super) fn get_identity(body: &[u8], keys: &Keys) -> Answer {
    let mut f = Fields::parse(body)?;
    let name = identity_field(&mut f);
    f.finish()?;
    Ok(Reply::data(identity_json(&find(keys, &required(name, "identity")?)?)))
}

pub(super) fn list_identities(body: &[u8], keys: &Keys) -> Answer {
    let mut f = Fields::parse(body)?;
    let listing = Listing::read(&mut f);
    f.finish()?;
    let found = keys
        .service
        .catalogue()
        .list_identities(listing.page())
        .map_err(internal)?;
    Ok(listing.reply(found.iter().map(|i| (i.id(), identity_json(i))).collect()))
}

pub(super) fn update_identity(body: &[u8], keys: &Keys) -> Answer {
    let mut f = Fields::parse(body)?;
    let name = identity_field(&mut f);
    let meta = f.object_patch("meta", 100);
    let ratelimits = read_ratelimits(&mut f);
    f.finish()?;
    let mut identity = find(keys, &required(name, "identity")?)?;
    match meta {
        Patch::Set(meta) => identity.meta = meta,
        Patch::Clear => identity.meta = Map::new(),
        Patch::Keep => {}
    }
    match ratelimits {
        Patch::Set(limits) => identity.ratelimits = limits,
        Patch::Clear => identity.ratelimits = Vec::new(),
        Patch::Keep => {}
    }
    keys.service
        .catalogue()
        .update_identity(&identity)
        .map_err(|e| match e {
            StoreError::NotFound => not_found(&identity.external_id),
            other => internal(other),
        })?;
    keys.service.identity_changed(&identity.external_id);
    Ok(Reply::data(identity_json(&identity)))
}

pub(super) fn delete_identity(body: &[u8], keys: &Keys) -> Answer {
    let mut f = Fields::parse(body)?;
    let name = identity_field(&mut f);
    f.finish()?;
    let identity = find(keys, &required(name, "identity")?)?;
    keys.service
        .catalogue()
        .delete_identity(&identity.external_id)
        .map_err(|e| match e {
            StoreError::NotFound => not_found(&identity.external_id),
            other => internal(other),
        })?;
    keys.service.identity_changed(&identity.external_id);
    Ok(Reply::data(json!({})))
}
