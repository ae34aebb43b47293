//! Where `jwtauth` gets its verification keys: a static PEM (inline or
//! file), a JWKS URL, or an OIDC issuer whose discovery document names the
//! JWKS URL. Key sets are cached for `jwks_cache` and fetched off the hot
//! path's lock-free read (an `ArcSwap` load); a token whose `kid` is not in
//! the set triggers a refetch at most once per [`UNKNOWN_KID_REFETCH`], so
//! random kids cannot make the gateway hammer the identity provider.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use jsonwebtoken::jwk::{Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};
use serde_json::Value;

use crate::http_client::HttpClient;
use crate::telemetry::metrics;

/// The shortest time between two refetches caused by unknown `kid`s.
pub const UNKNOWN_KID_REFETCH: Duration = Duration::from_secs(10);
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_DOCUMENT_BYTES: usize = 1 << 20;

/// One verification key (asymmetric: its family is never HMAC).
pub struct Key {
    kid: Option<String>,
    /// The key's own `alg`, when its JWK names one.
    alg: Option<Algorithm>,
    pub decoding: DecodingKey,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("family", &self.decoding.family())
            .finish()
    }
}

impl Key {
    fn fits(&self, kid: Option<&str>, alg: Algorithm) -> bool {
        let kid_ok = match kid {
            Some(kid) => self.kid.as_deref() == Some(kid),
            None => true,
        };
        kid_ok && alg.family() == self.decoding.family() && self.alg.is_none_or(|a| a == alg)
    }
}

#[derive(Debug)]
struct KeySet {
    keys: Vec<Arc<Key>>,
    fetched: Instant,
}

impl KeySet {
    fn find(&self, kid: Option<&str>, alg: Algorithm) -> Option<Arc<Key>> {
        self.keys.iter().find(|k| k.fits(kid, alg)).cloned()
    }
}

/// Why no key could be found for a token.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The token names a key that does not exist (or fits no allowed algorithm).
    #[error("no signing key matches the token's kid/alg")]
    NoMatch,
    /// The key set cannot be had at all.
    #[error("the signing keys could not be fetched: {0}")]
    Unavailable(String),
}

/// Where keys come from.
#[derive(Debug)]
pub enum KeySource {
    Static(Vec<Arc<Key>>),
    Remote(Box<RemoteKeys>),
}

/// A JWKS URL (given, or discovered from an OIDC issuer) and its cache.
#[derive(Debug)]
pub struct RemoteKeys {
    location: Location,
    http: HttpClient,
    ttl: Duration,
    current: ArcSwapOption<KeySet>,
    /// Serialises fetches; remembers the discovered JWKS URL and the last unknown-kid refetch.
    fetching: tokio::sync::Mutex<FetchState>,
}

#[derive(Debug)]
enum Location {
    Jwks(String),
    Issuer(String),
}

#[derive(Debug, Default)]
struct FetchState {
    discovered: Option<String>,
    last_unknown_kid: Option<Instant>,
}

impl KeySource {
    /// Keys from PEM text: every asymmetric family among `algorithms` the PEM parses as.
    pub fn from_pem(pem: &str, algorithms: &[Algorithm]) -> Result<Self, String> {
        let mut families: Vec<AlgorithmFamily> = Vec::new();
        for family in algorithms.iter().map(|a| a.family()) {
            if !families.contains(&family) {
                families.push(family);
            }
        }
        let mut keys = Vec::new();
        for family in families {
            let parsed = match family {
                AlgorithmFamily::Rsa => DecodingKey::from_rsa_pem(pem.as_bytes()),
                AlgorithmFamily::Ec => DecodingKey::from_ec_pem(pem.as_bytes()),
                AlgorithmFamily::Ed => DecodingKey::from_ed_pem(pem.as_bytes()),
                AlgorithmFamily::Hmac => continue,
            };
            if let Ok(decoding) = parsed {
                keys.push(Arc::new(Key {
                    kid: None,
                    alg: None,
                    decoding,
                }));
            }
        }
        if keys.is_empty() {
            return Err("not a PEM public key usable with the configured algorithms".into());
        }
        Ok(Self::Static(keys))
    }

    pub fn jwks(url: String, ttl: Duration, http: HttpClient) -> Self {
        Self::remote(Location::Jwks(url), ttl, http)
    }

    pub fn oidc(issuer: String, ttl: Duration, http: HttpClient) -> Self {
        Self::remote(Location::Issuer(issuer), ttl, http)
    }

    fn remote(location: Location, ttl: Duration, http: HttpClient) -> Self {
        Self::Remote(Box::new(RemoteKeys {
            location,
            http,
            ttl,
            current: ArcSwapOption::empty(),
            fetching: tokio::sync::Mutex::new(FetchState::default()),
        }))
    }

    /// The key for a token's `kid` (if any) and `alg`.
    pub async fn find(&self, kid: Option<&str>, alg: Algorithm) -> Result<Arc<Key>, KeyError> {
        match self {
            Self::Static(keys) => keys
                .iter()
                .find(|k| k.fits(kid.filter(|_| k.kid.is_some()), alg))
                .cloned()
                .ok_or(KeyError::NoMatch),
            Self::Remote(remote) => remote.find(kid, alg).await,
        }
    }
}

impl RemoteKeys {
    fn fresh(&self) -> Option<Arc<KeySet>> {
        self.current.load_full().filter(|set| set.fetched.elapsed() < self.ttl)
    }

    async fn find(&self, kid: Option<&str>, alg: Algorithm) -> Result<Arc<Key>, KeyError> {
        if let Some(key) = self.fresh().and_then(|set| set.find(kid, alg)) {
            return Ok(key);
        }
        let mut state = self.fetching.lock().await;
        if let Some(set) = self.fresh() {
            // Someone may have fetched while we waited.
            if let Some(key) = set.find(kid, alg) {
                return Ok(key);
            }
            // A fresh set without the key: refetch, rate-limited.
            if state
                .last_unknown_kid
                .is_some_and(|at| at.elapsed() < UNKNOWN_KID_REFETCH)
            {
                return Err(KeyError::NoMatch);
            }
            state.last_unknown_kid = Some(Instant::now());
        }
        let seen = self.current.load_full();
        match self.fetch(&mut state).await {
            Ok(set) => {
                let set = Arc::new(set);
                self.current.store(Some(set.clone()));
                set.find(kid, alg).ok_or(KeyError::NoMatch)
            }
            Err(e) => {
                metrics().jwks_fetch_failures.inc();
                // A stale set is better than none while the provider is down.
                match seen {
                    Some(stale) => {
                        tracing::warn!("JWKS refresh failed, using the previous key set: {e}");
                        stale.find(kid, alg).ok_or(KeyError::NoMatch)
                    }
                    None => {
                        tracing::warn!("JWKS fetch failed: {e}");
                        Err(KeyError::Unavailable(e))
                    }
                }
            }
        }
    }

    async fn fetch(&self, state: &mut FetchState) -> Result<KeySet, String> {
        let url = match (&self.location, &state.discovered) {
            (Location::Jwks(url), _) => url.clone(),
            (Location::Issuer(_), Some(url)) => url.clone(),
            (Location::Issuer(issuer), None) => {
                let url = discover(&self.http, issuer).await?;
                state.discovered = Some(url.clone());
                url
            }
        };
        let body = self
            .http
            .get(&url, FETCH_TIMEOUT, MAX_DOCUMENT_BYTES)
            .await
            .map_err(|e| e.to_string())?;
        let keys = parse_jwks(&body).map_err(|e| format!("{url}: {e}"))?;
        Ok(KeySet {
            keys,
            fetched: Instant::now(),
        })
    }
}

/// `jwks_uri` from `<issuer>/.well-known/openid-configuration`.
async fn discover(http: &HttpClient, issuer: &str) -> Result<String, String> {
    let url = format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/'));
    let body = http
        .get(&url, FETCH_TIMEOUT, MAX_DOCUMENT_BYTES)
        .await
        .map_err(|e| e.to_string())?;
    let doc: Value = serde_json::from_slice(&body).map_err(|e| format!("{url}: not JSON: {e}"))?;
    doc.get("jwks_uri")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| format!("{url}: no jwks_uri"))
}

/// The usable signature keys of a JWKS document; others (encryption keys,
/// unsupported types) are skipped.
pub fn parse_jwks(body: &[u8]) -> Result<Vec<Arc<Key>>, String> {
    let doc: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let entries = doc.get("keys").and_then(Value::as_array).ok_or("no `keys` array")?;
    let mut keys = Vec::new();
    for entry in entries {
        let Ok(jwk) = serde_json::from_value::<Jwk>(entry.clone()) else {
            tracing::debug!("skipping an unsupported JWK: {entry}");
            continue;
        };
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
            continue;
        }
        // Shared secrets (`oct`) never verify here: jwtauth is asymmetric only.
        let Ok(decoding) = DecodingKey::from_jwk(&jwk) else {
            continue;
        };
        if decoding.family() == AlgorithmFamily::Hmac {
            continue;
        }
        let alg = jwk.common.key_algorithm.and_then(|a| Algorithm::try_from(a).ok());
        keys.push(Arc::new(Key {
            kid: jwk.common.key_id.clone(),
            alg,
            decoding,
        }));
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwks_parsing_skips_what_cannot_verify() {
        let jwks = br#"{"keys":[
            {"kty":"oct","k":"c2VjcmV0","kid":"hmac"},
            {"kty":"RSA","use":"enc","kid":"enc","n":"sXch","e":"AQAB"},
            {"kty":"XYZ","kid":"weird"},
            {"kty":"OKP","crv":"Ed25519","kid":"ed","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","alg":"EdDSA"}
        ]}"#;
        let keys = parse_jwks(jwks).unwrap();
        assert_eq!(keys.len(), 1);
        assert!(keys[0].fits(Some("ed"), Algorithm::EdDSA));
        assert!(!keys[0].fits(Some("ed"), Algorithm::ES256));
        assert!(!keys[0].fits(Some("other"), Algorithm::EdDSA));
        assert!(parse_jwks(b"[]").is_err());
    }

    #[test]
    fn a_jwk_alg_binds_the_key_to_that_algorithm() {
        let jwks = br#"{"keys":[
            {"kty":"OKP","crv":"Ed25519","kid":"any","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
            {"kty":"EC","crv":"P-256","kid":"p256","alg":"ES256",
             "x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}
        ]}"#;
        let keys = parse_jwks(jwks).unwrap();
        assert_eq!(keys.len(), 2);
        assert!(keys[0].fits(None, Algorithm::EdDSA));
        assert!(keys[1].fits(Some("p256"), Algorithm::ES256));
        assert!(!keys[1].fits(Some("p256"), Algorithm::ES384), "the JWK says ES256");
    }
}
