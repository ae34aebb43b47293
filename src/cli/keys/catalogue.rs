//! `keygate keys permissions|roles|identities …`: the catalogue keys refer
//! to, one admin API operation per command.

use clap::Subcommand;
use serde_json::{json, Value};

use super::request::meta_value;
use crate::admin::rpc::Op;

/// Paging and filtering of a listing.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Only those whose name contains this.
    #[arg(long)]
    search: Option<String>,
    /// At most this many.
    #[arg(long)]
    limit: Option<u32>,
    /// Continue after a previous page (printed as `--cursor …`).
    #[arg(long)]
    cursor: Option<String>,
}

impl ListArgs {
    fn body(&self) -> Value {
        let mut body = json!({});
        if let Some(search) = &self.search {
            body["search"] = json!(search);
        }
        if let Some(limit) = self.limit {
            body["limit"] = json!(limit);
        }
        if let Some(cursor) = &self.cursor {
            body["cursor"] = json!(cursor);
        }
        body
    }
}

#[derive(Debug, Subcommand)]
pub enum PermissionsCommand {
    /// The permission catalogue.
    List(ListArgs),
    /// Create a permission.
    Create {
        /// What keys hold and queries name, e.g. documents.read.
        slug: String,
        /// A name for people [default: the slug].
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        description: Option<String>,
    },
    /// One permission, by id or slug.
    Get { permission: String },
    /// Rename or describe a permission (a new slug is renamed in every key).
    Update {
        /// Its id or slug.
        permission: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        slug: Option<String>,
        #[arg(long)]
        description: Option<String>,
    },
    /// Delete a permission (from every key and role too).
    Delete { permission: String },
}

#[derive(Debug, Subcommand)]
pub enum RolesCommand {
    /// The roles and their permissions.
    List(ListArgs),
    /// Create a role.
    Create {
        name: String,
        #[arg(long)]
        description: Option<String>,
        /// Comma-separated permission slugs (created if missing).
        #[arg(long, value_delimiter = ',')]
        permissions: Vec<String>,
    },
    /// One role, by id or name.
    Get { role: String },
    /// Rename or describe a role (a new name is renamed in every key).
    Update {
        /// Its id or name.
        role: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        description: Option<String>,
    },
    /// Delete a role (from every key too).
    Delete { role: String },
    /// Replace a role's permissions (slugs; created if missing; none clears them).
    SetPermissions {
        /// Its id or name.
        role: String,
        #[arg(value_delimiter = ',')]
        permissions: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum IdentitiesCommand {
    /// The identities.
    List(ListArgs),
    /// Create an identity.
    Create {
        external_id: String,
        /// A JSON object.
        #[arg(long)]
        meta: Option<String>,
    },
    /// One identity, by id or externalId.
    Get { identity: String },
    /// Replace an identity's meta.
    Update {
        /// Its id or externalId.
        identity: String,
        /// A JSON object.
        #[arg(long)]
        meta: String,
    },
    /// Delete an identity (its keys keep working, without identity).
    Delete { identity: String },
}

/// Sets `field` when `value` is given.
fn set(body: &mut Value, field: &str, value: &Option<String>) {
    if let Some(value) = value {
        body[field] = json!(value);
    }
}

pub fn permissions(command: &PermissionsCommand) -> (Op, Value) {
    match command {
        PermissionsCommand::List(list) => (Op::ListPermissions, list.body()),
        PermissionsCommand::Create {
            slug,
            name,
            description,
        } => {
            let mut body = json!({"slug": slug, "name": name.as_deref().unwrap_or(slug)});
            set(&mut body, "description", description);
            (Op::CreatePermission, body)
        }
        PermissionsCommand::Get { permission } => (Op::GetPermission, json!({"permission": permission})),
        PermissionsCommand::Update {
            permission,
            name,
            slug,
            description,
        } => {
            let mut body = json!({"permission": permission});
            set(&mut body, "name", name);
            set(&mut body, "slug", slug);
            set(&mut body, "description", description);
            (Op::UpdatePermission, body)
        }
        PermissionsCommand::Delete { permission } => (Op::DeletePermission, json!({"permission": permission})),
    }
}

pub fn roles(command: &RolesCommand) -> (Op, Value) {
    match command {
        RolesCommand::List(list) => (Op::ListRoles, list.body()),
        RolesCommand::Create {
            name,
            description,
            permissions,
        } => {
            let mut body = json!({"name": name, "permissions": permissions});
            set(&mut body, "description", description);
            (Op::CreateRole, body)
        }
        RolesCommand::Get { role } => (Op::GetRole, json!({"role": role})),
        RolesCommand::Update {
            role,
            name,
            description,
        } => {
            let mut body = json!({"role": role});
            set(&mut body, "name", name);
            set(&mut body, "description", description);
            (Op::UpdateRole, body)
        }
        RolesCommand::Delete { role } => (Op::DeleteRole, json!({"role": role})),
        RolesCommand::SetPermissions { role, permissions } => (
            Op::SetRolePermissions,
            json!({"role": role, "permissions": permissions}),
        ),
    }
}

pub fn identities(command: &IdentitiesCommand) -> Result<(Op, Value), String> {
    Ok(match command {
        IdentitiesCommand::List(list) => (Op::ListIdentities, list.body()),
        IdentitiesCommand::Create { external_id, meta } => {
            let mut body = json!({"externalId": external_id});
            if let Some(meta) = meta {
                body["meta"] = meta_value(meta)?;
            }
            (Op::CreateIdentity, body)
        }
        IdentitiesCommand::Get { identity } => (Op::GetIdentity, json!({"identity": identity})),
        IdentitiesCommand::Update { identity, meta } => (
            Op::UpdateIdentity,
            json!({"identity": identity, "meta": meta_value(meta)?}),
        ),
        IdentitiesCommand::Delete { identity } => (Op::DeleteIdentity, json!({"identity": identity})),
    })
}
