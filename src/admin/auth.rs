//! Root-key authentication for the admin API: `Authorization: Bearer <root
//! key>` for a key in `admin.root_keys`.

use http::HeaderMap;
use subtle::ConstantTimeEq;

use crate::errors::{ErrorCode, GatewayError};

/// 401 when no bearer token is presented, 403 when it is not a root key
/// (or no root key is configured).
pub fn require_root_key(root_keys: &[Box<str>], headers: &HeaderMap) -> Result<(), GatewayError> {
    let presented = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, key)| key.trim())
        .filter(|key| !key.is_empty());
    let Some(presented) = presented else {
        return Err(ErrorCode::AuthenticationMissing.into());
    };
    // Every configured key is compared, in constant time, so neither the
    // position nor the first differing byte leaks through timing.
    let matched = root_keys
        .iter()
        .fold(subtle::Choice::from(0), |found, key| found | key.as_bytes().ct_eq(presented.as_bytes()));
    if bool::from(matched) {
        Ok(())
    } else {
        Err(ErrorCode::AuthorizationForbidden.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(authorization: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(http::header::AUTHORIZATION, authorization.parse().unwrap());
        headers
    }

    #[test]
    fn missing_wrong_and_right_keys() {
        let keys: Vec<Box<str>> = vec!["first".into(), "second".into()];
        let code = |h: &HeaderMap| require_root_key(&keys, h).err().map(|e| e.code);
        assert_eq!(code(&HeaderMap::new()), Some(ErrorCode::AuthenticationMissing));
        assert_eq!(code(&headers("Basic second")), Some(ErrorCode::AuthenticationMissing));
        assert_eq!(code(&headers("Bearer secon")), Some(ErrorCode::AuthorizationForbidden));
        assert_eq!(code(&headers("bearer second")), None);
        assert_eq!(require_root_key(&[], &headers("Bearer x")).err().map(|e| e.code), Some(ErrorCode::AuthorizationForbidden));
    }
}
