//! Maps a field path such as `routes[2].deployment` to the line it is on, so
//! errors found after deserialization (cross-checks, compile steps) can point
//! at the file the way serde's own errors do.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// Field path → 1-based line, for every key and sequence item in a YAML text.
#[derive(Debug, Default)]
pub struct LineIndex {
    lines: HashMap<String, usize>,
}

impl LineIndex {
    /// Indexes `text`; a text that does not parse yields an empty index
    /// (serde reports the syntax error itself).
    pub fn build(text: &str) -> Self {
        let mut builder = Builder::default();
        let mut parser = Parser::new_from_str(text);
        if parser.load(&mut builder, false).is_err() {
            return Self::default();
        }
        Self {
            lines: builder.lines,
        }
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
}

enum Frame {
    Mapping { key: Option<String> },
    Sequence { index: usize },
}

#[derive(Default)]
struct Builder {
    stack: Vec<(String, Frame)>,
    lines: HashMap<String, usize>,
}

impl Builder {
    /// The path a new value (scalar or collection) at the current position gets.
    fn value_path(&self) -> Option<String> {
        match self.stack.last() {
            None => Some(String::new()),
            Some((base, Frame::Mapping { key: Some(key) })) => Some(join_key(base, key)),
            Some((_, Frame::Mapping { key: None })) => None,
            Some((base, Frame::Sequence { index })) => Some(format!("{base}[{index}]")),
        }
    }

    /// Called after a complete value: advances the enclosing collection.
    fn value_done(&mut self) {
        match self.stack.last_mut() {
            Some((_, Frame::Mapping { key })) => *key = None,
            Some((_, Frame::Sequence { index })) => *index += 1,
            None => {}
        }
    }

    fn open(&mut self, frame: Frame, line: usize) {
        let path = self.value_path().unwrap_or_default();
        if !path.is_empty() {
            self.lines.entry(path.clone()).or_insert(line);
        }
        self.stack.push((path, frame));
    }
}

fn join_key(base: &str, key: &str) -> String {
    if base.is_empty() {
        key.to_string()
    } else {
        format!("{base}.{key}")
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, event: Event, mark: Marker) {
        let line = mark.line();
        match event {
            Event::MappingStart(..) => self.open(Frame::Mapping { key: None }, line),
            Event::SequenceStart(..) => self.open(Frame::Sequence { index: 0 }, line),
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
                self.value_done();
            }
            Event::Scalar(value, ..) => match self.stack.last_mut() {
                Some((base, Frame::Mapping { key: key @ None })) => {
                    let path = join_key(base, &value);
                    self.lines.entry(path).or_insert(line);
                    *key = Some(value);
                }
                _ => {
                    if let Some(path) = self.value_path() {
                        self.lines.entry(path).or_insert(line);
                    }
                    self.value_done();
                }
            },
            Event::Alias(_) => self.value_done(),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_keys_and_items() {
        let text = "listen:\n  http: \"x\"\nroutes:\n  - host: a\n    deployment: d\n  - host: b\n    deployment: e\n";
        let index = LineIndex::build(text);
        assert_eq!(index.line_of("listen.http"), Some(2));
        assert_eq!(index.line_of("routes[1].deployment"), Some(7));
        assert_eq!(index.line_of("routes[0]"), Some(4));
        assert_eq!(index.line_of("routes[1].missing"), Some(6));
    }
}
