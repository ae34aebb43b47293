//! `keygate keys create|list|get|update|revoke|verify|whoami`, the key's
//! permissions and roles (`add-permissions`, … `set-roles`), and the
//! catalogue (`keys permissions|roles|identities …`): the admin API's
//! operations from the command line, printed as a table (or the JSON with
//! `--json`). `keygate apis` ([`super::apis`]) goes the same way.
//!
//! When a gateway answers at the admin address, the operation goes through
//! it: a running gateway keeps credits in memory and writes them back every
//! second, so a balance written into its store behind its back would be
//! overwritten. Only when no gateway answers is the embedded store of the
//! config's `state.dir` opened directly. Both paths run the same operations
//! ([`crate::admin::keys::run`]).

mod catalogue;
mod print;
mod request;

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Subcommand};
use http::Method;
use serde_json::{json, Value};

use super::client::{ApiError, CallError};
use super::target::{ClientArgs, LazyConfig, Target};
use crate::admin::rpc::{run as run_op, Op};
use crate::keys::{Keys, StaticKeys};
use crate::runtime::Services;
use crate::state::StateSettings;

#[derive(Debug, Args)]
pub struct KeysArgs {
    #[command(flatten)]
    pub client: ClientArgs,
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
        /// A name for people.
        #[arg(long)]
        name: Option<String>,
        /// The key starts with `<prefix>_`.
        #[arg(long)]
        prefix: Option<String>,
        /// The identity the key belongs to (it becomes the Principal's subject).
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
        /// The keyspace (apiId).
        #[arg(long)]
        api: String,
        /// Only the keys of this identity.
        #[arg(long)]
        external_id: Option<String>,
        /// At most this many keys.
        #[arg(long)]
        limit: Option<u32>,
        /// Continue after a previous page (printed as `--cursor …`).
        #[arg(long)]
        cursor: Option<String>,
    },
    /// One key by id.
    Get {
        /// The key's id (key_…).
        key_id: String,
    },
    /// Change a key.
    Update {
        /// The key's id (key_…).
        key_id: String,
        /// A name for people.
        #[arg(long)]
        name: Option<String>,
        /// `true` or `false`.
        #[arg(long)]
        enabled: Option<bool>,
        /// Comma-separated; replaces the key's permissions.
        #[arg(long, value_delimiter = ',')]
        permissions: Option<Vec<String>>,
        /// Comma-separated; replaces the key's roles.
        #[arg(long, value_delimiter = ',')]
        roles: Option<Vec<String>>,
        /// Unix ms, RFC 3339, or `never`.
        #[arg(long)]
        expires: Option<String>,
        /// A balance, or `unlimited`.
        #[arg(long)]
        credits: Option<String>,
        /// A JSON object; replaces the key's meta.
        #[arg(long)]
        meta: Option<String>,
    },
    /// Delete a key (it stops verifying at once).
    Revoke {
        /// The key's id (key_…).
        key_id: String,
        /// Erase the row instead of marking it deleted.
        #[arg(long)]
        permanent: bool,
    },
    /// Add permissions to a key (slugs; those that do not exist are created).
    AddPermissions {
        /// The key's id (key_…).
        key_id: String,
        /// Comma- or space-separated.
        #[arg(required = true, value_delimiter = ',')]
        permissions: Vec<String>,
    },
    /// Take permissions from a key.
    RemovePermissions {
        /// The key's id (key_…).
        key_id: String,
        #[arg(required = true, value_delimiter = ',')]
        permissions: Vec<String>,
    },
    /// Replace a key's own permissions (none: remove them all).
    SetPermissions {
        /// The key's id (key_…).
        key_id: String,
        #[arg(value_delimiter = ',')]
        permissions: Vec<String>,
    },
    /// Give a key roles (they must exist: `keygate keys roles create`).
    AddRoles {
        /// The key's id (key_…).
        key_id: String,
        #[arg(required = true, value_delimiter = ',')]
        roles: Vec<String>,
    },
    /// Take roles from a key.
    RemoveRoles {
        /// The key's id (key_…).
        key_id: String,
        #[arg(required = true, value_delimiter = ',')]
        roles: Vec<String>,
    },
    /// Replace a key's roles (none: remove them all).
    SetRoles {
        /// The key's id (key_…).
        key_id: String,
        #[arg(value_delimiter = ',')]
        roles: Vec<String>,
    },
    /// The key behind a plaintext key (nothing is spent).
    Whoami {
        /// The key itself (its plaintext).
        key: String,
    },
    /// The permission catalogue: list, create, get, update, delete.
    Permissions {
        #[command(subcommand)]
        command: catalogue::PermissionsCommand,
    },
    /// Roles (named sets of permissions): list, create, get, update, delete, set-permissions.
    Roles {
        #[command(subcommand)]
        command: catalogue::RolesCommand,
    },
    /// Identities (shared meta and rate limits of the keys of one externalId).
    Identities {
        #[command(subcommand)]
        command: catalogue::IdentitiesCommand,
    },
    /// Verify a key (spends credits like a request would); exit 0 if valid.
    Verify {
        /// The key itself (its plaintext).
        key: String,
        /// A permission query, e.g. "api.read AND api.write".
        #[arg(long)]
        permissions: Option<String>,
        /// Credits to spend (default 1 for a key with a balance).
        #[arg(long)]
        cost: Option<i64>,
    },
}

/// Runs a `keygate keys` command against the gateway, or the embedded store
/// when no gateway answers.
pub async fn main(config_path: &Path, args: KeysArgs) -> ExitCode {
    call(config_path, &args.client, args.json, request::request(&args.command)).await
}

/// Runs one admin API operation (or reports why it cannot) and prints its answer.
pub(super) async fn call(
    config_path: &Path,
    client: &ClientArgs,
    as_json: bool,
    request: Result<(Op, Value), String>,
) -> ExitCode {
    let answer = match (request, Target::authenticated(config_path, client)) {
        (Ok((op, body)), Ok(target)) => perform(&target, op, &body).await.map(|outcome| (op, outcome)),
        (Err(message), _) | (_, Err(message)) => Err(message),
    };
    let (op, document) = match answer {
        Ok((op, Ok(document))) => (op, document),
        Ok((_, Err(error))) => {
            eprintln!("keygate: {error}");
            return ExitCode::FAILURE;
        }
        Err(message) => {
            eprintln!("keygate: {message}");
            return ExitCode::FAILURE;
        }
    };
    if as_json {
        println!("{}", serde_json::to_string_pretty(&document).unwrap_or_default());
    } else {
        print::print_human(op, &document);
    }
    let invalid = op == Op::VerifyKey && document["data"]["valid"] != json!(true);
    if invalid {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// The operation through the gateway, or on the embedded store when none
/// answers: the answer document, or the API error. `Err`: neither could run it.
async fn perform(target: &Target, op: Op, body: &Value) -> Result<Result<Value, ApiError>, String> {
    match target
        .client
        .call(Method::POST, &format!("/v2/{}", op.name()), Some(body))
        .await
    {
        Ok(document) => {
            target
                .notes
                .say(format_args!("{} through the gateway's admin API", op.name()));
            Ok(Ok(document))
        }
        Err(CallError::Failed(error)) => Ok(Err(*error)),
        Err(error) if error.no_gateway_answered() => {
            let note = format!(
                "{error}; {} runs on the embedded store of {}",
                op.name(),
                target.config.path.display()
            );
            // Named with --admin, a gateway that is not there is worth a word even without --verbose.
            if target.admin_given {
                eprintln!("keygate: {note}");
            } else {
                target.notes.say(note);
            }
            embedded(&target.config, op, body).await
        }
        Err(error) => Err(error.to_string()),
    }
}

/// Runs the operation on the embedded store of the config's `state.dir`.
async fn embedded(config: &LazyConfig, op: Op, body: &Value) -> Result<Result<Value, ApiError>, String> {
    let config = config.get().map_err(ToString::to_string)?;
    let service = Services::open(&StateSettings::of(config))
        .map_err(|e| e.to_string())?
        .keys;
    let statics = StaticKeys::compile(&config.file.keyspaces, &service)
        .map_err(|(field, message)| config.error_at(&format!("keyspaces{field}"), message).to_string())?;
    let keys = Keys {
        service: service.clone(),
        statics: Arc::new(statics),
    };
    let outcome = run_op(op, body.to_string().as_bytes(), &keys).await;
    // Spent credits (verify) are written before the process exits.
    service.flush_credits().map_err(|e| e.to_string())?;
    Ok(match outcome {
        Ok(reply) => {
            let mut document = json!({"data": reply.data});
            if let Some(pagination) = reply.pagination {
                document["pagination"] = pagination;
            }
            Ok(document)
        }
        Err(error) => Err(ApiError::from(&error)),
    })
}
