//! The rustls hook: picks the certificate per handshake from the store, and
//! refuses clients that cannot speak the configured minimum TLS version.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::CipherSuite;

use super::store::CertStore;

/// Resolves certificates by SNI from a [`CertStore`].
#[derive(Debug)]
pub struct SniResolver {
    store: Arc<CertStore>,
    /// `tls.min_version: "1.3"`; swappable by a reload.
    tls13_only: AtomicBool,
}

impl SniResolver {
    pub fn new(store: Arc<CertStore>, tls13_only: bool) -> Self {
        Self {
            store,
            tls13_only: AtomicBool::new(tls13_only),
        }
    }

    pub fn set_tls13_only(&self, only: bool) {
        self.tls13_only.store(only, Ordering::Relaxed);
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // pingora's acceptor enables TLS 1.2 and 1.3; a client offering no 1.3
        // suite can only do 1.2, so refusing it here enforces the minimum.
        if self.tls13_only.load(Ordering::Relaxed) && !hello.cipher_suites().iter().any(is_tls13_suite) {
            return None;
        }
        self.store.for_sni(hello.server_name())
    }
}

fn is_tls13_suite(suite: &CipherSuite) -> bool {
    matches!(
        suite,
        CipherSuite::TLS13_AES_128_GCM_SHA256
            | CipherSuite::TLS13_AES_256_GCM_SHA384
            | CipherSuite::TLS13_CHACHA20_POLY1305_SHA256
            | CipherSuite::TLS13_AES_128_CCM_SHA256
            | CipherSuite::TLS13_AES_128_CCM_8_SHA256
    )
}
