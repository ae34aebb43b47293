//! Host → route lookup (SPEC §1, §9.7, §9.29). Built once per config snapshot
//! and only read per request: exact hosts and wildcard parents are hash maps,
//! paths are matched by walking the request path's segments.

mod host;
mod path;

use std::collections::HashMap;

pub use host::{normalize_request_host, HostPattern};
pub use path::PathPrefix;

/// What a route resolves to, plus how to rewrite the path on the way.
#[derive(Debug)]
pub struct Routed<T> {
    pub target: T,
    pub prefix: PathPrefix,
    pub strip_prefix: bool,
}

impl<T> Routed<T> {
    /// The request target to send upstream (`path?query` as received, minus a stripped prefix).
    pub fn upstream_target<'a>(&self, target: &'a str) -> std::borrow::Cow<'a, str> {
        if self.strip_prefix && !self.prefix.is_root() {
            std::borrow::Cow::Owned(self.prefix.strip_from(target))
        } else {
            std::borrow::Cow::Borrowed(target)
        }
    }
}

/// The routes of one host, by path prefix.
#[derive(Debug)]
struct HostRoutes<T> {
    by_prefix: HashMap<Box<str>, Routed<T>>,
}

impl<T> Default for HostRoutes<T> {
    fn default() -> Self {
        Self {
            by_prefix: HashMap::new(),
        }
    }
}

impl<T> HostRoutes<T> {
    fn resolve(&self, path: &str) -> Option<&Routed<T>> {
        path::ancestors(path).find_map(|candidate| self.by_prefix.get(candidate))
    }
}

/// Every route of a snapshot.
#[derive(Debug)]
pub struct RouteTable<T> {
    exact: HashMap<Box<str>, HostRoutes<T>>,
    wildcard: HashMap<Box<str>, HostRoutes<T>>,
    len: usize,
}

impl<T> Default for RouteTable<T> {
    fn default() -> Self {
        Self {
            exact: HashMap::new(),
            wildcard: HashMap::new(),
            len: 0,
        }
    }
}

impl<T> RouteTable<T> {
    /// Adds a route; a later route for the same host and prefix replaces the
    /// earlier one (config validation rejects that case before it gets here).
    pub fn insert(&mut self, host: HostPattern, prefix: PathPrefix, strip_prefix: bool, target: T) {
        let hosts = match &host {
            HostPattern::Exact(name) => self.exact.entry(name.clone()).or_default(),
            HostPattern::Wildcard(parent) => self.wildcard.entry(parent.clone()).or_default(),
        };
        let key: Box<str> = prefix.as_str().into();
        let routed = Routed {
            target,
            prefix,
            strip_prefix,
        };
        if hosts.by_prefix.insert(key, routed).is_none() {
            self.len += 1;
        }
    }

    /// The route for a request: host first (exact, else its one-label
    /// wildcard), then the longest matching prefix of that host only.
    /// `host` is the raw Host value; `path` the URL path without query.
    pub fn resolve(&self, host: &str, path: &str) -> Option<&Routed<T>> {
        let host = normalize_request_host(host);
        let routes = match self.exact.get(host.as_ref()) {
            Some(routes) => routes,
            None => {
                let (_label, parent) = host.split_once('.')?;
                self.wildcard.get(parent)?
            }
        };
        routes.resolve(path)
    }

    /// Every route as `(host as written, route)`, exact hosts first.
    pub fn iter(&self) -> impl Iterator<Item = (String, &Routed<T>)> {
        let exact = self
            .exact
            .iter()
            .flat_map(|(host, routes)| routes.by_prefix.values().map(move |r| (host.to_string(), r)));
        let wildcard = self
            .wildcard
            .iter()
            .flat_map(|(parent, routes)| routes.by_prefix.values().map(move |r| (format!("*.{parent}"), r)));
        exact.chain(wildcard)
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(routes: &[(&str, &str, &'static str)]) -> RouteTable<&'static str> {
        let mut table = RouteTable::default();
        for (host, prefix, target) in routes {
            table.insert(
                HostPattern::parse(host).unwrap(),
                PathPrefix::parse(prefix).unwrap(),
                false,
                *target,
            );
        }
        table
    }

    #[test]
    fn host_rules() {
        let t = table(&[
            ("api.example.com", "/", "exact"),
            ("*.example.com", "/", "wild"),
        ]);
        let target = |host: &str| t.resolve(host, "/").map(|r| r.target);
        assert_eq!(target("api.example.com"), Some("exact"));
        assert_eq!(target("API.EXAMPLE.COM:8080"), Some("exact"));
        assert_eq!(target("api.example.com."), Some("exact"));
        assert_eq!(target("other.example.com"), Some("wild"));
        assert_eq!(target("a.b.example.com"), None);
        assert_eq!(target("example.com"), None);
        assert_eq!(target("localhost"), None);
    }

    #[test]
    fn path_rules() {
        let t = table(&[
            ("h.com", "/", "root"),
            ("h.com", "/api", "api"),
            ("h.com", "/api/v2", "v2"),
            ("only.com", "/api", "only"),
            ("*.w.com", "/", "wild"),
        ]);
        let target = |host: &str, path: &str| t.resolve(host, path).map(|r| r.target);
        assert_eq!(target("h.com", "/"), Some("root"));
        assert_eq!(target("h.com", "/api"), Some("api"));
        assert_eq!(target("h.com", "/api/"), Some("api"));
        assert_eq!(target("h.com", "/api/x"), Some("api"));
        assert_eq!(target("h.com", "/apix"), Some("root"));
        assert_eq!(target("h.com", "/api/v2/users"), Some("v2"));
        assert_eq!(target("h.com", "/API"), Some("root"));
        assert_eq!(target("only.com", "/other"), None);
        assert_eq!(target("only.com", "/api/1"), Some("only"));
    }

    #[test]
    fn exact_host_without_matching_prefix_does_not_fall_back_to_wildcard() {
        let t = table(&[("a.x.com", "/api", "exact"), ("*.x.com", "/", "wild")]);
        assert!(t.resolve("a.x.com", "/other").is_none());
        assert_eq!(t.resolve("b.x.com", "/other").map(|r| r.target), Some("wild"));
    }

    #[test]
    fn hundred_thousand_routes() {
        let mut t = RouteTable::default();
        for i in 0..100_000 {
            t.insert(HostPattern::parse(&format!("h{i}.example.com")).unwrap(), PathPrefix::root(), false, i);
        }
        assert_eq!(t.len(), 100_000);
        assert_eq!(t.resolve("h99999.example.com", "/x").map(|r| r.target), Some(99_999));
    }
}
