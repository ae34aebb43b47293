//! `keygate keys` answers as tables and fields (the JSON with `--json`).

use serde_json::Value;

use crate::admin::keys::Op;
use crate::cli::table::print_table;

fn text(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(text).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

pub fn print_human(op: Op, document: &Value) {
    let data = &document["data"];
    match op {
        Op::ListKeys => {
            let header = ["KEY ID", "NAME", "START", "ENABLED", "EXPIRES", "CREDITS", "IDENTITY"];
            let rows: Vec<[String; 7]> = data
                .as_array()
                .into_iter()
                .flatten()
                .map(|k| {
                    [
                        text(&k["keyId"]),
                        text(&k["name"]),
                        text(&k["start"]),
                        text(&k["enabled"]),
                        text(&k["expires"]),
                        if k["credits"].is_object() { text(&k["credits"]["remaining"]) } else { "unlimited".into() },
                        text(&k["identity"]["externalId"]),
                    ]
                })
                .collect();
            print_table(&header, &rows);
            if let Some(cursor) = document["pagination"]["cursor"].as_str() {
                println!("(more: --cursor {cursor})");
            }
        }
        Op::CreateKey | Op::RerollKey => {
            println!("key id: {}", text(&data["keyId"]));
            println!("key:    {}", text(&data["key"]));
            println!("(the key is shown only this once)");
        }
        Op::UpdateKey | Op::DeleteKey | Op::DeleteApi => println!("ok"),
        _ => {
            let Some(fields) = data.as_object() else { return };
            let width = fields.keys().map(String::len).max().unwrap_or(0);
            for (name, value) in fields {
                println!("{name:<width$}  {}", if value.is_object() { value.to_string() } else { text(value) });
            }
        }
    }
}
