//! Configuration: read the YAML file (once, into a tree that knows lines),
//! substitute `${VAR}`s in its values, deserialize it strictly and
//! cross-check it. The result is only an input to
//! [`crate::snapshot::Snapshot::compile`]; nothing here runs per request.

pub mod deployment;
mod env;
pub mod file;
pub mod keys;
mod locate;
mod mask;
pub mod platform;
pub mod policy;
pub mod providers;
pub mod route;
pub mod schema;
pub mod state;
pub mod telemetry;
pub mod tls;
pub mod units;
mod validate;
mod yaml;

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

pub use file::ConfigFile;
use locate::LineIndex;

/// `#[serde(default = "enabled")]`: policies and keys are on unless switched off.
fn enabled() -> bool {
    true
}

/// Where the config file is unless `--config` says otherwise.
pub const DEFAULT_PATH: &str = "config/keygate.yaml";

/// The largest config file keygate reads (real ones are kilobytes): a
/// bigger one is refused without being read whole into memory.
const MAX_FILE_BYTES: u64 = 8 << 20;

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
        let read_error = |message: String| ConfigError::Read {
            path: path.to_path_buf(),
            message,
        };
        let file = std::fs::File::open(path).map_err(|e| read_error(e.to_string()))?;
        let mut bytes = Vec::new();
        file.take(MAX_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| read_error(e.to_string()))?;
        if bytes.len() as u64 > MAX_FILE_BYTES {
            return Err(too_large(path));
        }
        let text = String::from_utf8(bytes).map_err(|e| read_error(e.to_string()))?;
        Self::parse(&text, path)
    }

    /// Parses `text` as if read from `path` (relative paths resolve against its directory).
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        Self::parse_with_env(text, path, &|name| std::env::var(name).ok())
    }

    /// [`Self::parse`], with `${VAR}`s looked up by `env`.
    fn parse_with_env(text: &str, path: &Path, env: &impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let invalid = |line, field: Option<String>, message| ConfigError::Invalid {
            file: path.to_path_buf(),
            line,
            field,
            message,
        };
        if text.len() as u64 > MAX_FILE_BYTES {
            return Err(too_large(path));
        }
        let root = yaml::build(text, env).map_err(|e| invalid(Some(e.line), None, e.message))?;
        let file: ConfigFile = serde_path_to_error::deserialize(&root).map_err(|e| {
            let field = e.path().to_string();
            let inner = e.into_inner();
            let field = (field != "." && !field.is_empty()).then_some(field);
            invalid(Some(inner.line().unwrap_or(root.line)), field, inner.to_string())
        })?;
        let config = Self {
            file,
            path: path.to_path_buf(),
            lines: LineIndex::build(&root),
        };
        validate::cross_check(&config)?;
        Ok(config)
    }

    /// The directory relative paths in the file are resolved against.
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

fn too_large(path: &Path) -> ConfigError {
    ConfigError::Invalid {
        file: path.to_path_buf(),
        line: None,
        field: None,
        message: format!("the file is larger than {} MiB", MAX_FILE_BYTES >> 20),
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
        assert!(
            err.starts_with("k.yaml:2: limits.connect_timeout: invalid duration"),
            "{err}"
        );
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

    fn parse_with(text: &str, value: &str) -> Result<Config, String> {
        Config::parse_with_env(text, Path::new("k.yaml"), &|name| {
            (name == "V").then(|| value.to_string())
        })
        .map_err(|e| e.to_string())
    }

    #[test]
    fn a_variable_is_exactly_one_value() {
        let value = "a\"b 'c' d: e # f\n  g: {h}\n- [i]";
        for text in [
            "admin:\n  root_keys: [\"${V}\"]\n",
            "admin:\n  root_keys: ['${V}']\n",
            "admin:\n  root_keys:\n    - ${V}\n",
        ] {
            let config = parse_with(text, value).unwrap();
            assert_eq!(config.file.admin.root_keys, [value], "{text}");
        }
        // An attempt to add a key stays part of the value it is in.
        let config = parse_with("errors:\n  docs_base: ${V}\n", "x\n  extra: 1").unwrap();
        assert_eq!(config.file.errors.docs_base, "x\n  extra: 1");
    }

    #[test]
    fn a_plain_variable_is_typed_after_substitution() {
        let config = parse_with("listen:\n  threads: ${V}\n", "4").unwrap();
        assert_eq!(config.file.listen.threads, 4);
        let err = parse_with("listen:\n  threads: \"${V}\"\n", "4").unwrap_err();
        assert!(
            err.starts_with("k.yaml:2: listen.threads: invalid type: string"),
            "{err}"
        );
    }

    #[test]
    fn keys_comments_and_escapes_are_not_substituted() {
        let err = parse_with("${V}: 1\n", "listen").unwrap_err();
        assert!(err.contains("unknown field `${V}`"), "{err}");
        let config = parse_with("errors:\n  docs_base: $${V} # ${UNSET}\n", "x").unwrap();
        assert_eq!(config.file.errors.docs_base, "${V}");
    }

    #[test]
    fn unset_variable_names_it_and_its_line() {
        let err = parse_with("admin:\n  root_keys:\n    - \"${UNSET}\"\n", "x").unwrap_err();
        assert_eq!(
            err,
            "k.yaml:3: environment variable UNSET is not set (write $${ for a literal ${)"
        );
    }

    #[test]
    fn an_oversized_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.yaml");
        // Cut at the cap, the file would end inside a character.
        std::fs::write(&path, format!("# {}\n", "é".repeat(MAX_FILE_BYTES as usize / 2))).unwrap();
        let err = Config::load(&path).unwrap_err().to_string();
        assert!(err.ends_with("big.yaml: the file is larger than 8 MiB"), "{err}");
        assert!(parse(&format!("# {}\n", "x".repeat(MAX_FILE_BYTES as usize))).is_err());
    }

    #[test]
    fn defaults() {
        let config = parse("").unwrap();
        assert_eq!(config.file.listen.http.unwrap().0.port(), 8080);
        assert_eq!(config.file.limits.max_request_body.0, 10 << 20);
    }
}
