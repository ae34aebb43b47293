//! `keygate state`: moving what the gateway stores. `migrate` copies the
//! embedded key store of the config's `state.dir` into a PostgreSQL
//! database, so a single gateway can become a fleet without re-issuing keys.

use std::path::Path;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use crate::config::Config;
use crate::keys::migrate::migrate_to_database;
use crate::state::StateSettings;

#[derive(Debug, Args)]
pub struct StateArgs {
    #[command(subcommand)]
    command: StateCommand,
}

#[derive(Debug, Subcommand)]
enum StateCommand {
    /// Copy the embedded key store of --config's state.dir into a PostgreSQL database (safe to repeat; prints counts).
    Migrate {
        /// The database, e.g. postgres://keygate@10.0.0.5:5432/keygate (default: the config's state.database).
        #[arg(long, env = "KEYGATE_STATE_DATABASE")]
        to: Option<String>,
    },
}

pub fn main(config_path: &Path, args: &StateArgs) -> ExitCode {
    let StateCommand::Migrate { to } = &args.command;
    let config = match Config::load(config_path) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let state = StateSettings::of(&config);
    let Some(url) = to.as_deref().or(state.database.as_deref()) else {
        eprintln!("keygate: say where to copy to: --to postgres://… (or set state.database)");
        return ExitCode::FAILURE;
    };
    let keyspaces: Vec<String> = config.file.keyspaces.iter().map(|k| k.id.clone()).collect();
    match migrate_to_database(&state, url, &keyspaces) {
        Ok(report) => {
            print!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("keygate: {e}");
            ExitCode::FAILURE
        }
    }
}
