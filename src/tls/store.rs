//! The live certificate store: consulted on every TLS handshake, replaced
//! whole (arc-swap) whenever a source — the certs directory, ACME — changes.
//! Lookup order: exact SNI → the one-label wildcard → the default.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use rustls::sign::CertifiedKey;
use tokio::sync::watch;

use super::pem::Certificate;
use crate::telemetry::metrics;

/// Where a certificate came from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    /// A `<name>.crt`/`<name>.key` pair in `tls.certs_dir`.
    File(String),
    /// Issued by the ACME CA for this host.
    Acme(String),
    /// A `kubernetes.io/tls` Secret (`namespace/name`) named by an Ingress's `spec.tls`.
    Kubernetes(String),
    /// Generated at start-up because nothing else was configured.
    Default,
}

impl Source {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::File(_) => "file",
            Self::Acme(_) => "acme",
            Self::Kubernetes(_) => "kubernetes",
            Self::Default => "default",
        }
    }
}

/// What `keygate certs list` shows about one served certificate.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CertInfo {
    pub host: String,
    pub source: &'static str,
    pub issuer: String,
    pub not_after: i64,
}

/// An immutable host → certificate map.
#[derive(Default)]
struct CertMap {
    exact: HashMap<String, Arc<Certificate>>,
    /// Keyed by parent: `*.example.com` is stored under `example.com`.
    wildcard: HashMap<String, Arc<Certificate>>,
    default: Option<Arc<Certificate>>,
}

/// Every certificate, by source; the map served to handshakes is rebuilt
/// from these whenever one changes.
pub struct CertStore {
    live: ArcSwap<CertMap>,
    sources: Mutex<HashMap<Source, Arc<Certificate>>>,
    /// Bumped on every change, so the ACME task notices new static certificates.
    generation: watch::Sender<u64>,
}

impl std::fmt::Debug for CertStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CertStore")
    }
}

impl Default for CertStore {
    fn default() -> Self {
        Self {
            live: ArcSwap::from_pointee(CertMap::default()),
            sources: Mutex::new(HashMap::new()),
            generation: watch::Sender::new(0),
        }
    }
}

impl CertStore {
    /// The certificate for a handshake's SNI (None: no SNI → default).
    pub fn for_sni(&self, sni: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let map = self.live.load();
        let found = sni
            .map(|name| name.trim_end_matches('.').to_ascii_lowercase())
            .and_then(|name| {
                map.exact.get(&name).cloned().or_else(|| {
                    let (_label, parent) = name.split_once('.')?;
                    map.wildcard.get(parent).cloned()
                })
            });
        found.or_else(|| map.default.clone()).map(|c| c.key.clone())
    }

    /// Whether a `certs_dir` certificate or a Kubernetes Secret serves `host`,
    /// exactly or by its wildcard (no ACME order is needed for it).
    pub fn has_static(&self, host: &str) -> bool {
        let Ok(sources) = self.sources.lock() else { return false };
        let wildcard = host.split_once('.').map(|(_, parent)| format!("*.{parent}"));
        sources.iter().any(|(source, cert)| {
            matches!(source, Source::File(_) | Source::Kubernetes(_))
                && cert
                    .hosts
                    .iter()
                    .any(|name| name == host || Some(name) == wildcard.as_ref())
        })
    }

    /// Announces every change: a certificate added, replaced or removed.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// Adds or replaces the certificate of `source`.
    pub fn install(&self, source: Source, certificate: Certificate) {
        self.update(|sources| {
            sources.insert(source, Arc::new(certificate));
        });
    }

    /// Replaces every certificate whose source matches `belongs` with `fresh`.
    pub fn replace_where(&self, belongs: impl Fn(&Source) -> bool, fresh: Vec<(Source, Certificate)>) {
        self.update(|sources| {
            sources.retain(|source, _| !belongs(source));
            sources.extend(fresh.into_iter().map(|(s, c)| (s, Arc::new(c))));
        });
    }

    /// The certificate installed for `source`, if any.
    pub fn get(&self, source: &Source) -> Option<Arc<Certificate>> {
        self.sources.lock().ok()?.get(source).cloned()
    }

    fn update(&self, change: impl FnOnce(&mut HashMap<Source, Arc<Certificate>>)) {
        let Ok(mut sources) = self.sources.lock() else { return };
        change(&mut sources);
        self.live.store(Arc::new(build_map(&sources)));
        self.generation.send_modify(|generation| *generation += 1);
        export_expiry(&sources);
    }

    /// Every host with its certificate, for `keygate certs list`.
    pub fn list(&self) -> Vec<CertInfo> {
        let Ok(sources) = self.sources.lock() else {
            return Vec::new();
        };
        let mut out: Vec<CertInfo> = sources
            .iter()
            .flat_map(|(source, cert)| {
                let hosts = if matches!(source, Source::Default) {
                    vec!["(default)".to_string()]
                } else {
                    cert.hosts.clone()
                };
                hosts.into_iter().map(move |host| CertInfo {
                    host,
                    source: source.kind(),
                    issuer: cert.issuer.clone(),
                    not_after: cert.not_after,
                })
            })
            .collect();
        out.sort_by(|a, b| a.host.cmp(&b.host));
        out
    }
}

/// File certificates beat Kubernetes Secrets, which beat ACME ones for the
/// same host; among one kind the
/// one that expires last wins. A `default` file becomes the default.
fn build_map(sources: &HashMap<Source, Arc<Certificate>>) -> CertMap {
    let mut ordered: Vec<(&Source, &Arc<Certificate>)> = sources.iter().collect();
    // Lowest priority first, so later inserts win.
    ordered.sort_by_key(|(source, cert)| (priority(source), cert.not_after));
    let mut map = CertMap::default();
    for (source, cert) in ordered {
        match source {
            Source::Default => map.default = Some(cert.clone()),
            Source::File(name) if name == "default" => map.default = Some(cert.clone()),
            _ => {}
        }
        if matches!(source, Source::Default) {
            continue;
        }
        for host in &cert.hosts {
            match host.strip_prefix("*.") {
                Some(parent) => map.wildcard.insert(parent.to_string(), cert.clone()),
                None => map.exact.insert(host.clone(), cert.clone()),
            };
        }
    }
    map
}

fn priority(source: &Source) -> u8 {
    match source {
        Source::Default => 0,
        Source::Acme(_) => 1,
        Source::Kubernetes(_) => 2,
        Source::File(_) => 3,
    }
}

fn export_expiry(sources: &HashMap<Source, Arc<Certificate>>) {
    for (source, cert) in sources {
        if matches!(source, Source::Default) {
            continue;
        }
        for host in &cert.hosts {
            metrics().set_certificate_expiry(host, cert.not_after);
        }
    }
}
