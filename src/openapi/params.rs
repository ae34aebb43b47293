//! Parameters (path, query, header, cookie): compiled per operation into
//! "how the raw strings become JSON" (type coercion, `style`/`explode`
//! arrays) plus a JSON Schema validator, then checked per request. Every
//! problem is reported, located as `query.limit`, `path.id`, `header.X-Trace`,
//! `cookie.session`.

use std::borrow::Cow;

use http::HeaderMap;
use jsonschema::Validator;
use serde_json::Value;

use super::compile::Schemas;
use super::document::{escape, resolve};
use crate::errors::ErrorItem;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum In {
    Path,
    Query,
    Header,
    Cookie,
}

impl In {
    fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "path" => Self::Path,
            "query" => Self::Query,
            "header" => Self::Header,
            "cookie" => Self::Cookie,
            _ => return None,
        })
    }

    fn label(self) -> &'static str {
        match self {
            Self::Path => "path",
            Self::Query => "query",
            Self::Header => "header",
            Self::Cookie => "cookie",
        }
    }
}

/// The JSON type a raw string is converted to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scalar {
    String,
    Integer,
    Number,
    Boolean,
    /// No single type: left as a string for the schema to judge.
    Any,
}

#[derive(Debug, Clone)]
enum Shape {
    Scalar(Scalar),
    /// `explode` (form style only): one value per occurrence; else one
    /// occurrence split on `separator`.
    Array {
        item: Scalar,
        explode: bool,
        separator: char,
    },
    /// `content: {application/json: ...}`: the value is JSON text.
    Json,
}

#[derive(Debug, Clone)]
pub struct Param {
    location: In,
    /// As declared; lowercased for headers.
    name: String,
    /// `query.limit` — where violations are reported.
    label: String,
    required: bool,
    shape: Shape,
    validator: Option<Validator>,
}

/// What a request offers to parameters, parsed once per request.
pub struct Inputs<'a> {
    pub path: &'a [(String, String)],
    pub query: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    pub headers: &'a HeaderMap,
    pub cookies: Vec<(&'a str, &'a str)>,
}

impl<'a> Inputs<'a> {
    pub fn new(path: &'a [(String, String)], query: Option<&'a str>, headers: &'a HeaderMap) -> Self {
        // `+` is a space, as in `match: query` and `keyauth`'s query location.
        let query = form_urlencoded::parse(query.unwrap_or("").as_bytes()).collect();
        let cookies = headers
            .get_all(http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .collect();
        Self {
            path,
            query,
            headers,
            cookies,
        }
    }

    fn values(&self, param: &Param) -> Vec<Cow<'a, str>> {
        match param.location {
            In::Path => self
                .path
                .iter()
                .filter(|(n, _)| *n == param.name)
                .map(|(_, v)| Cow::Owned(v.clone()))
                .collect(),
            In::Query => self
                .query
                .iter()
                .filter(|(n, _)| *n == param.name)
                .map(|(_, v)| v.clone())
                .collect(),
            In::Header => self
                .headers
                .get_all(param.name.as_str())
                .iter()
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned().into())
                .collect(),
            In::Cookie => self
                .cookies
                .iter()
                .filter(|(n, _)| *n == param.name)
                .map(|(_, v)| Cow::Borrowed(*v))
                .collect(),
        }
    }
}

/// Headers OpenAPI says parameters must not describe.
fn ignored_header(name: &str) -> bool {
    name.eq_ignore_ascii_case("accept")
        || name.eq_ignore_ascii_case("content-type")
        || name.eq_ignore_ascii_case("authorization")
}

impl Param {
    /// Compiles the parameter object at `pointer`; `None` for ignored headers.
    pub fn compile(schemas: &Schemas<'_>, pointer: &str) -> Result<Option<Self>, String> {
        let doc = schemas.doc();
        let raw = doc.pointer(pointer).ok_or("parameter not found")?;
        let (object, resolved) = resolve(doc, raw).ok_or("unresolvable parameter $ref")?;
        let pointer = resolved.unwrap_or_else(|| pointer.to_string());
        let name = object
            .get("name")
            .and_then(Value::as_str)
            .ok_or("parameter without `name`")?;
        let location_text = object
            .get("in")
            .and_then(Value::as_str)
            .ok_or("parameter without `in`")?;
        let location =
            In::parse(location_text).ok_or_else(|| format!("parameter {name:?}: unknown `in: {location_text}`"))?;
        if location == In::Header && ignored_header(name) {
            return Ok(None);
        }
        let required = location == In::Path || object.get("required").and_then(Value::as_bool).unwrap_or(false);
        let (shape, schema_pointer) = if let Some(schema) = object.get("schema") {
            let style = object.get("style").and_then(Value::as_str);
            let form = match location {
                In::Query | In::Cookie => style.is_none_or(|s| s == "form"),
                In::Path | In::Header => false,
            };
            let explode = object.get("explode").and_then(Value::as_bool).unwrap_or(form);
            let separator = match style {
                Some("spaceDelimited") => ' ',
                Some("pipeDelimited") => '|',
                _ => ',',
            };
            (
                shape_of(doc, schema, explode && form, separator),
                format!("{pointer}/schema"),
            )
        } else if let Some(Value::Object(content)) = object.get("content") {
            let media = content.keys().next().ok_or("parameter `content` is empty")?;
            (Shape::Json, format!("{pointer}/content/{}/schema", escape(media)))
        } else {
            return Err(format!("parameter {name:?} has neither `schema` nor `content`"));
        };
        let validator = match doc.pointer(&schema_pointer) {
            Some(_) => Some(
                schemas
                    .validator(&schema_pointer)
                    .map_err(|e| format!("parameter {name:?}: {e}"))?,
            ),
            None => None,
        };
        Ok(Some(Self {
            location,
            name: if location == In::Header {
                name.to_ascii_lowercase()
            } else {
                name.to_string()
            },
            label: format!("{}.{name}", location.label()),
            required,
            shape,
            validator,
        }))
    }

    /// `(in, name)`: operation parameters replace path-level ones with the same key.
    pub fn key(&self) -> (In, &str) {
        (self.location, &self.name)
    }

    /// Checks the parameter in `inputs`, adding every problem to `out`.
    pub fn check(&self, inputs: &Inputs<'_>, out: &mut Vec<ErrorItem>) {
        let values = inputs.values(self);
        if values.is_empty() {
            if self.required {
                out.push(self.item(format!("required {} parameter is missing", self.location.label())));
            }
            return;
        }
        let value = match self.coerce(&values) {
            Ok(value) => value,
            Err(message) => return out.push(self.item(message)),
        };
        if let Some(validator) = &self.validator {
            for error in validator.iter_errors(&value) {
                let at = error.instance_path().to_string();
                let label = if at.is_empty() {
                    self.label.clone()
                } else {
                    format!("{}{at}", self.label)
                };
                out.push(ErrorItem::new(label, error.to_string()));
            }
        }
    }

    fn item(&self, message: String) -> ErrorItem {
        ErrorItem::new(self.label.clone(), message)
    }

    fn coerce(&self, values: &[Cow<'_, str>]) -> Result<Value, String> {
        match &self.shape {
            Shape::Scalar(scalar) => coerce(*scalar, &values[0]),
            Shape::Json => serde_json::from_str(&values[0]).map_err(|e| format!("invalid JSON: {e}")),
            Shape::Array {
                item,
                explode,
                separator,
            } => {
                let parts: Vec<&str> = if *explode {
                    values.iter().map(|v| v.as_ref()).collect()
                } else {
                    values[0].split(*separator).collect()
                };
                let parts = if parts == [""] { Vec::new() } else { parts };
                parts
                    .into_iter()
                    .map(|p| coerce(*item, p))
                    .collect::<Result<Vec<_>, _>>()
                    .map(Value::Array)
            }
        }
    }
}

fn shape_of(doc: &Value, schema: &Value, explode: bool, separator: char) -> Shape {
    let Some((schema, _)) = resolve(doc, schema) else {
        return Shape::Scalar(Scalar::Any);
    };
    match type_name(schema) {
        Some("array") => {
            let item = schema
                .get("items")
                .and_then(|items| resolve(doc, items))
                .map_or(Scalar::Any, |(items, _)| scalar(type_name(items)));
            Shape::Array {
                item,
                explode,
                separator,
            }
        }
        other => Shape::Scalar(scalar(other)),
    }
}

/// `type: x` or the first non-null of `type: [x, "null"]`.
fn type_name(schema: &Value) -> Option<&str> {
    match schema.get("type")? {
        Value::String(t) => Some(t),
        Value::Array(types) => types.iter().filter_map(Value::as_str).find(|t| *t != "null"),
        _ => None,
    }
}

fn scalar(type_name: Option<&str>) -> Scalar {
    match type_name {
        Some("string") => Scalar::String,
        Some("integer") => Scalar::Integer,
        Some("number") => Scalar::Number,
        Some("boolean") => Scalar::Boolean,
        _ => Scalar::Any,
    }
}

fn coerce(scalar: Scalar, raw: &str) -> Result<Value, String> {
    let invalid = |what: &str| format!("expected {what}, got {raw:?}");
    match scalar {
        Scalar::String | Scalar::Any => Ok(Value::String(raw.to_string())),
        Scalar::Integer => {
            if let Ok(n) = raw.parse::<i64>() {
                Ok(n.into())
            } else if let Ok(n) = raw.parse::<u64>() {
                Ok(n.into())
            } else {
                Err(invalid("integer"))
            }
        }
        Scalar::Number => raw
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .ok_or_else(|| invalid("number")),
        Scalar::Boolean => match raw {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            _ => Err(invalid("boolean")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coercion() {
        assert_eq!(coerce(Scalar::Integer, "42"), Ok(Value::from(42)));
        assert_eq!(coerce(Scalar::Integer, "-1"), Ok(Value::from(-1)));
        assert!(coerce(Scalar::Integer, "4.5").is_err());
        assert!(coerce(Scalar::Integer, "x").unwrap_err().contains("expected integer"));
        assert_eq!(coerce(Scalar::Number, "4.5"), Ok(serde_json::json!(4.5)));
        assert!(coerce(Scalar::Number, "NaN").is_err());
        assert_eq!(coerce(Scalar::Boolean, "true"), Ok(Value::Bool(true)));
        assert!(coerce(Scalar::Boolean, "1").is_err());
        assert_eq!(coerce(Scalar::String, "7"), Ok(Value::from("7")));
    }

    #[test]
    fn inputs_parse_query_and_cookies() {
        let mut headers = HeaderMap::new();
        headers.insert(http::header::COOKIE, "a=1; session=xyz".parse().unwrap());
        let inputs = Inputs::new(&[], Some("q=a+b&tag=x&tag=y&e=%2F&flag"), &headers);
        assert_eq!(inputs.query[0], (Cow::from("q"), Cow::from("a b")));
        assert_eq!(inputs.query[3].1, "/");
        assert_eq!(inputs.query[4], (Cow::from("flag"), Cow::from("")));
        assert_eq!(inputs.cookies, vec![("a", "1"), ("session", "xyz")]);
    }

    /// `match: query` (and `keyauth`'s query location) and OpenAPI query
    /// parameters read a query string the same way.
    #[test]
    fn query_decoding_agrees_with_match_query() {
        let cases: &[(&str, &[&str])] = &[
            ("q=a+b", &["a b"]),
            ("q=a%20b", &["a b"]),
            ("q=a%2Bb", &["a+b"]),
            ("q=%zz", &["%zz"]),
            ("q=1&x=2&q=3", &["1", "3"]),
            ("q+r=1&q%20r=2&q=4", &["4"]),
        ];
        let headers = HeaderMap::new();
        for (query, expected) in cases {
            let inputs = Inputs::new(&[], Some(query), &headers);
            for name in ["q", "q r"] {
                let openapi: Vec<_> = inputs
                    .query
                    .iter()
                    .filter(|(n, _)| n == name)
                    .map(|(_, v)| v.clone())
                    .collect();
                let matcher: Vec<_> = crate::policy::matcher::query_values(query, name).collect();
                assert_eq!(openapi, matcher, "{name:?} in {query:?}");
            }
            let values: Vec<_> = crate::policy::matcher::query_values(query, "q").collect();
            assert_eq!(values, *expected, "{query:?}");
        }
        let spaced: Vec<_> = crate::policy::matcher::query_values("q+r=1&q%20r=2", "q r").collect();
        assert_eq!(spaced, ["1", "2"], "names are decoded too");
    }
}
