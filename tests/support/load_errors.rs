//! Config load errors: `keygate check` on a config file, and the assertion
//! that a rejected file's error names the field and the offending line
//! ("line N" or "file:N:"), in `check` output as in reload logs.

use std::path::Path;

use super::gateway::run_keygate;

/// What `keygate check` said about a config.
pub struct Checked {
    pub code: Option<i32>,
    pub stderr: String,
    /// The config that was checked, for failure messages.
    pub config: String,
}

impl Checked {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

/// Writes `yaml` as `keygate.yaml` in a fresh temp dir and runs
/// `keygate check --config` on it there.
pub fn check_config(yaml: &str) -> Checked {
    let dir = tempfile::tempdir().unwrap();
    check_config_in(dir.path(), yaml, &[], &[])
}

/// Writes `yaml` as `dir/keygate.yaml` (so files it names relative to the
/// config can sit next to it) and runs `keygate check --config` in `dir`,
/// with `env` set and `env_remove` unset.
pub fn check_config_in(dir: &Path, yaml: &str, env: &[(&str, &str)], env_remove: &[&str]) -> Checked {
    let path = dir.join("keygate.yaml");
    std::fs::write(&path, yaml).unwrap();
    let out = run_keygate(&["check", "--config", path.to_str().unwrap()], dir, env, env_remove);
    Checked {
        code: out.status.code(),
        stderr: String::from_utf8_lossy(&out.stderr).to_string(),
        config: yaml.to_string(),
    }
}

/// Asserts that `keygate check` rejected the config (exit 1) with an error
/// that names every one of `needles` and at least one of `lines`.
pub fn assert_load_error(what: &str, checked: &Checked, needles: &[&str], lines: &[usize]) {
    assert_eq!(
        checked.code,
        Some(1),
        "{what}: exit code (stderr: {})\n--- file ---\n{}",
        checked.stderr,
        checked.config
    );
    for n in needles {
        assert!(
            checked.stderr.contains(n),
            "{what}: stderr should name {n:?}:\n{}",
            checked.stderr
        );
    }
    assert!(
        lines.iter().any(|&l| names_line(&checked.stderr, l)),
        "{what}: stderr should name line {lines:?}:\n{}",
        checked.stderr
    );
}

/// True when `text` names line N, as "line N" or compiler-style "file:N:"
/// (and not a longer number such as N0).
pub fn names_line(text: &str, n: usize) -> bool {
    let lower = text.to_lowercase();
    let word = format!("line {n}");
    let by_word = lower
        .match_indices(&word)
        .any(|(i, _)| !lower[i + word.len()..].starts_with(|c: char| c.is_ascii_digit()));
    by_word || lower.contains(&format!(":{n}:"))
}

/// True when `text` names some line of a file (see [`names_line`]).
pub fn names_some_line(text: &str) -> bool {
    (1..1000).any(|n| names_line(text, n))
}
