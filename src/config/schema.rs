//! The configuration's JSON Schema, generated from the `*Spec` types
//! themselves so it cannot drift from what keygate reads: for editors
//! (`keygate config schema`, `docs/config.schema.json`, the YAML language
//! server) and, in Kubernetes' dialect, for the `KeygatePolicy` CRD.
//!
//! `${VAR}`: a plain value is substituted before it is typed, so
//! `threads: ${WORKERS}` is a number to keygate but the string `${WORKERS}`
//! to an editor. The file's schema therefore also accepts a string holding
//! a `${NAME}` wherever it expects a number, a boolean or one of a fixed
//! set of words, and every patterned string accepts one too: an editor
//! never flags a file keygate reads. (A quoted `"${WORKERS}"` passes the
//! schema yet stays a string to keygate, which `keygate check` reports.)

use schemars::generate::SchemaSettings;
use schemars::transform::{transform_subschemas, Transform};
use schemars::{JsonSchema, Schema};
use serde_json::{json, Map, Value};

use super::file::ConfigFile;
use super::policy::PolicySpec;

/// A `${NAME}` anywhere in a string (names as `config::env` reads them).
pub const VARIABLE_PATTERN: &str = r"\$\{[A-Za-z_][A-Za-z0-9_]*\}";

/// Where the file's schema keeps the `${VAR}` string.
const VARIABLE_DEF: &str = "EnvironmentVariable";

/// A `pattern` for a string value: the whole text matches `pattern`, or it
/// holds a `${VAR}` (checked after substitution).
pub fn text_pattern(pattern: &str) -> String {
    format!("^({pattern})$|{VARIABLE_PATTERN}")
}

/// The JSON Schema (2020-12) of the configuration file.
pub fn config_file() -> Value {
    file_dialect::<ConfigFile>()
}

/// The schema of `T` as a part of the file: 2020-12, with `${VAR}`s.
fn file_dialect<T: JsonSchema>() -> Value {
    let mut schema = SchemaSettings::draft2020_12()
        .into_generator()
        .into_root_schema_for::<T>();
    AllowVariables.transform(&mut schema);
    let mut value = schema.to_value();
    value["$defs"][VARIABLE_DEF] = json!({
        "type": "string",
        "description": "`${NAME}`: replaced by the environment variable NAME before the value is typed.",
        "pattern": VARIABLE_PATTERN,
    });
    value
}

/// The `openAPIV3Schema` of a `KeygatePolicy`'s `spec.policies`: a
/// structural schema (every node typed, no `$ref`, no
/// `additionalProperties: false`, `oneOf` holding only `required`), so the
/// API server refuses a malformed policy and prunes unknown fields.
pub fn kubernetes_policies() -> Value {
    let settings = SchemaSettings::openapi3().with(|s| {
        s.inline_subschemas = true;
        s.meta_schema = None;
    });
    let mut schema = settings.into_generator().into_root_schema_for::<Vec<PolicySpec>>();
    KubernetesDialect.transform(&mut schema);
    schema.to_value()
}

/// Adds the `${VAR}` string as an alternative to every non-string scalar
/// and every fixed set of words, children first (so an alternative is
/// never wrapped again).
struct AllowVariables;

impl Transform for AllowVariables {
    fn transform(&mut self, schema: &mut Schema) {
        transform_subschemas(self, schema);
        let Some(object) = schema.as_object_mut() else { return };
        if !takes_variable(object) {
            return;
        }
        let mut value = Map::new();
        // Annotations stay on the outside, where editors show them.
        for key in ["title", "description", "default", "examples"] {
            if let Some(annotation) = object.remove(key) {
                value.insert(key.into(), annotation);
            }
        }
        let typed = std::mem::take(object);
        value.insert(
            "anyOf".into(),
            json!([typed, {"$ref": format!("#/$defs/{VARIABLE_DEF}")}]),
        );
        *object = value;
    }
}

/// A number, a boolean or a fixed set of words: what `${VAR}` may stand for.
fn takes_variable(object: &Map<String, Value>) -> bool {
    let scalar = |t: &Value| matches!(t.as_str(), Some("integer" | "number" | "boolean"));
    let typed = match object.get("type") {
        Some(Value::Array(types)) => types.iter().any(scalar),
        Some(t) => scalar(t),
        None => false,
    };
    let words = object.contains_key("enum")
        || object
            .get("oneOf")
            .and_then(Value::as_array)
            .is_some_and(|variants| variants.iter().all(|v| v.get("const").is_some()));
    typed || words
}

/// Kubernetes' structural-schema dialect of OpenAPI v3: unknown fields are
/// pruned by the API server (and refused by `kubectl apply`'s strict field
/// validation), so `additionalProperties: false` goes; so do defaults
/// (keygate applies its own), examples, formats the API server does not
/// know and the `${VAR}` alternative (custom resources are not substituted).
struct KubernetesDialect;

impl Transform for KubernetesDialect {
    fn transform(&mut self, schema: &mut Schema) {
        transform_subschemas(self, schema);
        let Some(object) = schema.as_object_mut() else { return };
        merge_nullable(object);
        for key in ["$schema", "title", "default", "example", "examples"] {
            object.remove(key);
        }
        if object.get("additionalProperties") == Some(&Value::Bool(false)) {
            object.remove("additionalProperties");
        }
        if object
            .get("format")
            .and_then(Value::as_str)
            .is_some_and(|format| !matches!(format, "int32" | "int64" | "float" | "double"))
        {
            object.remove("format");
        }
        if let Some(Value::String(pattern)) = object.get_mut("pattern") {
            if let Some(own) = pattern.strip_suffix(&format!("|{VARIABLE_PATTERN}")) {
                *pattern = own.to_string();
            }
        }
        if is_int_or_string(object) {
            // A pattern applies to the string form only (and has lost its
            // `${VAR}` alternative above, in the branch).
            let pattern = object["anyOf"][1].get("pattern").cloned();
            if let Some(pattern) = pattern {
                object.insert("pattern".into(), pattern);
            }
            object.insert("x-kubernetes-int-or-string".into(), true.into());
            object.insert("anyOf".into(), json!([{"type": "integer"}, {"type": "string"}]));
        }
    }
}

/// `anyOf: [X, null]` (an optional object with a `oneOf`) → X, `nullable`.
fn merge_nullable(object: &mut Map<String, Value>) {
    let is_null = |v: &Value| v.get("enum") == Some(&json!([null])) || v.get("type") == Some(&json!("null"));
    let Some(Value::Array(variants)) = object.get("anyOf") else {
        return;
    };
    let [a, b] = variants.as_slice() else { return };
    let inner = match (is_null(a), is_null(b)) {
        (false, true) => a.clone(),
        (true, false) => b.clone(),
        _ => return,
    };
    object.remove("anyOf");
    if let Value::Object(inner) = inner {
        for (key, value) in inner {
            object.entry(key).or_insert(value);
        }
    }
    object.insert("nullable".into(), true.into());
}

/// `anyOf: [integer, string]` (a size): Kubernetes' int-or-string, which
/// takes no other form of `anyOf`.
fn is_int_or_string(object: &Map<String, Value>) -> bool {
    let types: Option<Vec<&str>> = object
        .get("anyOf")
        .and_then(Value::as_array)
        .map(|variants| variants.iter().filter_map(|v| v.get("type")?.as_str()).collect());
    types.is_some_and(|types| types == ["integer", "string"])
}

#[cfg(test)]
mod tests {
    use super::super::units::{ByteSize, HumanDuration};
    use super::*;

    fn validator(schema: &Value) -> jsonschema::Validator {
        jsonschema::validator_for(schema).unwrap()
    }

    #[test]
    fn duration_pattern_agrees_with_the_parser() {
        let schema = file_dialect::<HumanDuration>();
        let check = validator(&schema);
        for text in [
            "250ms",
            "10s",
            "1h30m",
            "1h 30m",
            "30d",
            "1.5h",
            "2 weeks",
            "5µs",
            "${TIMEOUT}",
        ] {
            assert!(check.is_valid(&json!(text)), "{text}");
            if !text.contains('$') {
                assert!(humantime::parse_duration(text).is_ok(), "{text}");
            }
        }
        for text in ["soon", "10", "10 parsecs", "h"] {
            assert!(!check.is_valid(&json!(text)), "{text}");
            assert!(humantime::parse_duration(text).is_err(), "{text}");
        }
    }

    #[test]
    fn size_pattern_agrees_with_the_parser() {
        let check = validator(&file_dialect::<ByteSize>());
        for good in [json!("64KiB"), json!("10 MB"), json!(4096), json!("${BODY}")] {
            assert!(check.is_valid(&good), "{good}");
        }
        for bad in [json!("10 parsecs"), json!("MiB"), json!(-1)] {
            assert!(!check.is_valid(&bad), "{bad}");
            if let Some(text) = bad.as_str() {
                assert!(ByteSize::parse(text).is_err(), "{text}");
            }
        }
    }

    #[test]
    fn numbers_and_words_may_be_variables() {
        let schema = config_file();
        let check = validator(&schema);
        let file = |text: &str| serde_saphyr::from_str::<Value>(text).unwrap();
        assert!(check.is_valid(&file("listen:\n  threads: ${WORKERS}\n")));
        assert!(check.is_valid(&file(
            "deployments:\n  - id: a\n    upstream:\n      selection: ${PICK}\n"
        )));
        assert!(!check.is_valid(&file("listen: {threads: many}\n")));
        assert!(!check.is_valid(&file("deployments: [{id: a, upstream: {selection: fastest}}]\n")));
        assert!(
            !check.is_valid(&file("listen: {htps: x}\n")),
            "unknown fields are refused"
        );
    }

    #[test]
    fn a_policy_has_exactly_one_action() {
        let check = validator(&config_file());
        let policies = |policies: Value| json!({"deployments": [{"id": "a", "policies": policies}]});
        assert!(check.is_valid(&policies(json!([{"id": "p", "firewall": {"action": "deny"}}]))));
        assert!(!check.is_valid(&policies(json!([{"id": "p"}]))));
        assert!(!check.is_valid(&policies(
            json!([{"id": "p", "firewall": {"action": "deny"}, "ip": {}}])
        )));
    }

    /// Kubernetes' rules for a structural schema, checked on every node.
    fn assert_structural(schema: &Value, at: &str) {
        let Some(object) = schema.as_object() else { return };
        assert!(!object.contains_key("$ref"), "{at}: $ref");
        assert_ne!(object.get("additionalProperties"), Some(&json!(false)), "{at}");
        assert!(
            object.contains_key("type") || object.contains_key("x-kubernetes-int-or-string"),
            "{at}: untyped: {schema}"
        );
        assert!(!object.contains_key("x-kubernetes-preserve-unknown-fields"), "{at}");
        for one_of in object.get("oneOf").and_then(Value::as_array).into_iter().flatten() {
            let keys: Vec<&String> = one_of.as_object().unwrap().keys().collect();
            assert_eq!(keys, ["required"], "{at}: oneOf may only require fields");
        }
        for (name, property) in object
            .get("properties")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            assert_structural(property, &format!("{at}.{name}"));
        }
        if let Some(items) = object.get("items") {
            assert_structural(items, &format!("{at}[]"));
        }
    }

    #[test]
    fn the_policy_crd_schema_is_structural() {
        let schema = kubernetes_policies();
        assert_structural(&schema, "policies");
        let text = schema.to_string();
        assert!(!text.contains(VARIABLE_PATTERN), "no ${{VAR}} in custom resources");
    }
}
