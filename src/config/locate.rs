//! Maps a field path such as `routes[2].deployment` to the line it is on, so
//! errors found after deserialization (cross-checks, compile steps) can point
//! at the file the way deserialization errors do.

use std::collections::HashMap;

use super::yaml::{Node, Value};

/// Field path → 1-based line, for every key and sequence item in the file.
#[derive(Debug, Default)]
pub struct LineIndex {
    lines: HashMap<String, usize>,
}

impl LineIndex {
    /// Indexes the parsed file. A path through an alias ends at the alias.
    pub fn build(root: &Node) -> Self {
        let mut index = Self::default();
        index.add(root, String::new());
        index
    }

    /// The line of `path`, or of its closest indexed ancestor.
    pub fn line_of(&self, path: &str) -> Option<usize> {
        let mut path = path;
        loop {
            if let Some(line) = self.lines.get(path) {
                return Some(*line);
            }
            let cut = path.rfind(['.', '['])?;
            path = &path[..cut];
        }
    }

    /// Records `node` at `path` and its children below it. Recursion is
    /// bounded by [`super::yaml::MAX_DEPTH`].
    fn add(&mut self, node: &Node, path: String) {
        let value = match &node.value {
            Value::Anchored(target) => &target.value,
            other => other,
        };
        match value {
            Value::Sequence(items) => {
                for (i, item) in items.iter().enumerate() {
                    self.add(item, format!("{path}[{i}]"));
                }
            }
            Value::Mapping(entries) => {
                for (key, value) in entries {
                    if let Value::Scalar { text, .. } = &key.target().value {
                        let path = if path.is_empty() {
                            text.clone()
                        } else {
                            format!("{path}.{text}")
                        };
                        // The key's line, even when its value starts below it.
                        self.lines.entry(path.clone()).or_insert(key.line);
                        self.add(value, path);
                    }
                }
            }
            _ => {}
        }
        if !path.is_empty() {
            self.lines.entry(path).or_insert(node.line);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::yaml;
    use super::*;

    #[test]
    fn finds_keys_and_items() {
        let text = "listen:\n  http: \"x\"\nroutes:\n  - host: a\n    deployment: d\n  - host: b\n    deployment: e\n";
        let index = LineIndex::build(&yaml::build(text, &|_| None).unwrap());
        assert_eq!(index.line_of("listen.http"), Some(2));
        assert_eq!(index.line_of("routes[1].deployment"), Some(7));
        assert_eq!(index.line_of("routes[0]"), Some(4));
        assert_eq!(index.line_of("routes[1].missing"), Some(6));
        assert_eq!(index.line_of("routes"), Some(3));
    }
}
