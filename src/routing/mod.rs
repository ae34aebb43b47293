//! Host → route lookup. Built once per config snapshot
//! and only read per request: exact hosts and wildcard parents are hash maps,
//! paths are matched by walking the request path's segments, then regex
//! paths; among routes of the same path, match expressions decide (Gateway
//! API precedence) and a route that does not match lets the next one try.
//! Besides the file's prefixes, providers need what Kubernetes Ingresses
//! express: exact paths, and rules for any host (an Ingress rule without
//! `host`, or its default backend).

mod backends;
pub mod filters;
mod host;
mod path;
mod rule;
mod spec;

/// The route maps are looked up on every request with the client's Host:
/// ahash (randomly keyed, so still safe against crafted keys) instead of
/// the standard library's SipHash, several times cheaper on short text.
type HashMap<K, V> = std::collections::HashMap<K, V, ahash::RandomState>;
use std::sync::Arc;

pub use backends::Backends;
pub use host::{normalize_request_host, HostPattern};
pub use path::PathPrefix;
pub use rule::{Precedence, RouteRule};
pub use spec::{compile_path, compile_rule};

/// What a route resolves to, plus what to do with the request on the way.
#[derive(Debug)]
pub struct Routed<T> {
    pub target: T,
    pub path: PathMatch,
    /// The path the route was written for (for an exact route, its path;
    /// for a regex, the root): what `strip_prefix` and `replace_prefix` replace.
    pub prefix: PathPrefix,
    pub strip_prefix: bool,
    pub rule: Arc<RouteRule>,
}

impl<T> Routed<T> {
    /// The request target to send upstream (`path?query` as received, minus
    /// a stripped prefix or with the rewritten path).
    pub fn upstream_target<'a>(&self, target: &'a str) -> std::borrow::Cow<'a, str> {
        if let Some(path) = self.rule.rewrite.as_ref().and_then(|r| r.path.as_ref()) {
            std::borrow::Cow::Owned(path.apply(&self.prefix, target))
        } else if self.strip_prefix && !self.prefix.is_root() {
            std::borrow::Cow::Owned(self.prefix.strip_from(target))
        } else {
            std::borrow::Cow::Borrowed(target)
        }
    }

    /// Matches only this very path, not the paths below it.
    pub fn exact(&self) -> bool {
        matches!(self.path, PathMatch::Exact(_))
    }
}

/// How a route matches the request path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PathMatch {
    /// The prefix and everything below it, on segment boundaries.
    Prefix(PathPrefix),
    /// This path only (byte for byte; a trailing `/` makes another path).
    Exact(Box<str>),
    /// A regex searched in the path; tried after every exact and prefix route.
    Regex(PathRegex),
}

impl std::fmt::Display for PathMatch {
    /// As messages name it: `prefix /v1`, `exact path /v1`, `regex ^/v[0-9]+/`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Prefix(prefix) => write!(f, "prefix {}", prefix.as_str()),
            Self::Exact(path) => write!(f, "exact path {path}"),
            Self::Regex(regex) => write!(f, "regex {}", regex.as_str()),
        }
    }
}

/// A compiled path regex, compared by its pattern.
#[derive(Debug, Clone)]
pub struct PathRegex(regex::Regex);

impl PathRegex {
    pub fn new(regex: regex::Regex) -> Self {
        Self(regex)
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl PartialEq for PathRegex {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for PathRegex {}

impl std::hash::Hash for PathRegex {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

/// Routes sharing one path match, highest precedence first (ties: the one
/// added first).
type Candidates<T> = Vec<Routed<T>>;

/// The routes of one host: exact paths first, then the longest prefix, then regexes.
#[derive(Debug)]
struct HostRoutes<T> {
    exact: HashMap<Box<str>, Candidates<T>>,
    by_prefix: HashMap<Box<str>, Candidates<T>>,
    /// In precedence order, then in the order added.
    regex: Candidates<T>,
}

impl<T> Default for HostRoutes<T> {
    fn default() -> Self {
        Self {
            exact: HashMap::default(),
            by_prefix: HashMap::default(),
            regex: Vec::new(),
        }
    }
}

impl<T> HostRoutes<T> {
    fn resolve(&self, head: &http::request::Parts) -> Option<&Routed<T>> {
        let path = head.uri.path();
        if let Some(found) = self
            .exact
            .get(path)
            .and_then(|c| c.iter().find(|r| r.rule.admits(head)))
        {
            return Some(found);
        }
        let by_prefix = path::ancestors(path)
            .filter_map(|candidate| self.by_prefix.get(candidate))
            .find_map(|c| c.iter().find(|r| r.rule.admits(head)));
        if by_prefix.is_some() {
            return by_prefix;
        }
        self.regex.iter().find(|r| match &r.path {
            PathMatch::Regex(regex) => regex.0.is_match(path) && r.rule.admits(head),
            _ => false,
        })
    }

    fn all(&self) -> impl Iterator<Item = &Routed<T>> {
        self.exact
            .values()
            .flatten()
            .chain(self.by_prefix.values().flatten())
            .chain(&self.regex)
    }
}

/// Adds `routed` among `candidates` after every route of equal or higher
/// precedence. A route without match expressions replaces an earlier one
/// without (it would hide it anyway). Returns whether the count grew.
fn place<T>(candidates: &mut Candidates<T>, routed: Routed<T>) -> bool {
    let same_path = |r: &Routed<T>| r.path == routed.path;
    if !routed.rule.is_conditional() {
        if let Some(slot) = candidates.iter_mut().find(|r| !r.rule.is_conditional() && same_path(r)) {
            *slot = routed;
            return false;
        }
    }
    let precedence = routed.rule.precedence();
    let at = candidates.partition_point(|r| r.rule.precedence() >= precedence);
    candidates.insert(at, routed);
    true
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
            exact: HashMap::default(),
            wildcard: HashMap::default(),
            any_host: HostRoutes::default(),
            len: 0,
        }
    }
}

impl<T> RouteTable<T> {
    /// Adds a plain prefix route (no match expressions or filters).
    pub fn insert(&mut self, host: HostPattern, prefix: PathPrefix, strip_prefix: bool, target: T) {
        self.add(
            Some(&host),
            PathMatch::Prefix(prefix),
            strip_prefix,
            Arc::default(),
            target,
        );
    }

    /// Adds a route for `host` (`None`: any host no other route names) and
    /// `path`. Among routes of the same host and path it goes after those
    /// of equal or higher precedence; without match expressions it replaces
    /// an earlier route without them.
    pub fn add(
        &mut self,
        host: Option<&HostPattern>,
        path: PathMatch,
        strip_prefix: bool,
        rule: Arc<RouteRule>,
        target: T,
    ) {
        let hosts = match host {
            Some(HostPattern::Exact(name)) => self.exact.entry(name.clone()).or_default(),
            Some(HostPattern::Wildcard(parent)) => self.wildcard.entry(parent.clone()).or_default(),
            None => &mut self.any_host,
        };
        let prefix = match &path {
            PathMatch::Prefix(prefix) => prefix.clone(),
            PathMatch::Exact(exact) => PathPrefix::parse(exact).unwrap_or_else(|_| PathPrefix::root()),
            PathMatch::Regex(_) => PathPrefix::root(),
        };
        let candidates = match &path {
            PathMatch::Prefix(prefix) => hosts.by_prefix.entry(prefix.as_str().into()).or_default(),
            PathMatch::Exact(exact) => hosts.exact.entry(exact.clone()).or_default(),
            PathMatch::Regex(_) => &mut hosts.regex,
        };
        let routed = Routed {
            target,
            path,
            prefix,
            strip_prefix,
            rule,
        };
        if place(candidates, routed) {
            self.len += 1;
        }
    }

    /// The route for a request: host first (exact, else its one-label
    /// wildcard), then among that host's routes only: exact path, longest
    /// prefix, regex; within one path, the first whose match expressions
    /// admit the request. `host` is the raw Host value.
    pub fn resolve(&self, host: &str, head: &http::request::Parts) -> Option<&Routed<T>> {
        let host = normalize_request_host(host);
        let routes = match self.exact.get(host.as_ref()) {
            Some(routes) => routes,
            None => host
                .split_once('.')
                .and_then(|(_label, parent)| self.wildcard.get(parent))
                .unwrap_or(&self.any_host),
        };
        routes.resolve(head)
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

/// A request head with `method`, `target` and `headers`, for tests and
/// benchmarks of route lookup.
pub fn request_head(method: &str, target: &str, headers: &[(&str, &str)]) -> http::request::Parts {
    let mut builder = http::Request::builder().method(method).uri(target);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder
        .body(())
        .map(|r| r.into_parts().0)
        .unwrap_or_else(|_| http::Request::new(()).into_parts().0)
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
        let t = table(&[("api.example.com", "/", "exact"), ("*.example.com", "/", "wild")]);
        let target = |host: &str| t.resolve(host, &request_head("GET", "/", &[])).map(|r| r.target);
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
        let target = |host: &str, path: &str| t.resolve(host, &request_head("GET", path, &[])).map(|r| r.target);
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
        assert!(t.resolve("a.x.com", &request_head("GET", "/other", &[])).is_none());
        assert_eq!(
            t.resolve("b.x.com", &request_head("GET", "/other", &[]))
                .map(|r| r.target),
            Some("wild")
        );
    }

    #[test]
    fn exact_paths_beat_prefixes_and_match_only_themselves() {
        let mut t = table(&[("h.com", "/", "root"), ("h.com", "/api", "api")]);
        t.add(
            Some(&HostPattern::parse("h.com").unwrap()),
            PathMatch::Exact("/api".into()),
            false,
            Arc::default(),
            "exact",
        );
        let target = |path: &str| t.resolve("h.com", &request_head("GET", path, &[])).map(|r| r.target);
        assert_eq!(target("/api"), Some("exact"));
        assert_eq!(target("/api/"), Some("api"));
        assert_eq!(target("/api/x"), Some("api"));
        assert_eq!(target("/x"), Some("root"));
    }

    #[test]
    fn any_host_routes_serve_only_unnamed_hosts() {
        let mut t = table(&[("a.com", "/api", "a"), ("*.w.com", "/", "wild")]);
        t.add(
            None,
            PathMatch::Prefix(PathPrefix::root()),
            false,
            Arc::default(),
            "any",
        );
        let target = |host: &str, path: &str| t.resolve(host, &request_head("GET", path, &[])).map(|r| r.target);
        assert_eq!(target("other.com", "/x"), Some("any"));
        assert_eq!(target("x.w.com", "/x"), Some("wild"));
        assert_eq!(target("a.com", "/x"), None, "a named host never falls back");
        assert_eq!(t.iter().filter(|(host, _)| host == "*").count(), 1);
    }

    #[test]
    fn hundred_thousand_routes() {
        let mut t = RouteTable::default();
        for i in 0..100_000 {
            t.insert(
                HostPattern::parse(&format!("h{i}.example.com")).unwrap(),
                PathPrefix::root(),
                false,
                i,
            );
        }
        assert_eq!(t.len(), 100_000);
        assert_eq!(
            t.resolve("h99999.example.com", &request_head("GET", "/x", &[]))
                .map(|r| r.target),
            Some(99_999)
        );
    }
}
