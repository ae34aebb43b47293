//! `permissions.createPermission`, `getPermission`, `listPermissions`,
//! `updatePermission`, `deletePermission`: the permission catalogue. A
//! permission's `slug` is what keys hold and permission queries name; a
//! new slug is renamed in every key, a deleted permission is taken from
//! every key and role. Changes apply to cached keys at once.

use serde_json::json;

use super::envelope::Reply;
use super::fields::{Fields, Text};
use super::keys::input::PERMISSION;
use super::keys::shapes::{permission_json, Listing};
use super::rpc::{internal, refusal, required, store_error, Answer};
use crate::clock::now_ms;
use crate::errors::{ErrorCode, GatewayError};
use crate::keys::catalogue::Permission;
use crate::keys::model::new_id;
use crate::keys::store::StoreError;
use crate::keys::Keys;

const NAME: Text = Text::len(1, 512);
const DESCRIPTION: Text = Text::len(0, 512);

fn what(name: &str) -> String {
    format!("The permission {name:?}")
}

fn find(keys: &Keys, name: &str) -> Result<Permission, GatewayError> {
    keys.service
        .catalogue()
        .permission(name)
        .map_err(internal)?
        .ok_or_else(|| refusal(ErrorCode::PermissionNotFound, &what(name), "does not exist"))
}

fn failed(error: StoreError, name: &str) -> GatewayError {
    store_error(
        error,
        &what(name),
        ErrorCode::PermissionNotFound,
        ErrorCode::PermissionAlreadyExists,
    )
}

/// `permission`: an id or slug.
fn permission_field(f: &mut Fields) -> Option<String> {
    f.text("permission", Text::len(1, 255), true)
}

pub(super) fn create_permission(body: &[u8], keys: &Keys) -> Answer {
    let mut f = Fields::parse(body)?;
    let name = f.text("name", NAME, true);
    let slug = f.text("slug", PERMISSION, true);
    let description = f.text("description", DESCRIPTION, false).filter(|d| !d.is_empty());
    f.finish()?;
    let permission = Permission {
        id: new_id("perm"),
        slug: required(slug, "slug")?,
        name: required(name, "name")?,
        description,
        created_at: now_ms(),
    };
    keys.service
        .catalogue()
        .create_permission(&permission)
        .map_err(|e| failed(e, &permission.slug))?;
    Ok(Reply::data(json!({"permissionId": permission.id})))
}

pub(super) fn get_permission(body: &[u8], keys: &Keys) -> Answer {
    let mut f = Fields::parse(body)?;
    let name = permission_field(&mut f);
    f.finish()?;
    Ok(Reply::data(permission_json(&find(
        keys,
        &required(name, "permission")?,
    )?)))
}

pub(super) fn list_permissions(body: &[u8], keys: &Keys) -> Answer {
    let mut f = Fields::parse(body)?;
    let listing = Listing::read(&mut f);
    f.finish()?;
    let found = keys
        .service
        .catalogue()
        .list_permissions(listing.page())
        .map_err(internal)?;
    Ok(listing.reply(found.iter().map(|p| (p.id.clone(), permission_json(p))).collect()))
}

pub(super) fn update_permission(body: &[u8], keys: &Keys) -> Answer {
    let mut f = Fields::parse(body)?;
    let name = permission_field(&mut f);
    let new_name = f.text("name", NAME, false);
    let slug = f.text("slug", PERMISSION, false);
    let description = f.text_patch("description", DESCRIPTION);
    f.finish()?;
    let before = find(keys, &required(name, "permission")?)?;
    let mut after = before.clone();
    after.name = new_name.unwrap_or(after.name);
    after.slug = slug.unwrap_or(after.slug);
    description.apply_to(&mut after.description);
    keys.service
        .catalogue()
        .update_permission(&before, &after)
        .map_err(|e| failed(e, &after.slug))?;
    keys.service
        .roles_changed(before.slug != after.slug)
        .map_err(internal)?;
    Ok(Reply::data(permission_json(&after)))
}

pub(super) fn delete_permission(body: &[u8], keys: &Keys) -> Answer {
    let mut f = Fields::parse(body)?;
    let name = permission_field(&mut f);
    f.finish()?;
    let permission = find(keys, &required(name, "permission")?)?;
    keys.service
        .catalogue()
        .delete_permission(&permission)
        .map_err(|e| failed(e, &permission.slug))?;
    keys.service.roles_changed(true).map_err(internal)?;
    Ok(Reply::data(json!({})))
}
