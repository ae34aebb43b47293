//! Configuration: read the YAML file, substitute `${VAR}`s, deserialize it
//! strictly and cross-check it. The result is only an input to
//! [`crate::snapshot::Snapshot::compile`]; nothing here runs per request.

pub mod deployment;
mod env;
pub mod file;
pub mod keys;
mod locate;
pub mod policy;
pub mod providers;
pub mod state;
pub mod telemetry;
pub mod tls;
pub mod units;
mod validate;

use std::fmt;
use std::path::{Path, PathBuf};

pub use file::ConfigFile;
use locate::LineIndex;

/// `#[serde(default = "enabled")]`: policies and keys are on unless switched off.
fn enabled() -> bool {
    true
}

/// Where SPEC §2 says the config is unless `--config` says otherwise.
pub const DEFAULT_PATH: &str = "config/keygate.yaml";

/// A parsed and cross-checked configuration file.
#[derive(Debug)]
pub struct Config {
    pub file: ConfigFile,
    pub path: PathBuf,
    lines: LineIndex,
}

impl Config {
    /// Reads, parses and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        Self::parse(&text, path)
    }

    /// Parses `text` as if read from `path` (relative paths resolve against its directory).
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let text = env::substitute(text, |name| std::env::var(name).ok()).map_err(|unset| {
            ConfigError::Invalid {
                file: path.to_path_buf(),
                line: Some(unset.line),
                field: None,
                message: format!("environment variable {} is not set (write $${{ for a literal ${{)", unset.name),
            }
        })?;
        let lines = LineIndex::build(&text);
        let deserializer = serde_yaml::Deserializer::from_str(&text);
        let file: ConfigFile = serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let field = e.path().to_string();
            let inner = e.into_inner();
            let line = inner
                .location()
                .map(|l| l.line())
                .or_else(|| lines.line_of(&field));
            let message = strip_location(&inner.to_string(), &field);
            ConfigError::Invalid {
                file: path.to_path_buf(),
                line,
                field: (field != "." && !field.is_empty()).then_some(field),
                message,
            }
        })?;
        let config = Self {
            file,
            path: path.to_path_buf(),
            lines,
        };
        validate::cross_check(&config)?;
        Ok(config)
    }

    /// The directory relative paths in the file are resolved against (SPEC §9.1).
    pub fn base_dir(&self) -> &Path {
        self.path.parent().unwrap_or_else(|| Path::new("."))
    }

    /// An error about the value at `field` (e.g. `routes[2].deployment`), located in the file.
    pub fn error_at(&self, field: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            file: self.path.clone(),
            line: self.lines.line_of(field),
            field: Some(field.to_string()),
            message: message.into(),
        }
    }
}

/// serde_yaml prefixes part of the field path and appends " at line L column
/// C"; the error carries both itself.
fn strip_location(message: &str, field: &str) -> String {
    let message = match message.rfind(" at line ") {
        Some(at) => &message[..at],
        None => message,
    };
    match message.split_once(": ") {
        Some((path, rest)) if !path.is_empty() && field.starts_with(path) => rest.to_string(),
        _ => message.to_string(),
    }
}

/// Why a configuration cannot be used: always names the file, and the field
/// and line when known.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: cannot read the config file: {message}", path.display())]
    Read { path: PathBuf, message: String },
    #[error("{}", InvalidDisplay { file, line: *line, field: field.as_deref(), message })]
    Invalid {
        file: PathBuf,
        line: Option<usize>,
        field: Option<String>,
        message: String,
    },
}

struct InvalidDisplay<'a> {
    file: &'a Path,
    line: Option<usize>,
    field: Option<&'a str>,
    message: &'a str,
}

impl fmt::Display for InvalidDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(field) = self.field {
            write!(f, ": {field}")?;
        }
        write!(f, ": {}", self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(text, Path::new("k.yaml")).map_err(|e| e.to_string())
    }

    #[test]
    fn unknown_field_names_path_and_line() {
        let err = parse("listen:\n  http: \"127.0.0.1:1\"\n  htps: x\n").unwrap_err();
        assert!(err.starts_with("k.yaml:3: listen"), "{err}");
        assert!(err.contains("unknown field `htps`"), "{err}");
    }

    #[test]
    fn bad_duration_is_located() {
        let err = parse("limits:\n  connect_timeout: soon\n").unwrap_err();
        assert!(err.starts_with("k.yaml:2: limits.connect_timeout: invalid duration"), "{err}");
    }

    #[test]
    fn bad_instance_is_located() {
        let err = parse("deployments:\n  - id: a\n    instances: [\"127.0.0.1:3000\", \"nope\"]\n").unwrap_err();
        assert!(err.contains("k.yaml:3: deployments[0].instances[1]"), "{err}");
    }

    #[test]
    fn yaml_syntax_error_has_a_line() {
        let err = parse("listen:\n  http: [\n").unwrap_err();
        assert!(err.starts_with("k.yaml:"), "{err}");
    }

    #[test]
    fn defaults() {
        let config = parse("").unwrap();
        assert_eq!(config.file.listen.http.unwrap().0.port(), 8080);
        assert_eq!(config.file.limits.max_request_body.0, 10 << 20);
    }
}
