//! What a route does to a request besides choosing where it goes: header
//! edits, a rewritten Host and path, or a redirect the gateway answers
//! itself. Compiled once; per request they only compute the new target or
//! `Location` (the proxy applies them).

use http::{HeaderName, HeaderValue};

use super::host::normalize_request_host;
use super::path::PathPrefix;

/// Header edits in one filter: `set` replaces, `add` appends, `remove`
/// drops (a name appears in one of the three only).
#[derive(Debug, Default, Clone)]
pub struct HeaderFilter {
    pub set: Box<[(HeaderName, HeaderValue)]>,
    pub add: Box<[(HeaderName, HeaderValue)]>,
    pub remove: Box<[HeaderName]>,
}

/// A new path for the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathRewrite {
    /// Replaces the route's matched prefix.
    ReplacePrefix(Box<str>),
    /// Replaces the whole path.
    ReplaceFull(Box<str>),
}

impl PathRewrite {
    /// `target` (`path?query` as received, matched by `prefix`) with its
    /// path rewritten; the query is kept.
    pub fn apply(&self, prefix: &PathPrefix, target: &str) -> String {
        let query_at = target.find('?').unwrap_or(target.len());
        let (path, query) = target.split_at(query_at);
        match self {
            Self::ReplaceFull(full) => format!("{full}{query}"),
            Self::ReplacePrefix(new) => {
                let rest = if prefix.is_root() {
                    path
                } else {
                    path.get(prefix.as_str().len()..).unwrap_or("")
                };
                let base = new.trim_end_matches('/');
                match (base.is_empty(), rest.starts_with('/')) {
                    (_, true) => format!("{base}{rest}{query}"),
                    (true, false) => format!("/{rest}{query}"),
                    (false, false) if rest.is_empty() => format!("{base}{query}"),
                    (false, false) => format!("{base}/{rest}{query}"),
                }
            }
        }
    }
}

/// `rewrite:`: the Host and path the instance receives.
#[derive(Debug, Clone, Default)]
pub struct Rewrite {
    pub hostname: Option<HeaderValue>,
    pub path: Option<PathRewrite>,
}

/// `redirect:`: the gateway answers with `status` and a `Location` built
/// from these parts and the request's own.
#[derive(Debug, Clone)]
pub struct Redirect {
    /// `http` or `https`; `None`: the request's.
    pub scheme: Option<&'static str>,
    pub hostname: Option<Box<str>>,
    pub port: Option<u16>,
    pub path: Option<PathRewrite>,
    pub status: u16,
}

/// What a redirect needs to know of the request.
pub struct RedirectFrom<'a> {
    pub https: bool,
    /// The Host header as received (maybe with a port).
    pub host: &'a str,
    /// `path?query` as received.
    pub target: &'a str,
}

impl Redirect {
    /// The `Location` for a request the route matched with `prefix`.
    pub fn location(&self, prefix: &PathPrefix, from: &RedirectFrom<'_>) -> String {
        let scheme = self.scheme.unwrap_or(if from.https { "https" } else { "http" });
        let request_host = normalize_request_host(from.host);
        let host = self.hostname.as_deref().unwrap_or(&request_host);
        let port = match (self.port, self.scheme) {
            (Some(port), _) => Some(port),
            // The scheme's own port when the scheme changes; else the request's.
            (None, Some(_)) => None,
            (None, None) => request_port(from.host),
        };
        let default_port = if scheme == "https" { 443 } else { 80 };
        let target = match &self.path {
            Some(rewrite) => std::borrow::Cow::Owned(rewrite.apply(prefix, from.target)),
            None => std::borrow::Cow::Borrowed(from.target),
        };
        match port.filter(|p| *p != default_port) {
            Some(port) => format!("{scheme}://{host}:{port}{target}"),
            None => format!("{scheme}://{host}{target}"),
        }
    }
}

/// The port of a Host header value, if it names one.
fn request_port(host: &str) -> Option<u16> {
    let after_name = match host.strip_prefix('[') {
        Some(v6) => v6.split_once(']').map_or("", |(_, rest)| rest),
        None => host,
    };
    after_name.rsplit_once(':').and_then(|(_, port)| port.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefix(text: &str) -> PathPrefix {
        PathPrefix::parse(text).unwrap()
    }

    #[test]
    fn replace_prefix_and_full() {
        let to = |new: &str| PathRewrite::ReplacePrefix(new.into());
        let v1 = prefix("/v1");
        assert_eq!(to("/api").apply(&v1, "/v1/x?q=1"), "/api/x?q=1");
        assert_eq!(to("/api").apply(&v1, "/v1"), "/api");
        assert_eq!(to("/api").apply(&v1, "/v1?q"), "/api?q");
        assert_eq!(to("/api/").apply(&v1, "/v1/x"), "/api/x");
        assert_eq!(to("/").apply(&v1, "/v1/x?q=1"), "/x?q=1");
        assert_eq!(to("/").apply(&v1, "/v1"), "/");
        assert_eq!(to("/").apply(&v1, "/v1?q=1"), "/?q=1");
        assert_eq!(to("/api").apply(&PathPrefix::root(), "/x"), "/api/x");
        assert_eq!(to("/api").apply(&PathPrefix::root(), "/"), "/api/");
        let full = PathRewrite::ReplaceFull("/health".into());
        assert_eq!(full.apply(&v1, "/v1/x?a=b"), "/health?a=b");
        assert_eq!(full.apply(&v1, "/v1/x"), "/health");
    }

    #[test]
    fn locations() {
        let redirect = |scheme, hostname: Option<&str>, port, path| Redirect {
            scheme,
            hostname: hostname.map(Into::into),
            port,
            path,
            status: 302,
        };
        let from = |https, host| RedirectFrom {
            https,
            host,
            target: "/v1/x?q=1",
        };
        let v1 = prefix("/v1");
        let keep = redirect(None, None, None, None);
        assert_eq!(
            keep.location(&v1, &from(false, "a.com:8080")),
            "http://a.com:8080/v1/x?q=1"
        );
        assert_eq!(keep.location(&v1, &from(true, "A.com")), "https://a.com/v1/x?q=1");
        let https = redirect(
            Some("https"),
            Some("new.com"),
            None,
            Some(PathRewrite::ReplacePrefix("/v2".into())),
        );
        assert_eq!(
            https.location(&v1, &from(false, "a.com:8080")),
            "https://new.com/v2/x?q=1"
        );
        let port = redirect(Some("https"), None, Some(8443), None);
        assert_eq!(port.location(&v1, &from(false, "a.com")), "https://a.com:8443/v1/x?q=1");
        let default_port = redirect(Some("http"), None, Some(80), None);
        assert_eq!(
            default_port.location(&v1, &from(true, "a.com:8443")),
            "http://a.com/v1/x?q=1"
        );
        assert_eq!(
            keep.location(&v1, &from(false, "[::1]:8080")),
            "http://[::1]:8080/v1/x?q=1"
        );
    }
}
