//! Reading an OpenAPI document: YAML or JSON text into one JSON value, the
//! version check (3.0.x / 3.1.x), the "local `$ref`s only" rule, and the
//! rewrite of OpenAPI 3.0 schema dialect (`nullable`, boolean
//! `exclusiveMinimum`/`exclusiveMaximum`) into JSON Schema 2020-12, so one
//! validator handles both versions.

use serde_json::{Map, Value};

use super::SpecError;

/// The OpenAPI major.minor line a document declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V30,
    V31,
}

/// How many events anchors may record and aliases replay in all.
const ALIAS_EVENTS: usize = 100_000;
/// How deep a document's collections may nest: the parser's own recursion
/// limit, which also bounds every recursive walk of the document after it.
const MAX_NESTING: usize = 128;

/// Parses `text` (YAML, which includes JSON), checks the version and the
/// references, and returns the document in JSON Schema 2020-12 dialect.
pub fn load(text: &str) -> Result<Value, SpecError> {
    check_flow_nesting(text)?;
    let options = serde_saphyr::options! {
        // One line, not a source snippet: the message goes into a config error.
        with_snippet: false,
        // Room for the largest public APIs' documents (the defaults stop at
        // 250,000 nodes); 128 levels as before, and as serde_json allows;
        // aliases bounded as in the config file, so a "billion laughs"
        // document fails fast.
        budget: serde_saphyr::budget! {
            max_nodes: 2_000_000,
            max_events: 4_000_000,
            max_depth: 128,
            max_recorded_anchor_events: ALIAS_EVENTS,
        },
        alias_limits: serde_saphyr::alias_limits! {
            max_total_replayed_events: ALIAS_EVENTS,
        },
        // `.inf`/`.nan` read as JSON null, as they did before (JSON has neither).
        non_finite_float_policy: serde_saphyr::NonFiniteFloatPolicy::PassThrough,
    };
    // YAML keys that are not strings (`200:` in `responses`) read as their text.
    let mut doc: Value =
        serde_saphyr::from_str_with_options(text, options).map_err(|e| SpecError::Parse(e.to_string()))?;
    let version = version(&doc)?;
    check_refs(&doc, &mut String::new())?;
    if version == Version::V30 {
        rewrite_30(&mut doc);
    }
    Ok(doc)
}

/// The YAML parser needs time quadratic in how deep flow collections
/// (`[…]`, `{…}`, so every JSON document) nest before its recursion limit
/// applies: 100,000 brackets would take minutes. Brackets are counted first
/// (inside strings too, which can only err on the side of refusing a
/// document with more than 128 unclosed brackets in its strings).
fn check_flow_nesting(text: &str) -> Result<(), SpecError> {
    let mut depth = 0usize;
    for byte in text.bytes() {
        match byte {
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Err(SpecError::Parse(format!(
                        "collections nested deeper than {MAX_NESTING}"
                    )));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

fn version(doc: &Value) -> Result<Version, SpecError> {
    let declared = match doc.get("openapi") {
        Some(Value::String(v)) => v.as_str(),
        _ if doc.get("swagger").is_some() => return Err(SpecError::Version("Swagger 2.0".into())),
        _ => return Err(SpecError::Version("no `openapi` version field".into())),
    };
    if declared.starts_with("3.0.") || declared == "3.0" {
        Ok(Version::V30)
    } else if declared.starts_with("3.1.") || declared == "3.1" {
        Ok(Version::V31)
    } else {
        Err(SpecError::Version(declared.to_string()))
    }
}

/// Keys whose values are example data, never schemas or references.
fn is_example(key: &str) -> bool {
    key == "example" || key == "examples"
}

/// Every `$ref` must point into this document (`#/...`).
fn check_refs(value: &Value, at: &mut String) -> Result<(), SpecError> {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(target)) = map.get("$ref") {
                if !target.starts_with('#') {
                    return Err(SpecError::ExternalRef {
                        at: if at.is_empty() { "/".into() } else { at.clone() },
                        target: target.clone(),
                    });
                }
            }
            for (key, child) in map {
                if is_example(key) {
                    continue;
                }
                let len = at.len();
                at.push('/');
                at.push_str(&key.replace('~', "~0").replace('/', "~1"));
                check_refs(child, at)?;
                at.truncate(len);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                let len = at.len();
                at.push_str(&format!("/{i}"));
                check_refs(child, at)?;
                at.truncate(len);
            }
        }
        _ => {}
    }
    Ok(())
}

/// OpenAPI 3.0 schema objects → JSON Schema 2020-12: `nullable: true` admits
/// `null`; boolean `exclusiveMinimum`/`exclusiveMaximum` become numeric.
fn rewrite_30(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                if !is_example(key) {
                    rewrite_30(child);
                }
            }
            for (flag, bound) in [("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")] {
                if let Some(Value::Bool(exclusive)) = map.get(flag).cloned() {
                    map.remove(flag);
                    if exclusive {
                        if let Some(limit) = map.remove(bound) {
                            map.insert(flag.to_string(), limit);
                        }
                    }
                }
            }
            if let Some(Value::Bool(nullable)) = map.get("nullable").cloned() {
                map.remove("nullable");
                if nullable {
                    admit_null(map);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(rewrite_30),
        _ => {}
    }
}

fn admit_null(schema: &mut Map<String, Value>) {
    if let Some(Value::Array(values)) = schema.get_mut("enum") {
        if !values.contains(&Value::Null) {
            values.push(Value::Null);
        }
    }
    match schema.get_mut("type") {
        Some(Value::String(t)) => {
            let t = std::mem::take(t);
            schema.insert("type".into(), Value::Array(vec![Value::String(t), "null".into()]));
        }
        Some(Value::Array(types)) => {
            if !types.iter().any(|t| t == "null") {
                types.push("null".into());
            }
        }
        _ => {
            // No `type` to widen (`$ref`, `allOf`, ...): either null or the rest.
            let rest = std::mem::take(schema);
            schema.insert(
                "anyOf".into(),
                Value::Array(vec![Value::Object(rest), serde_json::json!({"type": "null"})]),
            );
        }
    }
}

/// The value at a local reference (`#/components/schemas/User`), following
/// chains of `$ref`s; `None` when it does not resolve (or loops).
pub fn resolve<'a>(doc: &'a Value, mut value: &'a Value) -> Option<(&'a Value, Option<String>)> {
    let mut pointer = None;
    for _ in 0..32 {
        match value.get("$ref").and_then(Value::as_str) {
            Some(target) => {
                let fragment = target.strip_prefix('#')?;
                let decoded = percent_encoding::percent_decode_str(fragment).decode_utf8().ok()?;
                value = doc.pointer(&decoded)?;
                pointer = Some(decoded.into_owned());
            }
            None => return Some((value, pointer)),
        }
    }
    None
}

/// `segment` escaped for a JSON pointer.
pub fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rewrites_openapi_30_dialect() {
        let doc = load(
            "openapi: 3.0.3\ncomponents:\n  schemas:\n    A: {type: string, nullable: true}\n    B: {type: integer, minimum: 1, exclusiveMinimum: true, maximum: 9, exclusiveMaximum: false}\n    C: {allOf: [{$ref: '#/components/schemas/A'}], nullable: true}\n    D: {type: string, enum: [a, b], nullable: true}\n",
        )
        .unwrap();
        let s = &doc["components"]["schemas"];
        assert_eq!(s["A"], json!({"type": ["string", "null"]}));
        assert_eq!(s["B"], json!({"type": "integer", "exclusiveMinimum": 1, "maximum": 9}));
        assert_eq!(s["C"]["anyOf"][1], json!({"type": "null"}));
        assert_eq!(s["D"]["enum"], json!(["a", "b", null]));
    }

    #[test]
    fn versions_and_refs() {
        assert!(matches!(load("swagger: '2.0'"), Err(SpecError::Version(_))));
        assert!(matches!(load("openapi: 4.0.0"), Err(SpecError::Version(_))));
        assert!(matches!(load("openapi: [unclosed"), Err(SpecError::Parse(_))));
        let err =
            load("openapi: 3.1.0\npaths:\n  /a:\n    get:\n      parameters: [{$ref: 'other.yaml#/p'}]\n").unwrap_err();
        assert!(
            matches!(&err, SpecError::ExternalRef { at, target } if at == "/paths/~1a/get/parameters/0" && target == "other.yaml#/p"),
            "{err}"
        );
        let doc = load("{\"openapi\": \"3.1.0\", \"responses\": {\"200\": {}}}").unwrap();
        assert!(doc["responses"].get("200").is_some());
        let doc = load("openapi: 3.1.0\nresponses:\n  200: {description: ok}\n").unwrap();
        assert!(doc["responses"].get("200").is_some());
    }

    #[test]
    fn hostile_yaml_is_a_parse_error() {
        for depth in [1_280, 40_000] {
            let deep = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
            assert!(matches!(load(&deep), Err(SpecError::Parse(_))), "depth {depth}");
        }
        let mut bomb = String::from("a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
        for (name, previous) in ["b", "c", "d", "e", "f", "g", "h", "i"]
            .iter()
            .zip(["a", "b", "c", "d", "e", "f", "g", "h"])
        {
            bomb.push_str(&format!(
                "{name}: &{name} [{}]\n",
                vec![format!("*{previous}"); 10].join(", ")
            ));
        }
        let err = load(&bomb).unwrap_err();
        assert!(matches!(err, SpecError::Parse(_)), "{err}");
    }

    #[test]
    fn resolves_reference_chains() {
        let doc = json!({"a": {"$ref": "#/b"}, "b": {"$ref": "#/c~1d"}, "c/d": {"type": "string"}, "loop": {"$ref": "#/loop"}});
        let (value, pointer) = resolve(&doc, &doc["a"]).unwrap();
        assert_eq!(value, &json!({"type": "string"}));
        assert_eq!(pointer.as_deref(), Some("/c~1d"));
        assert!(resolve(&doc, &doc["loop"]).is_none());
    }
}
