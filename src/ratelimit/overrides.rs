//! Rate-limit overrides (Unkey's `ratelimit.setOverride`): within a
//! namespace, a different limit and window for the identifiers an
//! override's pattern matches (`*` matches any run of characters, so
//! `premium_*` or `*@example.com`). They apply to `ratelimit.limit` calls
//! in that namespace and to `ratelimit` policies whose id is the namespace.
//!
//! The overrides are one immutable index, swapped whole whenever one
//! changes (they are persisted in the key store, which installs them here),
//! so a decision never takes a lock: with no override anywhere it costs one
//! atomic load, and with none in its namespace one hash lookup more.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;

/// One override: identifiers matching `identifier` in `namespace` get
/// `limit` per `duration_ms` instead of what the caller asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Override {
    pub id: String,
    /// The namespace's name.
    pub namespace: String,
    /// An exact identifier, or a pattern with `*`.
    pub identifier: String,
    pub limit: u64,
    pub duration_ms: u64,
}

impl Override {
    /// Characters other than `*`: the more, the more specific the pattern.
    fn literal_len(&self) -> usize {
        self.identifier.chars().filter(|&c| c != '*').count()
    }
}

/// A namespace's overrides: exact identifiers by value, patterns from the
/// most specific (longest literal part) to the least.
#[derive(Debug, Default)]
struct Namespace {
    exact: HashMap<String, Arc<Override>>,
    patterns: Vec<Arc<Override>>,
}

/// Every override, by namespace name.
#[derive(Debug, Default)]
struct Index {
    namespaces: HashMap<String, Namespace>,
}

/// The overrides in force; shared by every clone of the limiter.
#[derive(Debug, Default)]
pub struct Overrides {
    index: ArcSwap<Index>,
    /// Whether any override exists (the cheapest possible test on a hot path).
    any: AtomicBool,
}

impl Overrides {
    /// Replaces every override with `all`.
    pub fn install(&self, all: Vec<Override>) {
        let mut index = Index::default();
        let any = !all.is_empty();
        for item in all {
            let namespace = index.namespaces.entry(item.namespace.clone()).or_default();
            let item = Arc::new(item);
            if item.identifier.contains('*') {
                namespace.patterns.push(item);
            } else {
                namespace.exact.insert(item.identifier.clone(), item);
            }
        }
        for namespace in index.namespaces.values_mut() {
            namespace.patterns.sort_by(|a, b| {
                b.literal_len()
                    .cmp(&a.literal_len())
                    .then_with(|| a.identifier.cmp(&b.identifier))
            });
        }
        self.index.store(Arc::new(index));
        self.any.store(any, Ordering::Release);
    }

    /// The override for an identifier of `namespace`: an exact one, else
    /// the most specific matching pattern. `identifier` is only called
    /// when the namespace has overrides.
    pub fn find<S: AsRef<str>>(&self, namespace: &str, identifier: impl FnOnce() -> S) -> Option<Arc<Override>> {
        if !self.any.load(Ordering::Acquire) {
            return None;
        }
        let index = self.index.load();
        let overrides = index.namespaces.get(namespace)?;
        let identifier = identifier();
        let identifier = identifier.as_ref();
        if let Some(exact) = overrides.exact.get(identifier) {
            return Some(exact.clone());
        }
        overrides
            .patterns
            .iter()
            .find(|o| matches(&o.identifier, identifier))
            .cloned()
    }
}

/// Whether `text` matches `pattern`, where `*` matches any run of
/// characters: greedy, backtracking to the last `*` only. Byte-wise, which
/// is exact for UTF-8 (a literal never starts inside a character).
pub fn matches(pattern: &str, text: &str) -> bool {
    let (pattern, text) = (pattern.as_bytes(), text.as_bytes());
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if pattern.get(p) == Some(&b'*') {
            star = Some((p, t));
            p += 1;
        } else if pattern.get(p) == Some(&text[t]) {
            p += 1;
            t += 1;
        } else if let Some((star_p, star_t)) = star {
            p = star_p + 1;
            t = star_t + 1;
            star = Some((star_p, star_t + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(namespace: &str, identifier: &str, limit: u64) -> Override {
        Override {
            id: format!("rlor_{identifier}"),
            namespace: namespace.into(),
            identifier: identifier.into(),
            limit,
            duration_ms: 1000,
        }
    }

    #[test]
    fn patterns() {
        for (pattern, text, want) in [
            ("a", "a", true),
            ("a", "ab", false),
            ("*", "", true),
            ("*", "anything", true),
            ("premium_*", "premium_42", true),
            ("premium_*", "basic_42", false),
            ("*@example.com", "me@example.com", true),
            ("*@example.com", "me@example.org", false),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
            ("a**", "a", true),
            ("*a*a", "aaa", true),
        ] {
            assert_eq!(matches(pattern, text), want, "{pattern} vs {text}");
        }
    }

    #[test]
    fn exact_beats_patterns_and_specific_beats_general() {
        let overrides = Overrides::default();
        let never = || -> &str { panic!("no overrides: the identifier is not needed") };
        assert!(overrides.find("ns", never).is_none());
        overrides.install(vec![
            item("ns", "*", 1),
            item("ns", "user_*", 2),
            item("ns", "user_7", 3),
            item("other", "x", 4),
        ]);
        assert_eq!(overrides.find("ns", || "user_7").map(|o| o.limit), Some(3));
        assert_eq!(overrides.find("ns", || "user_8").map(|o| o.limit), Some(2));
        assert_eq!(overrides.find("ns", || "guest").map(|o| o.limit), Some(1));
        assert!(
            overrides.find("none", never).is_none(),
            "a namespace without overrides asks nothing"
        );
        overrides.install(Vec::new());
        assert!(overrides.find("ns", never).is_none());
    }
}
