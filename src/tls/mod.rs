//! TLS termination (`tls`): the certificate store consulted per
//! handshake, its sources (the certs directory, ACME, a generated default)
//! and the settings the plain-HTTP listener needs (redirects, HTTP-01
//! challenges).

pub mod acme;
pub mod challenges;
mod dir;
pub mod pem;
mod resolver;
mod selfsigned;
pub mod store;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use acme::AcmeTask;
pub use challenges::ChallengeTokens;
pub use resolver::SniResolver;
pub use store::CertStore;

use crate::config::file::ListenSpec;
use crate::config::tls::{MinVersionSpec, TlsSpec};

/// The compiled `tls` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    pub tls13_only: bool,
    pub redirect_http: bool,
    pub certs_dir: Option<PathBuf>,
    pub acme: Option<acme::AcmeSettings>,
}

impl TlsSettings {
    /// Errors are `(field below tls, message)`.
    pub fn compile(spec: &TlsSpec, listen: &ListenSpec, base_dir: &Path) -> Result<Self, (String, String)> {
        let https_enabled = listen.https.is_some();
        let acme = match &spec.acme {
            Some(acme) => {
                if !https_enabled {
                    return Err((
                        "acme".into(),
                        "needs listen.https: ACME certificates are served there".into(),
                    ));
                }
                if listen.http.is_none() {
                    return Err((
                        "acme".into(),
                        "needs listen.http: the CA validates over plain HTTP (HTTP-01)".into(),
                    ));
                }
                Some(
                    acme::AcmeSettings::compile(acme, base_dir)
                        .map_err(|(field, message)| (format!("acme.{field}"), message))?,
                )
            }
            None => None,
        };
        Ok(Self {
            tls13_only: spec.min_version == Some(MinVersionSpec::Tls13),
            redirect_http: spec.redirect_http.unwrap_or(https_enabled),
            certs_dir: spec
                .certs_dir
                .as_deref()
                .map(|dir| base_dir.join(dir))
                .or_else(|| https_enabled.then(|| base_dir.join("certs"))),
            acme,
        })
    }
}

/// The certificate store and the resolver that serves it.
pub struct Tls {
    pub store: Arc<CertStore>,
    pub resolver: Arc<SniResolver>,
    /// `min_version: "1.3"` as started with (see [`install_crypto_provider`]).
    tls13_only: bool,
}

impl Tls {
    /// A store with the generated default certificate and the certs directory
    /// loaded; the process's TLS provider set up for `min_version`.
    pub fn start(settings: &TlsSettings) -> Result<Self, String> {
        install_crypto_provider(settings.tls13_only)?;
        let store = Arc::new(CertStore::default());
        store.install(store::Source::Default, selfsigned::generate()?);
        if let Some(dir) = &settings.certs_dir {
            dir::load_into(&store, dir);
        }
        let resolver = Arc::new(SniResolver::new(store.clone()));
        Ok(Self {
            store,
            resolver,
            tls13_only: settings.tls13_only,
        })
    }

    /// Applies reloaded settings: the directory (rescanned). The minimum
    /// version is fixed at start-up.
    pub fn apply(&self, settings: &TlsSettings) {
        if settings.tls13_only != self.tls13_only {
            tracing::warn!("tls.min_version changed: it takes effect after a restart");
        }
        if let Some(dir) = &settings.certs_dir {
            dir::load_into(&self.store, dir);
        }
    }

    /// Rescans the certs directory (called by the watcher).
    pub fn rescan(&self, dir: &Path) {
        dir::load_into(&self.store, dir);
    }
}

/// Installs ring as the process's rustls provider, before pingora builds the
/// listener's TLS config from it. pingora enables TLS 1.2 and 1.3 and its
/// certificate resolver never learns the negotiated version, so
/// `min_version: "1.3"` is enforced here: the provider carries only TLS 1.3
/// cipher suites, and a client limited to 1.2 finds none in common.
fn install_crypto_provider(tls13_only: bool) -> Result<(), String> {
    let mut provider = rustls::crypto::ring::default_provider();
    if tls13_only {
        provider
            .cipher_suites
            .retain(|suite| suite.version() == &rustls::version::TLS13);
    }
    if provider.install_default().is_err() && tls13_only {
        return Err("cannot enforce tls.min_version 1.3: a TLS provider was installed before".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::file::ListenAddr;

    #[test]
    fn acme_needs_both_proxy_listeners() {
        let spec: TlsSpec = serde_saphyr::from_str("acme: {email: ops@example.com}").unwrap();
        let addr = |a: &str| Some(ListenAddr(a.parse().unwrap()));
        let mut listen = ListenSpec::default();
        let (field, message) = TlsSettings::compile(&spec, &listen, Path::new(".")).unwrap_err();
        assert_eq!(field, "acme");
        assert!(message.contains("listen.https"), "{message}");

        listen.https = addr("127.0.0.1:8443");
        listen.http = None;
        let (_, message) = TlsSettings::compile(&spec, &listen, Path::new(".")).unwrap_err();
        assert!(message.contains("listen.http:"), "{message}");

        listen.http = addr("127.0.0.1:8080");
        let settings = TlsSettings::compile(&spec, &listen, Path::new(".")).unwrap();
        assert_eq!(settings.acme.and_then(|a| a.email).as_deref(), Some("ops@example.com"));
    }
}
