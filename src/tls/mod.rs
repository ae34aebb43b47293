//! TLS termination (SPEC §2 `tls`): the certificate store consulted per
//! handshake, its sources (the certs directory, a generated default) and
//! the settings the plain-HTTP listener needs (redirects).

mod dir;
pub mod pem;
mod resolver;
mod selfsigned;
pub mod store;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

pub use resolver::SniResolver;
pub use store::CertStore;

/// The `tls:` section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSpec {
    #[serde(default)]
    pub min_version: Option<MinVersion>,
    /// Default: true when `listen.https` is set (SPEC §9.23).
    #[serde(default)]
    pub redirect_http: Option<bool>,
    #[serde(default)]
    pub certs_dir: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum MinVersion {
    #[serde(rename = "1.2")]
    Tls12,
    #[serde(rename = "1.3")]
    Tls13,
}

/// The compiled `tls` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    pub tls13_only: bool,
    pub redirect_http: bool,
    pub certs_dir: Option<PathBuf>,
}

impl TlsSettings {
    pub fn compile(spec: &TlsSpec, https_enabled: bool, base_dir: &Path) -> Self {
        Self {
            tls13_only: spec.min_version == Some(MinVersion::Tls13),
            redirect_http: spec.redirect_http.unwrap_or(https_enabled),
            certs_dir: spec
                .certs_dir
                .as_deref()
                .map(|dir| base_dir.join(dir))
                .or_else(|| https_enabled.then(|| base_dir.join("certs"))),
        }
    }
}

/// The certificate store and the resolver that serves it.
pub struct Tls {
    pub store: Arc<CertStore>,
    pub resolver: Arc<SniResolver>,
}

impl Tls {
    /// A store with the generated default certificate and the certs directory loaded.
    pub fn start(settings: &TlsSettings) -> Result<Self, String> {
        let store = Arc::new(CertStore::default());
        store.install(store::Source::Default, selfsigned::generate()?);
        if let Some(dir) = &settings.certs_dir {
            dir::load_into(&store, dir);
        }
        let resolver = Arc::new(SniResolver::new(store.clone(), settings.tls13_only));
        Ok(Self { store, resolver })
    }

    /// Applies reloaded settings: the minimum version, and the directory (rescanned).
    pub fn apply(&self, settings: &TlsSettings) {
        self.resolver.set_tls13_only(settings.tls13_only);
        if let Some(dir) = &settings.certs_dir {
            dir::load_into(&self.store, dir);
        }
    }

    /// Rescans the certs directory (called by the watcher).
    pub fn rescan(&self, dir: &Path) {
        dir::load_into(&self.store, dir);
    }
}
