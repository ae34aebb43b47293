//! The registered claims `jwtauth` checks once the signature holds, and the
//! Principal built from the verified token. jsonwebtoken's [`Validation`]
//! checks `exp` (required unless `require_exp: false`), `nbf`, `iss` and
//! `aud` with `clock_skew` as leeway; it has no `iat` check, so "not issued
//! in the future" is kept here.

use std::collections::HashSet;

use jsonwebtoken::errors::{Error, ErrorKind};
use jsonwebtoken::{Algorithm, Header, Validation};
use serde_json::Value;

use super::super::Principal;

/// How a verified token's claims are judged.
#[derive(Debug)]
pub struct ClaimRules {
    /// One per key family among the configured algorithms: jsonwebtoken
    /// wants every algorithm of a validation in the verifying key's family.
    validations: Vec<Validation>,
    issuer: Option<String>,
    /// Seconds of tolerance for `exp`, `nbf`, `iat`.
    skew: u64,
}

impl ClaimRules {
    /// `algorithms` are the allowed (asymmetric) ones; an empty `audiences`
    /// leaves `aud` unchecked.
    pub fn new(
        algorithms: &[Algorithm],
        issuer: Option<String>,
        audiences: &[String],
        skew: u64,
        require_exp: bool,
    ) -> Self {
        let mut validations: Vec<Validation> = Vec::new();
        for &alg in algorithms {
            if let Some(validation) = validations
                .iter_mut()
                .find(|v| v.algorithms[0].family() == alg.family())
            {
                validation.algorithms.push(alg);
                continue;
            }
            let mut validation = Validation::new(alg);
            validation.leeway = skew;
            validation.validate_exp = true;
            validation.validate_nbf = true;
            validation.validate_aud = !audiences.is_empty();
            validation.required_spec_claims = HashSet::new();
            if require_exp {
                validation.required_spec_claims.insert("exp".into());
            }
            if !audiences.is_empty() {
                validation.set_audience(audiences);
                validation.required_spec_claims.insert("aud".into());
            }
            if let Some(issuer) = &issuer {
                validation.set_issuer(&[issuer]);
                validation.required_spec_claims.insert("iss".into());
            }
            validations.push(validation);
        }
        Self {
            validations,
            issuer,
            skew,
        }
    }

    /// The validation for a token signed with `alg`; `None` when `alg` is not allowed.
    pub fn validation(&self, alg: Algorithm) -> Option<&Validation> {
        self.validations.iter().find(|v| v.algorithms.contains(&alg))
    }

    /// What [`Validation`] leaves out: `iat`, when present, is a numeric
    /// date not after `now` (plus the skew). `Err(why)` otherwise.
    pub fn check_issued_at(&self, claims: &Value, now: u64) -> Result<(), String> {
        let Some(iat) = claims.get("iat") else { return Ok(()) };
        let iat = iat
            .as_f64()
            .filter(|t| *t >= 0.0)
            .ok_or("`iat` is not a numeric date")?;
        if iat as u64 > now.saturating_add(self.skew) {
            return Err("the token was issued in the future (`iat`)".into());
        }
        Ok(())
    }

    /// Why jsonwebtoken refused a token whose header was already accepted,
    /// worded for the problem's `detail`.
    pub fn why(&self, error: &Error) -> String {
        match error.kind() {
            ErrorKind::InvalidSignature => "the signature does not verify".into(),
            ErrorKind::InvalidToken => "the header uses an unsupported extension (`crit`, `b64`)".into(),
            ErrorKind::ExpiredSignature => "the token has expired".into(),
            ErrorKind::ImmatureSignature => "the token is not valid yet (`nbf`)".into(),
            ErrorKind::InvalidIssuer => match &self.issuer {
                Some(issuer) => format!("the issuer is not {issuer:?}"),
                None => "the issuer is not accepted".into(),
            },
            ErrorKind::InvalidAudience => "the audience is not accepted".into(),
            // Also when the claim is there but unreadable (`"exp": "soon"`).
            ErrorKind::MissingRequiredClaim(claim) => match claim.as_str() {
                "aud" => "the token has no `aud` claim (the audience is required)".into(),
                "iss" => "the token has no `iss` claim (the issuer is required)".into(),
                "exp" | "nbf" => format!("the token has no `{claim}` claim that is a numeric date"),
                _ => format!("the token has no `{claim}` claim"),
            },
            ErrorKind::InvalidClaimFormat(claim) if matches!(claim.as_str(), "exp" | "nbf") => {
                format!("`{claim}` is not a numeric date")
            }
            ErrorKind::InvalidClaimFormat(claim) => format!("the `{claim}` claim is malformed"),
            ErrorKind::Base64(_) | ErrorKind::Utf8(_) => "a part is not base64url".into(),
            ErrorKind::Json(e) => format!("the payload is not a JSON object of claims ({e})"),
            _ => error.to_string(),
        }
    }
}

/// `{"version":"v1","subject":…,"type":"JWT","source":{"jwt":{"header":…,"payload":…}}}`, compact.
pub fn principal(subject: String, header: &Header, payload: &Value) -> Result<Principal, serde_json::Error> {
    let header = serde_json::to_string(header)?;
    let json = format!(
        r#"{{"version":"v1","subject":{},"type":"JWT","source":{{"jwt":{{"header":{header},"payload":{payload}}}}}}}"#,
        Value::String(subject.clone())
    );
    Ok(Principal {
        subject,
        json: crate::keys::principal::header_json(json),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rules() -> ClaimRules {
        ClaimRules::new(
            &[Algorithm::RS256, Algorithm::ES256, Algorithm::PS256],
            Some("https://idp".into()),
            &["api".into()],
            30,
            true,
        )
    }

    #[test]
    fn one_validation_per_key_family() {
        let rules = rules();
        assert_eq!(
            rules.validation(Algorithm::ES256).unwrap().algorithms,
            [Algorithm::ES256]
        );
        let rsa = rules.validation(Algorithm::PS256).unwrap();
        assert_eq!(rsa.algorithms, [Algorithm::RS256, Algorithm::PS256]);
        assert_eq!(rsa.leeway, 30);
        assert!(rsa.validate_exp && rsa.validate_nbf && rsa.validate_aud);
        let required: HashSet<String> = ["exp", "aud", "iss"].map(String::from).into();
        assert_eq!(rsa.required_spec_claims, required);
        assert!(rules.validation(Algorithm::ES384).is_none(), "not configured");
        assert!(rules.validation(Algorithm::HS256).is_none());

        let lax = ClaimRules::new(&[Algorithm::EdDSA], None, &[], 0, false);
        let ed = lax.validation(Algorithm::EdDSA).unwrap();
        assert!(ed.required_spec_claims.is_empty());
        assert!(!ed.validate_aud, "no audiences: `aud` is not checked");
        assert_eq!((ed.iss.as_ref(), ed.aud.as_ref()), (None, None));
    }

    #[test]
    fn issued_at_with_skew() {
        let now = 1_000_000;
        let at = |iat: Value| rules().check_issued_at(&json!({"iat": iat}), now);
        assert_eq!(at(json!(now)), Ok(()));
        assert_eq!(at(json!(now + 29)), Ok(()));
        assert!(at(json!(now + 100)).unwrap_err().contains("iat"));
        assert!(at(json!("soon")).unwrap_err().contains("numeric"));
        assert_eq!(rules().check_issued_at(&json!({}), now), Ok(()));
    }

    #[test]
    fn principal_shape() {
        let mut header = Header::new(Algorithm::RS256);
        header.typ = None;
        header.kid = Some("k1".into());
        let p = principal("user_1".into(), &header, &json!({"sub": "user_1", "org_id": "o"})).unwrap();
        assert_eq!(p.subject, "user_1");
        assert_eq!(
            p.json.to_str().unwrap(),
            r#"{"version":"v1","subject":"user_1","type":"JWT","source":{"jwt":{"header":{"alg":"RS256","kid":"k1"},"payload":{"org_id":"o","sub":"user_1"}}}}"#
        );
    }
}
