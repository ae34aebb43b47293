//! Where credentials travel in a request, so nothing that records a request
//! — the `logging` policy's records, the process log's request summaries —
//! ever writes one. Always redacted: `Authorization`, `Proxy-Authorization`,
//! `Cookie`, `Set-Cookie`; per deployment: every header and query parameter a
//! `keyauth` location names. The process log also hides common credential
//! parameter names (`api_key`, `token`, …) on routes without `keyauth`.

use std::borrow::Cow;
use std::collections::HashSet;

use crate::config::policy::PolicySpec;

/// What a redacted value is written as.
pub const REDACTED: &str = "[REDACTED]";

/// Headers that carry credentials whatever the policies say.
const CREDENTIAL_HEADERS: [&str; 4] = ["authorization", "proxy-authorization", "cookie", "set-cookie"];

/// Query parameter names (lowercase) that usually hold a credential.
const USUAL_CREDENTIAL_PARAMS: [&str; 12] = [
    "api_key",
    "apikey",
    "api-key",
    "key",
    "token",
    "access_token",
    "id_token",
    "auth",
    "jwt",
    "password",
    "secret",
    "signature",
];

/// The header and query parameter names that hold credentials on one
/// deployment (lowercase).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CredentialNames {
    headers: HashSet<String>,
    params: HashSet<String>,
}

impl CredentialNames {
    /// The locations every `keyauth` policy of the chain names (the bearer
    /// location is `Authorization`, always redacted).
    pub fn of_chain(specs: &[PolicySpec]) -> Self {
        let mut names = Self::default();
        for keyauth in specs.iter().filter_map(|spec| spec.keyauth.as_ref()) {
            for location in &keyauth.locations {
                if let Some(header) = &location.header {
                    names.headers.insert(header.name.to_ascii_lowercase());
                }
                if let Some(query) = &location.query {
                    names.params.insert(query.name.to_ascii_lowercase());
                }
            }
        }
        names
    }

    /// Adds headers to redact (`logging.redact_headers`).
    pub fn with_headers<'a>(mut self, extra: impl IntoIterator<Item = &'a String>) -> Self {
        self.headers.extend(extra.into_iter().map(|h| h.to_ascii_lowercase()));
        self
    }

    /// Both sets of names.
    pub fn union(mut self, other: &Self) -> Self {
        self.headers.extend(other.headers.iter().cloned());
        self.params.extend(other.params.iter().cloned());
        self
    }

    /// Whether the header `name` (lowercase, as `http` stores it) holds a credential.
    pub fn is_credential_header(&self, name: &str) -> bool {
        CREDENTIAL_HEADERS.contains(&name) || self.headers.contains(name)
    }

    /// Whether the query parameter `name` (decoded) holds a credential here.
    pub fn is_credential_param(&self, name: &str) -> bool {
        !self.params.is_empty() && self.params.contains(&name.to_ascii_lowercase())
    }

    /// For the process log: this deployment's parameters and the usual names.
    pub fn is_likely_credential_param(&self, name: &str) -> bool {
        let lower = name.to_ascii_lowercase();
        USUAL_CREDENTIAL_PARAMS.contains(&lower.as_str()) || self.params.contains(&lower)
    }
}

/// `query` with the value of every parameter `is_credential` names (decoded)
/// replaced by `[REDACTED]`; borrowed as is when there is none.
pub fn redact_query<'q>(query: &'q str, is_credential: impl Fn(&str) -> bool) -> Cow<'q, str> {
    let named = |pair: &str| {
        let key = pair.split_once('=').map_or(pair, |(key, _)| key);
        let decoded = form_urlencoded::parse(key.as_bytes()).next().map(|(k, _)| k);
        decoded.is_some_and(|k| is_credential(&k))
    };
    if !query.split('&').any(named) {
        return Cow::Borrowed(query);
    }
    let pairs: Vec<Cow<'_, str>> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if named(pair) => Cow::Owned(format!("{key}={REDACTED}")),
            _ => Cow::Borrowed(pair),
        })
        .collect();
    Cow::Owned(pairs.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(yaml: &str) -> CredentialNames {
        let specs: Vec<PolicySpec> = serde_saphyr::from_str(yaml).unwrap();
        CredentialNames::of_chain(&specs)
    }

    #[test]
    fn keyauth_locations_are_credentials() {
        let names = names(
            "- id: k\n  keyauth:\n    keyspaces: [ks]\n    locations: [{header: {name: X-API-Key}}, {query: {name: api_key}}, {bearer: {}}]\n",
        );
        assert!(names.is_credential_header("x-api-key"));
        assert!(names.is_credential_header("cookie"));
        assert!(names.is_credential_header("proxy-authorization"));
        assert!(!names.is_credential_header("x-other"));
        assert!(names.is_credential_param("api_key"));
        assert!(names.is_credential_param("API_KEY"));
        assert!(!names.is_credential_param("page"));
        assert!(names.is_likely_credential_param("token"));
    }

    #[test]
    fn query_values_are_replaced_in_place() {
        let secret = |name: &str| name == "api_key";
        assert_eq!(
            redact_query("a=1&api_key=s3cret&b=2", secret),
            "a=1&api_key=[REDACTED]&b=2"
        );
        assert_eq!(redact_query("api%5Fkey=s3cret", secret), "api%5Fkey=[REDACTED]");
        assert_eq!(
            redact_query("api_key=x&api_key=y", secret),
            "api_key=[REDACTED]&api_key=[REDACTED]"
        );
        assert!(matches!(redact_query("a=1&b=2", secret), Cow::Borrowed("a=1&b=2")));
        // A bare name has no value to hide.
        assert_eq!(redact_query("api_key", secret), "api_key");
    }
}
