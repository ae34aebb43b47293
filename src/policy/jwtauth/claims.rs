//! The registered claims `jwtauth` checks once the signature holds — `exp`
//! (required unless `require_exp: false`), `nbf`, `iat` (not in the
//! future), `iss`, `aud` — all with `clock_skew` — and the Principal JSON of
//! SPEC §4/§9.17 built from the verified token.

use serde_json::Value;

use super::super::Principal;

#[derive(Debug)]
pub struct ClaimRules {
    pub issuer: Option<String>,
    /// Empty: `aud` is not checked.
    pub audiences: Vec<String>,
    /// Seconds of tolerance for `exp`, `nbf`, `iat`.
    pub skew: u64,
    pub require_exp: bool,
}

impl ClaimRules {
    /// `Err(why)` when a claim fails at unix time `now`.
    pub fn check(&self, claims: &Value, now: u64) -> Result<(), String> {
        let time = |name: &str| -> Result<Option<u64>, String> {
            match claims.get(name) {
                None => Ok(None),
                Some(v) => v
                    .as_f64()
                    .filter(|t| *t >= 0.0)
                    .map(|t| Some(t as u64))
                    .ok_or_else(|| format!("`{name}` is not a numeric date")),
            }
        };
        match time("exp")? {
            Some(exp) if now > exp.saturating_add(self.skew) => return Err("the token has expired".into()),
            None if self.require_exp => return Err("the token has no `exp` claim".into()),
            _ => {}
        }
        if time("nbf")?.is_some_and(|nbf| nbf > now.saturating_add(self.skew)) {
            return Err("the token is not valid yet (`nbf`)".into());
        }
        if time("iat")?.is_some_and(|iat| iat > now.saturating_add(self.skew)) {
            return Err("the token was issued in the future (`iat`)".into());
        }
        if let Some(issuer) = &self.issuer {
            if claims.get("iss").and_then(Value::as_str) != Some(issuer.as_str()) {
                return Err(format!("the issuer is not {issuer:?}"));
            }
        }
        if !self.audiences.is_empty() {
            let fits = |a: &Value| a.as_str().is_some_and(|a| self.audiences.iter().any(|want| want == a));
            let ok = match claims.get("aud") {
                Some(Value::Array(list)) => list.iter().any(fits),
                Some(one) => fits(one),
                None => false,
            };
            if !ok {
                return Err("the audience is not accepted".into());
            }
        }
        Ok(())
    }
}

/// `{"version":"v1","subject":…,"type":"JWT","source":{"jwt":{"header":…,"payload":…}}}`, compact.
pub fn principal(subject: String, header: &Value, payload: &Value) -> Principal {
    let json = format!(
        r#"{{"version":"v1","subject":{},"type":"JWT","source":{{"jwt":{{"header":{header},"payload":{payload}}}}}}}"#,
        Value::String(subject.clone())
    );
    Principal { subject, json }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rules() -> ClaimRules {
        ClaimRules { issuer: Some("https://idp".into()), audiences: vec!["api".into()], skew: 30, require_exp: true }
    }

    #[test]
    fn claims_with_skew() {
        let now = 1_000_000;
        let ok = json!({"iss": "https://idp", "aud": ["x", "api"], "exp": now + 60, "nbf": now - 1, "iat": now});
        assert_eq!(rules().check(&ok, now), Ok(()));
        let with = |k: &str, v: Value| {
            let mut c = ok.clone();
            c[k] = v;
            rules().check(&c, now)
        };
        assert!(with("exp", json!(now - 31)).unwrap_err().contains("expired"));
        assert_eq!(with("exp", json!(now - 29)), Ok(()));
        assert!(with("nbf", json!(now + 31)).unwrap_err().contains("nbf"));
        assert_eq!(with("nbf", json!(now + 29)), Ok(()));
        assert!(with("iat", json!(now + 100)).unwrap_err().contains("iat"));
        assert!(with("iss", json!("https://evil")).unwrap_err().contains("issuer"));
        assert!(with("aud", json!("other")).unwrap_err().contains("audience"));
        assert_eq!(with("aud", json!("api")), Ok(()));
        assert!(with("exp", json!("soon")).unwrap_err().contains("numeric"));
        let mut no_exp = ok.clone();
        no_exp.as_object_mut().unwrap().remove("exp");
        assert!(rules().check(&no_exp, now).unwrap_err().contains("no `exp`"));
        let lax = ClaimRules { require_exp: false, ..rules() };
        assert_eq!(lax.check(&no_exp, now), Ok(()));
    }

    #[test]
    fn principal_shape() {
        let p = principal("user_1".into(), &json!({"alg": "RS256", "kid": "k1"}), &json!({"sub": "user_1", "org_id": "o"}));
        assert_eq!(p.subject, "user_1");
        assert_eq!(
            p.json,
            r#"{"version":"v1","subject":"user_1","type":"JWT","source":{"jwt":{"header":{"alg":"RS256","kid":"k1"},"payload":{"org_id":"o","sub":"user_1"}}}}"#
        );
    }
}
