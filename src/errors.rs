//! The one place that knows keygate's error codes (SPEC §5): each failure the
//! gateway answers itself is a [`GatewayError`], and only this module turns it
//! into a status, a title, a docs URL and a response body.

use std::fmt::Write as _;

/// Every error the gateway can answer with, one variant per SPEC §5 code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    ConfigNotFound,
    DeploymentNotFound,
    NoRunningInstances,
    MissingCredentials,
    InvalidKey,
    InsufficientPermissions,
    RateLimited,
    UsageExceeded,
    FirewallDenied,
    OpenapiValidationFailed,
    RequestTooLarge,
    InvalidConfiguration,
    ServiceUnavailable,
    BadGateway,
    GatewayTimeout,
    InternalServerError,
}

impl ErrorCode {
    /// `(code, status)` — the code table of SPEC §5.
    const fn entry(self) -> (&'static str, u16) {
        use ErrorCode::*;
        match self {
            ConfigNotFound => ("err:frontline:routing:config_not_found", 404),
            DeploymentNotFound => ("err:frontline:routing:deployment_not_found", 404),
            NoRunningInstances => ("err:frontline:capacity:no_running_instances", 503),
            MissingCredentials => ("err:frontline:client:missing_credentials", 401),
            InvalidKey => ("err:frontline:client:invalid_key", 401),
            InsufficientPermissions => ("err:frontline:client:insufficient_permissions", 403),
            RateLimited => ("err:frontline:client:rate_limited", 429),
            UsageExceeded => ("err:frontline:client:usage_exceeded", 429),
            FirewallDenied => ("err:frontline:client:firewall_denied", 403),
            OpenapiValidationFailed => ("err:frontline:client:openapi_validation_failed", 400),
            RequestTooLarge => ("err:frontline:client:request_too_large", 413),
            InvalidConfiguration => ("err:frontline:config:invalid_configuration", 422),
            ServiceUnavailable => ("err:frontline:upstream:service_unavailable", 503),
            BadGateway => ("err:frontline:upstream:bad_gateway", 502),
            GatewayTimeout => ("err:frontline:upstream:gateway_timeout", 504),
            InternalServerError => ("err:frontline:platform:internal_server_error", 500),
        }
    }

    pub const fn status(self) -> u16 {
        self.entry().1
    }

    /// The full code, e.g. `err:frontline:routing:config_not_found`; also the
    /// `error_code` metric label (SPEC §9.27).
    pub const fn code(self) -> &'static str {
        self.entry().0
    }

    /// The HTTP reason phrase of the status (SPEC §9.11).
    pub fn title(self) -> &'static str {
        http::StatusCode::from_u16(self.status())
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("Error")
    }

    fn default_detail(self) -> &'static str {
        use ErrorCode::*;
        match self {
            ConfigNotFound => "No route is configured for this host and path.",
            DeploymentNotFound => "The route points to a deployment that does not exist.",
            NoRunningInstances => "The deployment has no running instance.",
            MissingCredentials => "No credentials were found in the request.",
            InvalidKey => "The API key is invalid, disabled or expired.",
            InsufficientPermissions => "The credentials lack the permissions this request needs.",
            RateLimited => "Too many requests: a rate limit was exceeded.",
            UsageExceeded => "The key has no credits left.",
            FirewallDenied => "The request was denied by a firewall rule.",
            OpenapiValidationFailed => "The request does not match the API specification.",
            RequestTooLarge => "The request body is larger than this gateway accepts.",
            InvalidConfiguration => "The deployment's policy configuration cannot be used.",
            ServiceUnavailable => "No instance of the deployment could be reached.",
            BadGateway => "The instance closed the connection or sent an invalid response.",
            GatewayTimeout => "The instance did not answer in time.",
            InternalServerError => "The gateway failed unexpectedly.",
        }
    }

    /// `<docs_base>/<category>/<name>` (SPEC §9.11).
    pub fn docs_url(self, docs_base: &str) -> String {
        let path = self.code().trim_start_matches("err:frontline:").replace(':', "/");
        format!("{}/{path}", docs_base.trim_end_matches('/'))
    }
}

/// Where SPEC §9.11 says error docs live unless `errors.docs_base` says otherwise.
pub const DEFAULT_DOCS_BASE: &str = "https://unkey.com/docs/errors/frontline";

/// One of several problems behind an error (e.g. every OpenAPI violation),
/// rendered as `error.errors[]`: where (`body/items/2/price`, `query.limit`) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorItem {
    pub location: String,
    pub message: String,
}

/// A failure the gateway answers itself, with an optional specific detail
/// and the individual problems behind it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}: {}", code.code(), self.detail())]
pub struct GatewayError {
    pub code: ErrorCode,
    detail: Option<String>,
    items: Vec<ErrorItem>,
}

impl GatewayError {
    pub fn new(code: ErrorCode) -> Self {
        Self { code, detail: None, items: Vec::new() }
    }

    pub fn with_detail(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self {
            code,
            detail: Some(detail.into()),
            items: Vec::new(),
        }
    }

    /// Adds the individual problems, rendered as `error.errors`.
    pub fn with_items(mut self, items: Vec<ErrorItem>) -> Self {
        self.items = items;
        self
    }

    pub fn items(&self) -> &[ErrorItem] {
        &self.items
    }

    pub fn detail(&self) -> &str {
        self.detail
            .as_deref()
            .unwrap_or_else(|| self.code.default_detail())
    }
}

impl From<ErrorCode> for GatewayError {
    fn from(code: ErrorCode) -> Self {
        Self::new(code)
    }
}

/// The body of a gateway-made response, in the representation the client asked for.
pub struct RenderedError {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

/// Renders `error` as problem+json, or as an HTML page when `accept` prefers
/// `text/html` (SPEC §9.12).
pub fn render(
    error: &GatewayError,
    request_id: &str,
    docs_base: &str,
    accept: Option<&str>,
) -> RenderedError {
    let code = error.code;
    if accept.is_some_and(prefers_html) {
        return RenderedError {
            status: code.status(),
            content_type: "text/html; charset=utf-8",
            body: html_page(error, request_id),
        };
    }
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
    if !error.items.is_empty() {
        let items = error
            .items
            .iter()
            .map(|i| serde_json::json!({"location": i.location, "message": i.message}))
            .collect();
        body["error"]["errors"] = serde_json::Value::Array(items);
    }
    RenderedError {
        status: code.status(),
        content_type: "application/problem+json",
        body: body.to_string(),
    }
}

fn html_page(error: &GatewayError, request_id: &str) -> String {
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
    let _ = writeln!(
        page,
        "<p>Request ID: <code>{request_id}</code></p></body></html>",
        request_id = escape_html(request_id),
    );
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

/// True when `text/html` has a strictly higher q-value than JSON in `accept`;
/// `*/*` (and `application/*`, `text/*`) count for the types they cover.
fn prefers_html(accept: &str) -> bool {
    let (mut html, mut json) = (0.0_f32, 0.0_f32);
    for item in accept.split(',') {
        let mut parts = item.split(';');
        let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q=").or_else(|| p.trim().strip_prefix("Q=")))
            .find_map(|v| v.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        let (covers_html, covers_json) = match media.as_str() {
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

    #[test]
    fn codes_statuses_and_titles_follow_the_table() {
        assert_eq!(ErrorCode::ConfigNotFound.code(), "err:frontline:routing:config_not_found");
        assert_eq!(ErrorCode::ConfigNotFound.status(), 404);
        assert_eq!(ErrorCode::ConfigNotFound.title(), "Not Found");
        assert_eq!(ErrorCode::UsageExceeded.title(), "Too Many Requests");
        assert_eq!(ErrorCode::InvalidConfiguration.title(), "Unprocessable Entity");
        assert_eq!(
            ErrorCode::GatewayTimeout.docs_url(DEFAULT_DOCS_BASE),
            "https://unkey.com/docs/errors/frontline/upstream/gateway_timeout"
        );
    }

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
            ("", false),
        ];
        for (accept, html) in cases {
            assert_eq!(prefers_html(accept), html, "{accept}");
        }
    }

    #[test]
    fn problem_json_shape() {
        let err = GatewayError::new(ErrorCode::ConfigNotFound);
        let out = render(&err, "req_1", DEFAULT_DOCS_BASE, None);
        assert_eq!(out.status, 404);
        assert_eq!(out.content_type, "application/problem+json");
        let v: serde_json::Value = serde_json::from_str(&out.body).unwrap();
        assert_eq!(v["meta"]["requestId"], "req_1");
        assert_eq!(v["error"]["status"], 404);
        assert_eq!(v["error"]["title"], "Not Found");
    }

    #[test]
    fn items_render_as_an_errors_array() {
        let err = GatewayError::with_detail(ErrorCode::OpenapiValidationFailed, "body/a: bad").with_items(vec![
            ErrorItem { location: "body/a".into(), message: "bad".into() },
            ErrorItem { location: "query.limit".into(), message: "<worse>".into() },
        ]);
        let v: serde_json::Value = serde_json::from_str(&render(&err, "req_1", DEFAULT_DOCS_BASE, None).body).unwrap();
        assert_eq!(v["error"]["status"], 400);
        assert_eq!(v["error"]["errors"][1]["location"], "query.limit");
        assert_eq!(v["error"]["errors"].as_array().map(Vec::len), Some(2));
        let html = render(&err, "req_1", DEFAULT_DOCS_BASE, Some("text/html")).body;
        assert!(html.contains("&lt;worse&gt;"));
        let plain: serde_json::Value =
            serde_json::from_str(&render(&GatewayError::new(ErrorCode::InvalidKey), "r", DEFAULT_DOCS_BASE, None).body).unwrap();
        assert!(plain["error"].get("errors").is_none());
    }

    #[test]
    fn html_escapes_detail() {
        let err = GatewayError::with_detail(ErrorCode::BadGateway, "<script>");
        let out = render(&err, "req_1", DEFAULT_DOCS_BASE, Some("text/html"));
        assert!(out.body.contains("&lt;script&gt;"));
        assert!(out.content_type.starts_with("text/html"));
    }
}
