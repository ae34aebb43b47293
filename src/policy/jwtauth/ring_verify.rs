//! jsonwebtoken's RSA and ECDSA signature checks on ring, through its
//! `CryptoProvider` hook. jsonwebtoken 10+ ships two backends: aws-lc-rs,
//! which keygate must not pull in (a second rustls crypto provider makes
//! rustls panic), and RustCrypto, whose RSA and P-256/P-384 verification is
//! 3–5× slower than ring's (2048-bit RS256 ≈ 75 µs against ≈ 24 µs, ES256
//! ≈ 275 µs against ≈ 55 µs) — on every authenticated request. ring is
//! keygate's crypto already (rustls, key hashing). EdDSA stays on RustCrypto
//! (ed25519-dalek is a little faster than ring), and so do signing (tests,
//! benchmarks) and HMAC.

use std::sync::LazyLock;

use jsonwebtoken::crypto::{rust_crypto, CryptoProvider, JwtVerifier};
use jsonwebtoken::errors::{ErrorKind, Result};
use jsonwebtoken::{signature, Algorithm, DecodingKey, DecodingKeyKind};
use ring::signature::{
    self as ring_signature, RsaParameters, RsaPublicKeyComponents, UnparsedPublicKey, VerificationAlgorithm,
};

/// RustCrypto's provider with ring's RSA and ECDSA verifiers.
static PROVIDER: LazyLock<CryptoProvider> = LazyLock::new(|| CryptoProvider {
    verifier_factory: verifier,
    ..rust_crypto::DEFAULT_PROVIDER.clone()
});

/// Makes jsonwebtoken verify with ring in this process. Called before any
/// token is verified (when a `jwtauth` policy is compiled); if jsonwebtoken
/// already picked its feature default (a process that signed a token
/// first: tests), that one stays — slower, never wrong.
pub fn install() {
    let _already_chosen = PROVIDER.install_default();
}

/// How ring checks one algorithm.
#[derive(Clone, Copy)]
enum Scheme {
    /// RSA keys come as PKCS#1 DER (PEM) or as modulus and exponent (JWK).
    Rsa(&'static RsaParameters),
    /// An uncompressed SEC1 point.
    Ecdsa(&'static dyn VerificationAlgorithm),
}

fn scheme(alg: Algorithm) -> Option<Scheme> {
    use ring_signature::*;
    Some(match alg {
        Algorithm::RS256 => Scheme::Rsa(&RSA_PKCS1_2048_8192_SHA256),
        Algorithm::RS384 => Scheme::Rsa(&RSA_PKCS1_2048_8192_SHA384),
        Algorithm::RS512 => Scheme::Rsa(&RSA_PKCS1_2048_8192_SHA512),
        Algorithm::PS256 => Scheme::Rsa(&RSA_PSS_2048_8192_SHA256),
        Algorithm::PS384 => Scheme::Rsa(&RSA_PSS_2048_8192_SHA384),
        Algorithm::PS512 => Scheme::Rsa(&RSA_PSS_2048_8192_SHA512),
        Algorithm::ES256 => Scheme::Ecdsa(&ECDSA_P256_SHA256_FIXED),
        Algorithm::ES384 => Scheme::Ecdsa(&ECDSA_P384_SHA384_FIXED),
        _ => return None,
    })
}

/// The provider's `verifier_factory`: ring for RSA and ECDSA, RustCrypto for the rest.
fn verifier(alg: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>> {
    let Some(scheme) = scheme(*alg) else {
        return (rust_crypto::DEFAULT_PROVIDER.verifier_factory)(alg, key);
    };
    if key.family() != alg.family() {
        return Err(ErrorKind::InvalidKeyFormat.into());
    }
    Ok(Box::new(RingVerifier {
        alg: *alg,
        scheme,
        key: key.clone(),
    }))
}

struct RingVerifier {
    alg: Algorithm,
    scheme: Scheme,
    key: DecodingKey,
}

impl signature::Verifier<Vec<u8>> for RingVerifier {
    fn verify(&self, message: &[u8], signature: &Vec<u8>) -> std::result::Result<(), signature::Error> {
        let verified = match (self.scheme, self.key.kind()) {
            (Scheme::Rsa(params), DecodingKeyKind::RsaModulusExponent { n, e }) => {
                RsaPublicKeyComponents { n, e }.verify(params, message, signature)
            }
            (Scheme::Rsa(params), DecodingKeyKind::SecretOrDer(der)) => {
                UnparsedPublicKey::new(params, der).verify(message, signature)
            }
            (Scheme::Ecdsa(alg), DecodingKeyKind::SecretOrDer(point)) => {
                UnparsedPublicKey::new(alg, point).verify(message, signature)
            }
            (Scheme::Ecdsa(_), DecodingKeyKind::RsaModulusExponent { .. }) => Err(ring::error::Unspecified),
        };
        verified.map_err(|_| signature::Error::new())
    }
}

impl JwtVerifier for RingVerifier {
    fn algorithm(&self) -> Algorithm {
        self.alg
    }
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::crypto::sign;
    use jsonwebtoken::EncodingKey;
    use ring::rand::SystemRandom;
    use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING};

    use super::*;

    /// `message` signed by RustCrypto, checked by ring: the untouched one
    /// verifies, a changed one does not.
    fn round_trip(alg: Algorithm, encoding: &EncodingKey, decoding: &DecodingKey) {
        let message = b"header.payload";
        let signature = sign(message, encoding, alg).unwrap();
        let signature = base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, signature).unwrap();
        let verifier = verifier(&alg, decoding).unwrap();
        assert_eq!(verifier.algorithm(), alg);
        assert!(verifier.verify(message, &signature).is_ok(), "{alg:?}");
        assert!(verifier.verify(b"header.payloaD", &signature).is_err(), "{alg:?}");
    }

    #[test]
    fn ecdsa_verifies_on_ring_and_ed25519_on_rust_crypto() {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
        let point = pair.public_key().as_ref();
        let b64 = |bytes: &[u8]| base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, bytes);
        let decoding = DecodingKey::from_ec_components(&b64(&point[1..33]), &b64(&point[33..])).unwrap();
        round_trip(Algorithm::ES256, &EncodingKey::from_ec_der(pkcs8.as_ref()), &decoding);

        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let decoding = DecodingKey::from_ed_components(&b64(pair.public_key().as_ref())).unwrap();
        round_trip(Algorithm::EdDSA, &EncodingKey::from_ed_der(pkcs8.as_ref()), &decoding);
    }

    #[test]
    fn a_key_of_another_family_is_refused_and_hmac_stays_on_rust_crypto() {
        let ed = DecodingKey::from_ed_components("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo").unwrap();
        assert!(verifier(&Algorithm::ES256, &ed).is_err());
        assert!(verifier(&Algorithm::RS256, &ed).is_err());
        assert!(verifier(&Algorithm::PS512, &ed).is_err());
        let secret = b"0123456789abcdef0123456789abcdef";
        round_trip(
            Algorithm::HS256,
            &EncodingKey::from_secret(secret).unwrap(),
            &DecodingKey::from_secret(secret).unwrap(),
        );
    }
}
