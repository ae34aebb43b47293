//! A loaded document compiled into what a request is checked against: the
//! path router, and per operation its parameters and request body with
//! their JSON Schema validators. All schemas are compiled here, once, as
//! references into the document (so `#/components/...` resolves); a request
//! only runs them.

use http::Method;
use jsonschema::{Draft, Registry, Validator};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::Value;

use super::body::RequestBody;
use super::document::escape;
use super::params::{Inputs, Param};
use super::router::{base_path, Router};
use super::SpecError;
use crate::errors::ErrorItem;

/// The URI the document is registered under for `$ref` resolution.
const DOCUMENT_URI: &str = "urn:keygate:openapi";

/// Characters of a JSON pointer kept as they are in a URI fragment.
const FRAGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'/')
    .remove(b'~')
    .remove(b'-')
    .remove(b'_')
    .remove(b'.');

const METHODS: [(&str, Method); 8] = [
    ("get", Method::GET),
    ("put", Method::PUT),
    ("post", Method::POST),
    ("delete", Method::DELETE),
    ("options", Method::OPTIONS),
    ("head", Method::HEAD),
    ("patch", Method::PATCH),
    ("trace", Method::TRACE),
];

/// Builds validators for schemas of one document.
pub struct Schemas<'a> {
    doc: &'a Value,
    registry: Registry<'a>,
}

impl<'a> Schemas<'a> {
    fn new(doc: &'a Value) -> Result<Self, SpecError> {
        let registry = Registry::new()
            .add(DOCUMENT_URI, doc)
            .and_then(|builder| builder.prepare())
            .map_err(|e| SpecError::Invalid {
                at: "/".into(),
                message: e.to_string(),
            })?;
        Ok(Self { doc, registry })
    }

    pub fn doc(&self) -> &'a Value {
        self.doc
    }

    /// A validator for the schema at `pointer` in the document.
    pub fn validator(&self, pointer: &str) -> Result<Validator, String> {
        let target = format!("{DOCUMENT_URI}#{}", utf8_percent_encode(pointer, FRAGMENT));
        jsonschema::options()
            .with_draft(Draft::Draft202012)
            .with_registry(&self.registry)
            .should_validate_formats(true)
            .build(&serde_json::json!({ "$ref": target }))
            .map_err(|e| e.to_string())
    }
}

#[derive(Debug)]
struct Operation {
    params: Vec<Param>,
    body: Option<RequestBody>,
}

#[derive(Debug)]
struct PathItem {
    template: String,
    operations: Vec<(Method, Operation)>,
}

/// A document ready to check requests against.
#[derive(Debug)]
pub struct CompiledSpec {
    router: Router,
    paths: Vec<PathItem>,
}

impl CompiledSpec {
    /// Compiles a document returned by [`super::document::load`].
    pub fn compile(doc: &Value) -> Result<Self, SpecError> {
        let schemas = Schemas::new(doc)?;
        let mut router = Router::new(base_paths(doc));
        let mut paths = Vec::new();
        if let Some(Value::Object(items)) = doc.get("paths") {
            for (template, item) in items {
                let at = format!("/paths/{}", escape(template));
                let invalid = |message: String| SpecError::Invalid {
                    at: at.clone(),
                    message,
                };
                router.insert(template, paths.len()).map_err(invalid)?;
                paths.push(
                    compile_path(&schemas, template, item, &at)
                        .map_err(|(at, message)| SpecError::Invalid { at, message })?,
                );
            }
        }
        Ok(Self { router, paths })
    }

    /// Every way the request breaks the spec; empty when it fits.
    pub fn check(&self, head: &http::request::Parts, body: &[u8]) -> Vec<ErrorItem> {
        let path = head.uri.path();
        let Some(matched) = self.router.find(path) else {
            return vec![ErrorItem::new(
                "path",
                format!("no operation in the API specification matches {} {path}", head.method),
            )];
        };
        let item = &self.paths[matched.target];
        let operation = item.operations.iter().find(|(m, _)| *m == head.method).or_else(|| {
            (head.method == Method::HEAD)
                .then(|| item.operations.iter().find(|(m, _)| *m == Method::GET))
                .flatten()
        });
        let Some((_, operation)) = operation else {
            let allowed: Vec<&str> = item.operations.iter().map(|(m, _)| m.as_str()).collect();
            return vec![ErrorItem::new(
                "method",
                format!(
                    "{} is not an operation of {} (allowed: {})",
                    head.method,
                    item.template,
                    allowed.join(", ")
                ),
            )];
        };
        let mut problems = Vec::new();
        let inputs = Inputs::new(&matched.params, head.uri.query(), &head.headers);
        for param in &operation.params {
            param.check(&inputs, &mut problems);
        }
        if let Some(request_body) = &operation.body {
            let content_type = head
                .headers
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok());
            request_body.check(content_type, body, &mut problems);
        }
        problems
    }
}

type Located = (String, String);

fn compile_path(schemas: &Schemas<'_>, template: &str, item: &Value, at: &str) -> Result<PathItem, Located> {
    let shared = compile_params(schemas, item, at)?;
    let mut operations = Vec::new();
    for (key, method) in METHODS {
        let Some(op) = item.get(key) else { continue };
        let op_at = format!("{at}/{key}");
        let mut params = compile_params(schemas, op, &op_at)?;
        for param in &shared {
            if !params.iter().any(|p| p.key() == param.key()) {
                params.push(param.clone());
            }
        }
        let body = match op.get("requestBody") {
            Some(_) => {
                let body_at = format!("{op_at}/requestBody");
                Some(RequestBody::compile(schemas, &body_at).map_err(|m| (body_at, m))?)
            }
            None => None,
        };
        operations.push((method, Operation { params, body }));
    }
    Ok(PathItem {
        template: template.to_string(),
        operations,
    })
}

fn compile_params(schemas: &Schemas<'_>, owner: &Value, at: &str) -> Result<Vec<Param>, Located> {
    let mut params = Vec::new();
    let count = owner.get("parameters").and_then(Value::as_array).map_or(0, Vec::len);
    for i in 0..count {
        let pointer = format!("{at}/parameters/{i}");
        if let Some(param) = Param::compile(schemas, &pointer).map_err(|m| (pointer.clone(), m))? {
            params.push(param);
        }
    }
    Ok(params)
}

/// The path parts of the top-level `servers` (none = the root).
fn base_paths(doc: &Value) -> Vec<String> {
    let Some(servers) = doc.get("servers").and_then(Value::as_array) else {
        return Vec::new();
    };
    servers
        .iter()
        .filter_map(|server| {
            let url = server.get("url")?.as_str()?;
            let variables = server
                .get("variables")
                .and_then(Value::as_object)
                .map(|vars| {
                    vars.iter()
                        .filter_map(|(name, var)| Some((name.clone(), var.get("default")?.as_str()?.to_string())))
                        .collect()
                })
                .unwrap_or_default();
            Some(base_path(url, &variables))
        })
        .collect()
}
