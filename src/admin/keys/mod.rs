//! The key management API (`apis.*`, `keys.*`, and `ratelimit.limit`),
//! wire-compatible with Unkey's v2 API: `POST` with a JSON body, answers
//! `{meta: {requestId}, data}`, errors with `err:unkey:*` codes and
//! field-level validation details. Every change invalidates this process's
//! caches, so it takes effect on the next request. The CLI runs the same
//! operations in-process against the embedded store ([`run`]).

mod apis;
mod input;
mod lifecycle;
mod shapes;
mod verify;

use std::sync::Arc;

use super::envelope::{invalid_input, Reply};
use crate::errors::{ErrorCode, GatewayError};
use crate::keys::model::{Keyspace, StoredKey};
use crate::clock::now_ms;
use crate::keys::store::StoreError;
use crate::keys::verify::ActiveKey;
use crate::keys::Keys;

/// The operations, one per `POST /v2/<name>` route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    CreateApi,
    GetApi,
    ListKeys,
    DeleteApi,
    CreateKey,
    GetKey,
    UpdateKey,
    DeleteKey,
    UpdateCredits,
    RerollKey,
    VerifyKey,
    /// Not about keys, but the same RPC shape and root key.
    RatelimitLimit,
}

impl Op {
    const ALL: [Op; 12] = [
        Self::CreateApi,
        Self::GetApi,
        Self::ListKeys,
        Self::DeleteApi,
        Self::CreateKey,
        Self::GetKey,
        Self::UpdateKey,
        Self::DeleteKey,
        Self::UpdateCredits,
        Self::RerollKey,
        Self::VerifyKey,
        Self::RatelimitLimit,
    ];

    /// The operation served at `/v2/<name>`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|op| op.name() == name)
    }

    /// The route below `/v2/`.
    pub fn name(self) -> &'static str {
        match self {
            Self::CreateApi => "apis.createApi",
            Self::GetApi => "apis.getApi",
            Self::ListKeys => "apis.listKeys",
            Self::DeleteApi => "apis.deleteApi",
            Self::CreateKey => "keys.createKey",
            Self::GetKey => "keys.getKey",
            Self::UpdateKey => "keys.updateKey",
            Self::DeleteKey => "keys.deleteKey",
            Self::UpdateCredits => "keys.updateCredits",
            Self::RerollKey => "keys.rerollKey",
            Self::VerifyKey => "keys.verifyKey",
            Self::RatelimitLimit => "ratelimit.limit",
        }
    }
}

/// Runs an operation on `keys`. Store writes (an fsync each) run off the async workers.
pub async fn run(op: Op, body: &[u8], keys: &Keys) -> Result<Reply, GatewayError> {
    let handler: fn(&[u8], &Keys) -> Result<Reply, GatewayError> = match op {
        Op::VerifyKey => return verify::verify_key(body, keys).await,
        Op::RatelimitLimit => return super::ratelimit::limit(body, keys.service.limiter(), now_ms()).await,
        Op::CreateApi => apis::create_api,
        Op::GetApi => apis::get_api,
        Op::ListKeys => apis::list_keys,
        Op::DeleteApi => apis::delete_api,
        Op::CreateKey => lifecycle::create_key,
        Op::GetKey => lifecycle::get_key,
        Op::UpdateKey => lifecycle::update_key,
        Op::DeleteKey => lifecycle::delete_key,
        Op::UpdateCredits => lifecycle::update_credits,
        Op::RerollKey => lifecycle::reroll_key,
    };
    let keys = keys.clone();
    let body = body.to_vec();
    tokio::task::spawn_blocking(move || handler(&body, &keys))
        .await
        .map_err(|e| internal(StoreError::Task(e.to_string())))?
}

/// A store failure the caller cannot fix: logged, answered as 500.
pub(super) fn internal(error: StoreError) -> GatewayError {
    tracing::error!("admin API: {error}");
    GatewayError::with_detail(ErrorCode::UnexpectedError, error.to_string())
}

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

/// A required field that validation already reported missing.
pub(super) fn required<T>(value: Option<T>, name: &str) -> Result<T, GatewayError> {
    value.ok_or_else(|| invalid_input(format!("body.{name} is required")))
}

pub(super) fn store_error(error: StoreError, not_found: impl FnOnce() -> GatewayError) -> GatewayError {
    match error {
        StoreError::NotFound => not_found(),
        StoreError::Conflict(what) => GatewayError::with_detail(ErrorCode::DataConflict, format!("{what} already exists")),
        other => internal(other),
    }
}

// ---------------------------------------------------------------------------
// Lookups and response shapes
// ---------------------------------------------------------------------------

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

pub(super) fn find_keyspace(keys: &Keys, id: &str) -> Result<(Keyspace, bool), GatewayError> {
    if let Some(keyspace) = keys.statics.keyspace(id) {
        return Ok((keyspace.clone(), true));
    }
    match keys.service.store().keyspace(id).map_err(internal)? {
        Some(keyspace) => Ok((keyspace, false)),
        None => Err(api_not_found(id)),
    }
}
