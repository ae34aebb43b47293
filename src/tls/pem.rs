//! Certificate chains and keys from PEM, checked before they may be served:
//! the key must match the certificate and the certificate must be current.

use std::sync::Arc;

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// A servable certificate with what the store needs to know about it.
#[derive(Debug, Clone)]
pub struct Certificate {
    pub key: Arc<CertifiedKey>,
    /// Lowercase DNS names from the SANs (`*.` kept for wildcards).
    pub hosts: Vec<String>,
    pub issuer: String,
    /// notBefore and notAfter, unix seconds.
    pub not_before: i64,
    pub not_after: i64,
}

impl Certificate {
    /// Parses and checks a PEM chain + key. Never logs key material.
    pub fn from_pem(chain_pem: &[u8], key_pem: &[u8]) -> Result<Self, String> {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain_pem)
            .collect::<Result<_, _>>()
            .map_err(|e| format!("unreadable certificate PEM: {e}"))?;
        let leaf = chain.first().ok_or("no certificate in the PEM file")?.clone();
        let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| match e {
            pem::Error::NoItemsFound => "no private key in the key file".to_string(),
            other => format!("unreadable key PEM: {other}"),
        })?;
        let provider = rustls::crypto::ring::default_provider();
        let certified = CertifiedKey::from_der(chain, key, &provider).map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => "the private key does not match the certificate".to_string(),
            other => format!("unusable key: {other}"),
        })?;
        certified
            .keys_match()
            .map_err(|_| "the private key does not match the certificate".to_string())?;

        let (_, parsed) = X509Certificate::from_der(&leaf).map_err(|e| format!("unparsable certificate: {e}"))?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let not_after = parsed.validity().not_after.timestamp();
        if not_after <= now {
            return Err(format!("the certificate expired at {}", parsed.validity().not_after));
        }
        Ok(Self {
            key: Arc::new(certified),
            hosts: dns_names(&parsed),
            issuer: parsed.issuer().to_string(),
            not_before: parsed.validity().not_before.timestamp(),
            not_after,
        })
    }
}

/// The SAN DNS names, or the subject CN when there are none.
fn dns_names(cert: &X509Certificate<'_>) -> Vec<String> {
    let mut names: Vec<String> = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::DNSName(name) => Some(name.to_ascii_lowercase()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    if names.is_empty() {
        names.extend(
            cert.subject()
                .iter_common_name()
                .filter_map(|cn| cn.as_str().ok())
                .map(str::to_ascii_lowercase),
        );
    }
    names.sort();
    names.dedup();
    names
}
