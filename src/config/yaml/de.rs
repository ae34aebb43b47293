//! serde reads the config's [`Node`] tree: plain scalars are typed here, at
//! the moment a field asks for them (after `${VAR}` substitution), and
//! every error carries the line of the node it is about.

use std::fmt;

use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};

use super::resolve::{resolve, Resolved};
use super::tree::{Node, Value};

/// Why a node does not fit the type asked of it, and the node's line.
#[derive(Debug)]
pub struct Error {
    message: String,
    line: Option<usize>,
}

impl Error {
    pub fn line(&self) -> Option<usize> {
        self.line
    }

    /// Places an error that does not know its line yet at `line`.
    fn or_line(mut self, line: usize) -> Self {
        self.line.get_or_insert(line);
        self
    }
}

impl de::Error for Error {
    fn custom<T: fmt::Display>(message: T) -> Self {
        Self {
            message: message.to_string(),
            line: None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl Node {
    /// `key:` with nothing after it: serde_yaml read it as an empty
    /// collection where one was wanted, and so does keygate.
    fn is_omitted(&self) -> bool {
        matches!(&self.value, Value::Scalar { text, plain: true } if text.is_empty())
    }

    fn is_null(&self) -> bool {
        matches!(&self.value, Value::Scalar { text, plain: true } if resolve(text) == Resolved::Null)
    }
}

impl<'de> de::Deserializer<'de> for &'de Node {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let node = self.target();
        match &node.value {
            Value::Scalar { text, plain: true } => match resolve(text) {
                Resolved::Null => visitor.visit_unit(),
                Resolved::Bool(b) => visitor.visit_bool(b),
                Resolved::Unsigned(n) => visitor.visit_u64(n),
                Resolved::Signed(n) => visitor.visit_i64(n),
                Resolved::Float(f) => visitor.visit_f64(f),
                Resolved::Str(s) => visitor.visit_borrowed_str(s),
            },
            Value::Scalar { text, plain: false } => visitor.visit_borrowed_str(text),
            Value::Sequence(items) => {
                let mut access = Items { items: items.iter() };
                visitor.visit_seq(&mut access).map_err(|e| e.or_line(node.line))
            }
            Value::Mapping(entries) => {
                let mut access = Entries::new(entries, node.line);
                let result = visitor.visit_map(&mut access);
                result.map_err(|e| e.or_line(access.line))
            }
            // invariant: `target` never returns an anchor or alias.
            Value::Anchored(target) | Value::Alias(target) => target.deserialize_any(visitor),
        }
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match &self.target().value {
            Value::Scalar { text, .. } => visitor.visit_borrowed_str(text),
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        if self.target().is_null() {
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        if self.target().is_omitted() {
            visitor.visit_seq(Items { items: [].iter() })
        } else {
            self.deserialize_any(visitor)
        }
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        if self.target().is_omitted() {
            visitor.visit_map(Entries::new(&[], self.line))
        } else {
            self.deserialize_any(visitor)
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_map(visitor)
    }

    /// Only unit variants (`action: deny`) appear in the config.
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match &self.target().value {
            Value::Scalar { text, .. } => visitor.visit_enum(text.as_str().into_deserializer()),
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, _name: &'static str, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char bytes byte_buf
        unit unit_struct tuple tuple_struct
    }
}

/// A sequence's items, each read with its own line.
struct Items<'de> {
    items: std::slice::Iter<'de, Node>,
}

impl<'de> de::SeqAccess<'de> for Items<'de> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, Error> {
        self.items
            .next()
            .map(|item| seed.deserialize(item).map_err(|e| e.or_line(item.line)))
            .transpose()
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

/// A mapping's entries. `line` follows the last key read, so an error the
/// visitor raises about it (a duplicate field) lands on that key, and goes
/// back to the mapping's own line once every key is read (a missing field).
struct Entries<'de> {
    entries: std::slice::Iter<'de, (Node, Node)>,
    value: Option<&'de Node>,
    start: usize,
    line: usize,
}

impl<'de> Entries<'de> {
    fn new(entries: &'de [(Node, Node)], line: usize) -> Self {
        Self {
            entries: entries.iter(),
            value: None,
            start: line,
            line,
        }
    }
}

impl<'de> de::MapAccess<'de> for Entries<'de> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, Error> {
        let Some((key, value)) = self.entries.next() else {
            self.line = self.start;
            return Ok(None);
        };
        self.value = Some(value);
        self.line = key.line;
        seed.deserialize(key).map(Some).map_err(|e| e.or_line(key.line))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let value = self
            .value
            .take()
            .ok_or_else(|| <Error as de::Error>::custom("a mapping value was read before its key"))?;
        seed.deserialize(value).map_err(|e| e.or_line(value.line))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}
