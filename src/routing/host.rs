//! Hostnames as routes name them (exact or `*.` wildcard) and as requests
//! carry them (any case, maybe a port, maybe a trailing dot).

use std::borrow::Cow;

/// A route's host: an exact name, or `*.parent` matching exactly one extra label.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostPattern {
    Exact(Box<str>),
    /// Holds the parent: `*.example.com` is `Wildcard("example.com")`.
    Wildcard(Box<str>),
}

impl HostPattern {
    pub fn parse(text: &str) -> Result<Self, String> {
        let lower = text.trim().to_ascii_lowercase();
        let name = lower.strip_suffix('.').unwrap_or(&lower);
        let (wildcard, name) = match name.strip_prefix("*.") {
            Some(parent) => (true, parent),
            None => (false, name),
        };
        let valid_label =
            |l: &str| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if name.contains(':') {
            return Err(format!("host {text:?} must not include a port"));
        }
        if name.is_empty() || !name.split('.').all(valid_label) {
            return Err(format!(
                "invalid host {text:?} (a hostname such as api.example.com, or *.example.com for one extra label)"
            ));
        }
        Ok(if wildcard {
            Self::Wildcard(name.into())
        } else {
            Self::Exact(name.into())
        })
    }
}

/// The request's host reduced to what routes match on: lowercase, without
/// port or trailing dot. Borrows when nothing needs changing.
pub fn normalize_request_host(raw: &str) -> Cow<'_, str> {
    if raw.starts_with('[') {
        // IPv6 literal: keep up to the closing bracket.
        let literal = raw.find(']').map_or(raw, |end| &raw[..=end]);
        let literal = literal.strip_suffix('.').unwrap_or(literal);
        return lowercase(literal, literal.bytes().any(|b| b.is_ascii_uppercase()));
    }
    // One pass finds the port's colon (the last one) and any uppercase
    // letter: hosts are short, and this runs on every request.
    let (mut end, mut upper) = (raw.len(), false);
    for (at, b) in raw.bytes().enumerate() {
        if b == b':' {
            end = at;
        }
        upper |= b.is_ascii_uppercase();
    }
    let host = &raw[..end];
    lowercase(host.strip_suffix('.').unwrap_or(host), upper)
}

fn lowercase(host: &str, upper: bool) -> Cow<'_, str> {
    match upper {
        true => Cow::Owned(host.to_ascii_lowercase()),
        false => Cow::Borrowed(host),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        assert_eq!(
            HostPattern::parse("API.Example.com."),
            Ok(HostPattern::Exact("api.example.com".into()))
        );
        assert_eq!(
            HostPattern::parse("*.preview.example.com"),
            Ok(HostPattern::Wildcard("preview.example.com".into()))
        );
        for bad in ["", "*", "a.*.com", "a..com", "a.com:80", "*.*.com", "a b.com"] {
            assert!(HostPattern::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn request_hosts() {
        assert_eq!(normalize_request_host("API.example.com:8080"), "api.example.com");
        assert_eq!(normalize_request_host("api.example.com."), "api.example.com");
        assert_eq!(normalize_request_host("api.example.com.:443"), "api.example.com");
        assert_eq!(normalize_request_host("[::1]:8080"), "[::1]");
        assert_eq!(normalize_request_host("[FE80::1]:8080"), "[fe80::1]");
        assert_eq!(normalize_request_host("Localhost"), "localhost");
        assert_eq!(
            normalize_request_host("a.b:c:8080"),
            "a.b:c",
            "the last colon starts the port"
        );
        assert!(matches!(normalize_request_host("localhost"), Cow::Borrowed(_)));
        assert!(matches!(normalize_request_host("localhost:80"), Cow::Borrowed(_)));
    }
}
