//! `keygate apis create|list|get|delete`: keyspaces (Unkey calls them APIs)
//! through the admin API, like `keygate keys` (and, when no gateway
//! answers, on the embedded store). `list` shows the config's keyspaces
//! beside those created through the API.

use std::path::Path;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::{json, Value};

use super::keys::call;
use super::target::ClientArgs;
use crate::admin::rpc::Op;

#[derive(Debug, Args)]
pub struct ApisArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: ApisCommand,
}

#[derive(Debug, Subcommand)]
pub enum ApisCommand {
    /// Create a keyspace; its id (api_…) is printed.
    Create {
        /// A name for people (3 to 256 characters).
        name: String,
    },
    /// Every keyspace, from the config and the store.
    List {
        /// At most this many.
        #[arg(long)]
        limit: Option<u32>,
        /// Continue after a previous page (printed as `--cursor …`).
        #[arg(long)]
        cursor: Option<String>,
    },
    /// One keyspace.
    Get {
        /// Its id.
        api_id: String,
    },
    /// Delete a keyspace and every key in it (they stop verifying at once).
    Delete {
        /// Its id.
        api_id: String,
    },
}

fn request(command: &ApisCommand) -> (Op, Value) {
    match command {
        ApisCommand::Create { name } => (Op::CreateApi, json!({"name": name})),
        ApisCommand::List { limit, cursor } => {
            let mut body = json!({});
            if let Some(limit) = limit {
                body["limit"] = json!(limit);
            }
            if let Some(cursor) = cursor {
                body["cursor"] = json!(cursor);
            }
            (Op::ListApis, body)
        }
        ApisCommand::Get { api_id } => (Op::GetApi, json!({"apiId": api_id})),
        ApisCommand::Delete { api_id } => (Op::DeleteApi, json!({"apiId": api_id})),
    }
}

pub async fn main(config_path: &Path, args: ApisArgs) -> ExitCode {
    call(config_path, &args.client, args.json, Ok(request(&args.command))).await
}
