//! Finding the path template a request path belongs to: a segment tree
//! built once from the document's `paths`, where a literal segment beats a
//! templated one (`/users/me` before `/users/{id}`), a partly templated
//! segment (`{id}.json`) beats a whole-segment parameter, and a dead end
//! backtracks to the next candidate. Server base paths are stripped first.

use std::collections::HashMap;

use percent_encoding::percent_decode_str;
use regex::Regex;

/// One templated segment.
#[derive(Debug)]
enum Pattern {
    /// `{name}`: the whole segment.
    Whole(String),
    /// `prefix{name}suffix` and the like: anchored regex, one group per name.
    Partial(Regex, Vec<String>),
}

#[derive(Debug, Default)]
struct Node {
    literal: HashMap<String, Node>,
    /// Partial patterns first, then whole-segment ones (see `insert`).
    templated: Vec<(Pattern, Node)>,
    /// The index of the path template ending here.
    target: Option<usize>,
}

/// A matched path: which template, and its path parameters (percent-decoded).
#[derive(Debug, PartialEq, Eq)]
pub struct Matched {
    pub target: usize,
    pub params: Vec<(String, String)>,
}

#[derive(Debug, Default)]
pub struct Router {
    root: Node,
    /// Server base paths without a trailing slash, longest first; `""` = none.
    base_paths: Vec<String>,
}

impl Router {
    pub fn new(mut base_paths: Vec<String>) -> Self {
        if base_paths.is_empty() {
            base_paths.push(String::new());
        }
        base_paths.sort_by_key(|b| std::cmp::Reverse(b.len()));
        base_paths.dedup();
        Self {
            root: Node::default(),
            base_paths,
        }
    }

    /// Adds the template `template` (e.g. `/users/{id}`) as `target`.
    pub fn insert(&mut self, template: &str, target: usize) -> Result<(), String> {
        let mut node = &mut self.root;
        for segment in segments(template) {
            if !segment.contains('{') {
                node = node.literal.entry(segment.to_string()).or_default();
                continue;
            }
            let pattern = Pattern::compile(segment)?;
            let key = pattern.key();
            let position = node.templated.iter().position(|(p, _)| p.key() == key);
            let index = match position {
                Some(i) => i,
                None => {
                    // Partial patterns are tried before whole-segment ones.
                    let at = match pattern {
                        Pattern::Whole(_) => node.templated.len(),
                        Pattern::Partial(..) => node
                            .templated
                            .iter()
                            .take_while(|(p, _)| matches!(p, Pattern::Partial(..)))
                            .count(),
                    };
                    node.templated.insert(at, (pattern, Node::default()));
                    at
                }
            };
            node = &mut node.templated[index].1;
        }
        if node.target.is_some() {
            return Err(format!("path {template:?} repeats another template"));
        }
        node.target = Some(target);
        Ok(())
    }

    /// The template `path` (no query) belongs to, below one of the base paths.
    pub fn find(&self, path: &str) -> Option<Matched> {
        self.base_paths.iter().find_map(|base| {
            let rest = path.strip_prefix(base.as_str())?;
            let rest = if rest.is_empty() { "/" } else { rest };
            if !rest.starts_with('/') {
                return None;
            }
            let parts: Vec<&str> = segments(rest).collect();
            let mut params = Vec::new();
            let target = walk(&self.root, &parts, &mut params)?;
            Some(Matched { target, params })
        })
    }
}

fn segments(path: &str) -> impl Iterator<Item = &str> {
    path.strip_prefix('/').unwrap_or(path).split('/')
}

fn walk(node: &Node, rest: &[&str], params: &mut Vec<(String, String)>) -> Option<usize> {
    let Some((segment, tail)) = rest.split_first() else {
        return node.target;
    };
    let decoded = percent_decode_str(segment).decode_utf8_lossy();
    if let Some(next) = node.literal.get(decoded.as_ref()) {
        if let Some(found) = walk(next, tail, params) {
            return Some(found);
        }
    }
    for (pattern, next) in &node.templated {
        let mark = params.len();
        if pattern.capture(&decoded, params) {
            if let Some(found) = walk(next, tail, params) {
                return Some(found);
            }
        }
        params.truncate(mark);
    }
    None
}

impl Pattern {
    fn compile(segment: &str) -> Result<Self, String> {
        let mut names = Vec::new();
        let mut regex = String::from("^");
        let mut rest = segment;
        while let Some(open) = rest.find('{') {
            let close = rest[open..]
                .find('}')
                .ok_or_else(|| format!("unclosed `{{` in path segment {segment:?}"))?
                + open;
            regex.push_str(&regex::escape(&rest[..open]));
            names.push(rest[open + 1..close].to_string());
            regex.push_str("(.+?)");
            rest = &rest[close + 1..];
        }
        regex.push_str(&regex::escape(rest));
        regex.push('$');
        if names.len() == 1 && segment.starts_with('{') && segment.ends_with('}') {
            return Ok(Self::Whole(names.remove(0)));
        }
        let compiled = Regex::new(&regex).map_err(|e| format!("path segment {segment:?}: {e}"))?;
        Ok(Self::Partial(compiled, names))
    }

    /// Templates differing only in parameter names share a node.
    fn key(&self) -> String {
        match self {
            Self::Whole(_) => "{}".into(),
            Self::Partial(regex, _) => regex.as_str().to_string(),
        }
    }

    fn capture(&self, segment: &str, params: &mut Vec<(String, String)>) -> bool {
        match self {
            Self::Whole(name) => {
                if segment.is_empty() {
                    return false;
                }
                params.push((name.clone(), segment.to_string()));
                true
            }
            Self::Partial(regex, names) => {
                let Some(caps) = regex.captures(segment) else {
                    return false;
                };
                for (i, name) in names.iter().enumerate() {
                    let value = caps.get(i + 1).map_or("", |m| m.as_str());
                    params.push((name.clone(), value.to_string()));
                }
                true
            }
        }
    }
}

/// The path part of a `servers[].url` (`https://api.example.com/v1` → `/v1`),
/// variables replaced by their defaults, no trailing slash.
pub fn base_path(url: &str, variables: &HashMap<String, String>) -> String {
    let mut url = url.to_string();
    for (name, default) in variables {
        url = url.replace(&format!("{{{name}}}"), default);
    }
    let path = match url.find("://") {
        Some(scheme_end) => {
            let after = &url[scheme_end + 3..];
            after.find('/').map_or("", |i| &after[i..])
        }
        None => url.as_str(),
    };
    path.trim_end_matches('/').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(templates: &[&str], bases: &[&str]) -> Router {
        let mut r = Router::new(bases.iter().map(|b| b.to_string()).collect());
        for (i, t) in templates.iter().enumerate() {
            r.insert(t, i).unwrap();
        }
        r
    }

    #[test]
    fn literal_beats_template_and_backtracks() {
        let r = router(
            &[
                "/users/{id}",
                "/users/me",
                "/users/me/{tab}",
                "/users/{id}/posts",
                "/files/{name}.json",
                "/files/{name}",
            ],
            &[],
        );
        assert_eq!(r.find("/users/me").map(|m| m.target), Some(1));
        let m = r.find("/users/42").unwrap();
        assert_eq!((m.target, m.params), (0, vec![("id".into(), "42".into())]));
        // `me` is literal, but only `{id}/posts` continues with `posts`.
        assert_eq!(r.find("/users/me/posts").map(|m| m.target), Some(2));
        assert_eq!(r.find("/users/7/posts").map(|m| m.target), Some(3));
        assert_eq!(
            r.find("/files/a.json").unwrap().params,
            vec![("name".into(), "a".into())]
        );
        assert_eq!(r.find("/files/a.txt").map(|m| m.target), Some(5));
        assert_eq!(r.find("/users/a%20b").unwrap().params[0].1, "a b");
        assert!(r.find("/users").is_none());
        assert!(r.find("/users/").is_none());
        assert!(r.find("/nope").is_none());
    }

    #[test]
    fn server_base_paths() {
        let r = router(&["/pets", "/"], &["/api/v1", ""]);
        assert_eq!(r.find("/api/v1/pets").map(|m| m.target), Some(0));
        assert_eq!(r.find("/pets").map(|m| m.target), Some(0));
        assert_eq!(r.find("/api/v1").map(|m| m.target), Some(1));
        let only = router(&["/pets"], &["/api"]);
        assert!(only.find("/pets").is_none());
        assert!(only.find("/apipets").is_none());
        let vars = HashMap::from([("version".to_string(), "v2".to_string())]);
        assert_eq!(base_path("https://api.example.com/{version}/", &vars), "/v2");
        assert_eq!(base_path("https://api.example.com", &vars), "");
        assert_eq!(base_path("/base", &vars), "/base");
    }

    #[test]
    fn duplicate_templates_are_errors() {
        let mut r = Router::new(vec![]);
        r.insert("/a/{x}", 0).unwrap();
        assert!(r.insert("/a/{y}", 1).is_err());
    }
}
