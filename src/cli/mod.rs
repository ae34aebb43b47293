//! The `keygate` command line: `run` (default), `check`, `reload`,
//! `routes`, `certs`, `keys`.

mod keys;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use bytes::Bytes;
use clap::{Parser, Subcommand};
use http_body_util::{BodyExt, Full};

use crate::config::{Config, DEFAULT_PATH};
use crate::runtime::{Services, Snapshot};

#[derive(Debug, Parser)]
#[command(name = "keygate", version, about = "A self-hosted API gateway: TLS, host routing, policies, API keys, rate limits.")]
pub struct Cli {
    /// The configuration file.
    #[arg(long, short, global = true, env = "KEYGATE_CONFIG", default_value = DEFAULT_PATH)]
    pub config: PathBuf,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve traffic (the default).
    Run,
    /// Validate the configuration without serving: exit 0 if valid, 1 if not.
    Check,
    /// Ask the running gateway to reload its configuration (uses $KEYGATE_ROOT_KEY).
    Reload,
    /// Show the resolved routing table of the running gateway (or of the file).
    Routes,
    /// API keys: create, list, get, update, revoke, verify (embedded store, or --admin URL).
    Keys(Box<keys::KeysArgs>),
    /// Certificates the running gateway serves.
    Certs {
        #[command(subcommand)]
        command: CertsCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum CertsCommand {
    /// Host, source (file/acme/default), issuer, expiry and days left.
    List,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => run(&cli.config),
        Command::Check => check(&cli.config),
        Command::Reload => with_runtime(reload(&cli.config)),
        Command::Routes => with_runtime(routes(&cli.config)),
        Command::Keys(args) => with_runtime(keys::main(&cli.config, *args)),
        Command::Certs { command: CertsCommand::List } => with_runtime(certs_list(&cli.config)),
    }
}

fn run(path: &Path) -> ExitCode {
    crate::telemetry::init_logging();
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
/// store in its `state.dir` if there is one (it is never created here).
fn compile_offline(config: &Config) -> Result<Snapshot, crate::config::ConfigError> {
    let state = crate::state::StateSettings::compile(&config.file.state, config.base_dir());
    let services = Services::offline(&state).map_err(|e| crate::config::ConfigError::Read {
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

/// The config at `path`, or `None` with the error printed.
fn load_or_report(path: &Path) -> Option<Config> {
    Config::load(path).map_err(|e| eprintln!("{e}")).ok()
}

async fn reload(path: &Path) -> ExitCode {
    let Some(config) = load_or_report(path) else {
        return ExitCode::FAILURE;
    };
    let Some(admin) = config.file.listen.admin else {
        eprintln!("keygate: listen.admin is not set; send SIGHUP to the gateway instead");
        return ExitCode::FAILURE;
    };
    match admin_call(admin.0, http::Method::POST, "/v1/admin.reload").await {
        Ok((200, _)) => {
            println!("reloaded {}", path.display());
            ExitCode::SUCCESS
        }
        Ok((status, body)) => {
            eprintln!("keygate: reload failed ({status}): {body}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("keygate: cannot reach the gateway at {}: {e}", admin.0);
            ExitCode::FAILURE
        }
    }
}

async fn routes(path: &Path) -> ExitCode {
    let Some(config) = load_or_report(path) else {
        return ExitCode::FAILURE;
    };
    let from_gateway = match config.file.listen.admin {
        Some(admin) => match admin_call(admin.0, http::Method::GET, "/v1/routes").await {
            Ok((200, body)) => serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .map(|v| v["data"].clone()),
            Ok((status, body)) => {
                eprintln!("keygate: the gateway answered {status}: {body}");
                None
            }
            Err(_) => None,
        },
        None => None,
    };
    let table = match from_gateway {
        Some(table) => table,
        None => match compile_offline(&config) {
            Ok(snapshot) => {
                println!("(no running gateway answered; showing the routes of {})", path.display());
                crate::admin::routes::describe(&snapshot)
            }
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::FAILURE;
            }
        },
    };
    print_routes(&table);
    ExitCode::SUCCESS
}

async fn certs_list(path: &Path) -> ExitCode {
    let Some(config) = load_or_report(path) else {
        return ExitCode::FAILURE;
    };
    let Some(admin) = config.file.listen.admin else {
        eprintln!("keygate: listen.admin is not set");
        return ExitCode::FAILURE;
    };
    let body = match admin_call(admin.0, http::Method::GET, "/v1/certs").await {
        Ok((200, body)) => body,
        Ok((status, body)) => {
            eprintln!("keygate: the gateway answered {status}: {body}");
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("keygate: cannot reach the gateway at {}: {e}", admin.0);
            return ExitCode::FAILURE;
        }
    };
    let parsed: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let rows: Vec<[String; 5]> = parsed["data"]["certificates"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            let not_after = c["not_after"].as_i64().unwrap_or(0);
            let expires = humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(not_after.max(0) as u64));
            [
                c["host"].as_str().unwrap_or("").to_string(),
                c["source"].as_str().unwrap_or("").to_string(),
                c["issuer"].as_str().unwrap_or("").to_string(),
                expires.to_string(),
                ((not_after - now) / 86_400).to_string(),
            ]
        })
        .collect();
    print_table(&["HOST", "SOURCE", "ISSUER", "NOT AFTER", "DAYS LEFT"], &rows);
    ExitCode::SUCCESS
}

fn print_routes(table: &serde_json::Value) {
    let rows: Vec<[String; 4]> = table["routes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            let path = r["path_prefix"].as_str().unwrap_or("/");
            let mut notes = Vec::new();
            if r["strip_prefix"].as_bool().unwrap_or(false) {
                notes.push("strip prefix".to_string());
            }
            if let Some(code) = r["refusal"].as_str() {
                notes.push(format!("answers {code}"));
            }
            [
                r["host"].as_str().unwrap_or("").to_string(),
                // nginx's notation for an exact location (Kubernetes `pathType: Exact`).
                if r["exact"].as_bool().unwrap_or(false) { format!("= {path}") } else { path.to_string() },
                r["deployment"].as_str().unwrap_or("").to_string(),
                notes.join(", "),
            ]
        })
        .collect();
    print_table(&["HOST", "PATH", "DEPLOYMENT", "NOTES"], &rows);
    println!();
    let rows: Vec<[String; 4]> = table["deployments"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| {
            let instances: Vec<String> = d["instances"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|i| {
                    let state = match (i["healthy"].as_bool(), i["available"].as_bool()) {
                        (Some(false), _) => "unhealthy",
                        (_, Some(false)) => "ejected",
                        _ => "up",
                    };
                    format!("{} ({state})", i["address"].as_str().unwrap_or("?"))
                })
                .collect();
            [
                d["id"].as_str().unwrap_or("").to_string(),
                d["environment"].as_str().unwrap_or("").to_string(),
                format!("{}/{}", d["protocol"].as_str().unwrap_or(""), d["selection"].as_str().unwrap_or("")),
                instances.join(", "),
            ]
        })
        .collect();
    print_table(&["DEPLOYMENT", "ENVIRONMENT", "PROTOCOL/SELECTION", "INSTANCES (STATE)"], &rows);
}

pub(crate) fn print_table<const N: usize>(header: &[&str; N], rows: &[[String; N]]) {
    let mut widths = header.map(str::len);
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells.iter().zip(widths).map(|(c, w)| format!("{c:<w$}")).collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// One request to the admin listener with the root key from `$KEYGATE_ROOT_KEY`.
async fn admin_call(addr: std::net::SocketAddr, method: http::Method, path: &str) -> Result<(u16, String), String> {
    let connect_addr = if addr.ip().is_unspecified() {
        std::net::SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    };
    let stream = tokio::time::timeout(std::time::Duration::from_secs(5), tokio::net::TcpStream::connect(connect_addr))
        .await
        .map_err(|_| "connect timed out".to_string())?
        .map_err(|e| e.to_string())?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    let mut request = http::Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, connect_addr.to_string());
    if let Ok(key) = std::env::var("KEYGATE_ROOT_KEY") {
        request = request.header(http::header::AUTHORIZATION, format!("Bearer {key}"));
    }
    let request = request.body(Full::new(Bytes::new())).map_err(|e| e.to_string())?;
    let response = sender.send_request(request).await.map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}
