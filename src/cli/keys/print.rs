//! `keygate keys` and `keygate apis` answers as tables and fields (the JSON with `--json`).

use serde_json::Value;

use crate::admin::rpc::Op;
use crate::cli::table::print_table;

fn text(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(text).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// A table column: its header and how a cell is made of an item.
type Column = (&'static str, fn(&Value) -> String);

/// The answer's array as rows of `columns`.
fn rows<const N: usize>(data: &Value, columns: [Column; N]) {
    let header = columns.map(|(name, _)| name);
    let rows: Vec<[String; N]> = data
        .as_array()
        .into_iter()
        .flatten()
        .map(|item| columns.map(|(_, cell)| cell(item)))
        .collect();
    print_table(&header, &rows);
}

pub fn print_human(op: Op, document: &Value) {
    let data = &document["data"];
    match op {
        Op::ListKeys => rows(
            data,
            [
                ("KEY ID", |k| text(&k["keyId"])),
                ("NAME", |k| text(&k["name"])),
                ("START", |k| text(&k["start"])),
                ("ENABLED", |k| text(&k["enabled"])),
                ("EXPIRES", |k| text(&k["expires"])),
                ("CREDITS", |k| {
                    if k["credits"].is_object() {
                        text(&k["credits"]["remaining"])
                    } else {
                        "unlimited".into()
                    }
                }),
                ("IDENTITY", |k| text(&k["identity"]["externalId"])),
            ],
        ),
        Op::ListApis => rows(
            data,
            [
                ("API ID", |a| text(&a["id"])),
                ("NAME", |a| text(&a["name"])),
                ("SOURCE", |a| text(&a["source"])),
            ],
        ),
        Op::ListPermissions
        | Op::AddPermissions
        | Op::RemovePermissions
        | Op::SetPermissions
        | Op::SetRolePermissions => rows(
            data,
            [
                ("PERMISSION ID", |p| text(&p["id"])),
                ("SLUG", |p| text(&p["slug"])),
                ("NAME", |p| text(&p["name"])),
                ("DESCRIPTION", |p| text(&p["description"])),
            ],
        ),
        Op::ListRoles | Op::AddRoles | Op::RemoveRoles | Op::SetRoles => rows(
            data,
            [
                ("ROLE ID", |r| text(&r["id"])),
                ("NAME", |r| text(&r["name"])),
                ("PERMISSIONS", |r| {
                    r["permissions"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|p| text(&p["slug"]))
                        .collect::<Vec<_>>()
                        .join(",")
                }),
                ("DESCRIPTION", |r| text(&r["description"])),
            ],
        ),
        Op::ListIdentities => rows(
            data,
            [
                ("IDENTITY ID", |i| text(&i["id"])),
                ("EXTERNAL ID", |i| text(&i["externalId"])),
                ("META", |i| i["meta"].to_string()),
                ("RATE LIMITS", |i| {
                    i["ratelimits"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|l| text(&l["name"]))
                        .collect::<Vec<_>>()
                        .join(",")
                }),
            ],
        ),
        Op::CreateKey | Op::RerollKey => {
            println!("key id: {}", text(&data["keyId"]));
            println!("key:    {}", text(&data["key"]));
            println!("(the key is shown only this once)");
        }
        Op::UpdateKey | Op::DeleteKey | Op::DeleteApi | Op::DeleteIdentity | Op::DeletePermission | Op::DeleteRole => {
            println!("ok")
        }
        _ => {
            let Some(fields) = data.as_object() else { return };
            let width = fields.keys().map(String::len).max().unwrap_or(0);
            for (name, value) in fields {
                println!(
                    "{name:<width$}  {}",
                    if value.is_object() || (value.is_array() && value.get(0).is_some_and(Value::is_object)) {
                        value.to_string()
                    } else {
                        text(value)
                    }
                );
            }
        }
    }
    if let Some(cursor) = document["pagination"]["cursor"].as_str() {
        println!("(more: --cursor {cursor})");
    }
}
