//! Secrets in the configuration are written back masked: `keygate config
//! print` (the only serializer of the file's types) shows that a root key,
//! a static key's plaintext or a URL's password is set, never its value.

use serde::Serializer;

/// What a secret prints as.
const MASK: &str = "********";

/// A list of secrets (`admin.root_keys`): each one masked.
pub fn secrets<S: Serializer>(values: &[String], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_seq(values.iter().map(|_| MASK))
}

/// An optional secret (a static key's plaintext).
pub fn secret<S: Serializer>(value: &Option<String>, serializer: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(_) => serializer.serialize_str(MASK),
        None => serializer.serialize_none(),
    }
}

/// An optional URL (`state.redis`, `state.database`) with its password, and any `password` or
/// `pass` query parameter, masked; a value that does not parse as a URL is
/// masked whole.
pub fn url_password<S: Serializer>(value: &Option<String>, serializer: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(text) => serializer.serialize_str(&masked_url(text)),
        None => serializer.serialize_none(),
    }
}

fn masked_url(text: &str) -> String {
    let Ok(mut url) = url::Url::parse(text) else {
        return MASK.to_string();
    };
    if url.password().is_some() && url.set_password(Some(MASK)).is_err() {
        return MASK.to_string();
    }
    let secret_query = |name: &str| matches!(name, "password" | "pass");
    if url.query_pairs().any(|(name, _)| secret_query(&name)) {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(name, value)| {
                let value = if secret_query(&name) {
                    MASK.into()
                } else {
                    value.into_owned()
                };
                (name.into_owned(), value)
            })
            .collect();
        url.query_pairs_mut().clear().extend_pairs(pairs);
    }
    url.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_keep_everything_but_the_password() {
        assert_eq!(masked_url("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
        assert_eq!(
            masked_url("redis://:hunter2@10.0.0.5:6379/0"),
            "redis://:********@10.0.0.5:6379/0"
        );
        assert_eq!(
            masked_url("postgres://app:hunter2@db/keys"),
            "postgres://app:********@db/keys"
        );
        let unix = masked_url("redis+unix:///run/redis.sock?db=1&pass=hunter2");
        assert!(
            unix.starts_with("redis+unix:///run/redis.sock?db=1&pass=") && !unix.contains("hunter2"),
            "{unix}"
        );
        assert_eq!(masked_url("not a url hunter2"), MASK);
    }
}
