//! Writing an error as a response body: the JSON shape every keygate error
//! has (`{meta: {requestId, traceId?}, error: {code, title, detail, status,
//! type, errors?}}`), as problem+json or plain JSON, or an HTML page for browsers.

use std::fmt::Write as _;

use super::GatewayError;

/// How an error body is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Representation {
    /// `application/problem+json`.
    ProblemJson,
    /// The same body as `application/json`.
    Json,
    /// A small HTML page.
    Html,
}

impl Representation {
    /// For a client of the gateway: HTML when its `Accept` prefers
    /// `text/html`, else problem+json.
    pub fn for_accept(accept: Option<&str>) -> Self {
        if accept.is_some_and(prefers_html) {
            Self::Html
        } else {
            Self::ProblemJson
        }
    }
}

/// A rendered error response body.
pub struct RenderedError {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

/// Renders `error`; `trace_id` is the request's trace when tracing is on;
/// `docs_base` is where the gateway's codes are documented.
pub fn render(
    error: &GatewayError,
    request_id: &str,
    trace_id: Option<&str>,
    docs_base: &str,
    representation: Representation,
) -> RenderedError {
    let code = error.code;
    let content_type = match representation {
        Representation::Html => {
            return RenderedError {
                status: code.status(),
                content_type: "text/html; charset=utf-8",
                body: html_page(error, request_id, trace_id),
            }
        }
        Representation::ProblemJson => "application/problem+json",
        Representation::Json => "application/json",
    };
    let mut body = serde_json::json!({
        "meta": { "requestId": request_id },
        "error": {
            "code": code.code(),
            "title": code.title(),
            "detail": error.detail(),
            "status": code.status(),
            "type": code.docs_url(docs_base),
        }
    });
    if let Some(trace_id) = trace_id {
        body["meta"]["traceId"] = serde_json::json!(trace_id);
    }
    if !error.items.is_empty() {
        let items = error
            .items
            .iter()
            .map(|item| {
                let mut out = serde_json::json!({"location": item.location, "message": item.message});
                if let Some(fix) = &item.fix {
                    out["fix"] = serde_json::json!(fix);
                }
                out
            })
            .collect();
        body["error"]["errors"] = serde_json::Value::Array(items);
    }
    RenderedError {
        status: code.status(),
        content_type,
        body: body.to_string(),
    }
}

fn html_page(error: &GatewayError, request_id: &str, trace_id: Option<&str>) -> String {
    let code = error.code;
    let mut page = String::with_capacity(512);
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{status} {title}</title></head>\
         <body><h1>{status} {title}</h1><p>{detail}</p><p><code>{code}</code></p>",
        status = code.status(),
        title = escape_html(code.title()),
        detail = escape_html(error.detail()),
        code = escape_html(code.code()),
    );
    if !error.items.is_empty() {
        page.push_str("<ul>");
        for item in &error.items {
            let _ = write!(
                page,
                "<li><code>{}</code>: {}</li>",
                escape_html(&item.location),
                escape_html(&item.message)
            );
        }
        page.push_str("</ul>");
    }
    let _ = write!(page, "<p>Request ID: <code>{}</code></p>", escape_html(request_id));
    if let Some(trace_id) = trace_id {
        let _ = write!(page, "<p>Trace ID: <code>{}</code></p>", escape_html(trace_id));
    }
    page.push_str("</body></html>\n");
    page
}

fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// True when `text/html` has a strictly higher q-value than JSON in
/// `accept`; `*/*` (and `application/*`, `text/*`) count for the types they
/// cover. Media ranges that do not parse are ignored.
fn prefers_html(accept: &str) -> bool {
    let (mut html, mut json) = (0.0_f32, 0.0_f32);
    // Accept allows whitespace around `;`, which `mime` does not.
    let ranges = accept.split(',').filter_map(|item| {
        let tight: Vec<&str> = item.split(';').map(str::trim).collect();
        tight.join(";").parse::<mime::Mime>().ok()
    });
    for range in ranges {
        let q = range
            .get_param("q")
            .and_then(|q| q.as_str().trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        let (covers_html, covers_json) = match range.essence_str() {
            "*/*" => (true, true),
            "text/html" | "text/*" => (true, false),
            "application/json" | "application/problem+json" | "application/*" => (false, true),
            _ => (false, false),
        };
        if covers_html {
            html = html.max(q);
        }
        if covers_json {
            json = json.max(q);
        }
    }
    html > json
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::errors::{ErrorCode, ErrorItem, DEFAULT_DOCS_BASE};

    #[test]
    fn accept_negotiation() {
        let cases = [
            ("text/html", true),
            ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", true),
            ("*/*", false),
            ("application/json", false),
            ("text/html;q=0.5, application/json", false),
            ("text/html, application/json", false),
            ("text/html;q=0.9, */*;q=0.8", true),
            ("text/plain", false),
            (
                "text/html;q=0.8, application/problem+json;q=0.8, application/json;q=0.1",
                false,
            ),
            ("TEXT/HTML", true),
            ("text/html ; q=0.8 , application/json ; q=0.7", true),
            ("", false),
        ];
        for (accept, html) in cases {
            assert_eq!(prefers_html(accept), html, "{accept}");
        }
    }

    #[test]
    fn problem_json_shape() {
        let err = GatewayError::new(ErrorCode::ConfigNotFound);
        let out = render(&err, "req_1", None, DEFAULT_DOCS_BASE, Representation::for_accept(None));
        assert_eq!(out.status, 404);
        assert_eq!(out.content_type, "application/problem+json");
        let v: serde_json::Value = serde_json::from_str(&out.body).unwrap();
        assert_eq!(v["meta"]["requestId"], "req_1");
        assert_eq!(v["error"]["status"], 404);
        assert_eq!(v["error"]["title"], "Not Found");
        assert!(v["meta"].get("traceId").is_none(), "no traceId without tracing");
    }

    #[test]
    fn trace_id_in_meta_and_page() {
        let err = GatewayError::new(ErrorCode::BadGateway);
        let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
        let json = render(
            &err,
            "req_1",
            Some(trace),
            DEFAULT_DOCS_BASE,
            Representation::ProblemJson,
        );
        let v: serde_json::Value = serde_json::from_str(&json.body).unwrap();
        assert_eq!(v["meta"]["traceId"], trace);
        assert_eq!(v["meta"]["requestId"], "req_1");
        let html = render(&err, "req_1", Some(trace), DEFAULT_DOCS_BASE, Representation::Html).body;
        assert!(html.contains(&format!("Trace ID: <code>{trace}</code>")), "{html}");
    }

    #[test]
    fn items_render_as_an_errors_array() {
        let err = GatewayError::with_detail(ErrorCode::OpenapiValidationFailed, "body/a: bad").with_items(vec![
            ErrorItem::new("body/a", "bad"),
            ErrorItem::new("query.limit", "<worse>"),
        ]);
        let v: serde_json::Value = serde_json::from_str(
            &render(&err, "req_1", None, DEFAULT_DOCS_BASE, Representation::for_accept(None)).body,
        )
        .unwrap();
        assert_eq!(v["error"]["status"], 400);
        assert_eq!(v["error"]["errors"][1]["location"], "query.limit");
        assert_eq!(v["error"]["errors"].as_array().map(Vec::len), Some(2));
        let html = render(
            &err,
            "req_1",
            None,
            DEFAULT_DOCS_BASE,
            Representation::for_accept(Some("text/html")),
        )
        .body;
        assert!(html.contains("&lt;worse&gt;"));
        let plain: serde_json::Value = serde_json::from_str(
            &render(
                &GatewayError::new(ErrorCode::InvalidKey),
                "r",
                None,
                DEFAULT_DOCS_BASE,
                Representation::for_accept(None),
            )
            .body,
        )
        .unwrap();
        assert!(plain["error"].get("errors").is_none());
    }

    #[test]
    fn html_escapes_detail() {
        let err = GatewayError::with_detail(ErrorCode::BadGateway, "<script>");
        let out = render(
            &err,
            "req_1",
            None,
            DEFAULT_DOCS_BASE,
            Representation::for_accept(Some("text/html")),
        );
        assert!(out.body.contains("&lt;script&gt;"));
        assert!(out.content_type.starts_with("text/html"));
    }
}
