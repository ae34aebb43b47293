//! Host → route lookup. Built once per config snapshot
//! and only read per request: exact hosts and wildcard parents are hash maps,
//! paths are matched by walking the request path's segments. Besides the
//! file's prefixes, providers need what Kubernetes Ingresses express: exact
//! paths, and rules for any host (an Ingress rule without `host`, or its
//! default backend).

mod host;
mod path;

use std::collections::HashMap;

pub use host::{normalize_request_host, HostPattern};
pub use path::PathPrefix;

/// What a route resolves to, plus how to rewrite the path on the way.
#[derive(Debug)]
pub struct Routed<T> {
    pub target: T,
    /// The path the route was written for (for an exact route, its path).
    pub prefix: PathPrefix,
    pub strip_prefix: bool,
    /// Matches only this very path, not the paths below it.
    pub exact: bool,
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

/// How a route matches the request path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PathMatch {
    /// The prefix and everything below it, on segment boundaries.
    Prefix(PathPrefix),
    /// This path only (byte for byte; a trailing `/` makes another path).
    Exact(Box<str>),
}

/// The routes of one host: exact paths first, then the longest prefix.
#[derive(Debug)]
struct HostRoutes<T> {
    exact: HashMap<Box<str>, Routed<T>>,
    by_prefix: HashMap<Box<str>, Routed<T>>,
}

impl<T> Default for HostRoutes<T> {
    fn default() -> Self {
        Self {
            exact: HashMap::new(),
            by_prefix: HashMap::new(),
        }
    }
}

impl<T> HostRoutes<T> {
    fn resolve(&self, path: &str) -> Option<&Routed<T>> {
        if let Some(exact) = self.exact.get(path) {
            return Some(exact);
        }
        path::ancestors(path).find_map(|candidate| self.by_prefix.get(candidate))
    }

    fn all(&self) -> impl Iterator<Item = &Routed<T>> {
        self.exact.values().chain(self.by_prefix.values())
    }
}

/// Every route of a snapshot.
#[derive(Debug)]
pub struct RouteTable<T> {
    exact: HashMap<Box<str>, HostRoutes<T>>,
    wildcard: HashMap<Box<str>, HostRoutes<T>>,
    /// Routes for a host that no exact or wildcard host names.
    any_host: HostRoutes<T>,
    len: usize,
}

impl<T> Default for RouteTable<T> {
    fn default() -> Self {
        Self {
            exact: HashMap::new(),
            wildcard: HashMap::new(),
            any_host: HostRoutes::default(),
            len: 0,
        }
    }
}

impl<T> RouteTable<T> {
    /// Adds a route; a later route for the same host and prefix replaces the
    /// earlier one (config validation rejects that case before it gets here).
    pub fn insert(&mut self, host: HostPattern, prefix: PathPrefix, strip_prefix: bool, target: T) {
        self.add(Some(&host), PathMatch::Prefix(prefix), strip_prefix, target);
    }

    /// Adds a route for `host` (`None`: any host no other route names) and
    /// `path`; replaces a route with the same host and path match.
    pub fn add(&mut self, host: Option<&HostPattern>, path: PathMatch, strip_prefix: bool, target: T) {
        let hosts = match host {
            Some(HostPattern::Exact(name)) => self.exact.entry(name.clone()).or_default(),
            Some(HostPattern::Wildcard(parent)) => self.wildcard.entry(parent.clone()).or_default(),
            None => &mut self.any_host,
        };
        let (map, key, prefix, exact) = match path {
            PathMatch::Prefix(prefix) => (&mut hosts.by_prefix, prefix.as_str().into(), prefix, false),
            PathMatch::Exact(path) => {
                let prefix = PathPrefix::parse(&path).unwrap_or_else(|_| PathPrefix::root());
                (&mut hosts.exact, path, prefix, true)
            }
        };
        let routed = Routed {
            target,
            prefix,
            strip_prefix,
            exact,
        };
        if map.insert(key, routed).is_none() {
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
            None => host
                .split_once('.')
                .and_then(|(_label, parent)| self.wildcard.get(parent))
                .unwrap_or(&self.any_host),
        };
        routes.resolve(path)
    }

    /// Every route as `(host as written, route)`, exact hosts first; routes
    /// for any host are listed under `*`.
    pub fn iter(&self) -> impl Iterator<Item = (String, &Routed<T>)> {
        let exact = self
            .exact
            .iter()
            .flat_map(|(host, routes)| routes.all().map(move |r| (host.to_string(), r)));
        let wildcard = self
            .wildcard
            .iter()
            .flat_map(|(parent, routes)| routes.all().map(move |r| (format!("*.{parent}"), r)));
        let any = self.any_host.all().map(|r| ("*".to_string(), r));
        exact.chain(wildcard).chain(any)
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
    fn exact_paths_beat_prefixes_and_match_only_themselves() {
        let mut t = table(&[("h.com", "/", "root"), ("h.com", "/api", "api")]);
        t.add(Some(&HostPattern::parse("h.com").unwrap()), PathMatch::Exact("/api".into()), false, "exact");
        let target = |path: &str| t.resolve("h.com", path).map(|r| r.target);
        assert_eq!(target("/api"), Some("exact"));
        assert_eq!(target("/api/"), Some("api"));
        assert_eq!(target("/api/x"), Some("api"));
        assert_eq!(target("/x"), Some("root"));
    }

    #[test]
    fn any_host_routes_serve_only_unnamed_hosts() {
        let mut t = table(&[("a.com", "/api", "a"), ("*.w.com", "/", "wild")]);
        t.add(None, PathMatch::Prefix(PathPrefix::root()), false, "any");
        let target = |host: &str, path: &str| t.resolve(host, path).map(|r| r.target);
        assert_eq!(target("other.com", "/x"), Some("any"));
        assert_eq!(target("x.w.com", "/x"), Some("wild"));
        assert_eq!(target("a.com", "/x"), None, "a named host never falls back");
        assert_eq!(t.iter().filter(|(host, _)| host == "*").count(), 1);
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
