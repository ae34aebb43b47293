//! The default certificate when none is configured: self-signed, generated
//! at start-up, so a client with an unknown SNI still completes the handshake
//! and gets a clean 404 instead of a TLS alert.

use super::pem::Certificate;

/// The name on the generated certificate.
const DEFAULT_NAME: &str = "keygate.invalid";

pub fn generate() -> Result<Certificate, String> {
    let generated = rcgen::generate_simple_self_signed(vec![DEFAULT_NAME.to_string()])
        .map_err(|e| format!("cannot generate the default certificate: {e}"))?;
    Certificate::from_pem(
        generated.cert.pem().as_bytes(),
        generated.key_pair.serialize_pem().as_bytes(),
    )
}
