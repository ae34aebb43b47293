//! The `openapi` policy through the gateway: hand-written 3.0 and 3.1 specs (every parameter location, enums,
//! required fields, `$ref`s), every body violation reported at once, wrong
//! content types, unknown operations, 413 and "a rejected request never
//! opens a connection to the instance" (1 MiB bodies included), valid
//! requests forwarded with their body bytes unchanged, `fetch_path`, and a
//! large real-world spec.

mod support;

use std::path::Path;

use serde_json::{json, Value};
use support::gateway::Gateway;
use support::load_errors::check_config_in;
use support::problem::assert_problem;
use support::raw_http::RawConn;
use support::upstreams::{pattern, DocServer, Upstream};
use support::wait::{wait_for, WAIT};

const CODE: &str = "err:frontline:client:openapi_validation_failed";

const PETS_30: &str = r##"openapi: 3.0.3
info: {title: pets, version: "1"}
servers: [{url: "https://api.example.com/v1"}]
paths:
  /pets:
    get:
      parameters:
        - {name: limit, in: query, required: true, schema: {type: integer, minimum: 1, maximum: 100}}
        - {name: tags, in: query, style: form, explode: true, schema: {type: array, items: {type: string, enum: [cat, dog]}}}
        - {name: X-Trace, in: header, required: true, schema: {type: string, pattern: "^[a-f0-9]{8}$"}}
        - {name: session, in: cookie, schema: {type: string, minLength: 3}}
      responses: {200: {description: ok}}
    post:
      requestBody:
        required: true
        content:
          application/json:
            schema: {$ref: "#/components/schemas/NewPet"}
      responses: {201: {description: created}}
  /pets/{id}:
    parameters:
      - {$ref: "#/components/parameters/PetId"}
    get: {responses: {200: {description: ok}}}
  /pets/{id}/photos:
    put:
      parameters:
        - {$ref: "#/components/parameters/PetId"}
      requestBody:
        content:
          application/octet-stream: {schema: {type: string, format: binary}}
      responses: {204: {description: stored}}
components:
  parameters:
    PetId: {name: id, in: path, required: true, schema: {type: integer, minimum: 1}}
  schemas:
    NewPet:
      type: object
      required: [name, kind, price]
      properties:
        name: {type: string, minLength: 1}
        nickname: {type: string, nullable: true}
        kind: {type: string, enum: [cat, dog]}
        price: {type: number, minimum: 0}
        items: {type: array, items: {$ref: "#/components/schemas/Item"}}
    Item:
      type: object
      required: [price]
      properties: {price: {type: number}}
"##;

const ORDERS_31: &str = r##"{
  "openapi": "3.1.0",
  "info": {"title": "orders", "version": "1"},
  "paths": {
    "/orders/{orderId}": {
      "patch": {
        "parameters": [{"name": "orderId", "in": "path", "required": true, "schema": {"type": "string", "format": "uuid"}}],
        "requestBody": {"required": true, "content": {"application/merge-patch+json": {"schema": {"$ref": "#/components/schemas/OrderPatch"}}}},
        "responses": {"200": {"description": "ok"}}
      }
    }
  },
  "components": {"schemas": {"OrderPatch": {
    "type": "object", "additionalProperties": false,
    "properties": {"note": {"type": ["string", "null"]}, "qty": {"type": "integer", "exclusiveMinimum": 0}}
  }}}
}"##;

/// Writes `spec` next to the test and returns a config with an `openapi` policy.
fn config(dir: &Path, file: &str, spec: &str, instance: &str, extra: &str) -> String {
    let path = dir.join(file);
    std::fs::write(&path, spec).unwrap();
    format!(
        "{extra}deployments:\n  - id: dep\n    instances: [\"{instance}\"]\n    openapi: {{file: \"{}\"}}\n    policies:\n      - id: validate\n        openapi: {{}}\nroutes:\n  - host: api.test\n    deployment: dep\n",
        path.display()
    )
}

fn locations(body: &Value) -> Vec<String> {
    let mut at: Vec<String> = body["error"]["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("no errors array: {body}"))
        .iter()
        .map(|e| e["location"].as_str().unwrap().to_string())
        .collect();
    at.sort();
    at
}

async fn rejected(resp: reqwest::Response) -> Value {
    assert_problem(resp, 400, CODE, "Bad Request").await
}

#[tokio::test(flavor = "multi_thread")]
async fn parameters_in_every_location_are_validated() {
    let dir = tempfile::tempdir().unwrap();
    let up = Upstream::inspector("app").await;
    let gw = Gateway::start(&config(dir.path(), "pets.yaml", PETS_30, &up.addr_str(), "")).await;

    let ok = gw
        .get("api.test", "/v1/pets?limit=10&tags=cat&tags=dog")
        .header("x-trace", "deadbeef")
        .header("cookie", "session=abcd")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);

    let bad = gw
        .get("api.test", "/v1/pets?limit=500&tags=cat&tags=cow")
        .header("x-trace", "NOT-HEX")
        .header("cookie", "session=ab")
        .send()
        .await
        .unwrap();
    let body = rejected(bad).await;
    assert_eq!(
        locations(&body),
        ["cookie.session", "header.X-Trace", "query.limit", "query.tags/1"],
        "{body}"
    );
    let detail = body["error"]["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("query.limit: ") && detail.ends_with("(and 3 more)"),
        "{detail}"
    );

    let missing = gw.get("api.test", "/v1/pets").send().await.unwrap();
    let body = rejected(missing).await;
    assert_eq!(locations(&body), ["header.X-Trace", "query.limit"], "{body}");
    let coercion = gw
        .get("api.test", "/v1/pets?limit=ten")
        .header("x-trace", "deadbeef")
        .send()
        .await
        .unwrap();
    let body = rejected(coercion).await;
    assert!(
        body["error"]["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("expected integer"),
        "{body}"
    );

    // Path parameters through a path-level $ref.
    assert_eq!(gw.get("api.test", "/v1/pets/7").send().await.unwrap().status(), 200);
    let body = rejected(gw.get("api.test", "/v1/pets/0").send().await.unwrap()).await;
    assert_eq!(locations(&body), ["path.id"]);
    assert_eq!(up.hits(), 2, "only the valid requests reached the instance");
}

#[tokio::test(flavor = "multi_thread")]
async fn bodies_report_every_violation_and_pass_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let up = Upstream::inspector("app").await;
    let gw = Gateway::start(&config(dir.path(), "pets.yaml", PETS_30, &up.addr_str(), "")).await;
    let post = |body: &'static str, content_type: &'static str| {
        gw.request(reqwest::Method::POST, "api.test", "/v1/pets")
            .header("content-type", content_type)
            .header("x-echo-body", "1")
            .body(body)
            .send()
    };

    let body = rejected(
        post(
            r#"{"name":"","kind":"cow","price":-1,"items":[{"price":1},{"price":2},{"price":"free"}]}"#,
            "application/json",
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(
        locations(&body),
        ["/body/items/2/price", "/body/kind", "/body/name", "/body/price"],
        "every violation is reported: {body}"
    );
    let body = rejected(post(r#"{"name":"rex"}"#, "application/json").await.unwrap()).await;
    assert_eq!(
        locations(&body),
        ["/body", "/body"],
        "two missing required properties: {body}"
    );
    let body = rejected(post("{\"name\": tru", "application/json").await.unwrap()).await;
    assert!(
        body["error"]["detail"].as_str().unwrap().contains("invalid JSON"),
        "{body}"
    );
    let body = rejected(post("name=rex", "application/x-www-form-urlencoded").await.unwrap()).await;
    assert_eq!(locations(&body), ["header.Content-Type"], "{body}");
    let body = rejected(post("", "application/json").await.unwrap()).await;
    assert_eq!(locations(&body), ["/body"], "required body missing: {body}");
    assert_eq!(up.hits(), 0);

    // Byte-for-byte: odd spacing, key order, escapes and non-ASCII survive.
    let exact = "{ \"kind\":\"dog\" ,\n\t\"name\" : \"R\\u00e9x 🐕\", \"price\": 1.50, \"nickname\": null }";
    let resp = post(exact, "application/json; charset=utf-8").await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().await.unwrap(), exact.as_bytes());
    assert_eq!(up.hits(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn large_bodies_are_buffered_validated_and_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let up = Upstream::inspector("app").await;
    let gw = Gateway::start(&config(
        dir.path(),
        "pets.yaml",
        PETS_30,
        &up.addr_str(),
        "limits:\n  max_request_body: 2MiB\n",
    ))
    .await;
    // ~1 MiB of valid JSON: far over pingora's 64 KiB retry buffer.
    let items: Vec<Value> = (0..40_000).map(|i| json!({"price": i})).collect();
    let valid = serde_json::to_vec(&json!({"name": "rex", "kind": "dog", "price": 1, "items": items})).unwrap();
    assert!(valid.len() > 512 * 1024, "{}", valid.len());
    let resp = gw
        .request(reqwest::Method::POST, "api.test", "/v1/pets")
        .header("content-type", "application/json")
        .header("x-echo-body", "1")
        .body(valid.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.bytes().await.unwrap().as_ref(),
        valid.as_slice(),
        "forwarded unchanged"
    );

    // Chunked (no Content-Length) works the same.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = valid.chunks(100_000).map(|c| Ok(c.to_vec())).collect();
    let resp = gw
        .request(reqwest::Method::POST, "api.test", "/v1/pets")
        .header("content-type", "application/json")
        .header("x-echo-body", "1")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().await.unwrap().len(), valid.len());

    // A binary upload to an operation without a JSON schema also round-trips.
    let blob = pattern(300 * 1024);
    let resp = gw
        .request(reqwest::Method::PUT, "api.test", "/v1/pets/3/photos")
        .header("content-type", "application/octet-stream")
        .header("x-echo-body", "1")
        .body(blob.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().await.unwrap().as_ref(), blob.as_slice());
}

#[tokio::test(flavor = "multi_thread")]
async fn rejected_requests_never_open_a_connection() {
    let dir = tempfile::tempdir().unwrap();
    let up = Upstream::counting("app").await;
    let gw = Gateway::start(&config(
        dir.path(),
        "pets.yaml",
        PETS_30,
        &up.addr_str(),
        "limits:\n  max_request_body: 2MiB\n",
    ))
    .await;
    let post = |body: Vec<u8>| {
        gw.request(reqwest::Method::POST, "api.test", "/v1/pets")
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    // 1 MiB, well-formed, invalid against the schema.
    let items: Vec<Value> = (0..80_000).map(|_| json!({"price": "x"})).collect();
    let invalid = serde_json::to_vec(&json!({"name": "rex", "kind": "dog", "price": 1, "items": items})).unwrap();
    assert!(invalid.len() >= 1 << 20, "{}", invalid.len());
    let body = rejected(post(invalid).await.unwrap()).await;
    assert_eq!(
        body["error"]["errors"].as_array().unwrap().len(),
        1000,
        "the first 1000 violations are listed"
    );
    let detail = body["error"]["detail"].as_str().unwrap();
    assert!(
        detail.contains("(and 79999 more); the first 1000 are listed"),
        "{detail}"
    );

    // Over max_request_body: 413, with or without a Content-Length. The
    // gateway answers as soon as it knows and closes, so the client may
    // still be writing (a broken pipe) instead of reading the 413.
    match post(vec![b' '; 3 << 20]).await {
        Ok(resp) => {
            assert_problem(resp, 413, "err:frontline:client:request_too_large", "Payload Too Large").await;
        }
        Err(e) => assert!(e.is_request(), "{e}"),
    }
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = (0..48).map(|_| Ok(vec![b' '; 64 * 1024])).collect();
    let resp = gw
        .request(reqwest::Method::POST, "api.test", "/v1/pets")
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(chunks)))
        .send()
        .await;
    // The gateway may answer before the client finished sending; either way, nothing got through.
    if let Ok(resp) = resp {
        assert_eq!(resp.status(), 413);
    }
    let unknown = gw.get("api.test", "/v1/owners").send().await.unwrap();
    let body = rejected(unknown).await;
    assert_eq!(locations(&body), ["path"]);
    let wrong_method = gw
        .request(reqwest::Method::DELETE, "api.test", "/v1/pets")
        .send()
        .await
        .unwrap();
    let body = rejected(wrong_method).await;
    assert_eq!(locations(&body), ["method"]);
    gw.wait_metric(
        r#"keygate_policy_decisions_total{policy_type="openapi",decision="deny"}"#,
        3.0,
    )
    .await;

    assert_eq!(
        up.connections(),
        0,
        "no rejected request opened a connection to the instance"
    );
    assert_eq!(up.hits(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn openapi_31_json_spec() {
    let dir = tempfile::tempdir().unwrap();
    let up = Upstream::inspector("app").await;
    let gw = Gateway::start(&config(dir.path(), "orders.json", ORDERS_31, &up.addr_str(), "")).await;
    let patch = |target: &str, body: &'static str| {
        gw.request(reqwest::Method::PATCH, "api.test", target)
            .header("content-type", "application/merge-patch+json")
            .body(body)
            .send()
    };
    let id = "/orders/6f1c1f4e-8a39-4c55-9a7e-0e1a2b3c4d5e";
    assert_eq!(patch(id, r#"{"note":null,"qty":3}"#).await.unwrap().status(), 200);
    let body = rejected(patch(id, r#"{"qty":0,"color":"red"}"#).await.unwrap()).await;
    assert_eq!(body["error"]["errors"].as_array().unwrap().len(), 2, "{body}");
    let body = rejected(patch("/orders/not-a-uuid", "{}").await.unwrap()).await;
    assert_eq!(locations(&body), ["path.orderId"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn auth_rejects_before_the_body_is_read() {
    // The openapi policy comes after a firewall: a denied request is answered
    // without buffering (a 3 MiB body over the 1 MiB limit gets 403, not 413).
    let dir = tempfile::tempdir().unwrap();
    let up = Upstream::counting("app").await;
    let spec = dir.path().join("pets.yaml");
    std::fs::write(&spec, PETS_30).unwrap();
    let gw = Gateway::start(&format!(
        "limits:\n  max_request_body: 1MiB\ndeployments:\n  - id: dep\n    instances: [\"{}\"]\n    openapi: {{file: \"{}\"}}\n    policies:\n      - id: gate\n        match: [{{header: {{name: X-Allowed, present: false}}}}]\n        firewall: {{action: deny}}\n      - id: validate\n        openapi: {{}}\nroutes:\n  - host: api.test\n    deployment: dep\n",
        up.addr_str(),
        spec.display()
    ))
    .await;
    // Only the head is sent: a gateway that waited for the body would never
    // answer, and a client racing a 3 MiB upload against an early answer
    // could see its write fail before it reads the status.
    let head = |extra: &str| {
        format!(
            "POST /v1/pets HTTP/1.1\r\nHost: api.test\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{extra}\r\n",
            3 << 20
        )
    };
    let mut conn = RawConn::connect(gw.http).await;
    let denied = conn
        .roundtrip(head("").as_bytes())
        .await
        .expect("an answer without the body");
    assert_eq!(denied.status, 403);
    let mut conn = RawConn::connect(gw.http).await;
    let too_large = conn
        .roundtrip(head("X-Allowed: 1\r\n").as_bytes())
        .await
        .expect("an answer without the body");
    assert_eq!(too_large.status, 413);
    assert_eq!(up.connections(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_builtin_echo_sees_the_buffered_body() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(&config(dir.path(), "pets.yaml", PETS_30, "builtin:echo", "")).await;
    let body = r#"{"name":"rex","kind":"cat","price":2}"#;
    let resp = gw
        .request(reqwest::Method::POST, "api.test", "/v1/pets")
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let echoed: Value = resp.json().await.unwrap();
    assert_eq!(echoed["body"], body);
}

#[tokio::test(flavor = "multi_thread")]
async fn fetch_path_spec_comes_from_an_instance() {
    let instance = DocServer::start().await;
    let gw = Gateway::start(&format!(
        "deployments:\n  - id: dep\n    instances: [\"{}\"]\n    openapi: {{fetch_path: /openapi.yaml}}\n    policies:\n      - id: validate\n        openapi: {{}}\nroutes:\n  - host: api.test\n    deployment: dep\n",
        instance.addr
    ))
    .await;
    // No spec served yet: 422 until a fetch succeeds.
    let resp = gw.get("api.test", "/v1/pets/1").send().await.unwrap();
    assert_problem(
        resp,
        422,
        "err:frontline:config:invalid_configuration",
        "Unprocessable Entity",
    )
    .await;
    wait_for("a failed fetch is counted", WAIT, || async {
        gw.metric("keygate_openapi_fetch_failures_total").await >= 1.0
    })
    .await;

    instance.set("/openapi.yaml", "application/yaml", PETS_30);
    // Valid requests reach the instance (which answers 404 for /v1/pets/1), invalid ones get 400.
    wait_for("the fetched spec is in use", WAIT, || async {
        gw.get("api.test", "/v1/pets/1").send().await.unwrap().status() == 404
    })
    .await;
    rejected(gw.get("api.test", "/v1/pets/x").send().await.unwrap()).await;

    // A broken document later keeps the last good spec (refreshes are 60 s
    // apart, so a reload — which starts from the remembered spec — is used to
    // prove the slot never empties).
    instance.set("/openapi.yaml", "application/yaml", "openapi: [broken");
    gw.write_config(&format!(
        "deployments:\n  - id: dep\n    environment: staging\n    instances: [\"{}\"]\n    openapi: {{fetch_path: /openapi.yaml}}\n    policies:\n      - id: validate\n        openapi: {{}}\nroutes:\n  - host: api.test\n    deployment: dep\n",
        instance.addr
    ));
    gw.wait_metric("keygate_config_reloads_total", 1.0).await;
    for _ in 0..5 {
        assert_eq!(gw.get("api.test", "/v1/pets/1").send().await.unwrap().status(), 404);
    }
}

#[test]
fn unusable_specs_are_load_errors() {
    let dir = tempfile::tempdir().unwrap();
    let check = |spec: &str, policies: &str| {
        let spec_path = dir.path().join("spec.yaml");
        std::fs::write(&spec_path, spec).unwrap();
        let config = format!("deployments:\n  - id: dep\n    instances: [\"builtin:echo\"]\n    {policies}\nroutes:\n  - host: api.test\n    deployment: dep\n", );
        let out = check_config_in(dir.path(), &config, &[], &[]);
        assert!(!out.success());
        out.stderr
    };
    let external = "openapi: 3.1.0\ninfo: {title: t, version: '1'}\npaths:\n  /a:\n    get:\n      parameters: [{$ref: 'common.yaml#/components/parameters/P'}]\n";
    let err = check(external, "openapi: {file: spec.yaml}");
    assert!(
        err.contains("deployments[0].openapi.file") && err.contains("external $ref") && err.contains("common.yaml"),
        "{err}"
    );
    let err = check("swagger: '2.0'\n", "openapi: {file: spec.yaml}");
    assert!(err.contains("unsupported OpenAPI version"), "{err}");
    let err = check("openapi: 3.0.0\n", "openapi: {file: missing.yaml}");
    assert!(err.contains("cannot read"), "{err}");
    let err = check("openapi: 3.0.0\n", "policies: [{id: v, openapi: {}}]");
    assert!(
        err.contains("deployments[0].policies[0].openapi") && err.contains("needs the deployment"),
        "{err}"
    );
    let err = check("openapi: 3.0.0\n", "openapi: {file: spec.yaml, fetch_path: /x}");
    assert!(err.contains("exactly one"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_large_real_world_spec() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/unkey-openapi-generated.yaml");
    let Ok(spec) = std::fs::read_to_string(&fixture) else {
        eprintln!("skipped: {} not present", fixture.display());
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let up = Upstream::inspector("unkey").await;
    let gw = Gateway::start(&config(dir.path(), "unkey.yaml", &spec, &up.addr_str(), "")).await;
    let post = |target: &'static str, body: &'static str| {
        gw.request(reqwest::Method::POST, "api.test", target)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    assert_eq!(
        post(
            "/v2/keys.createKey",
            r#"{"apiId":"api_1234abcd","prefix":"sk","byteLength":24}"#
        )
        .await
        .unwrap()
        .status(),
        200
    );
    assert_eq!(
        post("/v2/keys.verifyKey", r#"{"key":"sk_1234abcdef"}"#)
            .await
            .unwrap()
            .status(),
        200
    );
    let body = rejected(
        post("/v2/keys.createKey", r#"{"apiId":7,"byteLength":"long"}"#)
            .await
            .unwrap(),
    )
    .await;
    assert!(body["error"]["errors"].as_array().unwrap().len() >= 2, "{body}");
    rejected(post("/v2/keys.doesNotExist", "{}").await.unwrap()).await;
    assert_eq!(up.hits(), 2);
}
