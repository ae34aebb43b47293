//! The config file's YAML, parsed once: granit-parser (serde-saphyr's
//! parser) turns the text into a tree of [`Node`]s that know their line;
//! `${VAR}` is substituted in the tree's scalar values; the line index
//! ([`super::locate`]) and serde's deserialization both read that tree.

mod de;
mod resolve;
mod tree;

pub use tree::{build, Node, Value};

/// How deeply collections may nest, aliases included. keygate's own
/// sections nest a handful of levels; the bound keeps every recursive
/// reader of the tree far from the end of its stack.
pub const MAX_DEPTH: usize = 64;

/// How many nodes aliases may add in all, so a "billion laughs" file is an
/// error, not hours of work.
pub const MAX_ALIAS_NODES: usize = 100_000;

/// Why the text is not a YAML document keygate can read, and where.
#[derive(Debug)]
pub struct LoadError {
    pub line: usize,
    pub message: String,
}
