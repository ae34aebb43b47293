//! Property tests for the parsers a request or a configuration controls:
//! permission queries, the request-target / strip-prefix logic, OpenAPI
//! parameter and body checking, and PEM loading. None may panic (a panic on
//! the request path is a 500; on a reload, a refused config) and each keeps
//! its contract on any input.
//!
//! CI runs a few dozen cases per property; `KEYGATE_PROPTEST_CASES=1000000`
//! runs them at length.

use proptest::prelude::*;
use std::borrow::Cow;

use keygate::keys::permissions::{PermissionQuery, QueryError, MAX_NESTING};
use keygate::routing::{request_head, HostPattern, PathPrefix, RouteTable};

fn config() -> ProptestConfig {
    let cases = std::env::var("KEYGATE_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Well-formed queries up to `depth` parentheses deep.
fn query(depth: u32) -> impl Strategy<Value = String> {
    // `p` first: a permission never spells the keywords AND / OR.
    let permission = "p[a-z0-9._:*-]{0,12}";
    permission.prop_recursive(depth, 64, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 1..4).prop_map(|terms| terms.join(" AND ")),
            prop::collection::vec(inner.clone(), 1..4).prop_map(|terms| terms.join(" or ")),
            inner.prop_map(|term| format!("({term})")),
        ]
    })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn permission_queries_never_panic(text in "[a-z().* \\-_:ANDOR]{0,300}") {
        let _ = PermissionQuery::parse(&text);
    }

    #[test]
    fn well_formed_queries_parse(text in query(8)) {
        prop_assert!(PermissionQuery::parse(&text).unwrap().is_some());
    }

    #[test]
    fn nesting_past_the_bound_is_an_error(depth in (MAX_NESTING + 1)..5_000usize, inner in query(2)) {
        let text = format!("{}{inner}{}", "(".repeat(depth), ")".repeat(depth));
        prop_assert!(matches!(PermissionQuery::parse(&text), Err(QueryError::TooDeep(_))));
    }

    #[test]
    fn strip_prefix_keeps_the_rest_of_the_target(
        prefix in "(/[a-z0-9]{1,6}){1,3}",
        rest in "(/[a-zA-Z0-9%._~-]{0,8}){0,3}",
        query in prop::option::of("[a-z0-9=&%]{0,20}"),
    ) {
        let mut table = RouteTable::default();
        table.insert(HostPattern::parse("p.test").unwrap(), PathPrefix::parse(&prefix).unwrap(), true, ());
        let path = format!("{prefix}{rest}");
        let target = match &query { Some(q) => format!("{path}?{q}"), None => path.clone() };
        let routed = table.resolve("p.test", &request_head("GET", &path, &[])).expect("a path below the prefix routes");
        let upstream = routed.upstream_target(&target);
        let expected_path = if rest.is_empty() { "/".to_string() } else { rest.clone() };
        let expected = match &query { Some(q) => format!("{expected_path}?{q}"), None => expected_path };
        prop_assert_eq!(upstream, Cow::<str>::Owned(expected));
    }

    #[test]
    fn routing_any_host_and_path_never_panics(host in "\\PC{0,40}", path in "\\PC{0,80}") {
        let mut table = RouteTable::default();
        table.insert(HostPattern::parse("*.p.test").unwrap(), PathPrefix::parse("/api").unwrap(), true, ());
        if let Some(routed) = table.resolve(&host, &request_head("GET", &path, &[])) {
            let _ = routed.upstream_target(&path);
        }
    }

    #[test]
    fn openapi_checks_never_panic(query in "[a-z0-9=&%,.\\[\\]+-]{0,60}", trace in "\\PC{0,20}", body in prop::collection::vec(any::<u8>(), 0..200)) {
        let spec = keygate::openapi::compile(SPEC).unwrap();
        let uri = format!("/pets?{query}");
        let Ok(request) = http::Request::builder().method("POST").uri(uri.as_str()).header("content-type", "application/json") .body(()) else { return Ok(()) };
        let mut head = request.into_parts().0;
        if let Ok(value) = http::HeaderValue::from_str(&trace) {
            head.headers.insert("x-trace", value);
        }
        let _ = spec.check(&head, &body);
    }

    #[test]
    fn pem_loading_never_panics(chain in prop::collection::vec(any::<u8>(), 0..600), key in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = keygate::tls::pem::Certificate::from_pem(&chain, &key);
        let framed = [b"-----BEGIN CERTIFICATE-----\n".as_slice(), &chain, b"\n-----END CERTIFICATE-----\n"].concat();
        let _ = keygate::tls::pem::Certificate::from_pem(&framed, &key);
    }
}

const SPEC: &str = r#"
openapi: 3.1.0
paths:
  /pets:
    post:
      parameters:
        - {name: limit, in: query, schema: {type: integer, minimum: 1}}
        - {name: tags, in: query, explode: false, schema: {type: array, items: {type: string}}}
        - {name: X-Trace, in: header, schema: {type: string, pattern: "^[a-f0-9]{8}$"}}
      requestBody:
        content:
          application/json:
            schema: {type: object, properties: {name: {type: string}, items: {type: array, items: {type: number}}}}
"#;
