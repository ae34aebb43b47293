//! `keys.addPermissions`, `removePermissions`, `setPermissions`,
//! `addRoles`, `removeRoles`, `setRoles`: a key's own permissions and its
//! roles. As in Unkey, permissions that do not exist are created, while
//! roles must exist (else 404 `role_not_found` and nothing changes). Each
//! answers the key's resulting permissions (or roles) from the catalogue.

use serde_json::Value;

use super::find_stored;
use super::input::{key_id_field, PERMISSION};
use super::lifecycle::ROLE;
use super::shapes::{permission_json, role_json};
use crate::admin::envelope::Reply;
use crate::admin::fields::{Fields, Patch, Text};
use crate::admin::rpc::{internal, refusal, required, Answer};
use crate::clock::now_ms;
use crate::errors::{ErrorCode, GatewayError};
use crate::keys::catalogue::{CatalogueStore, Permission, Role};
use crate::keys::model::{normalized, StoredKey};
use crate::keys::{CreditChange, Keys};

/// How a list on the key changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Add,
    Remove,
    Set,
}

impl Change {
    fn apply(self, current: &[String], named: Vec<String>) -> Vec<String> {
        match self {
            Self::Add => normalized(current.iter().cloned().chain(named).collect()),
            Self::Remove => current.iter().filter(|item| !named.contains(item)).cloned().collect(),
            Self::Set => normalized(named),
        }
    }
}

/// `{keyId, <list>}` with the list checked by `rules`.
fn read(body: &[u8], list: &str, rules: Text, max: usize) -> Result<(String, Vec<String>), GatewayError> {
    let mut f = Fields::parse(body)?;
    let id = key_id_field(&mut f);
    let named = match f.text_list(list, max, rules) {
        Patch::Set(named) => Some(named),
        Patch::Clear | Patch::Keep => {
            f.reject(list, "is required (an array)");
            None
        }
    };
    f.finish()?;
    Ok((required(id, "keyId")?, required(named, list)?))
}

/// Writes the changed key (effective at once) with its update time.
fn save(keys: &Keys, mut stored: StoredKey) -> Result<StoredKey, GatewayError> {
    stored.record.updated_at = now_ms();
    keys.service.update_key(&stored, CreditChange::Keep).map_err(internal)?;
    Ok(stored)
}

/// The permissions named by slug or id; those that do not exist are created (by slug).
fn permissions_named(catalogue: &dyn CatalogueStore, named: &[String]) -> Result<Vec<Permission>, GatewayError> {
    let mut slugs = Vec::with_capacity(named.len());
    for name in named {
        match catalogue.permission(name).map_err(internal)? {
            Some(existing) => slugs.push(existing.slug),
            None => slugs.push(name.clone()),
        }
    }
    catalogue.ensure_permissions(&slugs, now_ms()).map_err(internal)
}

fn change_permissions(body: &[u8], keys: &Keys, change: Change) -> Answer {
    let (id, named) = read(body, "permissions", PERMISSION, 1000)?;
    let mut stored = find_stored(keys, &id)?;
    let catalogue = keys.service.catalogue();
    let named: Vec<String> = match change {
        Change::Remove => named,
        Change::Add | Change::Set => permissions_named(catalogue, &named)?
            .into_iter()
            .map(|p| p.slug)
            .collect(),
    };
    stored.record.permissions = change.apply(&stored.record.permissions, named);
    let stored = save(keys, stored)?;
    let held = catalogue
        .ensure_permissions(&stored.record.permissions, now_ms())
        .map_err(internal)?;
    Ok(Reply::data(held.iter().map(permission_json).collect::<Value>()))
}

/// The roles named by name or id; 404 for the first that does not exist.
fn roles_named(catalogue: &dyn CatalogueStore, named: &[String]) -> Result<Vec<Role>, GatewayError> {
    named
        .iter()
        .map(|name| match catalogue.role(name).map_err(internal)? {
            Some(role) => Ok(role),
            None => Err(refusal(
                ErrorCode::RoleNotFound,
                &format!("The role {name:?}"),
                "does not exist",
            )),
        })
        .collect()
}

fn change_roles(body: &[u8], keys: &Keys, change: Change) -> Answer {
    let (id, named) = read(body, "roles", ROLE, 100)?;
    let mut stored = find_stored(keys, &id)?;
    let catalogue = keys.service.catalogue();
    let named: Vec<String> = match change {
        Change::Remove => named,
        Change::Add | Change::Set => roles_named(catalogue, &named)?.into_iter().map(|r| r.name).collect(),
    };
    stored.record.roles = change.apply(&stored.record.roles, named);
    let stored = save(keys, stored)?;
    // Roles a key held before the catalogue existed join it now.
    catalogue
        .ensure_roles(&stored.record.roles, now_ms())
        .map_err(internal)?;
    let held = roles_named(catalogue, &stored.record.roles)?;
    Ok(Reply::data(held.iter().map(role_json).collect::<Value>()))
}

pub(in crate::admin) fn add_permissions(body: &[u8], keys: &Keys) -> Answer {
    change_permissions(body, keys, Change::Add)
}

pub(in crate::admin) fn remove_permissions(body: &[u8], keys: &Keys) -> Answer {
    change_permissions(body, keys, Change::Remove)
}

pub(in crate::admin) fn set_permissions(body: &[u8], keys: &Keys) -> Answer {
    change_permissions(body, keys, Change::Set)
}

pub(in crate::admin) fn add_roles(body: &[u8], keys: &Keys) -> Answer {
    change_roles(body, keys, Change::Add)
}

pub(in crate::admin) fn remove_roles(body: &[u8], keys: &Keys) -> Answer {
    change_roles(body, keys, Change::Remove)
}

pub(in crate::admin) fn set_roles(body: &[u8], keys: &Keys) -> Answer {
    change_roles(body, keys, Change::Set)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn changes() {
        let current = list(&["a", "c"]);
        assert_eq!(Change::Add.apply(&current, list(&["b", "a"])), list(&["a", "b", "c"]));
        assert_eq!(Change::Remove.apply(&current, list(&["a", "x"])), list(&["c"]));
        assert_eq!(Change::Set.apply(&current, list(&["z", "y", "z"])), list(&["y", "z"]));
        assert_eq!(Change::Set.apply(&current, Vec::new()), Vec::<String>::new());
    }
}
