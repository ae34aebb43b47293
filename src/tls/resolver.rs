//! The rustls hook: picks the certificate per handshake from the store.

use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::store::CertStore;

/// Resolves certificates by SNI from a [`CertStore`].
#[derive(Debug)]
pub struct SniResolver {
    store: Arc<CertStore>,
}

impl SniResolver {
    pub fn new(store: Arc<CertStore>) -> Self {
        Self { store }
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.store.for_sni(hello.server_name())
    }
}
