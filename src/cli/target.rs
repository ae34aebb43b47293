//! Which gateway a client command talks to and which root key it presents:
//! the flags, else the environment, else the `--config` file. The file is
//! read only when a default needs it, so a client command never needs the
//! environment variables the server's configuration refers to.

use std::cell::OnceCell;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

use clap::Args;

use super::client::{AdminClient, Endpoint, RootKey};
use crate::config::{Config, ConfigError};
use crate::state::StateSettings;

/// Where the admin listener is when neither `--admin` nor a config file says.
const DEFAULT_ADMIN: &str = "http://127.0.0.1:9901";
/// The environment variable a root key can come from.
const ROOT_KEY_ENV: &str = "KEYGATE_ROOT_KEY";

/// `--admin` and `--verbose`: every client command takes them.
#[derive(Debug, Args)]
pub struct AdminArgs {
    /// The gateway's admin listener, e.g. http://127.0.0.1:9901 [default: listen.admin of --config, else http://127.0.0.1:9901]
    #[arg(long, value_name = "URL", global = true)]
    pub admin: Option<String>,
    /// Say on stderr which gateway, root key and path are used.
    #[arg(long, short, global = true)]
    pub verbose: bool,
}

/// `--admin`, `--verbose` and `--root-key`: client commands that call the admin API.
#[derive(Debug, Args)]
pub struct ClientArgs {
    #[command(flatten)]
    pub admin: AdminArgs,
    /// The admin API's root key [default: $KEYGATE_ROOT_KEY, else the local root key in <state.dir>/admin/root_key of --config]
    #[arg(long, value_name = "KEY", global = true)]
    pub root_key: Option<String>,
}

/// The `--config` file, read at most once and only when something needs it.
pub struct LazyConfig {
    pub path: PathBuf,
    loaded: OnceCell<Result<Config, ConfigError>>,
}

impl LazyConfig {
    pub fn new(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
            loaded: OnceCell::new(),
        }
    }

    pub fn get(&self) -> Result<&Config, &ConfigError> {
        self.loaded.get_or_init(|| Config::load(&self.path)).as_ref()
    }
}

/// What `--verbose` adds: lines on stderr saying which gateway, root key
/// and path a command used.
#[derive(Debug, Clone, Copy)]
pub struct Notes(bool);

impl Notes {
    pub fn say(self, message: impl std::fmt::Display) {
        if self.0 {
            eprintln!("keygate: {message}");
        }
    }
}

/// A client command's gateway, root key and config file.
pub struct Target {
    pub client: AdminClient,
    pub config: LazyConfig,
    pub notes: Notes,
    /// The gateway was named with `--admin` (not a default).
    pub admin_given: bool,
}

impl Target {
    /// For calls without a root key (`health`).
    pub fn unauthenticated(config_path: &Path, args: &AdminArgs) -> Result<Self, String> {
        let (config, notes) = (LazyConfig::new(config_path), Notes(args.verbose));
        let endpoint = endpoint(args, &config, notes)?;
        Ok(Self {
            client: AdminClient::new(endpoint, None),
            config,
            notes,
            admin_given: args.admin.is_some(),
        })
    }

    /// For admin API calls.
    pub fn authenticated(config_path: &Path, args: &ClientArgs) -> Result<Self, String> {
        let (config, notes) = (LazyConfig::new(config_path), Notes(args.admin.verbose));
        let endpoint = endpoint(&args.admin, &config, notes)?;
        let root_key = root_key(args, &config, notes);
        Ok(Self {
            client: AdminClient::new(endpoint, root_key),
            config,
            notes,
            admin_given: args.admin.admin.is_some(),
        })
    }
}

/// `--admin`, else the config's `listen.admin`, else the default address.
fn endpoint(args: &AdminArgs, config: &LazyConfig, notes: Notes) -> Result<Endpoint, String> {
    if let Some(text) = &args.admin {
        let url = parse_admin_url(text)?;
        notes.say(format_args!("admin listener: {url} (--admin)"));
        return Ok(Endpoint::Url(url));
    }
    if !config.path.exists() {
        notes.say(format_args!(
            "admin listener: {DEFAULT_ADMIN} ({} does not exist)",
            config.path.display()
        ));
        return Ok(Endpoint::Url(DEFAULT_ADMIN.to_string()));
    }
    let loaded = config.get().map_err(|e| {
        format!(
            "{e}\n(pass --admin URL to reach a gateway without reading {})",
            config.path.display()
        )
    })?;
    match loaded.file.listen.admin {
        Some(addr) => {
            let url = format!("http://{}", reachable(addr.0));
            notes.say(format_args!(
                "admin listener: {url} (listen.admin of {})",
                config.path.display()
            ));
            Ok(Endpoint::Url(url))
        }
        None => Ok(Endpoint::Off {
            config: config.path.clone(),
        }),
    }
}

/// `--root-key`, else `$KEYGATE_ROOT_KEY`, else the local root key of the
/// config's `state.dir` (when its `admin.root_keys` is empty, as the
/// gateway does). `None`: calls go without one, and are refused.
fn root_key(args: &ClientArgs, config: &LazyConfig, notes: Notes) -> Option<RootKey> {
    let given = |key: Option<String>, source: &str| {
        key.filter(|k| !k.is_empty()).map(|key| RootKey {
            key,
            source: format!("the key from {source}"),
        })
    };
    let found = given(args.root_key.clone(), "--root-key")
        .or_else(|| given(std::env::var(ROOT_KEY_ENV).ok(), ROOT_KEY_ENV))
        .or_else(|| local_root_key(config, notes));
    notes.say(format_args!(
        "root key: {}",
        found.as_ref().map_or("none", |key| key.source.as_str())
    ));
    found
}

fn local_root_key(config: &LazyConfig, notes: Notes) -> Option<RootKey> {
    let loaded = match config.get() {
        Ok(loaded) => loaded,
        Err(e) => {
            notes.say(format_args!("no local root key: {e}"));
            return None;
        }
    };
    if !loaded.file.admin.root_keys.is_empty() {
        return None;
    }
    let state = StateSettings::of(loaded);
    match state.read_root_key() {
        Ok(key) => key.map(|key| RootKey {
            key,
            source: format!("the local root key in {}", state.root_key_path().display()),
        }),
        Err(e) => {
            eprintln!("keygate: {e}");
            None
        }
    }
}

/// `--admin`'s value as `http://host:port[/prefix]`; a bare `host:port` is
/// taken as plain HTTP (the admin listener has no TLS).
fn parse_admin_url(text: &str) -> Result<String, String> {
    let with_scheme = if text.contains("://") {
        text.to_string()
    } else {
        format!("http://{text}")
    };
    let uri: http::Uri = with_scheme
        .parse()
        .map_err(|_| format!("--admin {text:?}: not a URL"))?;
    if uri.scheme_str() != Some("http") {
        return Err(format!(
            "--admin {text:?}: the admin listener speaks plain HTTP: use http://host:port"
        ));
    }
    let authority = uri.authority().ok_or_else(|| format!("--admin {text:?}: no host"))?;
    Ok(format!("http://{authority}{}", uri.path().trim_end_matches('/')))
}

/// A listen address as a client reaches it: a wildcard address (`0.0.0.0`,
/// `::`) through loopback.
fn reachable(addr: SocketAddr) -> SocketAddr {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, addr.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_urls() {
        assert_eq!(
            parse_admin_url("http://127.0.0.1:9901/").unwrap(),
            "http://127.0.0.1:9901"
        );
        assert_eq!(parse_admin_url("localhost:9901").unwrap(), "http://localhost:9901");
        assert_eq!(
            parse_admin_url("http://gw:9901/admin/").unwrap(),
            "http://gw:9901/admin"
        );
        assert!(parse_admin_url("https://gw:9901").unwrap_err().contains("plain HTTP"));
        assert!(parse_admin_url("http://").is_err());
    }

    #[test]
    fn wildcard_addresses_are_reached_through_loopback() {
        let at = |text: &str| reachable(text.parse().unwrap()).to_string();
        assert_eq!(at("0.0.0.0:9901"), "127.0.0.1:9901");
        assert_eq!(at("[::]:9901"), "[::1]:9901");
        assert_eq!(at("10.0.0.5:9901"), "10.0.0.5:9901");
    }
}
