//! The gateway's own error answers: problem+json with
//! code, status, title, docs link and request id, checked the same way by
//! every test file that provokes one.

use serde_json::{json, Value};

pub const DOCS_BASE: &str = "https://unkey.com/docs/errors/frontline";

/// Asserts a gateway-made problem+json error with `code`, `status` and
/// `title`; returns the parsed body.
pub async fn assert_problem(resp: reqwest::Response, status: u16, code: &str, title: &str) -> Value {
    let got_status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    assert_eq!(got_status, status, "status; body: {text}");
    let ct = headers
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    assert!(
        ct.starts_with("application/problem+json"),
        "content-type {ct:?}; body: {text}"
    );
    assert_eq!(
        headers.get("x-unkey-error-source").map(|v| v.to_str().unwrap()),
        Some("gateway"),
        "X-Unkey-Error-Source"
    );
    let rid = headers
        .get("x-request-id")
        .map(|v| v.to_str().unwrap().to_string())
        .expect("X-Request-Id header");
    assert!(rid.starts_with("req_") && rid.len() > 4, "X-Request-Id {rid:?}");
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    assert_eq!(
        v["meta"]["requestId"],
        json!(rid),
        "meta.requestId equals X-Request-Id: {v}"
    );
    assert_eq!(v["error"]["code"], json!(code), "{v}");
    assert_eq!(v["error"]["status"], json!(status), "{v}");
    assert_eq!(v["error"]["title"], json!(title), "{v}");
    let (category, name) = {
        let mut parts = code.rsplitn(3, ':');
        let name = parts.next().unwrap();
        let category = parts.next().unwrap();
        (category, name)
    };
    assert_eq!(
        v["error"]["type"],
        json!(format!("{DOCS_BASE}/{category}/{name}")),
        "{v}"
    );
    assert!(
        v["error"]["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "detail is a non-empty string: {v}"
    );
    v
}
