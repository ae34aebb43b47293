//! What Unkey's API manages beside keys, persisted with them: identities
//! (the meta and rate limits every key of one `externalId` shares),
//! permissions and roles (named sets of permissions a key gets by having
//! the role), and rate-limit namespaces with their overrides. The
//! [`CatalogueStore`] trait is how the rest of keygate reaches them; the
//! embedded implementation is in `sqlite_catalogue`.

use std::collections::HashMap;

use super::model::Identity;
use super::store::StoreError;
use crate::ratelimit::overrides::Override;

/// A permission: `slug` is what keys hold and queries name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permission {
    pub id: String,
    pub slug: String,
    pub name: String,
    pub description: Option<String>,
    pub created_at: i64,
}

impl Permission {
    /// A permission named after its slug (the shape auto-created ones take).
    pub fn named_after(slug: &str, now_ms: i64) -> Self {
        Self {
            id: super::model::new_id("perm"),
            slug: slug.to_string(),
            name: slug.to_string(),
            description: None,
            created_at: now_ms,
        }
    }
}

/// A role and the permissions it grants (sorted by slug).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Role {
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    pub permissions: Vec<Permission>,
    pub created_at: i64,
}

impl Role {
    /// A role without description or permissions (the shape auto-created ones take).
    pub fn named(name: &str, now_ms: i64) -> Self {
        Self {
            id: super::model::new_id("role"),
            name: name.to_string(),
            description: None,
            permissions: Vec::new(),
            created_at: now_ms,
        }
    }
}

/// A rate-limit namespace: what `ratelimit.*` calls name, by name or id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    pub id: String,
    pub name: String,
}

/// One page of a listing: items after `cursor` (an id), at most `limit`,
/// those whose name contains `search` when given.
#[derive(Debug, Clone, Copy)]
pub struct Page<'a> {
    pub cursor: Option<&'a str>,
    pub limit: usize,
    pub search: Option<&'a str>,
}

/// The catalogue's persistence. Every mutating call is durable when it
/// returns; `NotFound` and `Conflict` say what they say.
pub trait CatalogueStore: Send + Sync {
    /// `Conflict` when the externalId is taken.
    fn create_identity(&self, identity: &Identity, now_ms: i64) -> Result<(), StoreError>;
    /// Creates the identity of a key's externalId unless it exists.
    fn ensure_identity(&self, external_id: &str, now_ms: i64) -> Result<(), StoreError>;
    /// By id or externalId.
    fn identity(&self, id_or_external_id: &str) -> Result<Option<Identity>, StoreError>;
    fn list_identities(&self, page: Page<'_>) -> Result<Vec<Identity>, StoreError>;
    /// Replaces meta and rate limits.
    fn update_identity(&self, identity: &Identity) -> Result<(), StoreError>;
    /// Deletes it; its keys no longer belong to an identity.
    fn delete_identity(&self, external_id: &str) -> Result<(), StoreError>;

    /// `Conflict` when the slug is taken.
    fn create_permission(&self, permission: &Permission) -> Result<(), StoreError>;
    /// The permissions with these slugs, creating those that do not exist; sorted by slug.
    fn ensure_permissions(&self, slugs: &[String], now_ms: i64) -> Result<Vec<Permission>, StoreError>;
    /// By id or slug.
    fn permission(&self, id_or_slug: &str) -> Result<Option<Permission>, StoreError>;
    fn list_permissions(&self, page: Page<'_>) -> Result<Vec<Permission>, StoreError>;
    /// Writes name, slug and description; a new slug is renamed in every key too.
    fn update_permission(&self, before: &Permission, after: &Permission) -> Result<(), StoreError>;
    /// Deletes it, from every role and key too.
    fn delete_permission(&self, permission: &Permission) -> Result<(), StoreError>;

    /// `Conflict` when the name is taken; its permissions must exist.
    fn create_role(&self, role: &Role) -> Result<(), StoreError>;
    /// Creates the roles with these names that do not exist.
    fn ensure_roles(&self, names: &[String], now_ms: i64) -> Result<(), StoreError>;
    /// By id or name, with its permissions.
    fn role(&self, id_or_name: &str) -> Result<Option<Role>, StoreError>;
    fn list_roles(&self, page: Page<'_>) -> Result<Vec<Role>, StoreError>;
    /// Writes name and description; a new name is renamed in every key too.
    fn update_role(&self, before: &Role, after: &Role) -> Result<(), StoreError>;
    /// Deletes it, from every key too.
    fn delete_role(&self, role: &Role) -> Result<(), StoreError>;
    /// Replaces the role's permissions (which must exist) by these ids.
    fn set_role_permissions(&self, role_id: &str, permission_ids: &[String]) -> Result<(), StoreError>;
    /// Every role's permission slugs, by role name: what verification needs.
    fn role_grants(&self) -> Result<HashMap<String, Vec<String>>, StoreError>;

    /// By id or name.
    fn namespace(&self, id_or_name: &str) -> Result<Option<Namespace>, StoreError>;
    /// The namespace with this name, created if it does not exist.
    fn ensure_namespace(&self, name: &str, now_ms: i64) -> Result<Namespace, StoreError>;
    /// Creates or replaces the override of `item.identifier` in its
    /// namespace; the stored one (with its id) is returned.
    fn set_override(&self, namespace: &Namespace, item: &Override, now_ms: i64) -> Result<Override, StoreError>;
    fn override_of(&self, namespace: &Namespace, identifier: &str) -> Result<Option<Override>, StoreError>;
    /// A namespace's overrides ordered by id, after `cursor`.
    fn list_overrides(
        &self,
        namespace: &Namespace,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Override>, StoreError>;
    fn delete_override(&self, namespace: &Namespace, identifier: &str) -> Result<(), StoreError>;
    /// Every override, for the limiter.
    fn all_overrides(&self) -> Result<Vec<Override>, StoreError>;
}
