//! The config file's one parse: granit-parser's events into a tree of
//! [`Node`]s that know their line, with `${VAR}` substituted in scalar values
//! as they arrive and hostile shapes (deep nesting, alias bombs, several
//! documents) refused with the line they are on.

use std::collections::HashMap;
use std::rc::Rc;

use serde_saphyr::granit_parser::{self, ErrorKind, Event, Parser, ScalarStyle, ScanError, Span, Tag};

use super::{LoadError, MAX_ALIAS_NODES, MAX_DEPTH};
use crate::config::env::{self, UnsetVariable};

/// One YAML node and the 1-based line it starts on.
#[derive(Debug)]
pub struct Node {
    pub line: usize,
    pub value: Value,
}

#[derive(Debug)]
pub enum Value {
    /// A scalar's text. A `plain` scalar (unquoted, not tagged `!!str`) is
    /// typed when read (null, bool, number, string); any other is a string.
    Scalar {
        text: String,
        plain: bool,
    },
    Sequence(Vec<Node>),
    /// Entries in file order; duplicate keys are left to the reader.
    Mapping(Vec<(Node, Node)>),
    /// `&name node`: the node, shared with its aliases.
    Anchored(Rc<Node>),
    /// `*name`: the anchored node again.
    Alias(Rc<Node>),
}

impl Node {
    /// The node an anchor or alias stands for (itself otherwise).
    pub fn target(&self) -> &Node {
        match &self.value {
            Value::Anchored(node) | Value::Alias(node) => node,
            _ => self,
        }
    }
}

/// Parses `text`, substituting variables found by `lookup` in scalar values.
/// An empty text is an empty mapping.
pub fn build(text: &str, lookup: &impl Fn(&str) -> Option<String>) -> Result<Node, LoadError> {
    let mut builder = Builder {
        lookup,
        open: Vec::new(),
        anchors: HashMap::new(),
        alias_nodes: 0,
        root: None,
    };
    // The scanner reads ahead of the events, so it is told the bound too.
    let options = granit_parser::options! {
        flow_nesting_limit: MAX_DEPTH,
        block_nesting_limit: MAX_DEPTH,
    };
    for event in Parser::new_from_str_with_options(text, options) {
        let (event, span) = event.map_err(syntax_error)?;
        builder.on_event(event, span)?;
    }
    Ok(builder.root.unwrap_or(Node {
        line: 1,
        value: Value::Mapping(Vec::new()),
    }))
}

/// How big a node is once its aliases are expanded: what reading it costs.
#[derive(Debug, Clone, Copy)]
struct Extent {
    nodes: usize,
    depth: usize,
}

impl Extent {
    const LEAF: Extent = Extent { nodes: 1, depth: 1 };
}

/// A collection whose end has not been seen yet.
struct Open {
    line: usize,
    anchor: usize,
    extent: Extent,
    items: Items,
}

enum Items {
    Sequence(Vec<Node>),
    Mapping {
        entries: Vec<(Node, Node)>,
        key: Option<Node>,
    },
}

struct Builder<'a, F> {
    lookup: &'a F,
    open: Vec<Open>,
    anchors: HashMap<usize, (Rc<Node>, Extent)>,
    /// Nodes that aliases have added so far.
    alias_nodes: usize,
    /// The document's node, once complete.
    root: Option<Node>,
}

impl<F: Fn(&str) -> Option<String>> Builder<'_, F> {
    fn on_event(&mut self, event: Event<'_>, span: Span) -> Result<(), LoadError> {
        let line = span.start.line();
        match event {
            Event::DocumentStart(..) if self.root.is_some() => Err(LoadError {
                line,
                message: "a config file holds one YAML document, this is a second one".into(),
            }),
            Event::Scalar(text, style, anchor, tag) => {
                // granit-parser reads an omitted value (`key:`) as `~` with an empty span.
                let omitted = style == ScalarStyle::Plain && span.start.index() == span.end.index();
                let text = if omitted { "" } else { text.as_ref() };
                let plain = style == ScalarStyle::Plain && !tag.is_some_and(|t| is_string_tag(&t));
                self.scalar(text, plain, anchor, line)
            }
            Event::SequenceStart(_, anchor, _) => self.open(line, anchor, Items::Sequence(Vec::new())),
            Event::MappingStart(_, anchor, _) => self.open(
                line,
                anchor,
                Items::Mapping {
                    entries: Vec::new(),
                    key: None,
                },
            ),
            Event::SequenceEnd | Event::MappingEnd => {
                // invariant: the parser balances every start with one end.
                let Some(open) = self.open.pop() else {
                    return Ok(());
                };
                let value = match open.items {
                    Items::Sequence(items) => Value::Sequence(items),
                    Items::Mapping { entries, .. } => Value::Mapping(entries),
                };
                let node = Node { line: open.line, value };
                self.complete(node, open.anchor, open.extent)
            }
            Event::Alias(id) => self.alias(id, line),
            _ => Ok(()),
        }
    }

    /// A scalar; a value (not a key) has its `${VAR}`s substituted.
    fn scalar(&mut self, text: &str, plain: bool, anchor: usize, line: usize) -> Result<(), LoadError> {
        let text = if self.at_key() {
            text.to_string()
        } else {
            env::substitute(text, self.lookup)
                .map_err(|UnsetVariable { name }| LoadError {
                    line,
                    message: format!("environment variable {name} is not set (write $${{ for a literal ${{)"),
                })?
                .into_owned()
        };
        let node = Node {
            line,
            value: Value::Scalar { text, plain },
        };
        self.complete(node, anchor, Extent::LEAF)
    }

    /// Whether the next scalar is a mapping key (never substituted).
    fn at_key(&self) -> bool {
        matches!(
            self.open.last(),
            Some(Open {
                items: Items::Mapping { key: None, .. },
                ..
            })
        )
    }

    fn open(&mut self, line: usize, anchor: usize, items: Items) -> Result<(), LoadError> {
        if self.open.len() >= MAX_DEPTH {
            return Err(too_deep(line));
        }
        self.open.push(Open {
            line,
            anchor,
            extent: Extent::LEAF,
            items,
        });
        Ok(())
    }

    fn alias(&mut self, id: usize, line: usize) -> Result<(), LoadError> {
        let Some((target, extent)) = self.anchors.get(&id) else {
            return Err(LoadError {
                line,
                message: "an alias cannot refer to a node that contains it".into(),
            });
        };
        let (target, extent) = (Rc::clone(target), *extent);
        self.alias_nodes = self.alias_nodes.saturating_add(extent.nodes);
        if self.alias_nodes > MAX_ALIAS_NODES {
            return Err(LoadError {
                line,
                message: format!("aliases expand to more than {MAX_ALIAS_NODES} nodes"),
            });
        }
        if self.open.len() + extent.depth > MAX_DEPTH {
            return Err(LoadError {
                line,
                message: format!("this alias nests the file deeper than {MAX_DEPTH} levels"),
            });
        }
        let node = Node {
            line,
            value: Value::Alias(target),
        };
        self.complete(node, 0, extent)
    }

    /// Places a finished node in its collection (or as the document).
    fn complete(&mut self, mut node: Node, anchor: usize, extent: Extent) -> Result<(), LoadError> {
        if anchor != 0 {
            let shared = Rc::new(node);
            self.anchors.insert(anchor, (Rc::clone(&shared), extent));
            node = Node {
                line: shared.line,
                value: Value::Anchored(shared),
            };
        }
        let Some(parent) = self.open.last_mut() else {
            self.root = Some(node);
            return Ok(());
        };
        parent.extent.nodes = parent.extent.nodes.saturating_add(extent.nodes);
        parent.extent.depth = parent.extent.depth.max(extent.depth + 1);
        match &mut parent.items {
            Items::Sequence(items) => items.push(node),
            Items::Mapping { entries, key } => match key.take() {
                Some(key) => entries.push((key, node)),
                None => *key = Some(node),
            },
        }
        Ok(())
    }
}

fn syntax_error(error: ScanError) -> LoadError {
    let line = error.marker().line();
    match error.kind() {
        ErrorKind::RecursionLimitExceeded => too_deep(line),
        _ => LoadError {
            line,
            message: error.info(),
        },
    }
}

fn too_deep(line: usize) -> LoadError {
    LoadError {
        line,
        message: format!("nested deeper than {MAX_DEPTH} levels"),
    }
}

/// `!!str` and the non-specific `!` make a plain scalar a string.
fn is_string_tag(tag: &Tag) -> bool {
    tag.is_yaml_core_schema_tag("str") || (tag.handle() == "!" && tag.suffix().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Node, LoadError> {
        build(text, &|name| (name == "V").then(|| "value".to_string()))
    }

    fn scalar(node: &Node) -> (&str, bool) {
        match &node.target().value {
            Value::Scalar { text, plain } => (text, *plain),
            other => panic!("not a scalar: {other:?}"),
        }
    }

    fn entries(node: &Node) -> &[(Node, Node)] {
        match &node.target().value {
            Value::Mapping(entries) => entries,
            other => panic!("not a mapping: {other:?}"),
        }
    }

    #[test]
    fn lines_styles_and_omitted_values() {
        let root = parse("a: 1\nb: 'x'\nc:\nd: [~]\n").unwrap();
        let e = entries(&root);
        assert_eq!((e[0].1.line, scalar(&e[0].1)), (1, ("1", true)));
        assert_eq!(scalar(&e[1].1), ("x", false));
        assert_eq!(scalar(&e[2].1), ("", true));
        assert_eq!(e[3].1.line, 4);
    }

    #[test]
    fn substitutes_values_not_keys() {
        let root = parse("${V}: ${V}\n").unwrap();
        let e = entries(&root);
        assert_eq!(scalar(&e[0].0).0, "${V}");
        assert_eq!(scalar(&e[0].1).0, "value");
    }

    #[test]
    fn empty_text_is_an_empty_mapping() {
        assert!(entries(&parse("").unwrap()).is_empty());
        assert!(entries(&parse("# only a comment\n").unwrap()).is_empty());
    }

    #[test]
    fn aliases_share_the_anchored_node() {
        let root = parse("a: &x {k: v}\nb: *x\n").unwrap();
        let e = entries(&root);
        assert_eq!(scalar(&entries(&e[1].1)[0].1).0, "v");
        assert_eq!(e[1].1.line, 2);
    }

    #[test]
    fn an_alias_cannot_contain_itself() {
        let err = parse("a: &a [*a]\n").unwrap_err();
        assert_eq!(err.message, "an alias cannot refer to a node that contains it");
    }

    #[test]
    fn refuses_a_second_document() {
        let err = parse("a: 1\n---\nb: 2\n").unwrap_err();
        assert_eq!(err.line, 2, "{err:?}");
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        for depth in [MAX_DEPTH + 1, MAX_DEPTH * 10, 5_000, 40_000] {
            for text in [
                format!("{}{}", "[".repeat(depth), "]".repeat(depth)),
                format!("{}{}", "{a: ".repeat(depth), "}".repeat(depth)),
                format!("{}x\n", "- ".repeat(depth)),
            ] {
                let err = parse(&text).unwrap_err();
                assert_eq!(
                    (err.line, err.message.as_str()),
                    (1, "nested deeper than 64 levels"),
                    "depth {depth}"
                );
            }
        }
        assert!(parse(&format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH))).is_ok());
    }

    #[test]
    fn aliases_cannot_nest_past_the_bound() {
        let mut text = String::from("a0: &a0 [x]\n");
        for i in 1..MAX_DEPTH * 10 {
            text.push_str(&format!("a{i}: &a{i} [*a{}]\n", i - 1));
        }
        let err = parse(&text).unwrap_err();
        assert_eq!(err.message, "this alias nests the file deeper than 64 levels");
    }

    #[test]
    fn billion_laughs_is_an_error() {
        let mut text = String::from("a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
        for (name, previous) in ["b", "c", "d", "e", "f", "g", "h", "i"]
            .iter()
            .zip(["a", "b", "c", "d", "e", "f", "g", "h"])
        {
            let aliases = vec![format!("*{previous}"); 10].join(", ");
            text.push_str(&format!("{name}: &{name} [{aliases}]\n"));
        }
        let err = parse(&text).unwrap_err();
        assert_eq!(err.message, "aliases expand to more than 100000 nodes");
        assert_eq!(err.line, 5, "the first alias past the bound");
    }
}
