//! `keygate keys create|list|get|update|revoke|verify`: the admin
//! API operations from the command line, either against a running gateway
//! (`--admin URL`, root key from `$KEYGATE_ROOT_KEY`) or in-process against
//! the embedded store of the config's `state.dir`. Both paths run the same
//! operations ([`crate::admin::keys::run`]) and print a table, or the JSON with
//! `--json`.
//!
//! Writing the store directly while a gateway runs is safe (SQLite), but
//! that gateway only notices within its cache TTL (10 s): use `--admin` then.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use bytes::Bytes;
use clap::{Args, Subcommand};
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};

use crate::admin::keys::{run as run_op, Op};
use crate::config::Config;
use crate::errors::{render, Representation, DEFAULT_DOCS_BASE};
use crate::keys::{Keys, StaticKeys};
use crate::runtime::Services;

#[derive(Debug, Args)]
pub struct KeysArgs {
    /// A running gateway's admin listener (e.g. http://127.0.0.1:9901); default: the embedded store.
    #[arg(long, global = true)]
    pub admin: Option<String>,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: KeysCommand,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key; its plaintext is printed once.
    Create {
        /// The keyspace (apiId).
        #[arg(long)]
        api: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        prefix: Option<String>,
        #[arg(long)]
        external_id: Option<String>,
        /// Comma-separated.
        #[arg(long, value_delimiter = ',')]
        permissions: Vec<String>,
        /// Comma-separated.
        #[arg(long, value_delimiter = ',')]
        roles: Vec<String>,
        /// Unix ms or RFC 3339.
        #[arg(long)]
        expires: Option<String>,
        /// Limited usage: the opening balance.
        #[arg(long)]
        credits: Option<i64>,
        /// A JSON object.
        #[arg(long)]
        meta: Option<String>,
        /// Create it disabled.
        #[arg(long)]
        disabled: bool,
    },
    /// The keys of a keyspace.
    List {
        #[arg(long)]
        api: String,
        #[arg(long)]
        external_id: Option<String>,
        #[arg(long)]
        limit: Option<u32>,
        #[arg(long)]
        cursor: Option<String>,
    },
    /// One key by id.
    Get { key_id: String },
    /// Change a key.
    Update {
        key_id: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        enabled: Option<bool>,
        #[arg(long, value_delimiter = ',')]
        permissions: Option<Vec<String>>,
        #[arg(long, value_delimiter = ',')]
        roles: Option<Vec<String>>,
        /// Unix ms, RFC 3339, or `never`.
        #[arg(long)]
        expires: Option<String>,
        /// A balance, or `unlimited`.
        #[arg(long)]
        credits: Option<String>,
        #[arg(long)]
        meta: Option<String>,
    },
    /// Delete a key (it stops verifying at once).
    Revoke {
        key_id: String,
        /// Erase the row instead of marking it deleted.
        #[arg(long)]
        permanent: bool,
    },
    /// Verify a key (spends credits like a request would); exit 0 if valid.
    Verify {
        key: String,
        /// A permission query, e.g. "api.read AND api.write".
        #[arg(long)]
        permissions: Option<String>,
        #[arg(long)]
        cost: Option<i64>,
    },
}

/// Runs a `keygate keys` command; the config gives the embedded store's place.
pub async fn main(config_path: &Path, args: KeysArgs) -> ExitCode {
    let (op, body) = match request(&args.command) {
        Ok(request) => request,
        Err(message) => {
            eprintln!("keygate: {message}");
            return ExitCode::FAILURE;
        }
    };
    let answer = match &args.admin {
        Some(url) => remote(url, op, &body).await,
        None => embedded(config_path, op, &body).await,
    };
    let (ok, document) = match answer {
        Ok(answer) => answer,
        Err(message) => {
            eprintln!("keygate: {message}");
            return ExitCode::FAILURE;
        }
    };
    if !ok {
        let error = &document["error"];
        eprintln!(
            "keygate: {} ({}): {}",
            error["code"].as_str().unwrap_or("error"),
            error["status"],
            error["detail"].as_str().unwrap_or("")
        );
        for field in error["errors"].as_array().into_iter().flatten() {
            eprintln!("  {}: {}", field["location"].as_str().unwrap_or(""), field["message"].as_str().unwrap_or(""));
        }
        return ExitCode::FAILURE;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&document).unwrap_or_default());
    } else {
        print_human(op, &document);
    }
    let invalid = op == Op::VerifyKey && document["data"]["valid"] != json!(true);
    if invalid {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn expires_value(text: &str) -> Result<Value, String> {
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(json!(ms));
    }
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map(|at| json!((at.unix_timestamp_nanos() / 1_000_000) as i64))
        .map_err(|_| format!("--expires {text:?}: use unix milliseconds or RFC 3339"))
}

fn meta_value(text: &str) -> Result<Value, String> {
    match serde_json::from_str::<Value>(text) {
        Ok(object @ Value::Object(_)) => Ok(object),
        _ => Err(format!("--meta {text:?}: must be a JSON object")),
    }
}

/// The operation and its JSON body for a command.
fn request(command: &KeysCommand) -> Result<(Op, Value), String> {
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
                    let n: i64 = n.parse().map_err(|_| format!("--credits {n:?}: a number or `unlimited`"))?;
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

/// Runs the operation on the embedded store: `(success, {data, pagination} | {error})`.
async fn embedded(config_path: &Path, op: Op, body: &Value) -> Result<(bool, Value), String> {
    let config = Config::load(config_path).map_err(|e| e.to_string())?;
    let state = crate::state::StateSettings::compile(&config.file.state, config.base_dir());
    let service = Services::open(&state).map_err(|e| e.to_string())?.keys;
    let statics = StaticKeys::compile(&config.file.keyspaces, &service)
        .map_err(|(field, message)| config.error_at(&format!("keyspaces{field}"), message).to_string())?;
    let keys = Keys {
        service: service.clone(),
        statics: Arc::new(statics),
    };
    let outcome = run_op(op, body.to_string().as_bytes(), &keys).await;
    // Spent credits (verify) are written before the process exits.
    service.flush_credits().map_err(|e| e.to_string())?;
    match outcome {
        Ok(reply) => {
            let mut document = json!({"data": reply.data});
            if let Some(pagination) = reply.pagination {
                document["pagination"] = pagination;
            }
            Ok((true, document))
        }
        Err(error) => {
            let rendered = render(&error, "cli", DEFAULT_DOCS_BASE, Representation::Json);
            Ok((false, serde_json::from_str(&rendered.body).unwrap_or_default()))
        }
    }
}

/// Calls `POST {url}/v2/<op>` with the root key from `$KEYGATE_ROOT_KEY`.
async fn remote(url: &str, op: Op, body: &Value) -> Result<(bool, Value), String> {
    let base: http::Uri = url.parse().map_err(|_| format!("--admin {url:?}: not a URL"))?;
    if base.scheme_str() != Some("http") {
        return Err(format!("--admin {url:?}: use http://host:port (the admin listener)"));
    }
    let authority = base.authority().ok_or_else(|| format!("--admin {url:?}: no host"))?.clone();
    let port = authority.port_u16().unwrap_or(80);
    let connect = tokio::net::TcpStream::connect((authority.host(), port));
    let stream = tokio::time::timeout(std::time::Duration::from_secs(5), connect)
        .await
        .map_err(|_| format!("{url}: connect timed out"))?
        .map_err(|e| format!("{url}: {e}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    let path = format!("{}/v2/{}", base.path().trim_end_matches('/'), op.name());
    let mut request = http::Request::post(path)
        .header(http::header::HOST, authority.as_str())
        .header(http::header::CONTENT_TYPE, "application/json");
    if let Ok(key) = std::env::var("KEYGATE_ROOT_KEY") {
        request = request.header(http::header::AUTHORIZATION, format!("Bearer {key}"));
    }
    let request = request
        .body(Full::new(Bytes::from(body.to_string())))
        .map_err(|e| e.to_string())?;
    let response = sender.send_request(request).await.map_err(|e| e.to_string())?;
    let ok = response.status().is_success();
    let bytes = response.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    let document = serde_json::from_slice(&bytes).map_err(|_| format!("{url}: the answer is not JSON: {}", String::from_utf8_lossy(&bytes)))?;
    Ok((ok, document))
}

fn text(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(text).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

fn print_human(op: Op, document: &Value) {
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
            crate::cli::print_table(&header, &rows);
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
