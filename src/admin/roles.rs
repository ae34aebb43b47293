//! `permissions.createRole`, `getRole`, `listRoles`, `updateRole`,
//! `deleteRole`, `setRolePermissions`: roles are named sets of permissions;
//! a key with a role is granted its permissions, in permission queries and
//! in its Principal. Permissions a role names that do not exist are created
//! (by slug). A new name is renamed in every key, a deleted role is taken
//! from every key. Changes apply to cached keys at once.

use serde_json::{json, Value};

use super::envelope::Reply;
use super::fields::{Fields, Patch, Text};
use super::keys::input::PERMISSION;
use super::keys::lifecycle::ROLE;
use super::keys::shapes::{permission_json, role_json, Listing};
use super::rpc::{internal, refusal, required, store_error, Answer};
use crate::clock::now_ms;
use crate::errors::{ErrorCode, GatewayError};
use crate::keys::catalogue::Role;
use crate::keys::model::new_id;
use crate::keys::store::StoreError;
use crate::keys::Keys;

const DESCRIPTION: Text = Text::len(0, 512);

fn what(name: &str) -> String {
    format!("The role {name:?}")
}

fn find(keys: &Keys, name: &str) -> Result<Role, GatewayError> {
    keys.service
        .catalogue()
        .role(name)
        .map_err(internal)?
        .ok_or_else(|| refusal(ErrorCode::RoleNotFound, &what(name), "does not exist"))
}

fn failed(error: StoreError, name: &str) -> GatewayError {
    store_error(
        error,
        &what(name),
        ErrorCode::RoleNotFound,
        ErrorCode::RoleAlreadyExists,
    )
}

/// `role` (id or name); the older `roleId` is accepted too.
fn role_field(f: &mut Fields) -> Option<String> {
    let named = f.text("role", Text::len(1, 255), false);
    let by_id = f.text("roleId", Text::len(1, 255), false);
    let found = named.or(by_id);
    if found.is_none() {
        f.reject("role", "is required (the role's id or name)");
    }
    found
}

/// A list of permission slugs (required when `required`).
fn permissions_field(f: &mut Fields, required: bool) -> Option<Vec<String>> {
    match f.text_list("permissions", 1000, PERMISSION) {
        Patch::Set(list) => Some(list),
        Patch::Keep | Patch::Clear if required => {
            f.reject("permissions", "is required (an array)");
            None
        }
        Patch::Keep | Patch::Clear => None,
    }
}

pub(super) fn create_role(body: &[u8], keys: &Keys) -> Answer {
    let mut f = Fields::parse(body)?;
    let name = f.text("name", ROLE, true);
    let description = f.text("description", DESCRIPTION, false).filter(|d| !d.is_empty());
    let slugs = permissions_field(&mut f, false).unwrap_or_default();
    f.finish()?;
    let catalogue = keys.service.catalogue();
    let role = Role {
        id: new_id("role"),
        name: required(name, "name")?,
        description,
        permissions: catalogue.ensure_permissions(&slugs, now_ms()).map_err(internal)?,
        created_at: now_ms(),
    };
    catalogue.create_role(&role).map_err(|e| failed(e, &role.name))?;
    keys.service.roles_changed(false).map_err(internal)?;
    Ok(Reply::data(json!({"roleId": role.id})))
}

pub(super) fn get_role(body: &[u8], keys: &Keys) -> Answer {
    let mut f = Fields::parse(body)?;
    let name = role_field(&mut f);
    f.finish()?;
    Ok(Reply::data(role_json(&find(keys, &required(name, "role")?)?)))
}

pub(super) fn list_roles(body: &[u8], keys: &Keys) -> Answer {
    let mut f = Fields::parse(body)?;
    let listing = Listing::read(&mut f);
    f.finish()?;
    let found = keys.service.catalogue().list_roles(listing.page()).map_err(internal)?;
    Ok(listing.reply(found.iter().map(|r| (r.id.clone(), role_json(r))).collect()))
}

pub(super) fn update_role(body: &[u8], keys: &Keys) -> Answer {
    let mut f = Fields::parse(body)?;
    let name = role_field(&mut f);
    let new_name = f.text("name", ROLE, false);
    let description = f.text_patch("description", DESCRIPTION);
    f.finish()?;
    let before = find(keys, &required(name, "role")?)?;
    let mut after = before.clone();
    after.name = new_name.unwrap_or(after.name);
    description.apply_to(&mut after.description);
    keys.service
        .catalogue()
        .update_role(&before, &after)
        .map_err(|e| failed(e, &after.name))?;
    keys.service
        .roles_changed(before.name != after.name)
        .map_err(internal)?;
    let mut out = json!({"id": after.id, "name": after.name});
    if let Some(description) = &after.description {
        out["description"] = json!(description);
    }
    Ok(Reply::data(out))
}

pub(super) fn delete_role(body: &[u8], keys: &Keys) -> Answer {
    let mut f = Fields::parse(body)?;
    let name = role_field(&mut f);
    f.finish()?;
    let role = find(keys, &required(name, "role")?)?;
    keys.service
        .catalogue()
        .delete_role(&role)
        .map_err(|e| failed(e, &role.name))?;
    keys.service.roles_changed(true).map_err(internal)?;
    Ok(Reply::data(json!({})))
}

/// Replaces a role's permissions; answers them.
pub(super) fn set_role_permissions(body: &[u8], keys: &Keys) -> Answer {
    let mut f = Fields::parse(body)?;
    let name = role_field(&mut f);
    let slugs = permissions_field(&mut f, true);
    f.finish()?;
    let role = find(keys, &required(name, "role")?)?;
    let catalogue = keys.service.catalogue();
    let permissions = catalogue
        .ensure_permissions(&required(slugs, "permissions")?, now_ms())
        .map_err(internal)?;
    let ids: Vec<String> = permissions.iter().map(|p| p.id.clone()).collect();
    catalogue.set_role_permissions(&role.id, &ids).map_err(internal)?;
    keys.service.roles_changed(false).map_err(internal)?;
    Ok(Reply::data(permissions.iter().map(permission_json).collect::<Value>()))
}
