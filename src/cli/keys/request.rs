//! The admin API operation and JSON body for each `keygate keys` command.

use serde_json::{json, Value};

use super::KeysCommand;
use crate::admin::rpc::Op;

fn expires_value(text: &str) -> Result<Value, String> {
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(json!(ms));
    }
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map(|at| json!((at.unix_timestamp_nanos() / 1_000_000) as i64))
        .map_err(|_| format!("--expires {text:?}: use unix milliseconds or RFC 3339"))
}

pub(super) fn meta_value(text: &str) -> Result<Value, String> {
    match serde_json::from_str::<Value>(text) {
        Ok(object @ Value::Object(_)) => Ok(object),
        _ => Err(format!("--meta {text:?}: must be a JSON object")),
    }
}

/// The operation and its JSON body for a command.
pub fn request(command: &KeysCommand) -> Result<(Op, Value), String> {
    Ok(match command {
        KeysCommand::Create {
            api,
            name,
            prefix,
            external_id,
            permissions,
            roles,
            expires,
            credits,
            meta,
            disabled,
        } => {
            let mut body = json!({"apiId": api, "enabled": !disabled});
            for (field, value) in [("name", name), ("prefix", prefix), ("externalId", external_id)] {
                if let Some(value) = value {
                    body[field] = json!(value);
                }
            }
            if !permissions.is_empty() {
                body["permissions"] = json!(permissions);
            }
            if !roles.is_empty() {
                body["roles"] = json!(roles);
            }
            if let Some(expires) = expires {
                body["expires"] = expires_value(expires)?;
            }
            if let Some(credits) = credits {
                body["credits"] = json!({"remaining": credits});
            }
            if let Some(meta) = meta {
                body["meta"] = meta_value(meta)?;
            }
            (Op::CreateKey, body)
        }
        KeysCommand::List {
            api,
            external_id,
            limit,
            cursor,
        } => {
            let mut body = json!({"apiId": api});
            if let Some(external_id) = external_id {
                body["externalId"] = json!(external_id);
            }
            if let Some(limit) = limit {
                body["limit"] = json!(limit);
            }
            if let Some(cursor) = cursor {
                body["cursor"] = json!(cursor);
            }
            (Op::ListKeys, body)
        }
        KeysCommand::Get { key_id } => (Op::GetKey, json!({"keyId": key_id})),
        KeysCommand::Update {
            key_id,
            name,
            enabled,
            permissions,
            roles,
            expires,
            credits,
            meta,
        } => {
            let mut body = json!({"keyId": key_id});
            if let Some(name) = name {
                body["name"] = json!(name);
            }
            if let Some(enabled) = enabled {
                body["enabled"] = json!(enabled);
            }
            if let Some(permissions) = permissions {
                body["permissions"] = json!(permissions);
            }
            if let Some(roles) = roles {
                body["roles"] = json!(roles);
            }
            match expires.as_deref() {
                Some("never") => body["expires"] = Value::Null,
                Some(expires) => body["expires"] = expires_value(expires)?,
                None => {}
            }
            match credits.as_deref() {
                Some("unlimited") => body["credits"] = Value::Null,
                Some(n) => {
                    let n: i64 = n
                        .parse()
                        .map_err(|_| format!("--credits {n:?}: a number or `unlimited`"))?;
                    body["credits"] = json!({"remaining": n});
                }
                None => {}
            }
            if let Some(meta) = meta {
                body["meta"] = meta_value(meta)?;
            }
            (Op::UpdateKey, body)
        }
        KeysCommand::Revoke { key_id, permanent } => (Op::DeleteKey, json!({"keyId": key_id, "permanent": permanent})),
        KeysCommand::AddPermissions { key_id, permissions } => {
            (Op::AddPermissions, json!({"keyId": key_id, "permissions": permissions}))
        }
        KeysCommand::RemovePermissions { key_id, permissions } => (
            Op::RemovePermissions,
            json!({"keyId": key_id, "permissions": permissions}),
        ),
        KeysCommand::SetPermissions { key_id, permissions } => {
            (Op::SetPermissions, json!({"keyId": key_id, "permissions": permissions}))
        }
        KeysCommand::AddRoles { key_id, roles } => (Op::AddRoles, json!({"keyId": key_id, "roles": roles})),
        KeysCommand::RemoveRoles { key_id, roles } => (Op::RemoveRoles, json!({"keyId": key_id, "roles": roles})),
        KeysCommand::SetRoles { key_id, roles } => (Op::SetRoles, json!({"keyId": key_id, "roles": roles})),
        KeysCommand::Whoami { key } => (Op::Whoami, json!({"key": key})),
        KeysCommand::Permissions { command } => super::catalogue::permissions(command),
        KeysCommand::Roles { command } => super::catalogue::roles(command),
        KeysCommand::Identities { command } => return super::catalogue::identities(command),
        KeysCommand::Verify { key, permissions, cost } => {
            let mut body = json!({"key": key});
            if let Some(permissions) = permissions {
                body["permissions"] = json!(permissions);
            }
            if let Some(cost) = cost {
                body["credits"] = json!({"cost": cost});
            }
            (Op::VerifyKey, body)
        }
    })
}
