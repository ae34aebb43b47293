//! The request body of an operation: presence (`required`), `Content-Type`
//! against the declared media types (exact, then `type/*`, then `*/*`), and
//! JSON bodies against the media type's schema, compiled once. Every schema
//! violation is reported, located under `/body` as a JSON pointer.

use jsonschema::Validator;
use serde_json::Value;

use super::compile::Schemas;
use super::document::{escape, resolve};
use crate::errors::ErrorItem;

const CONTENT_TYPE: &str = "header.Content-Type";

#[derive(Debug)]
struct Media {
    /// `application/json`, `image/*`, `*/*` — lowercased.
    range: String,
    validator: Option<Validator>,
}

#[derive(Debug)]
pub struct RequestBody {
    required: bool,
    media: Vec<Media>,
}

impl RequestBody {
    /// Compiles the request body object at `pointer`.
    pub fn compile(schemas: &Schemas<'_>, pointer: &str) -> Result<Self, String> {
        let doc = schemas.doc();
        let raw = doc.pointer(pointer).ok_or("requestBody not found")?;
        let (object, resolved) = resolve(doc, raw).ok_or("unresolvable requestBody $ref")?;
        let pointer = resolved.unwrap_or_else(|| pointer.to_string());
        let required = object.get("required").and_then(Value::as_bool).unwrap_or(false);
        let mut media = Vec::new();
        if let Some(Value::Object(content)) = object.get("content") {
            for (range, entry) in content {
                let validator = match entry.get("schema") {
                    Some(_) if is_json(range) => {
                        let at = format!("{pointer}/content/{}/schema", escape(range));
                        Some(
                            schemas
                                .validator(&at)
                                .map_err(|e| format!("media type {range:?}: {e}"))?,
                        )
                    }
                    _ => None,
                };
                media.push(Media {
                    range: range.to_ascii_lowercase(),
                    validator,
                });
            }
        }
        Ok(Self { required, media })
    }

    /// Checks `body` sent as `content_type`, adding every problem to `out`.
    pub fn check(&self, content_type: Option<&str>, body: &[u8], out: &mut Vec<ErrorItem>) {
        if body.is_empty() {
            if self.required {
                out.push(item("/body", "a request body is required".into()));
            }
            return;
        }
        if self.media.is_empty() {
            return;
        }
        let Some(content_type) = content_type else {
            return out.push(item(CONTENT_TYPE, format!("missing; expected {}", self.expected())));
        };
        let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        let Some(media) = self.media_for(&essence) else {
            return out.push(item(
                CONTENT_TYPE,
                format!("unsupported media type {essence:?}; expected {}", self.expected()),
            ));
        };
        let Some(validator) = &media.validator else { return };
        let value: Value = match serde_json::from_slice(body) {
            Ok(value) => value,
            Err(e) => return out.push(item("/body", format!("invalid JSON: {e}"))),
        };
        for error in validator.iter_errors(&value) {
            out.push(item(&format!("/body{}", error.instance_path()), error.to_string()));
        }
    }

    fn media_for(&self, essence: &str) -> Option<&Media> {
        let wildcard = essence.split('/').next().map(|t| format!("{t}/*"));
        self.media
            .iter()
            .find(|m| m.range == essence)
            .or_else(|| self.media.iter().find(|m| Some(&m.range) == wildcard.as_ref()))
            .or_else(|| self.media.iter().find(|m| m.range == "*/*"))
    }

    fn expected(&self) -> String {
        let ranges: Vec<&str> = self.media.iter().map(|m| m.range.as_str()).collect();
        ranges.join(", ")
    }
}

/// `application/json` and the `+json` structured syntax suffix.
fn is_json(range: &str) -> bool {
    let essence = range.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    essence == "application/json" || essence.ends_with("+json")
}

fn item(location: &str, message: String) -> ErrorItem {
    ErrorItem::new(location, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_media_types() {
        assert!(is_json("application/json"));
        assert!(is_json("Application/JSON; charset=utf-8"));
        assert!(is_json("application/merge-patch+json"));
        assert!(!is_json("text/plain"));
        assert!(!is_json("application/x-www-form-urlencoded"));
    }
}
