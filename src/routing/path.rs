//! Path prefixes that match on segment boundaries: `/api` matches `/api` and
//! `/api/x`, never `/apix`.

/// A normalised prefix: starts with `/`, no trailing `/` except the root.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PathPrefix(Box<str>);

impl PathPrefix {
    pub fn root() -> Self {
        Self("/".into())
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        if !text.starts_with('/') {
            return Err(format!("path prefix {text:?} must start with /"));
        }
        if text.contains(['?', '#']) {
            return Err(format!("path prefix {text:?} must not contain ? or #"));
        }
        let trimmed = text.trim_end_matches('/');
        Ok(Self(if trimmed.is_empty() { "/".into() } else { trimmed.into() }))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_root(&self) -> bool {
        &*self.0 == "/"
    }

    /// The request target with this prefix removed: `/api/x?q=1`
    /// → `/x?q=1`, `/api` → `/`. `target` must be a path this prefix matched.
    pub fn strip_from(&self, target: &str) -> String {
        if self.is_root() {
            return target.to_string();
        }
        let rest = target.get(self.0.len()..).unwrap_or("");
        if rest.starts_with('/') {
            rest.to_string()
        } else {
            format!("/{rest}")
        }
    }
}

/// Candidate keys for a request path, longest first, ending with the root:
/// `/api/x/` → `/api/x`, `/api`, `/`.
pub fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    // Byte searches: `rfind(char)` and `trim_end_matches(char)` are general
    // pattern searches, and this runs for every request a prefix route takes.
    let last_segment_end = path.as_bytes().iter().rposition(|&b| b != b'/').map_or(0, |i| i + 1);
    let mut next = Some(&path[..last_segment_end]);
    std::iter::from_fn(move || {
        let current = next?;
        if current.is_empty() {
            next = None;
            return Some("/");
        }
        next = current
            .as_bytes()
            .iter()
            .rposition(|&b| b == b'/')
            .map(|i| &current[..i]);
        Some(current)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_normalises() {
        assert_eq!(PathPrefix::parse("/api/").unwrap().as_str(), "/api");
        assert_eq!(PathPrefix::parse("/").unwrap().as_str(), "/");
        assert_eq!(PathPrefix::parse("//").unwrap().as_str(), "/");
        assert!(PathPrefix::parse("api").is_err());
    }

    #[test]
    fn ancestors_walk_segments() {
        assert_eq!(ancestors("/api/x/").collect::<Vec<_>>(), ["/api/x", "/api", "/"]);
        assert_eq!(ancestors("/").collect::<Vec<_>>(), ["/"]);
        assert_eq!(ancestors("/apix").collect::<Vec<_>>(), ["/apix", "/"]);
        assert_eq!(ancestors("//").collect::<Vec<_>>(), ["/"]);
        assert_eq!(ancestors("/é/ü//").collect::<Vec<_>>(), ["/é/ü", "/é", "/"]);
    }

    #[test]
    fn strip() {
        let api = PathPrefix::parse("/api").unwrap();
        assert_eq!(api.strip_from("/api/x?q=1"), "/x?q=1");
        assert_eq!(api.strip_from("/api"), "/");
        assert_eq!(api.strip_from("/api?q=1"), "/?q=1");
        assert_eq!(api.strip_from("/api/"), "/");
        assert_eq!(PathPrefix::root().strip_from("/a?b"), "/a?b");
    }
}
