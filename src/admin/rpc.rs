//! Unkey's v2 API: one `POST /v2/<name>` per operation, a JSON body, answers
//! `{meta: {requestId}, data}`, errors with `err:unkey:*` codes and
//! field-level validation details. [`Op`] is the table of operations and
//! their handlers; the CLI runs the same operations in-process against the
//! embedded store ([`run`]).
//!
//! Adding an operation: its handler in the module that owns its subject
//! (`keys/`, `identities`, `permissions`, `roles`, `ratelimit/`) and one
//! line in the [`ops!`] table below. Handlers that write the store are
//! `blocking` (they run off the async workers: a write is an fsync).

use futures::future::BoxFuture;

use super::envelope::{invalid_input, Reply};
use super::keys::{access, apis, lifecycle, migrate, verify};
use super::{identities, permissions, ratelimit, roles};
use crate::errors::{ErrorCode, GatewayError, Representation};
use crate::keys::store::StoreError;
use crate::keys::Keys;

/// What a handler answers.
pub type Answer = Result<Reply, GatewayError>;
type Handler = for<'a> fn(&'a [u8], &'a Keys) -> BoxFuture<'a, Answer>;

/// Declares [`Op`]: `Variant "name" blocking|async handler;` per operation.
macro_rules! ops {
    ($($variant:ident $name:literal $kind:ident $handler:path;)*) => {
        /// The operations, one per `POST /v2/<name>` route.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Op {
            $($variant,)*
        }

        impl Op {
            const ALL: &'static [Op] = &[$(Op::$variant,)*];

            /// The route below `/v2/`.
            pub fn name(self) -> &'static str {
                match self {
                    $(Op::$variant => $name,)*
                }
            }

            fn handler(self) -> Handler {
                match self {
                    $(Op::$variant => ops!(@$kind $handler),)*
                }
            }
        }
    };
    (@blocking $handler:path) => {
        |body, keys| Box::pin(blocking(body, keys, $handler))
    };
    (@async $handler:path) => {
        |body, keys| Box::pin($handler(body, keys))
    };
}

ops! {
    CreateApi "apis.createApi" blocking apis::create_api;
    GetApi "apis.getApi" blocking apis::get_api;
    ListApis "apis.listApis" blocking apis::list_apis;
    ListKeys "apis.listKeys" blocking apis::list_keys;
    DeleteApi "apis.deleteApi" blocking apis::delete_api;
    CreateKey "keys.createKey" blocking lifecycle::create_key;
    GetKey "keys.getKey" blocking lifecycle::get_key;
    UpdateKey "keys.updateKey" blocking lifecycle::update_key;
    DeleteKey "keys.deleteKey" blocking lifecycle::delete_key;
    UpdateCredits "keys.updateCredits" blocking lifecycle::update_credits;
    RerollKey "keys.rerollKey" blocking lifecycle::reroll_key;
    VerifyKey "keys.verifyKey" async verify::verify_key;
    Whoami "keys.whoami" async verify::whoami;
    AddPermissions "keys.addPermissions" blocking access::add_permissions;
    RemovePermissions "keys.removePermissions" blocking access::remove_permissions;
    SetPermissions "keys.setPermissions" blocking access::set_permissions;
    AddRoles "keys.addRoles" blocking access::add_roles;
    RemoveRoles "keys.removeRoles" blocking access::remove_roles;
    SetRoles "keys.setRoles" blocking access::set_roles;
    MigrateKeys "keys.migrateKeys" blocking migrate::migrate_keys;
    CreateIdentity "identities.createIdentity" blocking identities::create_identity;
    GetIdentity "identities.getIdentity" blocking identities::get_identity;
    ListIdentities "identities.listIdentities" blocking identities::list_identities;
    UpdateIdentity "identities.updateIdentity" blocking identities::update_identity;
    DeleteIdentity "identities.deleteIdentity" blocking identities::delete_identity;
    CreatePermission "permissions.createPermission" blocking permissions::create_permission;
    GetPermission "permissions.getPermission" blocking permissions::get_permission;
    ListPermissions "permissions.listPermissions" blocking permissions::list_permissions;
    UpdatePermission "permissions.updatePermission" blocking permissions::update_permission;
    DeletePermission "permissions.deletePermission" blocking permissions::delete_permission;
    CreateRole "permissions.createRole" blocking roles::create_role;
    GetRole "permissions.getRole" blocking roles::get_role;
    ListRoles "permissions.listRoles" blocking roles::list_roles;
    UpdateRole "permissions.updateRole" blocking roles::update_role;
    DeleteRole "permissions.deleteRole" blocking roles::delete_role;
    SetRolePermissions "permissions.setRolePermissions" blocking roles::set_role_permissions;
    RatelimitLimit "ratelimit.limit" async ratelimit::limit;
    MultiLimit "ratelimit.multiLimit" async ratelimit::multi_limit;
    SetOverride "ratelimit.setOverride" blocking ratelimit::overrides::set_override;
    GetOverride "ratelimit.getOverride" blocking ratelimit::overrides::get_override;
    ListOverrides "ratelimit.listOverrides" blocking ratelimit::overrides::list_overrides;
    DeleteOverride "ratelimit.deleteOverride" blocking ratelimit::overrides::delete_override;
}

impl Op {
    /// The operation served at `/v2/<name>`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|op| op.name() == name)
    }

    /// How its errors are sent: as the SDKs expect them, which is what
    /// Unkey's OpenAPI document declares — `application/json`, except for
    /// `identities.deleteIdentity`, declared (and so parsed into typed
    /// errors only) as `application/problem+json`.
    pub fn error_representation(self) -> Representation {
        match self {
            Self::DeleteIdentity => Representation::ProblemJson,
            _ => Representation::Json,
        }
    }
}

/// Runs an operation on `keys`.
pub async fn run(op: Op, body: &[u8], keys: &Keys) -> Answer {
    (op.handler())(body, keys).await
}

/// Runs a handler that writes the store on the blocking pool.
async fn blocking(body: &[u8], keys: &Keys, handler: fn(&[u8], &Keys) -> Answer) -> Answer {
    let keys = keys.clone();
    let body = body.to_vec();
    tokio::task::spawn_blocking(move || handler(&body, &keys))
        .await
        .map_err(|e| internal(StoreError::Task(e.to_string())))?
}

/// A store failure the caller cannot fix: logged, answered as 500 — or
/// 503 while the database is unreachable (retrying later will work).
pub(super) fn internal(error: StoreError) -> GatewayError {
    tracing::error!("admin API: {error}");
    let code = match error {
        StoreError::Unreachable(_) => ErrorCode::AdminStoreUnavailable,
        _ => ErrorCode::UnexpectedError,
    };
    GatewayError::with_detail(code, error.to_string())
}

/// A required field that validation already reported missing.
pub(super) fn required<T>(value: Option<T>, name: &str) -> Result<T, GatewayError> {
    value.ok_or_else(|| invalid_input(format!("body.{name} is required")))
}

/// `code` with a detail naming `what` (`The role "admin"`).
pub(super) fn refusal(code: ErrorCode, what: &str, problem: &str) -> GatewayError {
    GatewayError::with_detail(code, format!("{what} {problem}."))
}

/// A store error as the API answers it: `NotFound` as `not_found`,
/// `Conflict` as `conflict` (both naming `what`), anything else as a 500.
pub(super) fn store_error(error: StoreError, what: &str, not_found: ErrorCode, conflict: ErrorCode) -> GatewayError {
    match error {
        StoreError::NotFound => refusal(not_found, what, "does not exist"),
        StoreError::Conflict(_) => refusal(conflict, what, "already exists"),
        other => internal(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_is_found_by_its_name() {
        for op in Op::ALL {
            assert_eq!(Op::from_name(op.name()), Some(*op));
        }
        assert_eq!(Op::from_name("keys.nope"), None);
        let mut names: Vec<&str> = Op::ALL.iter().map(|op| op.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Op::ALL.len(), "names are unique");
    }
}
