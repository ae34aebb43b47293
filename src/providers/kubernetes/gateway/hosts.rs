//! Which hosts a route serves through a listener: the intersection of the
//! listener's `hostname` and the route's `hostnames`, with Gateway API's
//! wildcards (`*.example.com` matches names below `example.com`, not
//! `example.com` itself).

/// Whether `pattern` (exact or `*.` wildcard) covers `name` (exact or a
/// narrower wildcard). Names are compared lowercased.
fn covers(pattern: &str, name: &str) -> bool {
    match pattern.strip_prefix('*') {
        Some(suffix) => name.len() > suffix.len() && name.ends_with(suffix),
        None => pattern == name,
    }
}

/// The hosts a route serves through a listener: `None` when neither names
/// one (every host), else the names both admit, the narrower of each pair.
/// Empty: they have no host in common.
pub fn intersect(listener: Option<&str>, route: &[String]) -> Vec<Option<String>> {
    let listener = listener.filter(|l| !l.is_empty()).map(str::to_ascii_lowercase);
    let route: Vec<String> = route.iter().map(|h| h.to_ascii_lowercase()).collect();
    let mut hosts: Vec<Option<String>> = match (&listener, route.is_empty()) {
        (None, true) => vec![None],
        (None, false) => route.into_iter().map(Some).collect(),
        (Some(listener), true) => vec![Some(listener.clone())],
        (Some(listener), false) => route
            .into_iter()
            .filter_map(|host| {
                if covers(listener, &host) {
                    Some(host)
                } else if covers(&host, listener) {
                    Some(listener.clone())
                } else {
                    None
                }
            })
            .map(Some)
            .collect(),
    };
    hosts.dedup();
    hosts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(listener: Option<&str>, route: &[&str]) -> Vec<Option<String>> {
        intersect(listener, &route.iter().map(|h| h.to_string()).collect::<Vec<_>>())
    }

    fn some(names: &[&str]) -> Vec<Option<String>> {
        names.iter().map(|n| Some(n.to_string())).collect()
    }

    #[test]
    fn listener_and_route_hostnames_intersect() {
        assert_eq!(hosts(None, &[]), vec![None]);
        assert_eq!(hosts(None, &["a.test"]), some(&["a.test"]));
        assert_eq!(hosts(Some("a.test"), &[]), some(&["a.test"]));
        assert_eq!(hosts(Some("A.test"), &["a.TEST", "b.test"]), some(&["a.test"]));
        assert_eq!(
            hosts(Some("*.shop.test"), &["x.shop.test", "shop.test", "x.blog.test"]),
            some(&["x.shop.test"])
        );
        assert_eq!(hosts(Some("x.shop.test"), &["*.shop.test"]), some(&["x.shop.test"]));
        assert_eq!(hosts(Some("*.test"), &["*.shop.test"]), some(&["*.shop.test"]));
        assert_eq!(hosts(Some("*.shop.test"), &["*.test"]), some(&["*.shop.test"]));
        assert!(hosts(Some("a.test"), &["b.test"]).is_empty());
    }
}
