//! Root-key authentication for the admin API: `Authorization: Bearer <root
//! key>` for a key in `admin.root_keys` (or the local root key).
//!
//! Like Unkey's API: no bearer token is 401 `authentication:missing`, a
//! token that is not a root key 401 `authentication:key_not_found`. One
//! case is told apart: an API key of one of the gateway's keyspaces is a
//! known credential without the right to administer, 403
//! `authorization:forbidden`.

use std::time::Instant;

use http::HeaderMap;
use subtle::ConstantTimeEq;

use crate::errors::{ErrorCode, GatewayError};
use crate::keys::model::hash_key;
use crate::keys::Keys;

/// The bearer token, if the request has one.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, key)| key.trim())
        .filter(|key| !key.is_empty())
}

/// Whether `presented` is one of `root_keys`. Every configured key is
/// compared, in constant time, so neither the position nor the first
/// differing byte leaks through timing.
fn is_root_key(root_keys: &[Box<str>], presented: &str) -> bool {
    let matched = root_keys.iter().fold(subtle::Choice::from(0), |found, key| {
        found | key.as_bytes().ct_eq(presented.as_bytes())
    });
    bool::from(matched)
}

/// Ok for a root key; the refusal otherwise (see the module doc).
pub async fn require_root_key(root_keys: &[Box<str>], headers: &HeaderMap, keys: &Keys) -> Result<(), GatewayError> {
    let Some(presented) = bearer(headers) else {
        return Err(ErrorCode::AuthenticationMissing.into());
    };
    if is_root_key(root_keys, presented) {
        return Ok(());
    }
    match keys
        .service
        .lookup(&keys.statics, &hash_key(presented), Instant::now())
        .await
    {
        Ok(Some(key)) => Err(GatewayError::with_detail(
            ErrorCode::AuthorizationForbidden,
            format!(
                "This is an API key of keyspace {:?}, not a root key: the admin API needs one of admin.root_keys.",
                key.record.keyspace_id
            ),
        )),
        Ok(None) => Err(ErrorCode::AuthenticationKeyNotFound.into()),
        Err(e) => {
            tracing::warn!("admin API: cannot tell an API key from an unknown one: {e}");
            Err(ErrorCode::AuthenticationKeyNotFound.into())
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::keys::{KeyService, StaticKeys};

    fn headers(authorization: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(http::header::AUTHORIZATION, authorization.parse().unwrap());
        headers
    }

    #[tokio::test]
    async fn missing_unknown_api_and_root_keys() {
        let service = KeyService::in_memory().unwrap();
        let specs: Vec<crate::config::keys::KeyspaceSpec> =
            serde_saphyr::from_str("[{id: ks, keys: [{id: k1, key: sk_api}]}]").unwrap();
        let keys = Keys {
            statics: Arc::new(StaticKeys::compile(&specs, &service).unwrap()),
            service,
        };
        let roots: Vec<Box<str>> = vec!["first".into(), "second".into()];
        let code = |h: HeaderMap| {
            let (roots, keys) = (roots.clone(), keys.clone());
            async move { require_root_key(&roots, &h, &keys).await.err().map(|e| e.code) }
        };
        assert_eq!(code(HeaderMap::new()).await, Some(ErrorCode::AuthenticationMissing));
        assert_eq!(
            code(headers("Basic second")).await,
            Some(ErrorCode::AuthenticationMissing)
        );
        assert_eq!(
            code(headers("Bearer secon")).await,
            Some(ErrorCode::AuthenticationKeyNotFound)
        );
        assert_eq!(
            code(headers("Bearer sk_api")).await,
            Some(ErrorCode::AuthorizationForbidden)
        );
        assert_eq!(code(headers("bearer second")).await, None);
        let none = require_root_key(&[], &headers("Bearer x"), &keys)
            .await
            .err()
            .map(|e| e.code);
        assert_eq!(none, Some(ErrorCode::AuthenticationKeyNotFound));
    }
}
