//! `jwtauth` (SPEC §3.5, §4, §9.17, §9.19): verifies the bearer JWT's
//! signature with a key from a static PEM, a JWKS URL or an OIDC issuer
//! ([`keys`]), checks its claims ([`claims`]) and sets the Principal
//! (`type: JWT`, `source.jwt = {header, payload}`). Only asymmetric
//! algorithms exist here: `alg: none`, HMAC (the public-key-as-secret
//! confusion) and anything outside `algorithms` are rejected before a key is
//! even looked up.

mod claims;
mod keys;

use std::str::FromStr;

use base64::Engine as _;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::Value;

use super::{CompileError, Outcome, Policy, PolicyState, Principal, RequestView, Resources};
use crate::config::policy::JwtAuthSpec;
use crate::errors::{ErrorCode, GatewayError};
use claims::ClaimRules;
use keys::{KeyError, KeySource};

#[derive(Debug)]
pub struct JwtAuth {
    keys: KeySource,
    algorithms: Vec<Algorithm>,
    rules: ClaimRules,
    subject_claim: String,
    allow_anonymous: bool,
}

/// `(field path below jwtauth, message)`.
type SpecError = (String, String);

impl JwtAuth {
    /// Compiles the spec; a `public_key_file` is read now, relative to `base_dir`.
    pub fn compile(spec: &JwtAuthSpec, base_dir: &std::path::Path) -> Result<Self, SpecError> {
        let mut algorithms = Vec::with_capacity(spec.algorithms.len());
        for (i, name) in spec.algorithms.iter().enumerate() {
            let field = || format!(".algorithms[{i}]");
            let alg = Algorithm::from_str(name).map_err(|_| (field(), format!("unknown algorithm {name:?}")))?;
            if keys::family(alg).is_none() {
                return Err((field(), format!("{name} needs a shared secret; jwtauth verifies asymmetric signatures only")));
            }
            algorithms.push(alg);
        }
        if algorithms.is_empty() {
            return Err((".algorithms".into(), "name at least one algorithm".into()));
        }
        let sources = [
            spec.jwks_uri.is_some(),
            spec.oidc_issuer.is_some(),
            spec.public_key_pem.is_some(),
            spec.public_key_file.is_some(),
        ];
        if sources.iter().filter(|s| **s).count() != 1 {
            return Err((String::new(), "set exactly one of jwks_uri, oidc_issuer, public_key_pem, public_key_file".into()));
        }
        let ttl = spec.jwks_cache.0;
        let keys = if let Some(url) = &spec.jwks_uri {
            check_url(url).map_err(|m| (".jwks_uri".to_string(), m))?;
            KeySource::jwks(url.clone(), ttl)
        } else if let Some(issuer) = &spec.oidc_issuer {
            check_url(issuer).map_err(|m| (".oidc_issuer".to_string(), m))?;
            KeySource::oidc(issuer.clone(), ttl)
        } else if let Some(pem) = &spec.public_key_pem {
            KeySource::from_pem(pem, &algorithms).map_err(|m| (".public_key_pem".to_string(), m))?
        } else if let Some(file) = &spec.public_key_file {
            let path = base_dir.join(file);
            let pem = std::fs::read_to_string(&path)
                .map_err(|e| (".public_key_file".to_string(), format!("cannot read {}: {e}", path.display())))?;
            KeySource::from_pem(&pem, &algorithms).map_err(|m| (".public_key_file".to_string(), format!("{}: {m}", path.display())))?
        } else {
            return Err((String::new(), "no key source".into()));
        };
        // With OIDC discovery the issuer is known: check it unless told otherwise.
        let issuer = spec.issuer.clone().or_else(|| spec.oidc_issuer.clone());
        Ok(Self {
            keys,
            algorithms,
            rules: ClaimRules {
                issuer,
                audiences: spec.audiences.clone(),
                skew: spec.clock_skew.0.as_secs(),
                require_exp: spec.require_exp,
            },
            subject_claim: spec.subject_claim.clone(),
            allow_anonymous: spec.allow_anonymous,
        })
    }

    /// The verified token's Principal, or why it is invalid.
    async fn verify(&self, token: &str) -> Result<Principal, GatewayError> {
        let invalid = |why: &str| GatewayError::with_detail(ErrorCode::InvalidKey, format!("The JWT is invalid: {why}."));
        let mut parts = token.split('.');
        let (Some(header_b64), Some(_), Some(_), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err(invalid("not a compact JWS (three dot-separated parts)"));
        };
        let header = decode_json(header_b64).ok_or_else(|| invalid("the header is not base64url JSON"))?;
        let alg_name = header.get("alg").and_then(Value::as_str).unwrap_or("none");
        let alg = Algorithm::from_str(alg_name)
            .ok()
            .filter(|a| self.algorithms.contains(a))
            .ok_or_else(|| invalid(&format!("algorithm {alg_name:?} is not allowed")))?;
        let kid = header.get("kid").and_then(Value::as_str);
        let key = self.keys.find(kid, alg).await.map_err(|e| match e {
            KeyError::NoMatch => invalid("no signing key matches its kid and algorithm"),
            KeyError::Unavailable(why) => GatewayError::with_detail(
                ErrorCode::InvalidConfiguration,
                format!("The JWT signing keys cannot be fetched: {why}"),
            ),
        })?;
        let mut validation = Validation::new(alg);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        let data = jsonwebtoken::decode::<Value>(token, &key.decoding, &validation).map_err(|e| invalid(&e.to_string()))?;
        let payload = data.claims;
        self.rules.check(&payload, now()).map_err(|why| invalid(&why))?;
        let subject = match payload.get(&self.subject_claim) {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => return Err(invalid(&format!("no `{}` claim", self.subject_claim))),
        };
        Ok(claims::principal(subject, &header, &payload))
    }
}

fn check_url(url: &str) -> Result<(), String> {
    match url.parse::<http::Uri>() {
        Ok(uri) if matches!(uri.scheme_str(), Some("http" | "https")) && uri.host().is_some() => Ok(()),
        _ => Err(format!("{url:?} is not an http(s) URL")),
    }
}

fn decode_json(part: &str) -> Option<Value> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part.trim_end_matches('=')).ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The bearer token, if `Authorization: Bearer <token>` is there.
fn bearer<'a>(request: &RequestView<'a>) -> Option<&'a str> {
    let value = request.head.headers.get(http::header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

impl Policy for JwtAuth {
    type Spec = JwtAuthSpec;
    const KIND: &'static str = "jwtauth";
    const AUTHENTICATES: bool = true;

    fn from_spec(spec: &JwtAuthSpec, resources: &Resources<'_>) -> Result<Self, CompileError> {
        Self::compile(spec, resources.base_dir)
    }

    async fn evaluate(&self, request: &RequestView<'_>, state: &mut PolicyState) -> Outcome {
        let Some(token) = bearer(request) else {
            if self.allow_anonymous {
                return Outcome::Continue;
            }
            return Outcome::Reject(GatewayError::with_detail(
                ErrorCode::MissingCredentials,
                "No bearer token was found in the Authorization header.",
            ));
        };
        match self.verify(token).await {
            Ok(principal) => {
                state.principal = Some(principal);
                Outcome::Continue
            }
            Err(error) => Outcome::Reject(error),
        }
    }
}
