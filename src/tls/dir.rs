//! `tls.certs_dir`: `<name>.crt` + `<name>.key` pairs, hostnames
//! from the certificates' SANs. Rescanned on every change; a pair that does
//! not load (unreadable, key mismatch, expired) is refused with a log line
//! and the certificate it would have replaced keeps being served.

use std::collections::HashSet;
use std::path::Path;

use super::pem::Certificate;
use super::store::{CertStore, Source};

/// Loads every pair in `dir` into `store`, replacing the previous file certificates.
pub fn load_into(store: &CertStore, dir: &Path) {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            tracing::warn!("tls.certs_dir {} does not exist: no static certificates", dir.display());
            store.replace_where(|s| matches!(s, Source::File(_)), Vec::new());
            return;
        }
        Err(e) => {
            tracing::error!(
                "cannot read tls.certs_dir {}: {e}; keeping the certificates already loaded",
                dir.display()
            );
            return;
        }
    };
    let names: HashSet<String> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".crt"))
                .map(str::to_string)
        })
        .collect();
    let mut fresh = Vec::with_capacity(names.len());
    for name in names {
        let source = Source::File(name.clone());
        match load_pair(dir, &name) {
            Ok(cert) => {
                tracing::info!(name, hosts = ?cert.hosts, "certificate loaded from {}", dir.display());
                fresh.push((source, cert));
            }
            Err(reason) => {
                tracing::error!(
                    name,
                    "certificate refused: {reason}; the previous one (if any) stays in service"
                );
                if let Some(previous) = store.get(&source) {
                    fresh.push((source, (*previous).clone()));
                }
            }
        }
    }
    store.replace_where(|s| matches!(s, Source::File(_)), fresh);
}

fn load_pair(dir: &Path, name: &str) -> Result<Certificate, String> {
    let crt = std::fs::read(dir.join(format!("{name}.crt"))).map_err(|e| format!("cannot read {name}.crt: {e}"))?;
    let key = std::fs::read(dir.join(format!("{name}.key"))).map_err(|e| format!("cannot read {name}.key: {e}"))?;
    Certificate::from_pem(&crt, &key)
}
