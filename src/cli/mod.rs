//! The `keygate` command line: `run` (the default), `check` and `config`
//! work on the config file, `state migrate` on its stored state; the client commands — `health`, `reload`,
//! `routes`, `certs list`, `keys`, `apis`, `deploy` — talk to a running gateway's
//! admin listener through one
//! client ([`client`]), finding it and its root key as [`target`] says.

mod apis;
mod certs;
mod client;
mod config;
mod deploy;
mod health;
mod keys;
mod reload;
mod routes;
mod state;
mod table;
mod target;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{Config, ConfigError, DEFAULT_PATH};
use crate::runtime::{Services, Snapshot};
use crate::state::StateSettings;
use crate::telemetry::LogFormat;

#[derive(Debug, Parser)]
#[command(
    name = "keygate",
    version,
    about = "A self-hosted API gateway: TLS, host routing, policies, API keys, rate limits."
)]
pub struct Cli {
    /// The configuration file (client commands read it only for their defaults).
    #[arg(long, short, global = true, env = "KEYGATE_CONFIG", default_value = DEFAULT_PATH)]
    pub config: PathBuf,
    /// How the gateway writes its process log: `text` or `json` (one object per line).
    #[arg(long, global = true, env = "KEYGATE_LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve traffic (the default).
    Run,
    /// Validate the configuration without serving: exit 0 if valid, 1 if not.
    Check,
    /// The configuration's JSON Schema, the KeygatePolicy CRD, the effective configuration.
    Config(config::ConfigArgs),
    /// Is the running gateway ready? Exit 0 when its /readyz answers 200, else 1.
    Health(target::AdminArgs),
    /// Ask the running gateway to reload its configuration file now.
    Reload(target::ClientArgs),
    /// Show the routing table of the running gateway (or of the file, when none answers).
    Routes(target::ClientArgs),
    /// Certificates the running gateway serves.
    Certs {
        #[command(subcommand)]
        command: CertsCommand,
    },
    /// API keys: create, list, get, update, revoke, verify, their permissions and roles, and the catalogue of permissions, roles and identities (through the running gateway, else the embedded store).
    Keys(Box<keys::KeysArgs>),
    /// Keyspaces (Unkey's APIs): create, list, get, delete.
    Apis(Box<apis::ApisArgs>),
    /// What the gateway stores: copy the embedded key store into a database.
    State(state::StateArgs),
    /// Deployments: create (--wait for ready), list, get, promote, rollback (through the running gateway).
    Deploy(Box<deploy::DeployArgs>),
}

#[derive(Debug, Subcommand)]
pub enum CertsCommand {
    /// Host, source (file/acme/kubernetes/default), issuer, expiry and days left.
    List(target::ClientArgs),
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = cli.config.as_path();
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => run(config, cli.log_format),
        Command::Check => check(config),
        Command::Config(args) => config::main(config, &args),
        Command::Health(args) => with_runtime(health::health(config, &args)),
        Command::Reload(args) => with_runtime(reload::reload(config, &args)),
        Command::Routes(args) => with_runtime(routes::routes(config, &args)),
        Command::Certs {
            command: CertsCommand::List(args),
        } => with_runtime(certs::list(config, &args)),
        Command::Keys(args) => with_runtime(keys::main(config, *args)),
        Command::Apis(args) => with_runtime(apis::main(config, *args)),
        Command::State(args) => state::main(config, &args),
        Command::Deploy(args) => with_runtime(deploy::main(config, *args)),
    }
}

fn run(path: &Path, log_format: LogFormat) -> ExitCode {
    crate::telemetry::init_logging(log_format);
    match crate::app::run(path) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("keygate: {e}");
            ExitCode::FAILURE
        }
    }
}

fn check(path: &Path) -> ExitCode {
    match Config::load(path).and_then(|c| compile_offline(&c)) {
        Ok(snapshot) => {
            println!(
                "{}: ok ({} deployments, {} routes)",
                path.display(),
                snapshot.deployments.len(),
                snapshot.routes.len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// Compiles a config without serving: keyspaces are checked against the
/// store in its `state.dir` if there is one, and nothing there (store, local
/// root key) is ever created.
fn compile_offline(config: &Config) -> Result<Snapshot, ConfigError> {
    let state = StateSettings::of(config);
    let services = Services::offline(&state).map_err(|e| ConfigError::Read {
        path: state.dir.clone(),
        message: e.to_string(),
    })?;
    Snapshot::compile(config, &services)
}

fn with_runtime(task: impl std::future::Future<Output = ExitCode>) -> ExitCode {
    match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime.block_on(task),
        Err(e) => {
            eprintln!("keygate: cannot start a runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_format_is_text_or_json() {
        let cli = Cli::try_parse_from(["keygate", "--log-format", "json", "run"]).unwrap();
        assert_eq!(cli.log_format, LogFormat::Json);
        let cli = Cli::try_parse_from(["keygate", "run", "--log-format", "TEXT"]).unwrap();
        assert_eq!(cli.log_format, LogFormat::Text);
        assert!(Cli::try_parse_from(["keygate", "--log-format", "xml"]).is_err());
    }
}
