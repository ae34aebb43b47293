//! Unkey's `apis.*` and `keys.*`: keyspaces, the keys in them, their
//! permissions and roles, verification and migration. Every change
//! invalidates this process's caches, so it takes effect on the next
//! request. Config keys and keyspaces are visible here but read-only.

pub(super) mod access;
pub(super) mod apis;
pub(super) mod input;
pub(super) mod lifecycle;
pub(super) mod migrate;
pub(super) mod shapes;
pub(super) mod verify;

use std::sync::Arc;

use super::rpc::internal;
use crate::errors::{ErrorCode, GatewayError};
use crate::keys::model::{Keyspace, StoredKey};
use crate::keys::verify::ActiveKey;
use crate::keys::Keys;

pub(super) fn key_not_found(id: &str) -> GatewayError {
    GatewayError::with_detail(ErrorCode::KeyNotFound, format!("The key {id:?} does not exist."))
}

pub(super) fn api_not_found(id: &str) -> GatewayError {
    GatewayError::with_detail(ErrorCode::ApiNotFound, format!("The API {id:?} does not exist."))
}

pub(super) fn protected(what: &str) -> GatewayError {
    GatewayError::with_detail(
        ErrorCode::ProtectedResource,
        format!("{what} is defined in the config file and is read-only here; change it there."),
    )
}

/// A key found by id: from the config (read-only) or the store.
pub(super) enum Found {
    Static(Arc<ActiveKey>),
    Stored(Box<StoredKey>),
}

pub(super) fn find_key(keys: &Keys, id: &str) -> Result<Found, GatewayError> {
    if let Some(key) = keys.statics.by_id(id) {
        return Ok(Found::Static(key.clone()));
    }
    match keys.service.store().key_by_id(id).map_err(internal)? {
        Some(stored) => Ok(Found::Stored(Box::new(stored))),
        None => Err(key_not_found(id)),
    }
}

/// A store key, or 412 for a config key.
pub(super) fn find_stored(keys: &Keys, id: &str) -> Result<StoredKey, GatewayError> {
    match find_key(keys, id)? {
        Found::Stored(stored) => Ok(*stored),
        Found::Static(_) => Err(protected(&format!("The key {id:?}"))),
    }
}

/// A keyspace by id, and whether it comes from the config.
pub(super) fn find_keyspace(keys: &Keys, id: &str) -> Result<(Keyspace, bool), GatewayError> {
    if let Some(keyspace) = keys.statics.keyspace(id) {
        return Ok((keyspace.clone(), true));
    }
    match keys.service.store().keyspace(id).map_err(internal)? {
        Some(keyspace) => Ok((keyspace, false)),
        None => Err(api_not_found(id)),
    }
}
