//! `jwtauth`: verifies the bearer JWT's
//! signature with a key from a static PEM, a JWKS URL or an OIDC issuer
//! ([`keys`]), checks its claims ([`claims`]) and sets the Principal
//! (`type: JWT`, `source.jwt = {header, payload}`). jsonwebtoken parses the
//! header, verifies the signature (RSA and ECDSA on ring: [`ring_verify`])
//! and checks the registered claims. Only asymmetric algorithms exist here:
//! `alg: none`, HMAC (the public-key-as-secret confusion) and anything
//! outside `algorithms` are rejected before a key is even looked up.

mod claims;
mod keys;
mod ring_verify;

use std::str::FromStr;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, AlgorithmFamily};
use serde_json::Value;

use super::{CompileError, Outcome, Policy, PolicyState, Principal, RequestView, Resources};
use crate::config::policy::JwtAuthSpec;
use crate::errors::{ErrorCode, GatewayError};
use crate::http_client::HttpClient;
use claims::ClaimRules;
use keys::{KeyError, KeySource};

#[derive(Debug)]
pub struct JwtAuth {
    keys: KeySource,
    /// Also the allowed algorithms: one validation per key family among them.
    rules: ClaimRules,
    subject_claim: String,
    allow_anonymous: bool,
}

/// `(field path below jwtauth, message)`.
type SpecError = (String, String);

impl JwtAuth {
    /// Compiles the spec; a `public_key_file` is read now, relative to
    /// `base_dir`; key sets are fetched with `http`.
    fn compile(spec: &JwtAuthSpec, base_dir: &std::path::Path, http: &HttpClient) -> Result<Self, SpecError> {
        ring_verify::install();
        let mut algorithms = Vec::with_capacity(spec.algorithms.len());
        for (i, name) in spec.algorithms.iter().enumerate() {
            let field = || format!(".algorithms[{i}]");
            let alg = Algorithm::from_str(name).map_err(|_| (field(), format!("unknown algorithm {name:?}")))?;
            if alg.family() == AlgorithmFamily::Hmac {
                return Err((
                    field(),
                    format!("{name} needs a shared secret; jwtauth verifies asymmetric signatures only"),
                ));
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
            return Err((
                String::new(),
                "set exactly one of jwks_uri, oidc_issuer, public_key_pem, public_key_file".into(),
            ));
        }
        let ttl = spec.jwks_cache.0;
        let keys = if let Some(url) = &spec.jwks_uri {
            check_url(url).map_err(|m| (".jwks_uri".to_string(), m))?;
            KeySource::jwks(url.clone(), ttl, http.clone())
        } else if let Some(issuer) = &spec.oidc_issuer {
            check_url(issuer).map_err(|m| (".oidc_issuer".to_string(), m))?;
            KeySource::oidc(issuer.clone(), ttl, http.clone())
        } else if let Some(pem) = &spec.public_key_pem {
            KeySource::from_pem(pem, &algorithms).map_err(|m| (".public_key_pem".to_string(), m))?
        } else if let Some(file) = &spec.public_key_file {
            let path = base_dir.join(file);
            let pem = std::fs::read_to_string(&path).map_err(|e| {
                (
                    ".public_key_file".to_string(),
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
            KeySource::from_pem(&pem, &algorithms)
                .map_err(|m| (".public_key_file".to_string(), format!("{}: {m}", path.display())))?
        } else {
            return Err((String::new(), "no key source".into()));
        };
        // With OIDC discovery the issuer is known: check it unless told otherwise.
        let issuer = spec.issuer.clone().or_else(|| spec.oidc_issuer.clone());
        Ok(Self {
            keys,
            rules: ClaimRules::new(
                &algorithms,
                issuer,
                &spec.audiences,
                spec.clock_skew.0.as_secs(),
                spec.require_exp,
            ),
            subject_claim: spec.subject_claim.clone(),
            allow_anonymous: spec.allow_anonymous,
        })
    }

    /// The verified token's Principal, or why it is invalid.
    async fn verify(&self, token: &str) -> Result<Principal, GatewayError> {
        let invalid =
            |why: &str| GatewayError::with_detail(ErrorCode::InvalidKey, format!("The JWT is invalid: {why}."));
        let header = jsonwebtoken::decode_header(token).map_err(|e| invalid(&header_problem(&e)))?;
        let validation = self
            .rules
            .validation(header.alg)
            .ok_or_else(|| invalid(&format!("algorithm {:?} is not allowed", header.alg)))?;
        let key = self
            .keys
            .find(header.kid.as_deref(), header.alg)
            .await
            .map_err(|e| match e {
                KeyError::NoMatch => invalid("no signing key matches its kid and algorithm"),
                KeyError::Unavailable(why) => GatewayError::with_detail(
                    ErrorCode::InvalidConfiguration,
                    format!("The JWT signing keys cannot be fetched: {why}"),
                ),
            })?;
        let data = jsonwebtoken::decode::<Value>(token, &key.decoding, validation)
            .map_err(|e| invalid(&self.rules.why(&e)))?;
        let payload = data.claims;
        self.rules
            .check_issued_at(&payload, jsonwebtoken::get_current_timestamp())
            .map_err(|why| invalid(&why))?;
        let subject = match payload.get(&self.subject_claim) {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => return Err(invalid(&format!("no `{}` claim", self.subject_claim))),
        };
        claims::principal(subject, &data.header, &payload)
            .map_err(|e| invalid(&format!("the header cannot be re-encoded: {e}")))
    }
}

/// Why a token's header is refused, before any key is looked up.
fn header_problem(error: &jsonwebtoken::errors::Error) -> String {
    match error.kind() {
        ErrorKind::InvalidToken => "not a compact JWS (three dot-separated parts)".into(),
        // No `alg`, an unknown one (`none` included) or a mistyped field.
        ErrorKind::Json(e) if e.is_data() => format!("the header is not allowed ({e})"),
        _ => "the header is not base64url JSON".into(),
    }
}

fn check_url(url: &str) -> Result<(), String> {
    match url.parse::<http::Uri>() {
        Ok(uri) if matches!(uri.scheme_str(), Some("http" | "https")) && uri.host().is_some() => Ok(()),
        _ => Err(format!("{url:?} is not an http(s) URL")),
    }
}

/// The bearer token, if `Authorization: Bearer <token>` is there.
fn bearer<'a>(request: &RequestView<'a>) -> Option<&'a str> {
    let value = request
        .head
        .headers
        .get(http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .trim();
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

impl Policy for JwtAuth {
    type Spec = JwtAuthSpec;
    const KIND: &'static str = "jwtauth";
    const AUTHENTICATES: bool = true;

    fn from_spec(spec: &JwtAuthSpec, resources: &Resources<'_>) -> Result<Self, CompileError> {
        Self::compile(spec, resources.base_dir, &resources.http)
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

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    use base64::Engine as _;
    use jsonwebtoken::{EncodingKey, Header};
    use ring::signature::{Ed25519KeyPair, KeyPair as _};
    use serde_json::json;

    use super::*;

    const ISSUER: &str = "https://idp.test";

    /// An Ed25519 signing key and its public half as PEM.
    struct Signer {
        encoding: EncodingKey,
        pem: String,
    }

    fn fresh_signer() -> Signer {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).unwrap();
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        // An Ed25519 SubjectPublicKeyInfo (RFC 8410) is a fixed prefix and the 32-byte key.
        let mut spki = vec![0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];
        spki.extend_from_slice(pair.public_key().as_ref());
        let pem = format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            STANDARD.encode(spki)
        );
        Signer {
            encoding: EncodingKey::from_ed_der(pkcs8.as_ref()),
            pem,
        }
    }

    /// `jwtauth` with `signer`'s key, issuer, audience `api`, EdDSA, 30 s skew, plus `extra` YAML.
    fn policy(signer: &Signer, extra: &str) -> JwtAuth {
        let yaml = format!(
            "public_key_pem: {:?}\nissuer: {ISSUER}\naudiences: [api]\nalgorithms: [EdDSA]\nclock_skew: 30s\n{extra}",
            signer.pem
        );
        let spec: JwtAuthSpec = serde_saphyr::from_str(&yaml).unwrap();
        JwtAuth::compile(&spec, std::path::Path::new("."), &HttpClient::new(&[]).unwrap()).unwrap()
    }

    fn now() -> i64 {
        jsonwebtoken::get_current_timestamp() as i64
    }

    fn good_claims() -> Value {
        json!({"iss": ISSUER, "aud": ["x", "api"], "sub": "user_1", "iat": now(), "nbf": now() - 1, "exp": now() + 60})
    }

    fn sign(signer: &Signer, claims: &Value) -> String {
        jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), claims, &signer.encoding).unwrap()
    }

    /// A token with a hand-made header and a meaningless signature.
    fn forged(header: Value, claims: &Value) -> String {
        let part = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
        format!("{}.{}.{}", part(&header), part(claims), URL_SAFE_NO_PAD.encode(b"sig"))
    }

    /// The subject, or the problem detail.
    async fn verify(auth: &JwtAuth, token: &str) -> Result<String, String> {
        auth.verify(token).await.map(|p| p.subject).map_err(|e| {
            assert_eq!(e.code, ErrorCode::InvalidKey);
            e.detail().to_string()
        })
    }

    #[tokio::test]
    async fn registered_claims_with_skew() {
        let signer = fresh_signer();
        let auth = policy(&signer, "");
        let with = |name: &str, value: Value| {
            let mut claims = good_claims();
            claims[name] = value;
            sign(&signer, &claims)
        };
        assert_eq!(verify(&auth, &sign(&signer, &good_claims())).await, Ok("user_1".into()));
        // 10 s away from the 30 s skew on either side: the clock may tick
        // between building a claim and verifying it.
        assert!(verify(&auth, &with("exp", json!(now() - 40)))
            .await
            .unwrap_err()
            .contains("expired"));
        assert!(
            verify(&auth, &with("exp", json!(now() - 20))).await.is_ok(),
            "expired within the skew"
        );
        assert!(verify(&auth, &with("nbf", json!(now() + 40)))
            .await
            .unwrap_err()
            .contains("nbf"));
        assert!(
            verify(&auth, &with("nbf", json!(now() + 20))).await.is_ok(),
            "not yet valid within the skew"
        );
        assert!(verify(&auth, &with("iat", json!(now() + 100)))
            .await
            .unwrap_err()
            .contains("iat"));
        assert!(verify(&auth, &with("iss", json!("https://evil")))
            .await
            .unwrap_err()
            .contains("issuer"));
        assert!(verify(&auth, &with("aud", json!("other")))
            .await
            .unwrap_err()
            .contains("audience"));
        assert!(verify(&auth, &with("aud", json!("api"))).await.is_ok());
        assert!(verify(&auth, &with("exp", json!("soon")))
            .await
            .unwrap_err()
            .contains("numeric"));
        assert!(verify(&auth, &with("nbf", json!("now")))
            .await
            .unwrap_err()
            .contains("numeric"));
        assert!(verify(&auth, &with("sub", json!("")))
            .await
            .unwrap_err()
            .contains("`sub`"));
        for claim in ["iss", "aud"] {
            let mut claims = good_claims();
            claims.as_object_mut().unwrap().remove(claim);
            let why = verify(&auth, &sign(&signer, &claims)).await.unwrap_err();
            assert!(why.contains(&format!("no `{claim}`")), "{why}");
        }
    }

    #[tokio::test]
    async fn exp_is_required_unless_require_exp_is_false() {
        let signer = fresh_signer();
        let mut claims = good_claims();
        claims.as_object_mut().unwrap().remove("exp");
        let token = sign(&signer, &claims);
        assert!(verify(&policy(&signer, ""), &token)
            .await
            .unwrap_err()
            .contains("no `exp`"));
        let lax = policy(&signer, "require_exp: false\n");
        assert_eq!(verify(&lax, &token).await, Ok("user_1".into()));
        // Present, it is still checked.
        claims["exp"] = json!(now() - 3600);
        assert!(verify(&lax, &sign(&signer, &claims))
            .await
            .unwrap_err()
            .contains("expired"));
        claims["exp"] = json!("soon");
        assert!(verify(&lax, &sign(&signer, &claims))
            .await
            .unwrap_err()
            .contains("numeric"));
    }

    #[tokio::test]
    async fn only_the_configured_algorithms_are_accepted() {
        let signer = fresh_signer();
        let auth = policy(&signer, "");
        let claims = good_claims();
        for alg in ["none", "None", "NONE"] {
            let token = forged(json!({"alg": alg, "typ": "JWT"}), &claims);
            assert!(
                verify(&auth, &token).await.unwrap_err().contains("not allowed"),
                "{alg}"
            );
            let unsigned = token.rsplit_once('.').unwrap().0.to_string() + ".";
            assert!(
                verify(&auth, &unsigned).await.unwrap_err().contains("not allowed"),
                "{alg}, no signature"
            );
        }
        assert!(verify(&auth, &forged(json!({"typ": "JWT"}), &claims))
            .await
            .unwrap_err()
            .contains("not allowed"));
        for alg in ["ES256", "RS256", "HS256"] {
            let why = verify(&auth, &forged(json!({"alg": alg}), &claims)).await.unwrap_err();
            assert!(why.contains(&format!("{alg} is not allowed")), "{why}");
        }
        // Signed by another key, or tampered with.
        assert!(verify(&auth, &sign(&fresh_signer(), &claims))
            .await
            .unwrap_err()
            .contains("signature"));
        let token = sign(&signer, &claims);
        let (head, _) = token.rsplit_once('.').unwrap();
        assert!(verify(&auth, &format!("{head}.{}", URL_SAFE_NO_PAD.encode([0u8; 64])))
            .await
            .unwrap_err()
            .contains("signature"));
        assert!(verify(&auth, "not-a-jwt").await.unwrap_err().contains("three"));
        assert!(verify(&auth, "a.b.c").await.unwrap_err().contains("base64url"));
    }

    #[test]
    fn hmac_is_refused_at_load() {
        let spec: JwtAuthSpec =
            serde_saphyr::from_str("jwks_uri: https://idp.test/jwks\nalgorithms: [RS256, HS256]\n").unwrap();
        let (field, message) =
            JwtAuth::compile(&spec, std::path::Path::new("."), &HttpClient::new(&[]).unwrap()).unwrap_err();
        assert_eq!(field, ".algorithms[1]");
        assert!(message.contains("shared secret"), "{message}");
    }
}
