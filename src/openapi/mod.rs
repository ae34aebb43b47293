//! OpenAPI request validation. A deployment's OpenAPI 3.0 or 3.1 document — from `openapi.file`,
//! or fetched from its instances (`openapi.fetch_path`) — is compiled once
//! into a [`CompiledSpec`]: an operation router plus per-operation parameter
//! and body validators. The `openapi` policy only runs it. A fetched spec
//! lives in a [`SpecSlot`] that the background [`fetch`] loop fills and
//! refreshes, keeping the last good one when a fetch fails.

mod body;
mod compile;
mod document;
pub mod fetch;
mod params;
mod router;

use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwapOption;
pub use compile::CompiledSpec;
pub use fetch::FetchedSpecs;

use crate::config::deployment::OpenapiSourceSpec;

/// Why a document cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("not a YAML or JSON document: {0}")]
    Parse(String),
    #[error("unsupported OpenAPI version {0} (3.0.x and 3.1.x are supported)")]
    Version(String),
    #[error("at {at}: external $ref {target:?} (only references inside the document, `#/...`, are supported)")]
    ExternalRef { at: String, target: String },
    #[error("at {at}: {message}")]
    Invalid { at: String, message: String },
}

/// Parses and compiles a document (YAML or JSON text).
pub fn compile(text: &str) -> Result<CompiledSpec, SpecError> {
    CompiledSpec::compile(&document::load(text)?)
}

/// Where a deployment's spec comes from.
#[derive(Debug)]
enum Source {
    File,
    /// Fetched from a healthy instance at this path.
    Fetch(String),
}

/// A deployment's spec as requests see it: compiled at load for a file;
/// empty until the first successful fetch for `fetch_path`.
#[derive(Debug)]
pub struct SpecSlot {
    source: Source,
    current: ArcSwapOption<CompiledSpec>,
}

impl SpecSlot {
    /// Loads `spec` for `deployment`; a file is read and compiled now
    /// (relative to `base_dir`). Errors are `(field below openapi, message)`.
    /// A `fetch_path` slot starts with the spec last fetched for it, if any.
    pub fn load(
        spec: &OpenapiSourceSpec,
        deployment: &str,
        base_dir: &Path,
        fetched: &FetchedSpecs,
    ) -> Result<Self, (String, String)> {
        match (&spec.file, &spec.fetch_path) {
            (Some(file), None) => {
                let path = base_dir.join(file);
                let text = std::fs::read_to_string(&path)
                    .map_err(|source| SpecError::Read {
                        path: path.display().to_string(),
                        source,
                    })
                    .map_err(|e| (".file".to_string(), e.to_string()))?;
                let compiled = compile(&text).map_err(|e| (".file".to_string(), format!("{}: {e}", path.display())))?;
                Ok(Self {
                    source: Source::File,
                    current: ArcSwapOption::from_pointee(compiled),
                })
            }
            (None, Some(fetch_path)) => {
                if !fetch_path.starts_with('/') {
                    return Err((
                        ".fetch_path".into(),
                        format!("{fetch_path:?} must be an absolute path (start with /)"),
                    ));
                }
                Ok(Self {
                    current: ArcSwapOption::new(fetched.last_good(deployment, fetch_path)),
                    source: Source::Fetch(fetch_path.clone()),
                })
            }
            _ => Err((String::new(), "set exactly one of `file` and `fetch_path`".into())),
        }
    }

    /// The spec to check requests against; `None` until a fetch succeeded.
    pub fn current(&self) -> Option<Arc<CompiledSpec>> {
        self.current.load_full()
    }

    /// The instance path to fetch the spec from, for `fetch_path` sources.
    pub fn fetch_path(&self) -> Option<&str> {
        match &self.source {
            Source::Fetch(path) => Some(path),
            Source::File => None,
        }
    }

    fn store(&self, spec: Arc<CompiledSpec>) {
        self.current.store(Some(spec));
    }
}

#[cfg(test)]
mod tests;
