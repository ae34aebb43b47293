//! The compiled spec against hand-written OpenAPI 3.0 and 3.1 documents:
//! matching, every parameter location, bodies, and that every violation is
//! reported with its location.

use super::*;
use crate::errors::ErrorItem;

const SPEC_30: &str = r##"
openapi: 3.0.3
info: {title: pets, version: "1"}
servers: [{url: "https://api.example.com/v1"}]
paths:
  /pets:
    get:
      parameters:
        - {name: limit, in: query, schema: {type: integer, minimum: 1, maximum: 100}}
        - {name: tags, in: query, style: form, explode: true, schema: {type: array, items: {type: string, enum: [cat, dog]}}}
        - {name: ids, in: query, explode: false, schema: {type: array, items: {type: integer}}}
        - {name: X-Trace, in: header, required: true, schema: {type: string, pattern: "^[a-f0-9]{8}$"}}
        - {name: session, in: cookie, schema: {type: string, minLength: 3}}
        - {$ref: "#/components/parameters/Verbose"}
    post:
      requestBody:
        required: true
        content:
          application/json:
            schema: {$ref: "#/components/schemas/NewPet"}
      responses: {201: {description: created}}
  /pets/{id}:
    parameters:
      - {name: id, in: path, required: true, schema: {type: integer, format: int64}}
    get: {responses: {200: {description: ok}}}
    delete: {responses: {204: {description: gone}}}
  /pets/mine:
    get: {responses: {200: {description: ok}}}
components:
  parameters:
    Verbose: {name: verbose, in: query, schema: {type: boolean}}
  schemas:
    NewPet:
      type: object
      required: [name, price]
      properties:
        name: {type: string, minLength: 1}
        nickname: {type: string, nullable: true}
        price: {type: number, minimum: 0, exclusiveMinimum: true}
        kind: {type: string, enum: [cat, dog]}
        email: {type: string, format: email}
        items: {type: array, items: {$ref: "#/components/schemas/Item"}}
    Item:
      type: object
      required: [price]
      properties: {price: {type: number}}
"##;

const SPEC_31: &str = r##"
{"openapi": "3.1.0", "info": {"title": "t", "version": "1"},
 "paths": {"/orders/{orderId}.json": {"put": {
   "parameters": [{"name": "orderId", "in": "path", "required": true, "schema": {"type": "string", "format": "uuid"}}],
   "requestBody": {"content": {
      "application/json": {"schema": {"$ref": "#/$defs/Order"}},
      "text/*": {"schema": {"type": "string"}}}}}}},
 "$defs": {"Order": {"type": "object", "additionalProperties": false,
   "properties": {"note": {"type": ["string", "null"]}, "qty": {"type": "integer", "exclusiveMinimum": 0}}}}}
"##;

fn check(spec: &CompiledSpec, method: &str, target: &str, headers: &[(&str, &str)], body: &str) -> Vec<ErrorItem> {
    let mut builder = http::Request::builder().method(method).uri(target);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let head = builder.body(()).unwrap().into_parts().0;
    spec.check(&head, body.as_bytes())
}

fn locations(items: &[ErrorItem]) -> Vec<&str> {
    items.iter().map(|i| i.location.as_str()).collect()
}

#[test]
fn parameters_in_every_location() {
    let spec = compile(SPEC_30).unwrap();
    let ok = check(
        &spec,
        "GET",
        "/v1/pets?limit=5&tags=cat&tags=dog&ids=1,2,3&verbose=true",
        &[("x-trace", "deadbeef"), ("cookie", "session=abcd")],
        "",
    );
    assert_eq!(ok, vec![]);
    let bad = check(
        &spec,
        "GET",
        "/v1/pets?limit=500&tags=cat&tags=cow&ids=1,x&verbose=yes",
        &[("cookie", "session=ab")],
        "",
    );
    assert_eq!(
        locations(&bad),
        vec![
            "query.limit",
            "query.tags/1",
            "query.ids",
            "header.X-Trace",
            "cookie.session",
            "query.verbose"
        ],
        "{bad:?}"
    );
    assert!(bad[2].message.contains("expected integer"), "{bad:?}");
    assert!(bad[3].message.contains("missing"), "{bad:?}");
    let pattern = check(&spec, "GET", "/v1/pets", &[("x-trace", "nothex!!")], "");
    assert_eq!(locations(&pattern), vec!["header.X-Trace"]);
}

#[test]
fn matching_methods_and_base_paths() {
    let spec = compile(SPEC_30).unwrap();
    assert_eq!(check(&spec, "GET", "/v1/pets/42", &[], ""), vec![]);
    assert_eq!(check(&spec, "GET", "/v1/pets/mine", &[], ""), vec![]);
    assert_eq!(
        locations(&check(&spec, "GET", "/v1/pets/abc", &[], "")),
        vec!["path.id"]
    );
    assert_eq!(
        locations(&check(&spec, "PATCH", "/v1/pets/42", &[], "")),
        vec!["method"]
    );
    assert_eq!(locations(&check(&spec, "GET", "/pets/42", &[], "")), vec!["path"]);
    assert_eq!(locations(&check(&spec, "GET", "/v1/owners", &[], "")), vec!["path"]);
    // HEAD falls back to GET.
    assert_eq!(check(&spec, "HEAD", "/v1/pets/1", &[], ""), vec![]);
}

#[test]
fn bodies_report_every_violation() {
    let spec = compile(SPEC_30).unwrap();
    let json = [("content-type", "application/json")];
    assert_eq!(
        check(
            &spec,
            "POST",
            "/v1/pets",
            &json,
            r#"{"name":"rex","price":3.5,"nickname":null}"#
        ),
        vec![]
    );
    let bad = check(
        &spec,
        "POST",
        "/v1/pets",
        &json,
        r#"{"name":"","price":0,"kind":"cow","email":"nope","items":[{"price":1},{"price":2},{"price":"x"}]}"#,
    );
    let mut at = locations(&bad);
    at.sort();
    assert_eq!(
        at,
        vec![
            "/body/email",
            "/body/items/2/price",
            "/body/kind",
            "/body/name",
            "/body/price"
        ],
        "{bad:?}"
    );
    assert_eq!(
        locations(&check(&spec, "POST", "/v1/pets", &json, r#"{"price":1}"#)),
        vec!["/body"]
    );
    assert_eq!(locations(&check(&spec, "POST", "/v1/pets", &json, "")), vec!["/body"]);
    assert!(check(&spec, "POST", "/v1/pets", &json, "{not json")[0]
        .message
        .contains("invalid JSON"));
    let wrong = check(&spec, "POST", "/v1/pets", &[("content-type", "text/plain")], "rex");
    assert_eq!(locations(&wrong), vec!["header.Content-Type"]);
    assert!(wrong[0].message.contains("application/json"), "{wrong:?}");
    assert_eq!(
        locations(&check(&spec, "POST", "/v1/pets", &[], "{}")),
        vec!["header.Content-Type"]
    );
    let charset = [("content-type", "application/json; charset=utf-8")];
    assert_eq!(
        check(&spec, "POST", "/v1/pets", &charset, r#"{"name":"a","price":1}"#),
        vec![]
    );
}

#[test]
fn openapi_31_documents() {
    let spec = compile(SPEC_31).unwrap();
    let id = "/orders/6f1c1f4e-8a39-4c55-9a7e-0e1a2b3c4d5e.json";
    let json = [("content-type", "application/json")];
    assert_eq!(check(&spec, "PUT", id, &json, r#"{"note":null,"qty":2}"#), vec![]);
    let bad = check(&spec, "PUT", id, &json, r#"{"qty":0,"extra":true}"#);
    assert_eq!(bad.len(), 2, "{bad:?}");
    assert_eq!(
        locations(&check(&spec, "PUT", "/orders/nope.json", &json, "{}")),
        vec!["path.orderId"]
    );
    // `text/*` matches any text type; its schema is not JSON-validated.
    assert_eq!(check(&spec, "PUT", id, &[("content-type", "text/csv")], "a,b"), vec![]);
    // No requestBody.required: an empty body is fine.
    assert_eq!(check(&spec, "PUT", id, &[], ""), vec![]);
}

#[test]
fn unusable_documents_are_errors() {
    let dangling = "openapi: 3.1.0\npaths:\n  /a:\n    post:\n      requestBody:\n        content:\n          application/json:\n            schema: {$ref: '#/components/schemas/Missing'}\n";
    let err = compile(dangling).unwrap_err();
    assert!(
        matches!(err, SpecError::Invalid { ref at, .. } if at.contains("requestBody")),
        "{err}"
    );
    assert!(matches!(
        compile("openapi: 3.1.0\npaths:\n  /a/{x:\n    get: {}\n"),
        Err(SpecError::Invalid { .. })
    ));
}

#[test]
fn the_large_real_world_spec_compiles_and_matches() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/fixtures/unkey-openapi-generated.yaml"
    );
    let Ok(text) = std::fs::read_to_string(path) else {
        eprintln!("skipped: {path} not present");
        return;
    };
    let spec = compile(&text).unwrap();
    let json = [("content-type", "application/json")];
    assert_eq!(
        check(&spec, "POST", "/v2/keys.createKey", &json, r#"{"apiId":"api_1234"}"#),
        vec![]
    );
    assert!(!check(&spec, "POST", "/v2/keys.createKey", &json, r#"{"apiId":5}"#).is_empty());
    assert_eq!(
        locations(&check(&spec, "GET", "/v2/keys.createKey", &json, "")),
        vec!["method"]
    );
}

/// A JSON document nested `depth` arrays deep around `inner`.
fn nested_arrays(depth: usize, inner: &str) -> String {
    format!("{}{inner}{}", "[".repeat(depth), "]".repeat(depth))
}

#[test]
fn deep_documents_are_errors_not_stack_overflows() {
    // The parser's recursion limit (128) bounds every walker after it
    // (YAML → JSON, `$ref` check, 3.0 rewrite, schema compile); 10× and far beyond.
    for depth in [1_280, 100_000] {
        let deep = format!("{{\"openapi\": \"3.1.0\", \"x\": {}}}", nested_arrays(depth, "1"));
        assert!(matches!(compile(&deep), Err(SpecError::Parse(_))), "depth {depth}");
        let yaml = format!("openapi: 3.0.3\nx: {}\n", nested_arrays(depth, "1"));
        assert!(matches!(compile(&yaml), Err(SpecError::Parse(_))), "YAML depth {depth}");
    }
    // A schema nested as deep as the parser allows still compiles and validates.
    let mut schema = String::from("{\"type\": \"string\"}");
    for _ in 0..50 {
        schema = format!("{{\"type\": \"array\", \"items\": {schema}}}");
    }
    let doc = format!(
        r#"{{"openapi": "3.1.0", "paths": {{"/a": {{"post": {{"requestBody": {{"content": {{"application/json": {{"schema": {schema}}}}}}}}}}}}}}}"#
    );
    let spec = compile(&doc).unwrap();
    let json = [("content-type", "application/json")];
    assert_eq!(check(&spec, "POST", "/a", &json, &nested_arrays(50, "\"x\"")), vec![]);
    assert_eq!(check(&spec, "POST", "/a", &json, &nested_arrays(50, "1")).len(), 1);
}

#[test]
fn deep_request_bodies_are_rejected_cleanly() {
    // A recursive schema accepts any depth, so only the body parser's bound applies.
    let doc = r##"{"openapi": "3.1.0", "paths": {"/a": {"post": {"requestBody": {"content": {"application/json":
        {"schema": {"$ref": "#/$defs/Tree"}}}}}}},
        "$defs": {"Tree": {"anyOf": [{"type": "integer"}, {"type": "array", "items": {"$ref": "#/$defs/Tree"}}]}}}"##;
    let spec = compile(doc).unwrap();
    let json = [("content-type", "application/json")];
    assert_eq!(check(&spec, "POST", "/a", &json, &nested_arrays(100, "1")), vec![]);
    for depth in [1_280, 1_000_000] {
        let errors = check(&spec, "POST", "/a", &json, &nested_arrays(depth, "1"));
        assert_eq!(locations(&errors), vec!["/body"], "depth {depth}");
        assert!(errors[0].message.contains("invalid JSON"), "{errors:?}");
    }
    let object = format!("{}1{}", "{\"a\":".repeat(5_000), "}".repeat(5_000));
    assert_eq!(locations(&check(&spec, "POST", "/a", &json, &object)), vec!["/body"]);
}

#[test]
fn deep_schema_patterns_are_errors() {
    let pattern = format!("{}a{}", "(".repeat(5_000), ")".repeat(5_000));
    let doc = format!(
        r#"{{"openapi": "3.1.0", "paths": {{"/a": {{"get": {{"parameters": [{{"name": "q", "in": "query", "schema": {{"type": "string", "pattern": "{pattern}"}}}}]}}}}}}}}"#
    );
    assert!(compile(&doc).is_err());
}
