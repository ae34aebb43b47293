//! Validating a request against its OpenAPI operation runs on every request
//! through an `openapi` policy: a typical 1 KB JSON body (nested object,
//! array of items, `$ref`s, formats, enums) plus query and header
//! parameters must check in well under 20 µs.

use criterion::{black_box, criterion_group, criterion_main, Criterion};

const SPEC: &str = r##"
openapi: 3.1.0
info: {title: orders, version: "1"}
servers: [{url: /api}]
paths:
  /orders/{orderId}:
    put:
      parameters:
        - {name: orderId, in: path, required: true, schema: {type: string, format: uuid}}
        - {name: dryRun, in: query, schema: {type: boolean}}
        - {name: X-Request-Source, in: header, schema: {type: string, enum: [web, mobile, partner]}}
      requestBody:
        required: true
        content:
          application/json:
            schema: {$ref: "#/components/schemas/Order"}
      responses: {200: {description: ok}}
  /orders: {get: {responses: {200: {description: ok}}}}
  /customers/{id}: {get: {responses: {200: {description: ok}}}}
components:
  schemas:
    Order:
      type: object
      required: [customer, items, currency, shipping]
      properties:
        customer: {$ref: "#/components/schemas/Customer"}
        currency: {type: string, enum: [EUR, USD, GBP]}
        note: {type: [string, "null"], maxLength: 500}
        items: {type: array, minItems: 1, maxItems: 100, items: {$ref: "#/components/schemas/Item"}}
        shipping: {$ref: "#/components/schemas/Address"}
    Customer:
      type: object
      required: [id, email]
      properties:
        id: {type: string, pattern: "^cus_[A-Za-z0-9]{8,}$"}
        email: {type: string, format: email}
        name: {type: string}
    Item:
      type: object
      required: [sku, quantity, price]
      additionalProperties: false
      properties:
        sku: {type: string, minLength: 3}
        quantity: {type: integer, minimum: 1}
        price: {type: number, minimum: 0}
        tags: {type: array, items: {type: string}}
    Address:
      type: object
      required: [line1, city, country]
      properties:
        line1: {type: string}
        line2: {type: string}
        city: {type: string}
        postcode: {type: string}
        country: {type: string, minLength: 2, maxLength: 2}
"##;

fn body() -> Vec<u8> {
    let items: Vec<serde_json::Value> = (0..10)
        .map(|i| serde_json::json!({"sku": format!("SKU-{i:04}"), "quantity": i + 1, "price": 9.99 + i as f64, "tags": ["gift", "fragile"]}))
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "customer": {"id": "cus_4f9a8b7c6d", "email": "ada@example.com", "name": "Ada Lovelace"},
        "currency": "EUR",
        "note": "Leave the parcel with the neighbour if nobody is home, please.",
        "items": items,
        "shipping": {"line1": "12 Analytical Engine Way", "line2": "Flat 3", "city": "London", "postcode": "N1 9GU", "country": "GB"}
    }))
    .expect("serialisable")
}

fn openapi(c: &mut Criterion) {
    let spec = keygate::openapi::compile(SPEC).expect("the benchmark spec compiles");
    let body = body();
    assert!((900..1300).contains(&body.len()), "a ~1 KB body, got {}", body.len());
    let head = http::Request::put("/api/orders/6f1c1f4e-8a39-4c55-9a7e-0e1a2b3c4d5e?dryRun=false")
        .header("content-type", "application/json")
        .header("x-request-source", "web")
        .body(())
        .expect("valid request")
        .into_parts()
        .0;
    assert!(spec.check(&head, &body).is_empty(), "{:?}", spec.check(&head, &body));

    c.bench_function("openapi: validate 1 KB JSON body + params", |b| {
        b.iter(|| spec.check(black_box(&head), black_box(&body)))
    });
}

criterion_group!(benches, openapi);
criterion_main!(benches);
