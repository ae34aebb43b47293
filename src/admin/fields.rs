//! Field-level validation of admin API request bodies, Unkey style: every
//! problem is collected with its location (`body.credits.refill.amount`)
//! and answered at once as a 400 `err:unkey:application:invalid_input`
//! whose `errors` list the fields. Fields keygate does not read are
//! ignored, not rejected: newer revisions of Unkey's API (and so of its
//! SDKs) add fields, and an SDK must keep working against keygate.

use serde_json::{Map, Value};

use super::envelope::invalid_input;
use crate::errors::{ErrorItem, GatewayError};

/// A JSON object being read field by field.
pub struct Fields {
    path: String,
    object: Map<String, Value>,
    errors: Vec<ErrorItem>,
}

/// An optional field that may also be `null` (update semantics).
#[derive(Debug, Clone, PartialEq)]
pub enum Patch<T> {
    /// Absent: leave as is.
    Keep,
    /// `null`: remove.
    Clear,
    Set(T),
}

impl Patch<String> {
    /// Applies the patch to an optional text; an empty string clears it too.
    pub fn apply_to(self, target: &mut Option<String>) {
        match self {
            Patch::Set(text) if !text.is_empty() => *target = Some(text),
            Patch::Set(_) | Patch::Clear => *target = None,
            Patch::Keep => {}
        }
    }
}

/// Allowed characters and the fix to suggest.
pub type Charset = (fn(char) -> bool, &'static str);

/// What a string field accepts.
#[derive(Clone, Copy)]
pub struct Text {
    pub min: usize,
    pub max: usize,
    pub charset: Option<Charset>,
}

pub fn id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

pub fn external_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')
}

pub fn permission_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | ':' | '-' | '.' | '*')
}

impl Text {
    pub const fn len(min: usize, max: usize) -> Self {
        Self {
            min,
            max,
            charset: None,
        }
    }

    pub const fn id(min: usize) -> Self {
        Self {
            min,
            max: 255,
            charset: Some((id_char, "use letters, digits and _")),
        }
    }
}

impl Fields {
    /// Parses a request body; anything but a JSON object is one error at `body`.
    pub fn parse(body: &[u8]) -> Result<Self, GatewayError> {
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(object)) => Ok(Self::new("body".into(), object)),
            Ok(_) => Err(invalid(vec![error(
                "body",
                "the request body must be a JSON object",
                None,
            )])),
            Err(e) => Err(not_json(&e)),
        }
    }

    /// Parses a request body that is a JSON array of at most `max` objects:
    /// a reader for the whole body (to [`Self::absorb`] the items into and
    /// [`Self::finish`]) and one per item (`body[0]`, …).
    pub fn parse_list(body: &[u8], max: usize) -> Result<(Self, Vec<Self>), GatewayError> {
        let items = match serde_json::from_slice::<Value>(body) {
            Ok(Value::Array(items)) if items.len() <= max => items,
            Ok(_) => {
                let message = format!("the request body must be a JSON array of at most {max} objects");
                return Err(invalid(vec![error("body", &message, None)]));
            }
            Err(e) => return Err(not_json(&e)),
        };
        let mut root = Self::new("body".into(), Map::new());
        let mut readers = Vec::with_capacity(items.len());
        for (i, item) in items.into_iter().enumerate() {
            match item {
                Value::Object(object) => readers.push(Self::new(format!("body[{i}]"), object)),
                _ => root.fail(format!("body[{i}]"), "must be an object", None),
            }
        }
        Ok((root, readers))
    }

    fn new(path: String, object: Map<String, Value>) -> Self {
        Self {
            path,
            object,
            errors: Vec::new(),
        }
    }

    fn at(&self, name: &str) -> String {
        format!("{}.{name}", self.path)
    }

    fn fail(&mut self, location: String, message: &str, fix: Option<&str>) {
        self.errors.push(error(&location, message, fix));
    }

    /// Takes a field: `None` absent, `Some(Null)` null.
    fn take(&mut self, name: &str, required: bool) -> Option<Value> {
        let value = self.object.remove(name);
        if required && value.as_ref().is_none_or(Value::is_null) {
            self.fail(self.at(name), "is required", None);
            return None;
        }
        value
    }

    fn text_value(&mut self, name: &str, value: Value, rules: Text) -> Option<String> {
        let Value::String(text) = value else {
            self.fail(self.at(name), "must be a string", None);
            return None;
        };
        let len = text.chars().count();
        if len < rules.min || len > rules.max {
            self.fail(
                self.at(name),
                &format!("must be {}..{} characters long", rules.min, rules.max),
                None,
            );
            return None;
        }
        if let Some((allowed, fix)) = rules.charset {
            if !text.chars().all(allowed) {
                self.fail(self.at(name), "contains characters that are not allowed", Some(fix));
                return None;
            }
        }
        Some(text)
    }

    pub fn text(&mut self, name: &str, rules: Text, required: bool) -> Option<String> {
        let value = self.take(name, required)?;
        if value.is_null() {
            return None;
        }
        self.text_value(name, value, rules)
    }

    pub fn text_patch(&mut self, name: &str, rules: Text) -> Patch<String> {
        match self.take(name, false) {
            None => Patch::Keep,
            Some(Value::Null) => Patch::Clear,
            Some(value) => self.text_value(name, value, rules).map_or(Patch::Keep, Patch::Set),
        }
    }

    fn int_value(&mut self, name: &str, value: &Value, min: i64, max: i64) -> Option<i64> {
        match value.as_i64() {
            Some(n) if (min..=max).contains(&n) => Some(n),
            Some(_) => {
                self.fail(self.at(name), &format!("must be between {min} and {max}"), None);
                None
            }
            None => {
                self.fail(self.at(name), "must be an integer", None);
                None
            }
        }
    }

    pub fn int(&mut self, name: &str, min: i64, max: i64, required: bool) -> Option<i64> {
        let value = self.take(name, required)?;
        if value.is_null() {
            return None;
        }
        self.int_value(name, &value, min, max)
    }

    pub fn int_patch(&mut self, name: &str, min: i64, max: i64) -> Patch<i64> {
        match self.take(name, false) {
            None => Patch::Keep,
            Some(Value::Null) => Patch::Clear,
            Some(value) => self.int_value(name, &value, min, max).map_or(Patch::Keep, Patch::Set),
        }
    }

    pub fn boolean(&mut self, name: &str) -> Option<bool> {
        match self.take(name, false)? {
            Value::Bool(b) => Some(b),
            Value::Null => None,
            _ => {
                self.fail(self.at(name), "must be a boolean", None);
                None
            }
        }
    }

    /// A JSON object with at most `max` properties (`meta`).
    pub fn object_patch(&mut self, name: &str, max: usize) -> Patch<Map<String, Value>> {
        match self.take(name, false) {
            None => Patch::Keep,
            Some(Value::Null) => Patch::Clear,
            Some(Value::Object(object)) if object.len() <= max => Patch::Set(object),
            Some(Value::Object(_)) => {
                self.fail(self.at(name), &format!("must have at most {max} properties"), None);
                Patch::Keep
            }
            Some(_) => {
                self.fail(self.at(name), "must be an object", None);
                Patch::Keep
            }
        }
    }

    /// A list of strings, each checked by `rules`.
    pub fn text_list(&mut self, name: &str, max_items: usize, rules: Text) -> Patch<Vec<String>> {
        let items = match self.take(name, false) {
            None => return Patch::Keep,
            Some(Value::Null) => return Patch::Clear,
            Some(Value::Array(items)) if items.len() <= max_items => items,
            Some(Value::Array(_)) => {
                self.fail(self.at(name), &format!("must have at most {max_items} items"), None);
                return Patch::Keep;
            }
            Some(_) => {
                self.fail(self.at(name), "must be an array", None);
                return Patch::Keep;
            }
        };
        let before = self.errors.len();
        let list: Vec<String> = items
            .into_iter()
            .enumerate()
            .filter_map(|(i, item)| self.text_value(&format!("{name}[{i}]"), item, rules))
            .collect();
        if self.errors.len() > before {
            Patch::Keep
        } else {
            Patch::Set(list)
        }
    }

    /// A nested object, read with its own `Fields` (errors merge back on [`Self::absorb`]).
    pub fn nested(&mut self, name: &str) -> Patch<Fields> {
        match self.take(name, false) {
            None => Patch::Keep,
            Some(Value::Null) => Patch::Clear,
            Some(Value::Object(object)) => Patch::Set(Fields::new(self.at(name), object)),
            Some(_) => {
                self.fail(self.at(name), "must be an object", None);
                Patch::Keep
            }
        }
    }

    /// A list of objects, each read with its own `Fields`.
    pub fn nested_list(&mut self, name: &str, max_items: usize) -> Patch<Vec<Fields>> {
        match self.take(name, false) {
            None => Patch::Keep,
            Some(Value::Null) => Patch::Clear,
            Some(Value::Array(items)) if items.len() <= max_items => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.into_iter().enumerate() {
                    match item {
                        Value::Object(object) => out.push(Fields::new(self.at(&format!("{name}[{i}]")), object)),
                        _ => self.fail(self.at(&format!("{name}[{i}]")), "must be an object", None),
                    }
                }
                Patch::Set(out)
            }
            Some(_) => {
                self.fail(
                    self.at(name),
                    &format!("must be an array of at most {max_items} objects"),
                    None,
                );
                Patch::Keep
            }
        }
    }

    /// Takes over a nested reader's errors.
    pub fn absorb(&mut self, mut child: Fields) {
        self.errors.append(&mut child.errors);
    }

    /// Adds an error about a field of this object.
    pub fn reject(&mut self, name: &str, message: &str) {
        let location = self.at(name);
        self.fail(location, message, None);
    }

    /// Ok when every field read was valid (the others are ignored).
    pub fn finish(self) -> Result<(), GatewayError> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(invalid(self.errors))
        }
    }
}

fn error(location: &str, message: &str, fix: Option<&str>) -> ErrorItem {
    ErrorItem {
        fix: fix.map(str::to_string),
        ..ErrorItem::new(location, message)
    }
}

fn not_json(e: &serde_json::Error) -> GatewayError {
    invalid(vec![error(
        "body",
        &format!("the request body is not valid JSON: {e}"),
        None,
    )])
}

fn invalid(errors: Vec<ErrorItem>) -> GatewayError {
    let detail = match errors.first() {
        Some(first) if errors.len() == 1 => format!("{} {}", first.location, first.message),
        _ => format!("{} fields failed validation", errors.len()),
    };
    invalid_input(detail).with_items(errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collects_every_error_with_its_location() {
        let mut f = Fields::parse(br#"{"name": "ab", "n": "x", "extra": 1, "c": {"amount": 0, "zzz": true}}"#).unwrap();
        assert_eq!(f.text("name", Text::len(3, 10), true), None);
        assert_eq!(f.int("n", 0, 5, false), None);
        assert_eq!(f.text("missing", Text::len(1, 5), true), None);
        if let Patch::Set(mut c) = f.nested("c") {
            assert_eq!(c.int("amount", 1, 10, true), None);
            f.absorb(c);
        }
        let error = f.finish().err().unwrap();
        assert_eq!(error.code.status(), 400);
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let mut f =
            Fields::parse(br#"{"keyId": "key_1", "addedLater": {"x": 1}, "c": {"amount": 1, "new": 2}}"#).unwrap();
        assert_eq!(f.text("keyId", Text::id(3), true).as_deref(), Some("key_1"));
        if let Patch::Set(mut c) = f.nested("c") {
            assert_eq!(c.int("amount", 1, 10, true), Some(1));
            f.absorb(c);
        }
        assert!(f.finish().is_ok());
    }

    #[test]
    fn lists_of_objects() {
        let (mut root, items) = Fields::parse_list(br#"[{"n": 1}, 7, {"n": "x"}]"#, 10).unwrap();
        assert_eq!(items.len(), 2);
        for mut item in items {
            item.int("n", 0, 5, true);
            root.absorb(item);
        }
        let error = root.finish().unwrap_err();
        let locations: Vec<&str> = error.items().iter().map(|i| i.location.as_str()).collect();
        assert_eq!(locations, ["body[1]", "body[2].n"]);
        assert!(Fields::parse_list(b"{}", 10).is_err());
        assert!(Fields::parse_list(b"[{}, {}]", 1).is_err());
    }

    #[test]
    fn patches_tell_absent_from_null() {
        let mut f = Fields::parse(br#"{"a": null, "b": "x"}"#).unwrap();
        assert_eq!(f.text_patch("a", Text::len(1, 5)), Patch::Clear);
        assert_eq!(f.text_patch("b", Text::len(1, 5)), Patch::Set("x".into()));
        assert_eq!(f.text_patch("c", Text::len(1, 5)), Patch::Keep);
        assert!(f.finish().is_ok());
    }
}
