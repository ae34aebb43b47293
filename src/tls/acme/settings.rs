//! The `tls.acme` section: which CA, which hosts, when to renew.
//! Checked completely at load — an unreadable `ca_roots` file or a wildcard
//! in `hosts` fails `keygate check` — so the ACME task only ever runs with a
//! usable configuration.

use std::path::Path;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use crate::config::tls::{AcmeSpec, HostsSpec, OneOrMany};
use crate::routing::HostPattern;

/// Let's Encrypt's production directory, what an operator gets by default.
const DEFAULT_DIRECTORY: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// `renew_before` unless the file says otherwise: 30 days.
const DEFAULT_RENEW_BEFORE: Duration = Duration::from_secs(30 * 24 * 3600);

/// Which hosts get ACME certificates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AcmeHosts {
    /// Every exact route host without a static certificate.
    Auto,
    /// Exactly these (normalised, exact names).
    List(Vec<String>),
}

/// The compiled `tls.acme` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmeSettings {
    pub directory: String,
    pub email: Option<String>,
    /// The extra roots, read at load.
    pub ca_roots: Vec<CertificateDer<'static>>,
    pub hosts: AcmeHosts,
    pub renew_before: Duration,
}

impl AcmeSettings {
    /// Errors are `(field below tls.acme, message)`.
    pub fn compile(spec: &AcmeSpec, base_dir: &Path) -> Result<Self, (String, String)> {
        let directory = spec.directory.clone().unwrap_or_else(|| DEFAULT_DIRECTORY.to_string());
        if !directory.starts_with("https://") || directory.parse::<http::Uri>().is_err() {
            return Err((
                "directory".into(),
                format!("{directory:?} is not an https:// URL (ACME directories are served over HTTPS)"),
            ));
        }
        let email = spec.email.as_deref().map(str::trim).filter(|e| !e.is_empty());
        if let Some(email) = email {
            if !email.contains('@') || email.contains(char::is_whitespace) {
                return Err(("email".into(), format!("{email:?} is not an email address")));
            }
        }
        Ok(Self {
            directory,
            email: email.map(str::to_string),
            ca_roots: read_roots(spec.ca_roots.as_ref(), base_dir)?,
            hosts: compile_hosts(spec.hosts.as_ref())?,
            renew_before: spec.renew_before.map_or(DEFAULT_RENEW_BEFORE, |d| d.0),
        })
    }
}

fn compile_hosts(spec: Option<&HostsSpec>) -> Result<AcmeHosts, (String, String)> {
    match spec {
        None => Ok(AcmeHosts::Auto),
        Some(HostsSpec::Keyword(word)) if word == "auto" => Ok(AcmeHosts::Auto),
        Some(HostsSpec::Keyword(word)) => Err((
            "hosts".into(),
            format!("{word:?}: expected `auto` or a list of hostnames"),
        )),
        Some(HostsSpec::List(list)) => {
            let mut hosts = Vec::with_capacity(list.len());
            for (i, host) in list.iter().enumerate() {
                match HostPattern::parse(host) {
                    Ok(HostPattern::Exact(name)) => hosts.push(name.to_string()),
                    Ok(HostPattern::Wildcard(_)) => {
                        return Err((
                            format!("hosts[{i}]"),
                            format!("{host:?}: wildcard certificates need the DNS-01 challenge; keygate uses HTTP-01"),
                        ))
                    }
                    Err(message) => return Err((format!("hosts[{i}]"), message)),
                }
            }
            hosts.sort();
            hosts.dedup();
            Ok(AcmeHosts::List(hosts))
        }
    }
}

fn read_roots(spec: Option<&OneOrMany>, base_dir: &Path) -> Result<Vec<CertificateDer<'static>>, (String, String)> {
    let paths: Vec<(String, &str)> = match spec {
        None => Vec::new(),
        Some(OneOrMany::One(path)) => vec![("ca_roots".into(), path.as_str())],
        Some(OneOrMany::Many(paths)) => paths
            .iter()
            .enumerate()
            .map(|(i, p)| (format!("ca_roots[{i}]"), p.as_str()))
            .collect(),
    };
    let mut roots = Vec::new();
    for (field, path) in paths {
        let full = base_dir.join(path);
        let pem = std::fs::read(&full).map_err(|e| (field.clone(), format!("cannot read {}: {e}", full.display())))?;
        let found: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<_, _>>()
            .map_err(|e| (field.clone(), format!("{}: unreadable PEM: {e}", full.display())))?;
        if found.is_empty() {
            return Err((field, format!("{}: no certificate in the file", full.display())));
        }
        roots.extend(found);
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compile(yaml: &str) -> Result<AcmeSettings, (String, String)> {
        let spec: AcmeSpec = serde_saphyr::from_str(yaml).unwrap();
        AcmeSettings::compile(&spec, Path::new("."))
    }

    #[test]
    fn defaults() {
        let s = compile("{}").unwrap();
        assert_eq!(s.directory, DEFAULT_DIRECTORY);
        assert_eq!(s.hosts, AcmeHosts::Auto);
        assert_eq!(s.renew_before, DEFAULT_RENEW_BEFORE);
        assert!(s.ca_roots.is_empty());
    }

    #[test]
    fn host_list_is_normalised_and_refuses_wildcards() {
        let s = compile("hosts: [B.example.com, a.example.com., b.example.com]").unwrap();
        assert_eq!(
            s.hosts,
            AcmeHosts::List(vec!["a.example.com".into(), "b.example.com".into()])
        );
        let (field, message) = compile("hosts: [a.example.com, '*.example.com']").unwrap_err();
        assert_eq!(field, "hosts[1]");
        assert!(message.contains("DNS-01"), "{message}");
        assert_eq!(compile("hosts: all").unwrap_err().0, "hosts");
    }

    #[test]
    fn bad_values_name_their_field() {
        assert_eq!(compile("directory: http://ca.test/dir").unwrap_err().0, "directory");
        assert_eq!(compile("email: nobody").unwrap_err().0, "email");
        assert_eq!(compile("ca_roots: /nonexistent/root.pem").unwrap_err().0, "ca_roots");
        assert_eq!(
            compile("ca_roots: [/nonexistent/root.pem]").unwrap_err().0,
            "ca_roots[0]"
        );
    }
}
